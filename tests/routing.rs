//! Black-box tests of nodes and routing with the fe2o3-amqp client: temporary (dynamic)
//! queues and who owns them; exchanges, topics and the subscriptions receivers get on them.

#![allow(clippy::unwrap_used)] // a test, bench or tool: a panic here is a failed run, not a broker down

mod support;

use std::time::Duration;

use fe2o3_amqp::link::ReceiverAttachError;
use fe2o3_amqp::types::definitions::{AmqpError, ErrorCondition};
use fe2o3_amqp::types::messaging::{
    AmqpValue, ApplicationProperties, DeleteOnNoLinks, Message, Outcome, Properties, Source, Target,
};
use fe2o3_amqp::types::primitives::{OrderedMap, Symbol, Value};
use fe2o3_amqp::{Connection, Receiver, Sender, Session};
use serde_amqp::described::Described;
use serde_amqp::descriptor::Descriptor;
use sluice::BrokerHandle;
use support::broker::{drain, start, test_config};

const WAIT: Duration = Duration::from_secs(5);

async fn recv_text(receiver: &mut Receiver) -> String {
    let delivery = tokio::time::timeout(WAIT, receiver.recv::<String>())
        .await
        .expect("a delivery within 5 s")
        .expect("recv");
    receiver.accept(&delivery).await.unwrap();
    delivery.body().clone()
}

/// The one queue whose name starts with `sluice.dynamic.`.
fn dynamic_queue(broker: &BrokerHandle) -> Option<String> {
    broker
        .queue_names()
        .into_iter()
        .find(|n| n.starts_with("sluice.dynamic."))
}

async fn attach_dynamic(
    session: &mut fe2o3_amqp::session::SessionHandle<()>,
    source: Source,
) -> Receiver {
    Receiver::builder()
        .name("replies")
        .source(source)
        .attach(session)
        .await
        .unwrap()
}

async fn send_one(url: &str, address: &str, body: &str) {
    let mut connection = Connection::open("replier", url).await.unwrap();
    let mut session = Session::begin(&mut connection).await.unwrap();
    let mut sender = Sender::attach(&mut session, "reply", address)
        .await
        .unwrap();
    sender
        .send(Message::builder().value(body.to_string()).build())
        .await
        .unwrap()
        .accepted_or_else(|o| o)
        .unwrap();
    // The replier's link goes after each reply, as a request/response server's may.
    sender.close().await.unwrap();
    session.end().await.unwrap();
    connection.close().await.unwrap();
}

#[tokio::test]
async fn a_temporary_queue_outlives_the_links_that_send_to_it_and_goes_with_its_owner() {
    let (broker, url) = start(test_config()).await;
    let mut connection = Connection::open("requester", url.as_str()).await.unwrap();
    let mut session = Session::begin(&mut connection).await.unwrap();
    let mut replies = attach_dynamic(&mut session, Source::builder().dynamic(true).build()).await;
    let address = dynamic_queue(&broker).expect("a temporary queue");

    // Two replies, each from a sender link (and connection) that ends after sending.
    send_one(&url, &address, "first").await;
    send_one(&url, &address, "second").await;
    assert_eq!(recv_text(&mut replies).await, "first");
    assert_eq!(recv_text(&mut replies).await, "second");
    assert_eq!(dynamic_queue(&broker), Some(address.clone()));

    replies.close().await.unwrap();
    assert_eq!(
        dynamic_queue(&broker),
        None,
        "delete-on-close: it goes with its link"
    );
    session.end().await.unwrap();
    connection.close().await.unwrap();
    broker.shutdown().await;
}

