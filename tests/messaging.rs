//! Black-box tests of queue semantics with the fe2o3-amqp client: send and receive, competing
//! consumers, outcomes, redelivery, at-most-once, and attach refusals.

#![allow(clippy::unwrap_used)] // a test, bench or tool: a panic here is a failed run, not a broker down

mod support;

use std::time::Duration;

use fe2o3_amqp::link::{RecvError, SendError};
use fe2o3_amqp::types::definitions::{AmqpError, ErrorCondition, LinkError, SenderSettleMode};
use fe2o3_amqp::types::messaging::{Message, Modified, Outcome};
use fe2o3_amqp::{Connection, Receiver, Sender, Session};
use sluice::Config;
use support::broker::{start, test_config};

const WAIT: Duration = Duration::from_secs(5);

async fn recv_body(
    receiver: &mut Receiver,
) -> (String, u32, fe2o3_amqp::link::delivery::DeliveryInfo) {
    let delivery = tokio::time::timeout(WAIT, receiver.recv::<String>())
        .await
        .expect("a delivery within 5 s")
        .expect("recv");
    let count = delivery
        .message()
        .header
        .as_ref()
        .map_or(0, |h| h.delivery_count);
    let body = delivery.body().clone();
    (body, count, delivery.into())
}

async fn nothing_arrives(receiver: &mut Receiver) {
    let r = tokio::time::timeout(Duration::from_millis(300), receiver.recv::<String>()).await;
    assert!(r.is_err(), "expected no delivery, got {r:?}");
}

#[tokio::test]
async fn messages_sent_to_a_queue_are_received_in_order() {
    let (broker, url) = start(test_config()).await;
    let mut conn = Connection::open("t", url.as_str()).await.unwrap();
    let mut session = Session::begin(&mut conn).await.unwrap();
    let mut sender = Sender::attach(&mut session, "s", "orders").await.unwrap();
    for i in 0..20 {
        let outcome = sender.send(format!("m{i}")).await.unwrap();
        assert!(outcome.is_accepted(), "{outcome:?}");
    }
    let mut receiver = Receiver::attach(&mut session, "r", "orders").await.unwrap();
    for i in 0..20 {
        let (body, count, info) = recv_body(&mut receiver).await;
        assert_eq!(body, format!("m{i}"));
        assert_eq!(count, 0);
        receiver.accept(info).await.unwrap();
    }
    nothing_arrives(&mut receiver).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stats = broker.queue_stats("orders").unwrap();
    assert_eq!((stats.ready, stats.unacked, stats.acked), (0, 0, 20));
    receiver.close().await.unwrap();
    sender.close().await.unwrap();
    session.end().await.unwrap();
    conn.close().await.unwrap();
    broker.shutdown().await;
}

#[tokio::test]
async fn competing_consumers_take_turns() {
    let (broker, url) = start(test_config()).await;
    let mut conn = Connection::open("t", url.as_str()).await.unwrap();
    let mut session = Session::begin(&mut conn).await.unwrap();
    let mut a = Receiver::attach(&mut session, "a", "work").await.unwrap();
    let mut b = Receiver::attach(&mut session, "b", "work").await.unwrap();
    // Let both credit grants reach the queue before anything is enqueued.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut sender = Sender::attach(&mut session, "s", "work").await.unwrap();
    for i in 0..10 {
        sender.send(format!("job{i}")).await.unwrap();
    }
    let mut got_a = Vec::new();
    let mut got_b = Vec::new();
    for _ in 0..5 {
        let (body, _, info) = recv_body(&mut a).await;
        a.accept(info).await.unwrap();
        got_a.push(body);
        let (body, _, info) = recv_body(&mut b).await;
        b.accept(info).await.unwrap();
        got_b.push(body);
    }
    assert_eq!(got_a, ["job0", "job2", "job4", "job6", "job8"]);
    assert_eq!(got_b, ["job1", "job3", "job5", "job7", "job9"]);
    conn.close().await.unwrap();
    broker.shutdown().await;
}

