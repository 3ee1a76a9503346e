//! The queue's time-based behaviours under tokio's paused clock, so nothing here sleeps:
//! delays (with groups), expiry (also while acquired), dead letters, the visibility timeout
//! racing a late accept, and rewind (racing consumers, on a grouped queue).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fe2o3_amqp_types::messaging::annotations::OwnedKey;
use fe2o3_amqp_types::messaging::message::__private::{Deserializable, Serializable};
use fe2o3_amqp_types::messaging::{
    AmqpValue, Body, Header, Message as AmqpMessage, MessageAnnotations, Properties,
};
use fe2o3_amqp_types::primitives::{Symbol, Value};

use super::clock::now_ms;
use super::rewind::RewindError;
use crate::broker::{ConnWaker, ConsumerId, OutItem, Outbox, Outcome, Queue, Router};
use crate::config::{Config, QueueSettings};
use crate::message::Message;

type Decoded = AmqpMessage<Body<Value>>;

/// What a message is sent with.
#[derive(Default)]
struct Send<'a> {
    group: Option<&'a str>,
    delay_ms: Option<i64>,
    ttl_ms: Option<u32>,
}

fn message(body: &str, send: Send<'_>) -> Message {
    let mut annotations = MessageAnnotations::builder();
    if let Some(delay) = send.delay_ms {
        annotations = annotations.insert(Symbol::from("x-opt-delivery-delay"), Value::Long(delay));
    }
    let m: Decoded = AmqpMessage::builder()
        .header(Header {
            ttl: send.ttl_ms,
            ..Header::default()
        })
        .message_annotations(annotations.build())
        .properties(Properties {
            group_id: send.group.map(String::from),
            ..Properties::default()
        })
        .body(Body::Value(AmqpValue(Value::String(body.to_owned()))))
        .build();
    let bytes = serde_amqp::to_vec(&Serializable(m)).unwrap();
    Message::parse(Bytes::from(bytes)).unwrap()
}

fn decode(m: &Message) -> Decoded {
    let d: Deserializable<Decoded> = serde_amqp::from_slice(m.bytes()).unwrap();
    d.0
}

fn body(m: &Message) -> String {
    match decode(m).body {
        Body::Value(AmqpValue(Value::String(s))) => s,
        other => panic!("unexpected body {other:?}"),
    }
}

fn annotation(m: &Message, key: &str) -> Option<Value> {
    let d = decode(m);
    let key = OwnedKey::from(Symbol::from(key));
    d.message_annotations.and_then(|a| a.get(&key).cloned())
}

/// A delivery as a consumer sees it.
#[derive(Debug)]
struct Got {
    seq: u64,
    body: String,
    delivery_count: u32,
}

/// Queues created through a router (so dead letters reach their queue), and consumers.
struct Rig {
    router: Arc<Router>,
    queue: Arc<Queue>,
    outboxes: HashMap<ConsumerId, Arc<Outbox>>,
    received: HashMap<ConsumerId, u32>,
    revoked: Vec<u64>,
}

impl Rig {
    /// A queue named `q` with `settings` (its dead-letter address, if any, is `dlq`).
    fn new(settings: &str) -> Rig {
        let config = Config::from_toml(&format!("[queues.q]\n{settings}\n"), "test.toml").unwrap();
        let router = Router::new(config.queues.clone());
        let queue = router.queue("q").unwrap();
        Rig {
            router,
            queue,
            outboxes: HashMap::new(),
            received: HashMap::new(),
            revoked: Vec::new(),
        }
    }

    fn attach(&mut self, id: ConsumerId) {
        let outbox = Outbox::new(id, ConnWaker::new());
        self.queue
            .add_consumer(outbox.clone(), &format!("c{id}"), None);
        self.outboxes.insert(id, outbox);
        self.received.insert(id, 0);
    }

    fn send(&self, body: &str, send: Send<'_>) {
        self.queue.enqueue([message(body, send)]);
    }

    fn fetch(&mut self, id: ConsumerId, n: u32) -> Vec<Got> {
        let limit = self.received[&id] + n;
        self.queue.flow(id, limit, false);
        self.take(id)
    }

    fn take(&mut self, id: ConsumerId) -> Vec<Got> {
        let mut got = Vec::new();
        while let Some(item) = self.outboxes[&id].pop() {
            match item {
                OutItem::Deliver(d) => {
                    *self.received.get_mut(&id).unwrap() += 1;
                    got.push(Got {
                        seq: d.seq,
                        body: body(&d.message),
                        delivery_count: d.delivery_count,
                    });
                }
                OutItem::Revoked { seq } => self.revoked.push(seq),
                _ => {}
            }
        }
        got
    }