#[tokio::test]
async fn only_the_owning_connection_consumes_from_a_temporary_queue() {
    let (broker, url) = start(test_config()).await;
    let mut owner = Connection::open("owner", url.as_str()).await.unwrap();
    let mut owner_session = Session::begin(&mut owner).await.unwrap();
    let mut replies =
        attach_dynamic(&mut owner_session, Source::builder().dynamic(true).build()).await;
    let address = dynamic_queue(&broker).unwrap();

    let mut other = Connection::open("other", url.as_str()).await.unwrap();
    let mut other_session = Session::begin(&mut other).await.unwrap();
    let mut keeps = Sender::attach(&mut other_session, "keeps", "work")
        .await
        .unwrap();
    let refused = Receiver::attach(&mut other_session, "steal", address.as_str()).await;
    match refused {
        Err(ReceiverAttachError::RemoteClosedWithError(e)) => {
            assert_eq!(
                e.condition,
                ErrorCondition::AmqpError(AmqpError::ResourceLocked)
            );
            let text = e.description.unwrap_or_default();
            assert!(text.contains("temporary queue"), "{text}");
        }
        other => panic!("expected resource-locked, got {other:?}"),
    }
    // The refusal ended that link only: the other connection's sender still works, and the
    // temporary queue is still there and still delivers to its owner.
    keeps
        .send(Message::builder().value("still here".to_string()).build())
        .await
        .unwrap()
        .accepted_or_else(|o| o)
        .unwrap();
    send_one(&url, &address, "for the owner").await;
    assert_eq!(recv_text(&mut replies).await, "for the owner");

    other.close().await.unwrap();
    owner.close().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        dynamic_queue(&broker),
        None,
        "closing the connection ends its links"
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn delete_on_no_links_keeps_the_queue_while_any_link_is_attached() {
    let (broker, url) = start(test_config()).await;
    let mut connection = Connection::open("requester", url.as_str()).await.unwrap();
    let mut session = Session::begin(&mut connection).await.unwrap();
    let source = Source::builder()
        .dynamic(true)
        .add_lifetime_policy(DeleteOnNoLinks {})
        .build();
    let replies = attach_dynamic(&mut session, source).await;
    let address = dynamic_queue(&broker).unwrap();

    let mut other = Connection::open("replier", url.as_str()).await.unwrap();
    let mut other_session = Session::begin(&mut other).await.unwrap();
    let sender = Sender::attach(&mut other_session, "reply", address.as_str())
        .await
        .unwrap();
    replies.close().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        dynamic_queue(&broker),
        Some(address),
        "a sender is still attached"
    );
    sender.close().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(dynamic_queue(&broker), None, "the last link went");
    other.close().await.unwrap();
    connection.close().await.unwrap();
    broker.shutdown().await;
}

type Text = Message<AmqpValue<String>>;

fn with_subject(subject: &str, body: &str) -> Text {
    Message::builder()
        .properties(Properties::builder().subject(subject).build())
        .value(body.to_string())
        .build()
}

/// A source on `address` with a legacy binding filter of `kind` (`direct`, `topic`).
fn bound(address: &str, kind: &str, key: &str) -> Source {
    Source::builder()
        .address(address)
        .add_to_filter(
            Symbol::from("binding"),
            Described {
                descriptor: Descriptor::Name(Symbol::from(format!(
                    "apache.org:legacy-amqp-{kind}-binding:string"
                ))),
                value: Value::String(key.to_string()),
            },
        )
        .build()
}

async fn subscribe(
    session: &mut fe2o3_amqp::session::SessionHandle<()>,
    name: &str,
    source: Source,
) -> Receiver {
    Receiver::builder()
        .name(name)
        .source(source)
        .attach(session)
        .await
        .unwrap()
}

async fn send(sender: &mut Sender, message: Text) -> Outcome {
    sender.send(message).await.unwrap()
}

