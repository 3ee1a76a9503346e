//! Selectors and filters end to end: the seed's selector example (python-qpid-proton, as
//! written), queue consumers that take only what their selector passes without stalling the
//! queue, filtered and no-local subscriptions, AMQP properties filters, the attach reply's
//! echo, and a selector that does not parse refused on its link alone.

#![allow(clippy::unwrap_used)] // a test, bench or tool: a panic here is a failed run, not a broker down

mod support;

use std::time::Duration;

use fe2o3_amqp::link::ReceiverAttachError;
use fe2o3_amqp::types::definitions::{AmqpError, ErrorCondition};
use fe2o3_amqp::types::messaging::{AmqpValue, ApplicationProperties, Message, Properties, Source};
use fe2o3_amqp::types::primitives::{OrderedMap, Symbol, Value};
use fe2o3_amqp::{Connection, Receiver, Sender, Session};
use serde_amqp::described::Described;
use serde_amqp::descriptor::Descriptor;
use support::broker::{drain, start, test_config};
use support::proton;

type Text = Message<AmqpValue<String>>;

fn coloured(colour: &str, body: &str) -> Text {
    Message::builder()
        .application_properties(
            ApplicationProperties::builder()
                .insert("colour", colour)
                .build(),
        )
        .value(body.to_string())
        .build()
}

fn filter(descriptor: &str, value: Value) -> Described<Value> {
    Described {
        descriptor: Descriptor::Name(Symbol::from(descriptor)),
        value,
    }
}

fn selector(address: &str, key: &str, text: &str) -> Source {
    Source::builder()
        .address(address)
        .add_to_filter(
            Symbol::from(key),
            filter(
                "apache.org:selector-filter:string",
                Value::String(text.into()),
            ),
        )
        .build()
}

async fn attach(
    session: &mut fe2o3_amqp::session::SessionHandle<()>,
    name: &str,
    source: Source,
) -> Result<Receiver, ReceiverAttachError> {
    Receiver::builder()
        .name(name)
        .source(source)
        .attach(session)
        .await
}

async fn send_all(sender: &mut Sender, messages: Vec<Text>) {
    for m in messages {
        assert!(sender.send(m).await.unwrap().is_accepted());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_selector_example_receives_only_green() {
    tokio::task::spawn_blocking(proton::python).await.unwrap();
    let (broker, url) = start(test_config()).await;
    let addr = broker.local_addrs()[0];
    let mut connection = Connection::open("seed-selector", url.as_str())
        .await
        .unwrap();
    let mut session = Session::begin(&mut connection).await.unwrap();
    let mut sender = Sender::attach(&mut session, "s", "examples").await.unwrap();
    send_all(
        &mut sender,
        vec![
            coloured("red", "red 1"),
            coloured("green", "green 2"),
            coloured("red", "red 3"),
            coloured("green", "green 4"),
        ],
    )
    .await;
    let child = proton::spawn_example("selected_recv.py", &["-a", &format!("{addr}/examples")]);
    // It runs until killed (as the seed's receiver does): wait for the greens to be taken.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let stats = broker.queue_stats("examples").unwrap();
        if stats.ready == 2 && stats.unacked == 0 && stats.acked >= 2 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "greens not taken: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let output = tokio::task::spawn_blocking(move || {
        proton::wait_example(child, "selected_recv.py", Duration::from_millis(500))
    })
    .await
    .unwrap();
    assert_eq!(output.stdout, "green 2\ngreen 4\n", "{output}");
    // The reds stay for others, in order.
    let mut rest = Receiver::attach(&mut session, "rest", "examples")
        .await
        .unwrap();
    assert_eq!(drain(&mut rest).await, ["red 1", "red 3"]);
    rest.close().await.unwrap();
    sender.close().await.unwrap();
    connection.close().await.unwrap();
    broker.shutdown().await;
}