    fn settle(&self, id: ConsumerId, got: &[Got], outcome: Outcome) {
        self.queue
            .settle(id, got.iter().map(|g| (g.seq, outcome.clone())));
    }

    /// Moves the paused clock on and lets the queue do what fell due.
    async fn advance(&self, ms: u64) {
        tokio::time::advance(Duration::from_millis(ms)).await;
        self.queue.tick();
    }

    /// The messages in the dead-letter queue `dlq`, taken by a fresh consumer.
    fn dead_letters(&self) -> Vec<Message> {
        let Some(dlq) = self.router.get("dlq") else {
            return Vec::new();
        };
        let outbox = Outbox::new(999, ConnWaker::new());
        dlq.add_consumer(outbox.clone(), "dlq-reader", None);
        dlq.flow(999, 1000, false);
        let mut got = Vec::new();
        while let Some(item) = outbox.pop() {
            if let OutItem::Deliver(d) = item {
                got.push(d.message);
            }
        }
        dlq.detach_consumer(999);
        got
    }
}

fn bodies(got: &[Got]) -> Vec<&str> {
    got.iter().map(|g| g.body.as_str()).collect()
}

#[tokio::test(start_paused = true)]
async fn delayed_messages_wait_and_become_ready_in_due_order() {
    let mut rig = Rig::new("");
    rig.attach(1);
    rig.send(
        "late",
        Send {
            delay_ms: Some(2_000),
            ..Send::default()
        },
    );
    rig.send(
        "soon",
        Send {
            delay_ms: Some(1_000),
            ..Send::default()
        },
    );
    rig.send("now", Send::default());
    assert_eq!(rig.queue.stats().delayed, 2);
    assert_eq!(bodies(&rig.fetch(1, 10)), ["now"]);
    rig.advance(999).await;
    assert!(rig.take(1).is_empty(), "not due yet");
    rig.advance(1).await;
    assert_eq!(bodies(&rig.take(1)), ["soon"]);
    rig.advance(1_000).await;
    assert_eq!(bodies(&rig.take(1)), ["late"]);
    assert_eq!(rig.queue.stats().delayed, 0);
}

#[tokio::test(start_paused = true)]
async fn the_queue_timer_fires_on_its_own() {
    let mut rig = Rig::new("default_delay = \"5s\"");
    rig.attach(1);
    rig.send("a", Send::default());
    assert!(rig.fetch(1, 1).is_empty());
    // No tick by hand: the queue's timer task does it when the paused clock reaches 5 s.
    tokio::time::sleep(Duration::from_millis(5_001)).await;
    tokio::task::yield_now().await;
    assert_eq!(bodies(&rig.take(1)), ["a"]);
}

#[tokio::test(start_paused = true)]
async fn a_delayed_grouped_message_does_not_block_the_earlier_ones_of_its_group() {
    let mut rig = Rig::new("");
    rig.attach(1);
    rig.send(
        "A1",
        Send {
            group: Some("A"),
            delay_ms: Some(1_000),
            ..Send::default()
        },
    );
    rig.send(
        "A2",
        Send {
            group: Some("A"),
            ..Send::default()
        },
    );
    rig.send(
        "A3",
        Send {
            group: Some("A"),
            ..Send::default()
        },
    );
    assert_eq!(bodies(&rig.fetch(1, 10)), ["A2", "A3"]);
    rig.advance(1_000).await;
    assert_eq!(bodies(&rig.take(1)), ["A1"]);
}

#[tokio::test(start_paused = true)]
async fn an_expired_message_is_never_delivered_and_is_dead_lettered_with_why() {
    let mut rig = Rig::new("dead_letter_address = \"dlq\"");
    rig.send(
        "short",
        Send {
            ttl_ms: Some(1_000),
            ..Send::default()
        },
    );
    rig.send("long", Send::default());
    rig.advance(1_000).await;
    assert_eq!(rig.queue.stats().expired, 1);
    rig.attach(1);
    assert_eq!(bodies(&rig.fetch(1, 10)), ["long"]);
    let dead = rig.dead_letters();
    assert_eq!(dead.len(), 1);
    assert_eq!(body(&dead[0]), "short");
    assert_eq!(
        annotation(&dead[0], "x-opt-dead-letter-reason"),
        Some(Value::Symbol(Symbol::from("expired")))
    );
    assert_eq!(
        annotation(&dead[0], "x-opt-original-queue"),
        Some(Value::String("q".into()))
    );
    assert!(matches!(
        annotation(&dead[0], "x-opt-dead-letter-time"),
        Some(Value::Timestamp(_))
    ));
}