#[tokio::test]
async fn a_topic_exchange_gives_each_binding_exactly_what_it_matches() {
    let (broker, url) = start(test_config()).await;
    let mut connection = Connection::open("topics", url.as_str()).await.unwrap();
    let mut session = Session::begin(&mut connection).await.unwrap();
    let mut logs = subscribe(&mut session, "logs", bound("amq.topic", "topic", "log.*")).await;
    let mut errors = subscribe(
        &mut session,
        "errors",
        bound("amq.topic", "topic", "#.error"),
    )
    .await;
    let mut all = subscribe(
        &mut session,
        "all",
        Source::builder().address("amq.topic").build(),
    )
    .await;
    let mut sender = Sender::attach(&mut session, "publisher", "amq.topic")
        .await
        .unwrap();
    for subject in ["log.info", "log.error", "app.db.error", "log.a.b", "other"] {
        let outcome = send(&mut sender, with_subject(subject, subject)).await;
        assert!(outcome.is_accepted(), "{subject}: {outcome:?}");
    }
    assert_eq!(drain(&mut logs).await, ["log.info", "log.error"]);
    assert_eq!(drain(&mut errors).await, ["log.error", "app.db.error"]);
    assert_eq!(
        drain(&mut all).await,
        ["log.info", "log.error", "app.db.error", "log.a.b", "other"]
    );
    let subscriptions = |b: &BrokerHandle| {
        b.queue_names()
            .iter()
            .filter(|n| n.starts_with("sluice.subscription."))
            .count()
    };
    assert_eq!(subscriptions(&broker), 3);
    logs.close().await.unwrap();
    errors.close().await.unwrap();
    all.close().await.unwrap();
    assert_eq!(
        subscriptions(&broker),
        0,
        "a subscription goes with its link"
    );
    connection.close().await.unwrap();
    broker.shutdown().await;
}

#[tokio::test]
async fn direct_fanout_and_headers_exchanges_route_as_rabbitmq_does() {
    let (broker, url) = start(test_config()).await;
    let mut connection = Connection::open("kinds", url.as_str()).await.unwrap();
    let mut session = Session::begin(&mut connection).await.unwrap();

    let mut red = subscribe(&mut session, "red", bound("amq.direct", "direct", "red")).await;
    let mut green = subscribe(
        &mut session,
        "green",
        bound("amq.direct", "direct", "green"),
    )
    .await;
    let mut direct = Sender::attach(&mut session, "direct", "amq.direct")
        .await
        .unwrap();
    assert!(send(&mut direct, with_subject("red", "r1"))
        .await
        .is_accepted());
    assert!(send(&mut direct, with_subject("green", "g1"))
        .await
        .is_accepted());
    assert_eq!(drain(&mut red).await, ["r1"]);
    assert_eq!(drain(&mut green).await, ["g1"]);
    // Nothing bound to "blue": the producer hears released, as from RabbitMQ.
    let outcome = send(&mut direct, with_subject("blue", "b1")).await;
    assert!(matches!(outcome, Outcome::Released(_)), "{outcome:?}");

    let mut one = subscribe(
        &mut session,
        "one",
        Source::builder().address("amq.fanout").build(),
    )
    .await;
    let mut two = subscribe(
        &mut session,
        "two",
        Source::builder().address("amq.fanout").build(),
    )
    .await;
    let mut fanout = Sender::attach(&mut session, "fanout", "amq.fanout")
        .await
        .unwrap();
    assert!(send(&mut fanout, with_subject("ignored", "f1"))
        .await
        .is_accepted());
    assert_eq!(drain(&mut one).await, ["f1"]);
    assert_eq!(drain(&mut two).await, ["f1"]);

    let mut headers = OrderedMap::new();
    headers.insert(Value::String("x-match".into()), Value::String("all".into()));
    headers.insert(
        Value::String("colour".into()),
        Value::String("green".into()),
    );
    headers.insert(Value::String("size".into()), Value::Int(3));
    let source = Source::builder()
        .address("amq.match")
        .add_to_filter(
            Symbol::from("headers"),
            Described {
                descriptor: Descriptor::Code(0x0000_468C_0000_0002),
                value: Value::Map(headers),
            },
        )
        .build();
    let mut matched = subscribe(&mut session, "matched", source).await;
    let mut by_headers = Sender::attach(&mut session, "headers", "amq.match")
        .await
        .unwrap();
    for (body, colour, size) in [("h1", "green", 3), ("h2", "green", 4), ("h3", "red", 3)] {
        let properties = ApplicationProperties::builder()
            .insert("colour", colour)
            .insert("size", size as i64)
            .build();
        let message = Message::builder()
            .application_properties(properties)
            .value(body.to_string())
            .build();
        send(&mut by_headers, message).await;
    }
    assert_eq!(
        drain(&mut matched).await,
        ["h1"],
        "all of colour=green and size=3"
    );
    connection.close().await.unwrap();
    broker.shutdown().await;
}