#[tokio::test]
async fn queue_consumers_take_what_their_selectors_pass_and_nothing_stalls() {
    let (broker, url) = start(test_config()).await;
    let mut connection = Connection::open("selectors", url.as_str()).await.unwrap();
    let mut session = Session::begin(&mut connection).await.unwrap();
    let mut sender = Sender::attach(&mut session, "s", "mixed").await.unwrap();
    // Messages nobody selects come first: they must not hold up the rest.
    let mut messages = vec![coloured("blue", "b0"), coloured("blue", "b1")];
    for n in 0..6 {
        let colour = if n % 2 == 0 { "red" } else { "green" };
        messages.push(coloured(colour, &format!("{colour}{n}")));
    }
    send_all(&mut sender, messages).await;

    let mut reds = attach(
        &mut session,
        "reds",
        selector("mixed", "jms-selector", "colour = 'red'"),
    )
    .await
    .unwrap();
    let mut greens = attach(
        &mut session,
        "greens",
        Source::builder()
            .address("mixed")
            .add_to_filter(
                Symbol::from("sql"),
                filter(
                    "amqp:sql-filter",
                    Value::String("a.colour = 'green'".into()),
                ),
            )
            .build(),
    )
    .await
    .unwrap();
    assert_eq!(drain(&mut reds).await, ["red0", "red2", "red4"]);
    assert_eq!(drain(&mut greens).await, ["green1", "green3", "green5"]);
    // Later messages reach the consumer whose selector passes them.
    send_all(
        &mut sender,
        vec![coloured("green", "green6"), coloured("red", "red7")],
    )
    .await;
    assert_eq!(drain(&mut greens).await, ["green6"]);
    assert_eq!(drain(&mut reds).await, ["red7"]);
    // A released message comes back to a filtered consumer too.
    send_all(&mut sender, vec![coloured("red", "red8")]).await;
    let d = tokio::time::timeout(Duration::from_secs(5), reds.recv::<String>())
        .await
        .unwrap()
        .unwrap();
    reds.release(&d).await.unwrap();
    assert_eq!(drain(&mut reds).await, ["red8"]);
    assert_eq!(
        broker.queue_stats("mixed").unwrap().ready,
        2,
        "the blues wait"
    );
    let mut anyone = Receiver::attach(&mut session, "anyone", "mixed")
        .await
        .unwrap();
    assert_eq!(drain(&mut anyone).await, ["b0", "b1"]);
    for r in [reds, greens, anyone] {
        r.close().await.unwrap();
    }
    sender.close().await.unwrap();
    connection.close().await.unwrap();
    broker.shutdown().await;
}

#[tokio::test]
async fn the_reply_echoes_the_filters_applied_and_a_bad_selector_is_refused_alone() {
    let (broker, url) = start(test_config()).await;
    let mut connection = Connection::open("echo", url.as_str()).await.unwrap();
    let mut session = Session::begin(&mut connection).await.unwrap();
    let mut sender = Sender::attach(&mut session, "s", "echoed").await.unwrap();
    // A filter of a type the broker does not know is left out of the reply; the client
    // decides (fe2o3-amqp refuses to go on without it).
    let mut first = Session::begin(&mut connection).await.unwrap();
    let source = Source::builder()
        .address("echoed")
        .add_to_filter(
            Symbol::from("selector"),
            filter(
                "apache.org:selector-filter:string",
                Value::String("colour = 'red'".into()),
            ),
        )
        .add_to_filter(
            Symbol::from("mine"),
            filter("com.example:unknown-filter", Value::Null),
        )
        .build();
    match attach(&mut first, "unknown", source).await {
        Err(ReceiverAttachError::DesiredFilterNotSupported(e)) => {
            assert_eq!(e.not_supported, [Symbol::from("mine")]);
        }
        other => panic!("expected the client to miss its filter, got {other:?}"),
    }
    let receiver = attach(
        &mut session,
        "echo",
        selector("echoed", "selector", "colour = 'red'"),
    )
    .await
    .unwrap();
    let echoed = receiver
        .source()
        .as_ref()
        .and_then(|s| s.filter.clone())
        .unwrap();
    let keys: Vec<&str> = echoed.keys().map(|k| k.as_str()).collect();
    assert_eq!(keys, ["selector"]);

    let mut other = Session::begin(&mut connection).await.unwrap();
    match attach(
        &mut other,
        "bad",
        selector("echoed", "selector", "colour = "),
    )
    .await
    {
        Err(ReceiverAttachError::RemoteClosedWithError(e)) => {
            assert_eq!(
                e.condition,
                ErrorCondition::AmqpError(AmqpError::InvalidField)
            );
            let why = e.description.unwrap();
            assert!(why.contains("at column 10"), "{why}");
        }
        other => panic!("expected invalid-field, got {other:?}"),
    }
    // The connection's other links carry on.
    send_all(&mut sender, vec![coloured("red", "still here")]).await;
    let mut receiver = receiver;
    assert_eq!(drain(&mut receiver).await, ["still here"]);
    receiver.close().await.unwrap();
    sender.close().await.unwrap();
    connection.close().await.unwrap();
    broker.shutdown().await;
}