#[tokio::test(start_paused = true)]
async fn a_message_that_expires_while_acquired_is_not_redelivered() {
    let mut rig = Rig::new("default_ttl = 1000");
    rig.attach(1);
    rig.send("a", Send::default());
    rig.send("b", Send::default());
    let got = rig.fetch(1, 2);
    rig.advance(1_500).await;
    // Accepting after the expiry still consumes it: it was delivered in time.
    rig.settle(1, &got[..1], Outcome::Accepted);
    // Releasing it after the expiry drops it instead of delivering it again.
    rig.settle(1, &got[1..], Outcome::Released);
    let stats = rig.queue.stats();
    assert_eq!((stats.acked, stats.expired, stats.ready), (1, 1, 0));
    assert!(rig.fetch(1, 5).is_empty());
}

#[tokio::test(start_paused = true)]
async fn the_visibility_timeout_takes_a_delivery_back_and_a_late_accept_settles_nothing() {
    let mut rig = Rig::new("visibility_timeout = \"10s\"");
    rig.attach(1);
    rig.send("work", Send::default());
    let first = rig.fetch(1, 1);
    rig.advance(10_000).await;
    assert_eq!(rig.take(1).len(), 0);
    assert_eq!(rig.revoked, [first[0].seq], "the link is told to settle it");
    assert_eq!(rig.queue.stats().timed_out, 1);
    rig.attach(2);
    let second = rig.fetch(2, 1);
    assert_eq!(bodies(&second), ["work"]);
    assert_eq!(second[0].delivery_count, 1);
    // Consumer 1's late accept must not consume what consumer 2 now holds.
    rig.settle(1, &first, Outcome::Accepted);
    let stats = rig.queue.stats();
    assert_eq!((stats.acked, stats.unacked), (0, 1));
    rig.settle(2, &second, Outcome::Accepted);
    assert_eq!(rig.queue.stats().acked, 1);
}

#[tokio::test(start_paused = true)]
async fn past_its_delivery_attempts_a_message_goes_to_the_dead_letter_address() {
    let mut rig = Rig::new("dead_letter_address = \"dlq\"\nmax_delivery_attempts = 2");
    rig.attach(1);
    rig.send("poison", Send::default());
    let failed = Outcome::Modified {
        delivery_failed: true,
        undeliverable_here: false,
        annotations: None,
    };
    let got = rig.fetch(1, 1);
    rig.settle(1, &got, failed.clone());
    let got = rig.fetch(1, 1);
    assert_eq!(got[0].delivery_count, 1);
    rig.settle(1, &got, failed);
    assert!(rig.fetch(1, 1).is_empty());
    let dead = rig.dead_letters();
    assert_eq!(
        annotation(&dead[0], "x-opt-dead-letter-reason"),
        Some(Value::Symbol(Symbol::from("delivery-limit")))
    );
}

#[tokio::test(start_paused = true)]
async fn a_rejected_message_carries_the_rejection_to_the_dead_letter_address() {
    let mut rig = Rig::new("dead_letter_address = \"dlq\"");
    rig.attach(1);
    rig.send("bad", Send::default());
    let got = rig.fetch(1, 1);
    let rejected = Outcome::Rejected {
        condition: Some("amqp:not-allowed".into()),
        description: Some("no thanks".into()),
    };
    rig.settle(1, &got, rejected);
    let dead = rig.dead_letters();
    assert_eq!(body(&dead[0]), "bad");
    assert_eq!(
        annotation(&dead[0], "x-opt-dead-letter-condition"),
        Some(Value::Symbol(Symbol::from("amqp:not-allowed")))
    );
    assert_eq!(
        annotation(&dead[0], "x-opt-dead-letter-description"),
        Some(Value::String("no thanks".into()))
    );
    assert_eq!(rig.queue.stats().dead_lettered, 1);
}