#[tokio::test]
async fn topics_v2_addresses_and_the_anonymous_relay_reach_exchanges() {
    let (broker, url) = start(test_config()).await;
    let mut connection = Connection::open("addresses", url.as_str()).await.unwrap();
    let mut session = Session::begin(&mut connection).await.unwrap();

    // topic:// and the `topic` capability name one topic, created on first use.
    let mut prefixed = subscribe(
        &mut session,
        "prefixed",
        bound("topic://news", "topic", "sport.#"),
    )
    .await;
    let by_capability = Source::builder()
        .address("news")
        .capabilities(vec![Symbol::from("topic")])
        .build();
    let mut everything = subscribe(&mut session, "everything", by_capability).await;
    let mut news = Sender::builder()
        .name("news")
        .target(
            Target::builder()
                .address("news")
                .capabilities(vec![Symbol::from("topic")])
                .build(),
        )
        .attach(&mut session)
        .await
        .unwrap();
    assert!(send(&mut news, with_subject("sport.tennis", "n1"))
        .await
        .is_accepted());
    assert!(send(&mut news, with_subject("weather", "n2"))
        .await
        .is_accepted());
    assert_eq!(drain(&mut prefixed).await, ["n1"]);
    assert_eq!(drain(&mut everything).await, ["n1", "n2"]);
    assert!(
        !broker.queue_names().contains(&"news".to_string()),
        "a topic is not a queue"
    );

    // RabbitMQ 4's v2 address fixes the routing key; the message's subject does not count.
    let mut keyed = Sender::attach(&mut session, "keyed", "/exchanges/news/sport.golf")
        .await
        .unwrap();
    assert!(send(&mut keyed, with_subject("weather", "n3"))
        .await
        .is_accepted());
    assert_eq!(drain(&mut prefixed).await, ["n3"]);
    assert_eq!(drain(&mut everything).await, ["n3"]);

    // A v2 queue address is a queue.
    let mut queue = Sender::attach(&mut session, "queue", "/queues/plain%2Fqueue")
        .await
        .unwrap();
    assert!(send(&mut queue, with_subject("x", "q1"))
        .await
        .is_accepted());
    assert!(broker.queue_names().contains(&"plain/queue".to_string()));
    connection.close().await.unwrap();
    broker.shutdown().await;
}