#[tokio::test]
async fn each_outcome_does_what_the_spec_says() {
    let (broker, url) = start(test_config()).await;
    let mut conn = Connection::open("t", url.as_str()).await.unwrap();
    let mut session = Session::begin(&mut conn).await.unwrap();
    let mut sender = Sender::attach(&mut session, "s", "outcomes").await.unwrap();
    for body in ["reject-me", "release-me", "modify-me", "keep"] {
        sender.send(body).await.unwrap();
    }
    let mut receiver = Receiver::builder()
        .name("r")
        .source("outcomes")
        .credit_mode(fe2o3_amqp::link::receiver::CreditMode::Manual)
        .attach(&mut session)
        .await
        .unwrap();
    receiver.set_credit(1).await.unwrap();

    // rejected: gone for good.
    let (body, _, info) = recv_body(&mut receiver).await;
    assert_eq!(body, "reject-me");
    receiver.reject(info, None).await.unwrap();

    // released: back at the head, delivery-count unchanged.
    receiver.set_credit(1).await.unwrap();
    let (body, _, info) = recv_body(&mut receiver).await;
    assert_eq!(body, "release-me");
    receiver.release(info).await.unwrap();
    receiver.set_credit(1).await.unwrap();
    let (body, count, info) = recv_body(&mut receiver).await;
    assert_eq!((body.as_str(), count), ("release-me", 0));
    receiver.accept(info).await.unwrap();

    // modified with delivery-failed: back, delivery-count + 1.
    receiver.set_credit(1).await.unwrap();
    let (body, _, info) = recv_body(&mut receiver).await;
    assert_eq!(body, "modify-me");
    let failed = Modified {
        delivery_failed: Some(true),
        undeliverable_here: None,
        message_annotations: None,
    };
    receiver.modify(info, failed).await.unwrap();
    receiver.set_credit(1).await.unwrap();
    let (body, count, info) = recv_body(&mut receiver).await;
    assert_eq!((body.as_str(), count), ("modify-me", 1));

    // modified undeliverable-here: never to this consumer again, but to another one.
    let here = Modified {
        delivery_failed: None,
        undeliverable_here: Some(true),
        message_annotations: None,
    };
    receiver.modify(info, here).await.unwrap();
    receiver.set_credit(1).await.unwrap();
    let (body, _, info) = recv_body(&mut receiver).await;
    assert_eq!(body, "keep", "the modified message must skip this consumer");
    receiver.accept(info).await.unwrap();
    let mut other = Receiver::attach(&mut session, "other", "outcomes")
        .await
        .unwrap();
    let (body, count, info) = recv_body(&mut other).await;
    assert_eq!((body.as_str(), count), ("modify-me", 1));
    other.accept(info).await.unwrap();

    tokio::time::sleep(Duration::from_millis(100)).await;
    let stats = broker.queue_stats("outcomes").unwrap();
    assert_eq!(
        (stats.ready, stats.unacked, stats.rejected, stats.acked),
        (0, 0, 1, 3)
    );
    conn.close().await.unwrap();
    broker.shutdown().await;
}

#[tokio::test]
async fn unsettled_messages_are_redelivered_after_a_disconnect() {
    let (broker, url) = start(test_config()).await;
    {
        let mut conn = Connection::open("p", url.as_str()).await.unwrap();
        let mut session = Session::begin(&mut conn).await.unwrap();
        let mut sender = Sender::attach(&mut session, "s", "redeliver")
            .await
            .unwrap();
        sender.send("first").await.unwrap();
        sender.send("second").await.unwrap();
        conn.close().await.unwrap();
    }
    {
        let mut conn = Connection::open("c1", url.as_str()).await.unwrap();
        let mut session = Session::begin(&mut conn).await.unwrap();
        let mut receiver = Receiver::attach(&mut session, "r", "redeliver")
            .await
            .unwrap();
        receiver.set_auto_accept(false);
        let (body, count, _) = recv_body(&mut receiver).await;
        assert_eq!((body.as_str(), count), ("first", 0));
        let (body, _, _) = recv_body(&mut receiver).await;
        assert_eq!(body, "second");
        // Drop the connection without settling anything.
        conn.close().await.unwrap();
    }
    let mut conn = Connection::open("c2", url.as_str()).await.unwrap();
    let mut session = Session::begin(&mut conn).await.unwrap();
    let mut receiver = Receiver::attach(&mut session, "r", "redeliver")
        .await
        .unwrap();
    let (body, count, info) = recv_body(&mut receiver).await;
    assert_eq!(
        (body.as_str(), count),
        ("first", 1),
        "redelivered in order, count + 1"
    );
    receiver.accept(info).await.unwrap();
    let (body, count, info) = recv_body(&mut receiver).await;
    assert_eq!((body.as_str(), count), ("second", 1));
    receiver.accept(info).await.unwrap();
    conn.close().await.unwrap();
    broker.shutdown().await;
}