#[tokio::test(start_paused = true)]
async fn rewind_makes_consumed_messages_ready_again_without_duplicating_the_others() {
    let mut rig = Rig::new("rewind_seconds = 60");
    rig.attach(1);
    rig.send("old", Send::default());
    rig.advance(1_000).await;
    let t = now_ms();
    for body in ["m1", "m2", "m3", "m4"] {
        rig.send(body, Send::default());
    }
    let got = rig.fetch(1, 4);
    assert_eq!(bodies(&got), ["old", "m1", "m2", "m3"]);
    // "old" and m1, m2 are consumed; m3 is still out (acquired) and m4 ready: neither may
    // come back twice.
    rig.settle(1, &got[..3], Outcome::Accepted);
    assert_eq!(rig.queue.rewind(t), Ok(2));
    rig.settle(1, &got[3..], Outcome::Accepted);
    let again = rig.fetch(1, 10);
    assert_eq!(bodies(&again), ["m1", "m2", "m4"]);
    assert_eq!(
        again.iter().map(|g| g.delivery_count).collect::<Vec<_>>(),
        [1, 1, 0]
    );
    rig.settle(1, &again, Outcome::Accepted);
    // Too early: the answer says the earliest time that can be served.
    rig.advance(120_000).await;
    match rig.queue.rewind(t) {
        Err(RewindError::TooEarly { earliest_ms }) => assert_eq!(earliest_ms, now_ms() - 60_000),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn rewind_of_a_grouped_queue_returns_messages_to_their_groups_in_order() {
    let mut rig = Rig::new("rewind_seconds = 60");
    rig.attach(1);
    rig.attach(2);
    let t = now_ms();
    for (body, group) in [("A1", "A"), ("B1", "B"), ("A2", "A")] {
        rig.send(
            body,
            Send {
                group: Some(group),
                ..Send::default()
            },
        );
    }
    let mut got1 = rig.fetch(1, 1);
    let got2 = rig.fetch(2, 1);
    got1.extend(rig.fetch(1, 1));
    assert_eq!(
        (bodies(&got1), bodies(&got2)),
        (vec!["A1", "A2"], vec!["B1"])
    );
    rig.settle(1, &got1, Outcome::Accepted);
    rig.settle(2, &got2, Outcome::Accepted);
    assert_eq!(rig.queue.stats().groups, 0, "every group released");
    assert_eq!(rig.queue.rewind(t), Ok(3));
    // Back in their groups, in order, and grouping still holds: whoever takes A1 owns A.
    assert_eq!(bodies(&rig.fetch(2, 1)), ["A1"]);
    assert_eq!(bodies(&rig.fetch(1, 5)), ["B1"]);
    assert_eq!(bodies(&rig.fetch(2, 5)), ["A2"]);
}

#[tokio::test(start_paused = true)]
async fn scheduled_messages_are_listed_and_cancelled() {
    let rig = Rig::new("");
    rig.send(
        "a",
        Send {
            delay_ms: Some(5_000),
            ..Send::default()
        },
    );
    rig.send(
        "b",
        Send {
            delay_ms: Some(1_000),
            ..Send::default()
        },
    );
    let listed = rig.queue.scheduled(10);
    assert_eq!(listed.len(), 2);
    assert!(listed[0].due_ms < listed[1].due_ms, "earliest first");
    assert!(rig.queue.cancel_scheduled(listed[1].id));
    assert!(!rig.queue.cancel_scheduled(listed[1].id), "only once");
    rig.advance(10_000).await;
    let stats = rig.queue.stats();
    assert_eq!((stats.ready, stats.delayed, stats.cancelled), (1, 0, 1));
}

#[test]
fn delay_and_expiry_settings_resolve_per_queue() {
    let s = QueueSettings::default();
    assert_eq!(
        (s.default_delay, s.default_ttl, s.visibility_timeout),
        (0, 0, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn a_delayed_message_that_expires_before_it_is_due_never_becomes_ready() {
    let mut rig = Rig::new("dead_letter_address = \"dlq\"");
    rig.attach(1);
    let send = Send {
        delay_ms: Some(5_000),
        ttl_ms: Some(1_000),
        ..Send::default()
    };
    rig.send("too-late", send);
    rig.send(
        "kept",
        Send {
            delay_ms: Some(5_000),
            ..Send::default()
        },
    );
    rig.advance(1_000).await;
    let stats = rig.queue.stats();
    assert_eq!((stats.delayed, stats.expired), (1, 1));
    rig.advance(4_000).await;
    assert_eq!(bodies(&rig.fetch(1, 10)), ["kept"]);
    assert_eq!(body(&rig.dead_letters()[0]), "too-late");
}