#[tokio::test]
async fn a_binding_filter_on_a_queue_is_left_out_and_a_missing_exchange_refused_on_that_link_only()
{
    let (broker, url) = start(test_config()).await;
    let mut connection = Connection::open("refusals", url.as_str()).await.unwrap();
    let mut session = Session::begin(&mut connection).await.unwrap();
    let mut sender = Sender::attach(&mut session, "work", "work").await.unwrap();
    let refused = Receiver::builder()
        .name("filtered")
        .source(bound("queue://work", "topic", "a.*"))
        .attach(&mut session)
        .await;
    // A binding means nothing on a queue: the reply leaves it out and the client decides
    // (fe2o3-amqp will not go on without it).
    match refused {
        Err(ReceiverAttachError::DesiredFilterNotSupported(e)) => {
            assert_eq!(e.not_supported, [Symbol::from("binding")]);
        }
        other => panic!("expected the binding left out, got {other:?}"),
    }
    // fe2o3-amqp 0.18 fails a second attach on a session where one was refused with
    // IllegalState before sending it (its own link state), so the next one uses a new session.
    let mut second = Session::begin(&mut connection).await.unwrap();
    let missing = Receiver::attach(&mut second, "missing", "/exchanges/nope").await;
    match missing {
        Err(ReceiverAttachError::RemoteClosedWithError(e)) => {
            assert_eq!(e.condition, ErrorCondition::AmqpError(AmqpError::NotFound));
            assert!(e
                .description
                .unwrap_or_default()
                .contains("no exchange named 'nope'"));
        }
        other => panic!("expected not-found, got {other:?}"),
    }
    assert!(send(&mut sender, with_subject("x", "still"))
        .await
        .is_accepted());
    connection.close().await.unwrap();
    broker.shutdown().await;
}

#[tokio::test]
async fn exchanges_and_bindings_from_broker_toml_route_into_queues() {
    let broker = support::broker::start_with_toml(
        r#"
        [exchanges."logs"]
        type = "topic"

        [exchanges."strict"]
        type = "direct"
        unroutable = "reject"

        [[bindings]]
        exchange = "logs"
        queue = "audit"
        key = "log.#"

        [[bindings]]
        exchange = "logs"
        queue = "errors"
        key = "*.error"
        "#,
    )
    .await;
    let url = format!("amqp://{}", broker.local_addrs()[0]);
    let mut connection = Connection::open("declared", url.as_str()).await.unwrap();
    let mut session = Session::begin(&mut connection).await.unwrap();
    let mut logs = Sender::attach(&mut session, "logs", "logs").await.unwrap();
    for subject in ["log.info", "log.error", "app.error"] {
        assert!(send(&mut logs, with_subject(subject, subject))
            .await
            .is_accepted());
    }
    let mut audit = Receiver::attach(&mut session, "audit", "audit")
        .await
        .unwrap();
    let mut errors = Receiver::attach(&mut session, "errors", "errors")
        .await
        .unwrap();
    assert_eq!(drain(&mut audit).await, ["log.info", "log.error"]);
    assert_eq!(drain(&mut errors).await, ["log.error", "app.error"]);

    let mut strict = Sender::attach(&mut session, "strict", "strict")
        .await
        .unwrap();
    match send(&mut strict, with_subject("nobody", "x")).await {
        Outcome::Rejected(r) => {
            let error = r.error.unwrap();
            assert_eq!(
                error.condition,
                ErrorCondition::AmqpError(AmqpError::NotFound)
            );
            let text = error.description.unwrap_or_default();
            assert!(text.contains("no binding of exchange 'strict'"), "{text}");
        }
        other => panic!("expected rejected, got {other:?}"),
    }
    connection.close().await.unwrap();
    broker.shutdown().await;
}

async fn refusal(url: &str, address: &str) -> fe2o3_amqp::types::definitions::Error {
    let mut connection = Connection::open("redeclare", url).await.unwrap();
    let mut session = Session::begin(&mut connection).await.unwrap();
    let error = match Receiver::attach(&mut session, "r", address).await {
        Err(ReceiverAttachError::RemoteClosedWithError(e)) => e,
        other => panic!("{address}: expected a refusal, got {other:?}"),
    };
    connection.close().await.unwrap();
    error
}