#[tokio::test]
async fn at_most_once_works_in_both_directions() {
    let (broker, url) = start(test_config()).await;
    let mut conn = Connection::open("t", url.as_str()).await.unwrap();
    let mut session = Session::begin(&mut conn).await.unwrap();
    let mut sender = Sender::builder()
        .name("s")
        .target("amo")
        .sender_settle_mode(SenderSettleMode::Settled)
        .attach(&mut session)
        .await
        .unwrap();
    for i in 0..10 {
        sender.send(format!("m{i}")).await.unwrap();
    }
    let mut receiver = Receiver::builder()
        .name("r")
        .source("amo")
        .sender_settle_mode(SenderSettleMode::Settled)
        .attach(&mut session)
        .await
        .unwrap();
    for i in 0..10 {
        let (body, _, _) = recv_body(&mut receiver).await;
        assert_eq!(body, format!("m{i}"));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stats = broker.queue_stats("amo").unwrap();
    assert_eq!((stats.ready, stats.unacked, stats.acked), (0, 0, 10));
    conn.close().await.unwrap();
    broker.shutdown().await;
}

#[tokio::test]
async fn attaching_to_a_missing_queue_fails_with_not_found_when_auto_create_is_off() {
    let config = Config::from_toml("[queues.\"#\"]\nauto_create = false\n", "test.toml").unwrap();
    let mut config = Config {
        listen: test_config().listen,
        admin: test_config().admin,
        data_dir: test_config().data_dir,
        storage: test_config().storage,
        ..config
    };
    config.container_id = "sluice-test".into();
    let (broker, url) = start(config).await;
    let mut conn = Connection::open("t", url.as_str()).await.unwrap();
    let mut session = Session::begin(&mut conn).await.unwrap();
    let err = Receiver::attach(&mut session, "r", "nope")
        .await
        .unwrap_err();
    let text = format!("{err:?}");
    assert!(text.contains("NotFound"), "{text}");
    // A fresh session: fe2o3 does not reuse a session after a refused attach.
    let mut session = Session::begin(&mut conn).await.unwrap();
    let err = Sender::attach(&mut session, "s", "nope").await.unwrap_err();
    assert!(format!("{err:?}").contains("NotFound"), "{err:?}");
    assert!(broker.queue_names().is_empty());
    conn.close().await.unwrap();
    broker.shutdown().await;
}

#[tokio::test]
async fn a_message_over_max_message_size_detaches_the_link() {
    let config =
        Config::from_toml("[queues.small]\nmax_message_size = 1000\n", "test.toml").unwrap();
    let config = Config {
        listen: test_config().listen,
        admin: test_config().admin,
        data_dir: test_config().data_dir,
        storage: test_config().storage,
        ..config
    };
    let (broker, url) = start(config).await;
    let mut conn = Connection::open("t", url.as_str()).await.unwrap();
    let mut session = Session::begin(&mut conn).await.unwrap();
    let mut sender = Sender::attach(&mut session, "s", "small").await.unwrap();
    assert_eq!(sender.max_message_size(), Some(1000));
    sender.send("x".repeat(100)).await.unwrap();
    let err = Sender::send(&mut sender, Message::from("y".repeat(2000))).await;
    // fe2o3 checks the advertised max-message-size itself before sending.
    assert!(
        matches!(err, Err(SendError::MessageSizeExceeded(_))),
        "{err:?}"
    );
    conn.close().await.unwrap();
    broker.shutdown().await;
}

#[allow(dead_code)]
fn _types_in_use(_: Outcome, _: RecvError, _: ErrorCondition, _: AmqpError, _: LinkError) {}

#[tokio::test]
async fn receiver_settle_mode_second_is_honoured_on_both_kinds_of_link() {
    use fe2o3_amqp::types::definitions::ReceiverSettleMode;
    let (broker, url) = start(test_config()).await;
    let mut conn = Connection::open("t", url.as_str()).await.unwrap();
    let mut session = Session::begin(&mut conn).await.unwrap();
    let mut sender = Sender::builder()
        .name("s")
        .target("second")
        .receiver_settle_mode(ReceiverSettleMode::Second)
        .attach(&mut session)
        .await
        .unwrap();
    let outcome = tokio::time::timeout(WAIT, sender.send("peek-lock"))
        .await
        .unwrap()
        .unwrap();
    assert!(outcome.is_accepted());
    let mut receiver = Receiver::builder()
        .name("r")
        .source("second")
        .receiver_settle_mode(ReceiverSettleMode::Second)
        .attach(&mut session)
        .await
        .unwrap();
    let (body, _, info) = recv_body(&mut receiver).await;
    assert_eq!(body, "peek-lock");
    tokio::time::timeout(WAIT, receiver.accept(info))
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stats = broker.queue_stats("second").unwrap();
    assert_eq!((stats.ready, stats.unacked, stats.acked), (0, 0, 1));
    conn.close().await.unwrap();
    broker.shutdown().await;
}
