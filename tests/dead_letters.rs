//! Black-box tests of expiry and dead letters (issue 6) with real fe2o3-amqp clients and short
//! real delays: header ttl, absolute-expiry-time and `default_ttl`, with and without a
//! dead-letter address; rejected and over-delivered messages, and the annotations a dead
//! letter carries. Delays and the visibility timeout are in tests/time.rs.

#![allow(clippy::unwrap_used)] // a test, bench or tool: a panic here is a failed run, not a broker down

mod support;

use std::time::Duration;

use fe2o3_amqp::types::definitions::{AmqpError, Error as AmqpErrorBody};
use fe2o3_amqp::types::messaging::Modified;
use fe2o3_amqp::types::primitives::{Symbol, Value};
use support::clock::now_ms;
use support::time::{
    annotated, annotation, assert_due, broker, delivery_count, eventually, expiring_at, in_ms,
    nothing_within, recv, recv_within, send, text, with_ttl, Client, QUIET, WAIT,
};
use tokio::time::Instant;

fn symbol(s: &str) -> Option<Value> {
    Some(Value::Symbol(Symbol::from(s)))
}

fn string(s: &str) -> Option<Value> {
    Some(Value::String(s.to_owned()))
}

// ---------------------------------------------------------------------------------------------
// 2. Expiry
// ---------------------------------------------------------------------------------------------

/// Checks that the message `make` builds (just before the send) is ready at first in `q`
/// (which has no consumer), then expires after about 200 ms and is never delivered.
async fn expires_undelivered(queue_toml: &str, make: impl FnOnce() -> support::time::Msg) {
    let broker = broker(queue_toml).await;
    let mut c = Client::connect(&broker).await;
    let mut sender = c.sender("q").await;
    let start = Instant::now();
    send(&mut sender, make()).await;
    assert_eq!(broker.queue_stats("q").unwrap().ready, 1);
    tokio::time::sleep(Duration::from_millis(300).saturating_sub(start.elapsed())).await;
    let stats = eventually(&broker, "q", "the expiry", |s| s.expired == 1).await;
    assert_eq!((stats.ready, stats.dead_lettered), (0, 0), "{stats:?}");
    let mut receiver = c.receiver("q", 1).await;
    nothing_within(&mut receiver, QUIET).await;
    c.close().await;
    broker.shutdown().await;
}

#[tokio::test]
async fn a_message_past_its_header_ttl_is_never_delivered_and_is_counted() {
    expires_undelivered("", || with_ttl("m", 200)).await;
}

#[tokio::test]
async fn a_message_past_its_absolute_expiry_time_is_never_delivered_and_is_counted() {
    expires_undelivered("", || expiring_at("m", in_ms(200))).await;
}

#[tokio::test]
async fn default_ttl_expires_a_message_without_an_expiry_of_its_own() {
    expires_undelivered("[queues.q]\ndefault_ttl = 200\n", || text("m")).await;
}

/// An expired message travels to the dead-letter address, annotated with why, from where and
/// when. `dlq`'s receiver is waiting, so the dead letter is delivered as soon as it arrives.
async fn expires_into_the_dead_letter_queue(
    queue_toml: &str,
    make: impl FnOnce() -> support::time::Msg,
) {
    let broker = broker(queue_toml).await;
    let mut c = Client::connect(&broker).await;
    let mut dead = c.receiver("dlq", 1).await;
    let mut sender = c.sender("q").await;
    let start = Instant::now();
    let sent_ms = now_ms();
    send(&mut sender, make()).await;
    let Some(d) = recv_within(&mut dead, WAIT).await else {
        panic!(
            "no dead letter within {WAIT:?}; q: {:?}; dlq: {:?}",
            broker.queue_stats("q"),
            broker.queue_stats("dlq")
        );
    };
    assert_due(start, Duration::from_millis(200), "the dead letter");
    assert_eq!(d.body(), "m");
    assert_eq!(
        annotation(&d, "x-opt-dead-letter-reason"),
        symbol("expired")
    );
    assert_eq!(annotation(&d, "x-opt-original-queue"), string("q"));
    match annotation(&d, "x-opt-dead-letter-time") {
        Some(Value::Timestamp(t)) => {
            let t = t.milliseconds();
            assert!(
                t >= sent_ms + 200 - 20 && t <= now_ms() + 20,
                "dead-letter time {t} is not between the expiry ({}) and now ({})",
                sent_ms + 200,
                now_ms()
            );
        }
        other => panic!("x-opt-dead-letter-time should be a timestamp, got {other:?}"),
    }
    assert_eq!(annotation(&d, "x-opt-dead-letter-condition"), None);
    dead.accept(&d).await.unwrap();
    let stats = broker.queue_stats("q").unwrap();
    assert_eq!(
        (stats.expired, stats.dead_lettered, stats.ready),
        (1, 1, 0),
        "{stats:?}"
    );
    c.close().await;
    broker.shutdown().await;
}