#[tokio::test]
async fn address_parameters_configure_a_new_queue_and_a_contradiction_is_precondition_failed() {
    let (broker, url) = start(test_config()).await;
    let mut connection = Connection::open("declarer", url.as_str()).await.unwrap();
    let mut session = Session::begin(&mut connection).await.unwrap();
    // Artemis's spelling, as in the seed's createQueue("...?group-buckets=1024").
    let first = Receiver::attach(
        &mut session,
        "first",
        "orders?group-buckets=1024&durable=false",
    )
    .await
    .unwrap();
    let same = Receiver::attach(&mut session, "same", "orders?group_buckets=1024")
        .await
        .unwrap();
    let plain = Receiver::attach(&mut session, "plain", "orders")
        .await
        .unwrap();

    let e = refusal(&url, "orders?group-buckets=16").await;
    assert_eq!(
        e.condition,
        ErrorCondition::AmqpError(AmqpError::PreconditionFailed)
    );
    let text = e.description.unwrap_or_default();
    assert!(
        text.contains("group_buckets (is Hashed(1024), asked Hashed(16))"),
        "{text}"
    );

    let e = refusal(&url, "orders?colour=blue").await;
    assert_eq!(
        e.condition,
        ErrorCondition::AmqpError(AmqpError::InvalidField)
    );
    assert!(e
        .description
        .unwrap_or_default()
        .contains("unknown setting 'colour'"));

    let e = refusal(&url, "topic://orders").await;
    assert_eq!(
        e.condition,
        ErrorCondition::AmqpError(AmqpError::PreconditionFailed)
    );
    assert!(e
        .description
        .unwrap_or_default()
        .contains("it is a queue, not a topic"));

    let e = refusal(&url, "queue://amq.topic").await;
    assert_eq!(
        e.condition,
        ErrorCondition::AmqpError(AmqpError::PreconditionFailed)
    );

    for r in [first, same, plain] {
        r.close().await.unwrap();
    }
    connection.close().await.unwrap();
    broker.shutdown().await;
}

#[tokio::test]
async fn a_browser_reads_every_message_grouped_or_not_and_takes_none() {
    let (broker, url) = start(test_config()).await;
    let mut connection = Connection::open("browser", url.as_str()).await.unwrap();
    let mut session = Session::begin(&mut connection).await.unwrap();
    let mut sender = Sender::attach(&mut session, "s", "browsed").await.unwrap();
    for n in 0..5 {
        // The odd ones wait in a message group's lane: a browser sees them in their place.
        let mut properties = Properties::builder().subject("x");
        if n % 2 == 1 {
            properties = properties.group_id(Some("g".to_string()));
        }
        let message = Message::builder()
            .properties(properties.build())
            .value(format!("m{n}"))
            .build();
        assert!(send(&mut sender, message).await.is_accepted());
    }
    let expected: Vec<String> = (0..5).map(|n| format!("m{n}")).collect();
    for round in 0..2 {
        let source = Source::builder()
            .address("browsed")
            .distribution_mode(fe2o3_amqp::types::messaging::DistributionMode::Copy)
            .build();
        // `drain` accepts each copy: a browser's outcomes settle nothing.
        let mut browser = subscribe(&mut session, &format!("browser{round}"), source).await;
        assert_eq!(drain(&mut browser).await, expected, "round {round}");
        browser.close().await.unwrap();
    }
    assert_eq!(broker.queue_stats("browsed").unwrap().ready, 5);
    let mut consumer = Receiver::attach(&mut session, "taker", "browsed")
        .await
        .unwrap();
    assert_eq!(drain(&mut consumer).await, expected);
    assert_eq!(broker.queue_stats("browsed").unwrap().ready, 0);
    connection.close().await.unwrap();
    broker.shutdown().await;
}

fn durable_source(filter_key: &str, shared: bool) -> Source {
    let mut builder = Source::builder()
        .address("amq.topic")
        .durable(fe2o3_amqp::types::messaging::TerminusDurability::UnsettledState)
        .expiry_policy(fe2o3_amqp::types::messaging::TerminusExpiryPolicy::Never)
        .add_to_filter(
            Symbol::from("binding"),
            Described {
                descriptor: Descriptor::Name(Symbol::from(
                    "apache.org:legacy-amqp-topic-binding:string",
                )),
                value: Value::String(filter_key.to_string()),
            },
        );
    if shared {
        builder = builder.capabilities(vec![Symbol::from("shared"), Symbol::from("global")]);
    }
    builder.build()
}

