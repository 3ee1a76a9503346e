//! Black-box tests of per-queue policies with the fe2o3-amqp client: exclusive and
//! single-active consumers, auto-delete, length limits with either overflow, and journaling
//! every message whatever its header says.

#![allow(clippy::unwrap_used)] // a test, bench or tool: a panic here is a failed run, not a broker down

mod support;

use std::time::Duration;

use fe2o3_amqp::link::ReceiverAttachError;
use fe2o3_amqp::types::definitions::{AmqpError, ErrorCondition};
use fe2o3_amqp::types::messaging::annotations::OwnedKey;
use fe2o3_amqp::types::messaging::{Header, Message, Outcome};
use fe2o3_amqp::{Connection, Receiver, Sender, Session};
use sluice::Config;
use support::broker::{drain, start, test_config};

fn config(toml: &str) -> Config {
    let parsed = Config::from_toml(toml, "test.toml").unwrap();
    let defaults = test_config();
    Config {
        listen: defaults.listen,
        admin: defaults.admin,
        data_dir: defaults.data_dir,
        storage: defaults.storage,
        ..parsed
    }
}

async fn send(sender: &mut Sender, body: &str) -> Outcome {
    sender
        .send(Message::builder().value(body.to_string()).build())
        .await
        .unwrap()
}

#[tokio::test]
async fn an_exclusive_queue_refuses_a_second_consumer_and_standby_waits_its_turn() {
    let (broker, url) = start(config(
        "[queues.\"solo\"]\nexclusive = true\n[queues.\"sac\"]\nexclusive = \"standby\"\n",
    ))
    .await;
    let mut connection = Connection::open("exclusive", url.as_str()).await.unwrap();
    let mut session = Session::begin(&mut connection).await.unwrap();
    let first = Receiver::attach(&mut session, "first", "solo")
        .await
        .unwrap();
    let mut second_session = Session::begin(&mut connection).await.unwrap();
    match Receiver::attach(&mut second_session, "second", "solo").await {
        Err(ReceiverAttachError::RemoteClosedWithError(e)) => {
            assert_eq!(
                e.condition,
                ErrorCondition::AmqpError(AmqpError::ResourceLocked)
            );
        }
        other => panic!("expected resource-locked, got {other:?}"),
    }
    first.close().await.unwrap();
    let again = Receiver::attach(&mut session, "again", "solo")
        .await
        .unwrap();
    again.close().await.unwrap();

    let mut sender = Sender::attach(&mut session, "s", "sac").await.unwrap();
    let mut active = Receiver::attach(&mut session, "active", "sac")
        .await
        .unwrap();
    let mut standby = Receiver::attach(&mut session, "standby", "sac")
        .await
        .unwrap();
    for body in ["a", "b", "c"] {
        assert!(send(&mut sender, body).await.is_accepted());
    }
    assert_eq!(drain(&mut active).await, ["a", "b", "c"]);
    assert_eq!(drain(&mut standby).await, Vec::<String>::new(), "it waits");
    active.close().await.unwrap();
    assert!(send(&mut sender, "d").await.is_accepted());
    assert_eq!(drain(&mut standby).await, ["d"], "its turn came");
    connection.close().await.unwrap();
    broker.shutdown().await;
}

#[tokio::test]
async fn an_auto_delete_queue_goes_with_its_last_consumer() {
    let (broker, url) = start(config("[queues.\"tmp.#\"]\nauto_delete = true\n")).await;
    let mut connection = Connection::open("auto", url.as_str()).await.unwrap();
    let mut session = Session::begin(&mut connection).await.unwrap();
    let mut sender = Sender::attach(&mut session, "s", "tmp.a").await.unwrap();
    assert!(send(&mut sender, "x").await.is_accepted());
    sender.close().await.unwrap();
    assert!(
        broker.queue_names().contains(&"tmp.a".to_string()),
        "no consumer yet: it stays"
    );
    let one = Receiver::attach(&mut session, "one", "tmp.a")
        .await
        .unwrap();
    let two = Receiver::attach(&mut session, "two", "tmp.a")
        .await
        .unwrap();
    one.close().await.unwrap();
    assert!(
        broker.queue_names().contains(&"tmp.a".to_string()),
        "one consumer left"
    );
    two.close().await.unwrap();
    assert!(
        !broker.queue_names().contains(&"tmp.a".to_string()),
        "the last one left"
    );
    connection.close().await.unwrap();
    broker.shutdown().await;
}