#[tokio::test]
async fn a_message_past_its_header_ttl_goes_to_the_dead_letter_address() {
    let toml = "[queues.q]\ndead_letter_address = \"dlq\"\n";
    expires_into_the_dead_letter_queue(toml, || with_ttl("m", 200)).await;
}

/// The dead letter still carries its absolute-expiry-time, which has passed by definition:
/// the dead-letter queue must not expire it again on arrival.
#[tokio::test]
async fn a_message_past_its_absolute_expiry_time_goes_to_the_dead_letter_address() {
    let toml = "[queues.q]\ndead_letter_address = \"dlq\"\n";
    expires_into_the_dead_letter_queue(toml, || expiring_at("m", in_ms(200))).await;
}

#[tokio::test]
async fn a_message_past_the_default_ttl_goes_to_the_dead_letter_address() {
    let toml = "[queues.q]\ndead_letter_address = \"dlq\"\ndefault_ttl = \"200ms\"\n";
    expires_into_the_dead_letter_queue(toml, || text("m")).await;
}

/// "No message is lost in the move": a dead letter waits in the dead-letter queue for
/// whoever reads it later, even though the ttl it expired by has passed again since.
/// (It still carries the header ttl, which the dead-letter queue must not start afresh.)
#[tokio::test]
async fn a_dead_letter_stays_in_the_dead_letter_queue_past_the_ttl_it_expired_by() {
    let broker = broker("[queues.q]\ndead_letter_address = \"dlq\"\n").await;
    let mut c = Client::connect(&broker).await;
    let mut sender = c.sender("q").await;
    send(&mut sender, with_ttl("m", 200)).await;
    eventually(&broker, "q", "the expiry", |s| s.dead_lettered == 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let dlq = broker
        .queue_stats("dlq")
        .expect("the dead-letter queue exists");
    assert_eq!((dlq.ready, dlq.expired), (1, 0), "dlq: {dlq:?}");
    let mut dead = c.receiver("dlq", 1).await;
    let d = recv(&mut dead).await;
    assert_eq!(
        annotation(&d, "x-opt-dead-letter-reason"),
        symbol("expired")
    );
    c.close().await;
    broker.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 3. Dead letters
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_rejected_message_goes_to_the_dead_letter_address_with_the_rejection() {
    let broker = broker("[queues.q]\ndead_letter_address = \"dlq\"\n").await;
    let mut c = Client::connect(&broker).await;
    let mut sender = c.sender("q").await;
    send(&mut sender, text("bad")).await;
    let mut receiver = c.receiver("q", 1).await;
    let d = recv(&mut receiver).await;
    let error = AmqpErrorBody::new(AmqpError::NotAllowed, Some("no thanks".to_owned()), None);
    let rejected_ms = now_ms();
    receiver.reject(&d, Some(error)).await.unwrap();
    let mut dead = c.receiver("dlq", 1).await;
    let d = recv(&mut dead).await;
    assert_eq!(d.body(), "bad");
    assert_eq!(
        annotation(&d, "x-opt-dead-letter-reason"),
        symbol("rejected")
    );
    assert_eq!(
        annotation(&d, "x-opt-dead-letter-condition"),
        symbol("amqp:not-allowed")
    );
    assert_eq!(
        annotation(&d, "x-opt-dead-letter-description"),
        string("no thanks")
    );
    assert_eq!(annotation(&d, "x-opt-original-queue"), string("q"));
    match annotation(&d, "x-opt-dead-letter-time") {
        Some(Value::Timestamp(t)) => assert!(
            (rejected_ms - 20..=now_ms() + 20).contains(&t.milliseconds()),
            "dead-letter time {} is not between the rejection ({rejected_ms}) and now",
            t.milliseconds()
        ),
        other => panic!("x-opt-dead-letter-time should be a timestamp, got {other:?}"),
    }
    dead.accept(&d).await.unwrap();
    let stats = broker.queue_stats("q").unwrap();
    assert_eq!(
        (
            stats.rejected,
            stats.dead_lettered,
            stats.ready,
            stats.unacked
        ),
        (1, 1, 0, 0),
        "{stats:?}"
    );
    c.close().await;
    broker.shutdown().await;
}

#[tokio::test]
async fn past_max_delivery_attempts_a_message_goes_to_the_dead_letter_address() {
    let toml = "[queues.q]\ndead_letter_address = \"dlq\"\nmax_delivery_attempts = 2\n";
    let broker = broker(toml).await;
    let mut c = Client::connect(&broker).await;
    let mut sender = c.sender("q").await;
    send(&mut sender, text("poison")).await;
    let mut receiver = c.receiver("q", 1).await;
    let failed = Modified {
        delivery_failed: Some(true),
        undeliverable_here: None,
        message_annotations: None,
    };
    for attempt in 0..2 {
        let d = recv(&mut receiver).await;
        assert_eq!((d.body().as_str(), delivery_count(&d)), ("poison", attempt));
        receiver.modify(&d, failed.clone()).await.unwrap();
        receiver.set_credit(1).await.unwrap();
    }
    let mut dead = c.receiver("dlq", 1).await;
    let d = recv(&mut dead).await;
    assert_eq!(d.body(), "poison");
    assert_eq!(
        annotation(&d, "x-opt-dead-letter-reason"),
        symbol("delivery-limit")
    );
    assert_eq!(annotation(&d, "x-opt-original-queue"), string("q"));
    dead.accept(&d).await.unwrap();
    nothing_within(&mut receiver, QUIET).await;
    let stats = broker.queue_stats("q").unwrap();
    assert_eq!(
        (
            stats.dead_lettered,
            stats.returned,
            stats.ready,
            stats.unacked
        ),
        (1, 2, 0, 0),
        "{stats:?}"
    );
    c.close().await;
    broker.shutdown().await;
}

/// A dead letter is ready at once in the dead-letter queue: the delay it was sent with was
/// spent in the queue it came from, and is not served a second time.
#[tokio::test]
async fn a_rejected_delayed_message_is_ready_at_once_in_the_dead_letter_queue() {
    let broker = broker("[queues.q]\ndead_letter_address = \"dlq\"\n").await;
    let mut c = Client::connect(&broker).await;
    let mut receiver = c.receiver("q", 1).await;
    let mut dead = c.receiver("dlq", 1).await;
    let mut sender = c.sender("q").await;
    let start = Instant::now();
    send(
        &mut sender,
        annotated("late", &[("x-opt-delivery-delay", Value::Long(400))]),
    )
    .await;
    let d = recv(&mut receiver).await;
    assert_due(start, Duration::from_millis(400), "the delayed message");
    let rejected = Instant::now();
    receiver.reject(&d, None).await.unwrap();
    let d = recv(&mut dead).await;
    assert!(
        rejected.elapsed() < Duration::from_millis(300),
        "the dead letter took {:?}: delayed again?",
        rejected.elapsed()
    );
    assert_eq!(d.body(), "late");
    assert_eq!(
        annotation(&d, "x-opt-dead-letter-reason"),
        symbol("rejected")
    );
    assert_eq!(broker.queue_stats("dlq").unwrap().delayed, 0);
    dead.accept(&d).await.unwrap();
    c.close().await;
    broker.shutdown().await;
}

#[tokio::test]
async fn without_a_dead_letter_address_a_rejected_message_is_dropped_and_counted() {
    let broker = broker("").await;
    let mut c = Client::connect(&broker).await;
    let mut sender = c.sender("q").await;
    send(&mut sender, text("bad")).await;
    let mut receiver = c.receiver("q", 1).await;
    let d = recv(&mut receiver).await;
    let error = AmqpErrorBody::new(AmqpError::NotAllowed, Some("no".to_owned()), None);
    receiver.reject(&d, Some(error)).await.unwrap();
    let stats = eventually(&broker, "q", "the rejection", |s| s.rejected == 1).await;
    assert_eq!(
        (stats.dead_lettered, stats.ready, stats.unacked),
        (0, 0, 0),
        "{stats:?}"
    );
    receiver.set_credit(1).await.unwrap();
    nothing_within(&mut receiver, QUIET).await;
    assert!(broker.queue_stats("dlq").is_none(), "no dead-letter queue");
    c.close().await;
    broker.shutdown().await;
}