#[tokio::test]
async fn subscriptions_store_only_what_they_select_and_no_local_skips_our_own() {
    let (broker, url) = start(test_config()).await;
    let mut connection = Connection::open("subs", url.as_str()).await.unwrap();
    let mut session = Session::begin(&mut connection).await.unwrap();
    let mut filtered = attach(
        &mut session,
        "red-news",
        selector("topic://news", "s", "colour = 'red'"),
    )
    .await
    .unwrap();
    let mut props = OrderedMap::new();
    props.insert(
        Value::Symbol("subject".into()),
        Value::String("&p:sport.".into()),
    );
    let mut sport = attach(
        &mut session,
        "sport",
        Source::builder()
            .address("topic://news")
            .add_to_filter(
                Symbol::from("p"),
                filter("amqp:properties-filter", Value::Map(props)),
            )
            .build(),
    )
    .await
    .unwrap();
    let mut not_mine = attach(
        &mut session,
        "not-mine",
        Source::builder()
            .address("topic://news")
            .add_to_filter(
                Symbol::from("no-local"),
                filter("apache.org:no-local-filter:list", Value::List(vec![])),
            )
            .build(),
    )
    .await
    .unwrap();
    let mut sender = Sender::attach(&mut session, "pub", "topic://news")
        .await
        .unwrap();
    let with_subject = |colour: &str, subject: &str| {
        Message::builder()
            .properties(Properties::builder().subject(subject).build())
            .application_properties(
                ApplicationProperties::builder()
                    .insert("colour", colour)
                    .build(),
            )
            .value(format!("{colour} {subject}"))
            .build()
    };
    send_all(
        &mut sender,
        vec![
            with_subject("red", "sport.f1"),
            with_subject("blue", "sport.golf"),
            with_subject("red", "politics"),
        ],
    )
    .await;
    assert_eq!(drain(&mut filtered).await, ["red sport.f1", "red politics"]);
    assert_eq!(drain(&mut sport).await, ["red sport.f1", "blue sport.golf"]);
    assert_eq!(
        drain(&mut not_mine).await,
        Vec::<String>::new(),
        "all sent on its connection"
    );

    let mut elsewhere = Connection::open("elsewhere", url.as_str()).await.unwrap();
    let mut their_session = Session::begin(&mut elsewhere).await.unwrap();
    let mut theirs = Sender::attach(&mut their_session, "pub2", "topic://news")
        .await
        .unwrap();
    send_all(&mut theirs, vec![with_subject("green", "weather")]).await;
    assert_eq!(drain(&mut not_mine).await, ["green weather"]);
    assert_eq!(drain(&mut filtered).await, Vec::<String>::new());
    theirs.close().await.unwrap();
    elsewhere.close().await.unwrap();
    for r in [filtered, sport, not_mine] {
        r.close().await.unwrap();
    }
    sender.close().await.unwrap();
    connection.close().await.unwrap();
    broker.shutdown().await;
}

/// A durable subscription with a selector (Qpid JMS's durable subscriber) stores only what it
/// selects, while detached and across a restart, before its subscriber attaches again.
#[tokio::test]
async fn a_durable_subscription_keeps_its_selector_across_a_restart() {
    use fe2o3_amqp::types::messaging::{TerminusDurability, TerminusExpiryPolicy};
    let config = test_config();
    let durable_selected = || {
        Source::builder()
            .address("amq.topic")
            .durable(TerminusDurability::UnsettledState)
            .expiry_policy(TerminusExpiryPolicy::Never)
            .add_to_filter(
                Symbol::from("jms-selector"),
                Described {
                    descriptor: Descriptor::Code(0x0000_468C_0000_0004),
                    value: Value::String("colour = 'green'".into()),
                },
            )
            .build()
    };
    let (broker, url) = start(config.clone()).await;
    let mut connection = Connection::open("jms-client", url.as_str()).await.unwrap();
    let mut session = Session::begin(&mut connection).await.unwrap();
    let subscriber = attach(&mut session, "greens", durable_selected())
        .await
        .unwrap();
    subscriber.detach().await.unwrap();
    connection.close().await.unwrap();
    broker.shutdown().await;

    let (broker, url) = start(config).await;
    let mut connection = Connection::open("jms-client", url.as_str()).await.unwrap();
    let mut session = Session::begin(&mut connection).await.unwrap();
    let mut publisher = Sender::attach(&mut session, "p", "amq.topic")
        .await
        .unwrap();
    send_all(
        &mut publisher,
        vec![coloured("red", "red 1"), coloured("green", "green 2")],
    )
    .await;
    assert_eq!(
        broker.queue_stats("jms-client:greens").unwrap().ready,
        1,
        "stored only what it selects, before its subscriber is back"
    );
    let mut subscriber = attach(&mut session, "greens", durable_selected())
        .await
        .unwrap();
    assert_eq!(drain(&mut subscriber).await, ["green 2"]);
    subscriber.close().await.unwrap();
    publisher.close().await.unwrap();
    connection.close().await.unwrap();
    broker.shutdown().await;
}