#[tokio::test]
async fn a_full_queue_rejects_the_publish_or_drops_its_head_to_the_dead_letter_queue() {
    let (broker, url) = start(config(
        "[queues.\"capped\"]\nmax_length = 2\n\
         [queues.\"rolling\"]\nmax_length = 2\noverflow = \"drop-head\"\ndead_letter_address = \"dlq\"\n",
    ))
    .await;
    let mut connection = Connection::open("limits", url.as_str()).await.unwrap();
    let mut session = Session::begin(&mut connection).await.unwrap();

    let mut capped = Sender::attach(&mut session, "capped", "capped")
        .await
        .unwrap();
    assert!(send(&mut capped, "1").await.is_accepted());
    assert!(send(&mut capped, "2").await.is_accepted());
    match send(&mut capped, "3").await {
        Outcome::Rejected(r) => {
            let e = r.error.unwrap();
            assert_eq!(
                e.condition,
                ErrorCondition::AmqpError(AmqpError::ResourceLimitExceeded)
            );
            assert!(e
                .description
                .unwrap_or_default()
                .contains("queue 'capped' is full"));
        }
        other => panic!("expected rejected, got {other:?}"),
    }
    let mut taker = Receiver::attach(&mut session, "taker", "capped")
        .await
        .unwrap();
    assert_eq!(drain(&mut taker).await, ["1", "2"], "nothing lost silently");
    assert!(send(&mut capped, "4").await.is_accepted(), "room again");
    assert_eq!(broker.queue_stats("capped").unwrap().overflowed, 1);

    let mut rolling = Sender::attach(&mut session, "rolling", "rolling")
        .await
        .unwrap();
    for body in ["a", "b", "c", "d"] {
        assert!(send(&mut rolling, body).await.is_accepted());
    }
    let mut reader = Receiver::attach(&mut session, "reader", "rolling")
        .await
        .unwrap();
    assert_eq!(drain(&mut reader).await, ["c", "d"]);
    let mut dead = Receiver::attach(&mut session, "dead", "dlq").await.unwrap();
    let d = tokio::time::timeout(Duration::from_secs(5), dead.recv::<String>())
        .await
        .unwrap()
        .unwrap();
    let reason = d.message().message_annotations.as_ref().and_then(|a| {
        a.0.get(&OwnedKey::from("x-opt-dead-letter-reason"))
            .cloned()
    });
    assert_eq!(d.body(), "a");
    assert_eq!(
        reason,
        Some(fe2o3_amqp::types::primitives::Value::Symbol(
            "maxlen".into()
        ))
    );
    dead.accept(&d).await.unwrap();
    assert_eq!(drain(&mut dead).await, ["b"]);
    assert_eq!(broker.queue_stats("rolling").unwrap().overflowed, 2);
    connection.close().await.unwrap();
    broker.shutdown().await;
}