#[tokio::test]
async fn a_durable_subscription_keeps_receiving_while_detached_and_across_a_restart() {
    let config = test_config();
    let (broker, url) = start(config.clone()).await;
    let mut connection = Connection::open("client-a", url.as_str()).await.unwrap();
    let mut session = Session::begin(&mut connection).await.unwrap();
    let subscriber = subscribe(&mut session, "sub1", durable_source("news.*", false)).await;
    subscriber.detach().await.unwrap();
    let mut publisher = Sender::attach(&mut session, "p", "amq.topic")
        .await
        .unwrap();
    assert!(
        send(&mut publisher, with_subject("news.sport", "while detached"))
            .await
            .is_accepted()
    );
    let unmatched = send(&mut publisher, with_subject("weather.today", "not matched")).await;
    assert!(matches!(unmatched, Outcome::Released(_)), "{unmatched:?}");
    publisher.close().await.unwrap();
    assert!(broker.queue_names().contains(&"client-a:sub1".to_string()));
    connection.close().await.unwrap();
    broker.shutdown().await;

    let (broker, url) = start(config).await;
    let mut connection = Connection::open("client-a", url.as_str()).await.unwrap();
    let mut session = Session::begin(&mut connection).await.unwrap();
    let mut publisher = Sender::attach(&mut session, "p", "amq.topic")
        .await
        .unwrap();
    assert!(send(
        &mut publisher,
        with_subject("news.art", "after the restart")
    )
    .await
    .is_accepted());
    let mut subscriber = subscribe(&mut session, "sub1", durable_source("news.*", false)).await;
    assert_eq!(
        drain(&mut subscriber).await,
        ["while detached", "after the restart"]
    );
    // Closing the link (JMS unsubscribe) ends the subscription.
    subscriber.close().await.unwrap();
    assert!(!broker.queue_names().contains(&"client-a:sub1".to_string()));
    publisher.close().await.unwrap();
    connection.close().await.unwrap();
    broker.shutdown().await;
}

#[tokio::test]
async fn a_shared_subscription_gives_each_message_to_one_of_its_subscribers() {
    let (broker, url) = start(test_config()).await;
    let mut a = Connection::open("client-a", url.as_str()).await.unwrap();
    let mut b = Connection::open("client-b", url.as_str()).await.unwrap();
    let mut session_a = Session::begin(&mut a).await.unwrap();
    let mut session_b = Session::begin(&mut b).await.unwrap();
    let mut first = subscribe(
        &mut session_a,
        "orders|global",
        durable_source("order.*", true),
    )
    .await;
    let mut second = subscribe(
        &mut session_b,
        "orders|global2",
        durable_source("order.*", true),
    )
    .await;
    let mut publisher = Sender::attach(&mut session_a, "p", "amq.topic")
        .await
        .unwrap();
    for n in 0..6 {
        assert!(
            send(&mut publisher, with_subject("order.new", &format!("o{n}")))
                .await
                .is_accepted()
        );
    }
    let mut got = drain(&mut first).await;
    let from_second = drain(&mut second).await;
    assert!(
        !got.is_empty() && !from_second.is_empty(),
        "{got:?} {from_second:?}"
    );
    got.extend(from_second);
    got.sort();
    assert_eq!(got, ["o0", "o1", "o2", "o3", "o4", "o5"], "each once");
    assert_eq!(
        broker
            .queue_names()
            .iter()
            .filter(|n| n.starts_with("global:orders"))
            .count(),
        1,
        "one shared queue"
    );
    publisher.close().await.unwrap();
    a.close().await.unwrap();
    b.close().await.unwrap();
    broker.shutdown().await;
}