#[tokio::test]
async fn persist_always_journals_messages_sent_non_durable() {
    let config = config("[queues.\"kept\"]\npersist = \"always\"\n");
    let (broker, url) = start(config.clone()).await;
    let mut connection = Connection::open("persist", url.as_str()).await.unwrap();
    let mut session = Session::begin(&mut connection).await.unwrap();
    for queue in ["kept", "plain"] {
        let mut sender = Sender::attach(&mut session, queue, queue).await.unwrap();
        let message = Message::builder()
            .header(Header {
                durable: false,
                ..Default::default()
            })
            .value("volatile".to_string())
            .build();
        assert!(sender.send(message).await.unwrap().is_accepted());
        sender.close().await.unwrap();
    }
    connection.close().await.unwrap();
    broker.shutdown().await;

    let (broker, _url) = start(config).await;
    assert_eq!(
        broker.queue_stats("kept").map(|s| s.ready),
        Some(1),
        "journaled anyway"
    );
    assert_eq!(
        broker.queue_stats("plain").map_or(0, |s| s.ready),
        0,
        "as sent: not kept"
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn a_priority_queue_delivers_higher_priorities_first() {
    let (broker, url) = start(config("[queues.\"urgent\"]\nmax_priority = 9\n")).await;
    let mut connection = Connection::open("priority", url.as_str()).await.unwrap();
    let mut session = Session::begin(&mut connection).await.unwrap();
    let mut sender = Sender::attach(&mut session, "s", "urgent").await.unwrap();
    for (body, priority) in [
        ("low", Some(1)),
        ("default", None),
        ("high", Some(9)),
        ("default2", None),
        ("top", Some(200)),
    ] {
        let mut message = Message::builder().value(body.to_string());
        if let Some(p) = priority {
            message = message.header(Header {
                priority: p.into(),
                ..Default::default()
            });
        }
        assert!(sender.send(message.build()).await.unwrap().is_accepted());
    }
    let mut receiver = Receiver::attach(&mut session, "r", "urgent").await.unwrap();
    assert_eq!(
        drain(&mut receiver).await,
        ["high", "top", "default", "default2", "low"],
        "9 and 200 (capped at 9) in arrival order, then the default 4s, then 1"
    );
    sender.close().await.unwrap();
    receiver.close().await.unwrap();
    connection.close().await.unwrap();
    broker.shutdown().await;
}

#[tokio::test]
async fn a_full_queue_that_blocks_holds_its_producer_back_until_there_is_room() {
    let (broker, url) = start(config(
        "[queues.\"held\"]\nmax_length = 3\noverflow = \"block\"\n\
         [exchanges.\"to-held\"]\ntype = \"fanout\"\n\
         [[bindings]]\nexchange = \"to-held\"\nqueue = \"held\"\n",
    ))
    .await;
    let mut connection = Connection::open("block", url.as_str()).await.unwrap();
    let mut session = Session::begin(&mut connection).await.unwrap();
    let mut sender = Sender::attach(&mut session, "producer", "held")
        .await
        .unwrap();
    let producer = tokio::spawn(async move {
        let mut outcomes = Vec::new();
        for n in 0..10 {
            outcomes.push(send(&mut sender, &n.to_string()).await);
        }
        sender.close().await.unwrap();
        outcomes
    });
    // The producer fills the queue, then waits for credit: nothing is refused, nothing lost.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while broker.queue_stats("held").unwrap().ready < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the queue never filled"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        broker.queue_stats("held").unwrap().ready,
        3,
        "held at the limit"
    );
    assert!(
        !producer.is_finished(),
        "the producer is waiting for credit"
    );

    // A producer on an exchange cannot be held back per queue: it is refused, as RabbitMQ's
    // reject-publish would.
    let mut via_exchange = Sender::attach(&mut session, "via", "to-held")
        .await
        .unwrap();
    match send(&mut via_exchange, "x").await {
        Outcome::Rejected(r) => {
            let e = r.error.unwrap();
            assert_eq!(
                e.condition,
                ErrorCondition::AmqpError(AmqpError::ResourceLimitExceeded)
            );
            assert!(e.description.unwrap_or_default().contains("\"block\""));
        }
        other => panic!("expected rejected, got {other:?}"),
    }
    via_exchange.close().await.unwrap();

    let mut consumer = Receiver::attach(&mut session, "consumer", "held")
        .await
        .unwrap();
    let mut got = Vec::new();
    while got.len() < 10 {
        let d = tokio::time::timeout(Duration::from_secs(5), consumer.recv::<String>())
            .await
            .expect("the producer was never let go")
            .unwrap();
        consumer.accept(&d).await.unwrap();
        got.push(d.body().clone());
    }
    let expected: Vec<String> = (0..10).map(|n| n.to_string()).collect();
    assert_eq!(got, expected, "in order, nothing lost");
    let outcomes = producer.await.unwrap();
    assert!(outcomes.iter().all(Outcome::is_accepted), "{outcomes:?}");
    let stats = broker.queue_stats("held").unwrap();
    assert_eq!(stats.overflowed, 1, "the exchange's message");
    consumer.close().await.unwrap();
    connection.close().await.unwrap();
    broker.shutdown().await;
}
