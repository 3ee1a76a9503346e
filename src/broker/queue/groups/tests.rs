//! Message groups through the queue's public operations: ownership, release, close, the
//! first-for-consumer marker, rebalance and buckets, and a property test of the invariants.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use fe2o3_amqp_types::messaging::annotations::OwnedKey;
use fe2o3_amqp_types::messaging::message::__private::{Deserializable, Serializable};
use fe2o3_amqp_types::messaging::{
    AmqpValue, ApplicationProperties, Body, Message as AmqpMessage, Properties,
};
use fe2o3_amqp_types::primitives::{SimpleValue, Symbol, Value};

use crate::broker::queue::entry::GroupId;

use super::GroupTable;
use crate::broker::queue::Entry;
use crate::broker::{ConnWaker, ConsumerId, OutItem, Outbox, Outcome, Queue};
use crate::config::{GroupBuckets, GroupKey, GroupRelease, QueueSettings};
use crate::message::Message;

/// A queue and the consumers attached to it, with the bookkeeping a link would do.
struct Rig {
    queue: Arc<Queue>,
    waker: Arc<ConnWaker>,
    outboxes: HashMap<ConsumerId, Arc<Outbox>>,
    /// Deliveries received per consumer (the link's delivery-count).
    received: HashMap<ConsumerId, u32>,
    /// Body text of each message by sequence number (enqueue order, from 1).
    names: Vec<String>,
}

/// One delivery as a consumer sees it.
#[derive(Debug, Clone)]
struct Got {
    seq: u64,
    name: String,
    delivery_count: u32,
    message: Message,
}

impl Rig {
    fn new(settings: QueueSettings) -> Rig {
        Rig {
            queue: Queue::alone("q".into(), settings),
            waker: ConnWaker::new(),
            outboxes: HashMap::new(),
            received: HashMap::new(),
            names: vec![String::new()],
        }
    }

    fn attach(&mut self, id: ConsumerId) {
        let outbox = Outbox::new(id, self.waker.clone());
        self.queue
            .add_consumer(outbox.clone(), &format!("link-{id}"), None);
        self.outboxes.insert(id, outbox);
        self.received.insert(id, 0);
    }

    fn detach(&mut self, id: ConsumerId) {
        self.queue.detach_consumer(id);
        self.outboxes.remove(&id);
    }

    /// Sends `name` in `group` (properties.group-id), or ungrouped.
    fn send(&mut self, name: &str, group: Option<&str>) {
        self.send_message(name, message(name, group, &[]));
    }

    fn send_message(&mut self, name: &str, message: Message) {
        self.names.push(name.to_owned());
        self.queue.enqueue([message]);
    }

    /// Grants `id` credit for `n` more messages and returns what it receives.
    fn fetch(&mut self, id: ConsumerId, n: u32) -> Vec<Got> {
        let limit = self.received[&id].wrapping_add(n);
        self.queue.flow(id, limit, false);
        self.take(id)
    }

    /// What `id` has been sent and not yet looked at.
    fn take(&mut self, id: ConsumerId) -> Vec<Got> {
        let mut got = Vec::new();
        while let Some(item) = self.outboxes[&id].pop() {
            if let OutItem::Deliver(d) = item {
                *self.received.get_mut(&id).unwrap() += 1;
                got.push(Got {
                    seq: d.seq,
                    name: self.names[d.seq as usize].clone(),
                    delivery_count: d.delivery_count,
                    message: d.message,
                });
            }
        }
        got
    }

    fn fetch_names(&mut self, id: ConsumerId, n: u32) -> Vec<String> {
        self.fetch(id, n).into_iter().map(|g| g.name).collect()
    }

    fn settle(&self, id: ConsumerId, got: &[Got], outcome: Outcome) {
        self.queue
            .settle(id, got.iter().map(|g| (g.seq, outcome.clone())));
    }

    fn owners(&self) -> BTreeMap<String, Option<ConsumerId>> {
        let groups = self.queue.groups();
        groups.into_iter().map(|g| (g.group, g.owner)).collect()
    }
}

fn message(body: &str, group: Option<&str>, props: &[(&str, SimpleValue)]) -> Message {
    let properties = Properties {
        group_id: group.map(String::from),
        ..Properties::default()
    };
    let mut app = ApplicationProperties::builder();
    for (k, v) in props {
        app = app.insert(k.to_string(), v.clone());
    }
    let m: AmqpMessage<Body<Value>> = AmqpMessage::builder()
        .properties(properties)
        .application_properties(app.build())
        .body(Body::Value(AmqpValue(Value::String(body.to_owned()))))
        .build();
    let bytes = serde_amqp::to_vec(&Serializable(m)).unwrap();
    Message::parse(Bytes::from(bytes)).unwrap()
}

fn names(got: &[Got]) -> Vec<&str> {
    got.iter().map(|g| g.name.as_str()).collect()
}

fn grouped_by(key: &str) -> QueueSettings {
    QueueSettings {
        group_key: GroupKey::Property(key.into()),
        ..QueueSettings::default()
    }
}

/// The Qpid demonstration (seed: qpid-message-groups.txt), one message of credit at a time.
fn qpid_demo(ack_all: bool) -> Vec<(ConsumerId, String)> {
    let mut rig = Rig::new(grouped_by("ourGroupID"));
    rig.attach(1);
    rig.attach(2);
    let send = |rig: &mut Rig, group: &str, n: &str| {
        let name = format!("{group}{n}");
        let m = message(&name, None, &[("ourGroupID", group.into())]);
        rig.send_message(&name, m);
    };
    for (g, n) in [
        ("A", "1"),
        ("B", "1"),
        ("B", "2"),
        ("A", "2"),
        ("B", "3"),
        ("A", "3"),
    ] {
        send(&mut rig, g, n);
    }
    let mut log = Vec::new();
    let mut held: HashMap<ConsumerId, Vec<Got>> = HashMap::new();
    let pull = |rig: &mut Rig,
                log: &mut Vec<(ConsumerId, String)>,
                held: &mut HashMap<ConsumerId, Vec<Got>>,
                c: ConsumerId| {
        let got = rig.fetch(c, 1);
        assert_eq!(got.len(), 1, "consumer {c} got nothing");
        log.push((c, got[0].name.clone()));
        held.entry(c).or_default().extend(got);
    };
    for c in [1, 2, 1, 2] {
        pull(&mut rig, &mut log, &mut held, c);
    }
    for c in [1, 2] {
        let all = held.remove(&c).unwrap();
        let acked = if ack_all {
            &all[..]
        } else {
            &all[all.len() - 1..]
        };
        rig.settle(c, acked, Outcome::Accepted);
    }
    pull(&mut rig, &mut log, &mut held, 1);
    pull(&mut rig, &mut log, &mut held, 2);
    for (g, n) in [("B", "4"), ("B", "5"), ("A", "4"), ("A", "5")] {
        send(&mut rig, g, n);
    }
    for c in [1, 2, 1, 2] {
        pull(&mut rig, &mut log, &mut held, c);
    }
    log
}

fn expect(pairs: &[(ConsumerId, &str)]) -> Vec<(ConsumerId, String)> {
    pairs.iter().map(|(c, n)| (*c, n.to_string())).collect()
}

#[test]
fn the_qpid_demo_acknowledging_all_moves_the_groups() {
    assert_eq!(
        qpid_demo(true),
        expect(&[
            (1, "A1"),
            (2, "B1"),
            (1, "A2"),
            (2, "B2"),
            (1, "B3"),
            (2, "A3"),
            (1, "B4"),
            (2, "A4"),
            (1, "B5"),
            (2, "A5"),
        ])
    );
}

#[test]
fn the_qpid_demo_acknowledging_only_the_last_keeps_the_groups() {
    assert_eq!(
        qpid_demo(false),
        expect(&[
            (1, "A1"),
            (2, "B1"),
            (1, "A2"),
            (2, "B2"),
            (1, "A3"),
            (2, "B3"),
            (1, "A4"),
            (2, "B4"),
            (1, "A5"),
            (2, "B5"),
        ])
    );
}

#[test]
fn an_owned_group_does_not_hold_up_the_messages_behind_it() {
    let mut rig = Rig::new(QueueSettings::default());
    rig.attach(1);
    rig.attach(2);
    rig.send("A1", Some("A"));
    assert_eq!(rig.fetch_names(1, 1), ["A1"]);
    for i in 2..=1000 {
        rig.send(&format!("A{i}"), Some("A"));
    }
    rig.send("U1", None);
    rig.send("B1", Some("B"));
    assert_eq!(rig.fetch_names(2, 10), ["U1", "B1"]);
    let a = rig.fetch(1, 2000);
    assert_eq!(a.len(), 999);
    assert!(
        a.windows(2).all(|w| w[0].seq < w[1].seq),
        "group order kept"
    );
    assert_eq!(rig.queue.stats().ready, 0);
}

#[test]
fn on_close_keeps_the_group_after_every_ack_until_the_owner_detaches() {
    let mut rig = Rig::new(QueueSettings {
        group_release: GroupRelease::OnClose,
        ..QueueSettings::default()
    });
    rig.attach(1);
    rig.attach(2);
    rig.send("A1", Some("A"));
    let got = rig.fetch(1, 1);
    rig.settle(1, &got, Outcome::Accepted);
    rig.send("A2", Some("A"));
    assert!(rig.fetch(2, 5).is_empty(), "A is still pinned to 1");
    assert_eq!(rig.owners()["A"], Some(1));
    rig.detach(1);
    assert_eq!(names(&rig.take(2)), ["A2"]);
    assert_eq!(rig.owners()["A"], Some(2));
}

#[test]
fn on_ack_frees_the_group_once_everything_fetched_is_settled() {
    let mut rig = Rig::new(QueueSettings::default());
    rig.attach(1);
    rig.attach(2);
    for name in ["A1", "A2", "A3"] {
        rig.send(name, Some("A"));
    }
    let got = rig.fetch(1, 2);
    rig.settle(1, &got[..1], Outcome::Accepted);
    assert!(rig.fetch(2, 1).is_empty(), "1 still holds A2");
    // Released counts as settled for ownership; A2 goes back in order.
    rig.settle(1, &got[1..], Outcome::Released);
    let again = rig.take(2);
    assert_eq!(names(&again), ["A2"]);
    assert_eq!(again[0].delivery_count, 0);
    assert_eq!(rig.owners()["A"], Some(2));
}

#[test]
fn a_detached_owner_returns_its_messages_in_order_to_the_next_consumer() {
    let mut rig = Rig::new(QueueSettings::default());
    rig.attach(1);
    for name in ["A1", "A2", "A3", "A4"] {
        rig.send(name, Some("A"));
    }
    assert_eq!(rig.fetch_names(1, 3), ["A1", "A2", "A3"]);
    rig.attach(2);
    assert!(rig.fetch(2, 10).is_empty());
    rig.detach(1);
    let got = rig.take(2);
    assert_eq!(names(&got), ["A1", "A2", "A3", "A4"]);
    let counts: Vec<u32> = got.iter().map(|g| g.delivery_count).collect();
    assert_eq!(counts, [1, 1, 1, 0]);
}

#[test]
fn a_negative_group_sequence_closes_the_group_when_consumed() {
    for (close, props) in [
        (
            message("A1", Some("A"), &[("JMSXGroupSeq", SimpleValue::Int(-1))]),
            "JMSXGroupSeq",
        ),
        (
            {
                let properties = Properties {
                    group_id: Some("A".into()),
                    group_sequence: Some(u32::MAX),
                    ..Properties::default()
                };
                let m: AmqpMessage<Body<Value>> = AmqpMessage::builder()
                    .properties(properties)
                    .body(Body::Value(AmqpValue(Value::String("A1".into()))))
                    .build();
                Message::parse(Bytes::from(serde_amqp::to_vec(&Serializable(m)).unwrap())).unwrap()
            },
            "group-sequence",
        ),
    ] {
        let mut rig = Rig::new(QueueSettings {
            group_release: GroupRelease::OnClose,
            ..QueueSettings::default()
        });
        rig.attach(1);
        rig.attach(2);
        rig.send_message("A1", close);
        let got = rig.fetch(1, 1);
        rig.send("A2", Some("A"));
        assert!(
            rig.fetch(2, 1).is_empty(),
            "{props}: still owned until settled"
        );
        rig.settle(1, &got, Outcome::Accepted);
        assert_eq!(names(&rig.take(2)), ["A2"], "{props}: group closed");
    }
}

#[test]
fn the_first_message_for_a_new_owner_carries_the_marker() {
    let mut rig = Rig::new(QueueSettings {
        group_first_key: Some("JMSXGroupFirstForConsumer".into()),
        group_first_as_property: true,
        group_release: GroupRelease::OnClose,
        ..QueueSettings::default()
    });
    rig.attach(1);
    rig.attach(2);
    for name in ["A1", "A2", "A3"] {
        rig.send(name, Some("A"));
    }
    rig.send("U1", None);
    let got = rig.fetch(1, 2);
    assert_eq!(names(&got), ["A1", "A2"]);
    let marked = |m: &Message| {
        let decoded: Deserializable<AmqpMessage<Body<Value>>> =
            serde_amqp::from_slice(m.bytes()).unwrap();
        let d = decoded.0;
        let annotation = d.message_annotations.as_ref().and_then(|a| {
            let key = OwnedKey::from(Symbol::from("JMSXGroupFirstForConsumer"));
            a.get(&key).cloned()
        });
        let property = d
            .application_properties
            .as_ref()
            .and_then(|p| p.get("JMSXGroupFirstForConsumer").cloned());
        (annotation, property)
    };
    assert_eq!(
        marked(&got[0].message),
        (Some(Value::Bool(true)), Some(SimpleValue::Bool(true)))
    );
    assert_eq!(marked(&got[1].message), (None, None));
    let ungrouped = rig.fetch(2, 1);
    assert_eq!(names(&ungrouped), ["U1"]);
    assert_eq!(marked(&ungrouped[0].message), (None, None));
    rig.detach(1);
    let moved = rig.fetch(2, 1);
    assert_eq!(names(&moved), ["A1"]);
    assert_eq!(marked(&moved[0].message).0, Some(Value::Bool(true)));
}

#[test]
fn rebalance_on_attach_spreads_groups_over_the_consumers() {
    let mut rig = Rig::new(QueueSettings {
        group_release: GroupRelease::OnClose,
        group_rebalance: true,
        ..QueueSettings::default()
    });
    rig.attach(1);
    for name in ["A1", "B1"] {
        rig.send(name, Some(&name[..1]));
    }
    let got = rig.fetch(1, 2);
    rig.settle(1, &got, Outcome::Accepted);
    assert_eq!(rig.owners()["B"], Some(1));
    rig.attach(2);
    assert_eq!(
        rig.owners().values().flatten().count(),
        0,
        "all groups free"
    );
    for name in ["A2", "B2"] {
        rig.send(name, Some(&name[..1]));
    }
    assert_eq!(rig.fetch_names(2, 1), ["A2"]);
    assert_eq!(rig.fetch_names(1, 1), ["B2"]);
}

#[test]
fn rebalance_with_pause_holds_grouped_messages_until_in_flight_ones_settle() {
    let mut rig = Rig::new(QueueSettings {
        group_release: GroupRelease::OnClose,
        group_rebalance: true,
        group_rebalance_pause_dispatch: true,
        ..QueueSettings::default()
    });
    rig.attach(1);
    rig.send("A1", Some("A"));
    let in_flight = rig.fetch(1, 1);
    rig.attach(2);
    rig.send("A2", Some("A"));
    rig.send("U1", None);
    assert_eq!(
        rig.fetch_names(2, 5),
        ["U1"],
        "ungrouped messages still flow"
    );
    assert!(rig.fetch(1, 5).is_empty());
    rig.settle(1, &in_flight, Outcome::Accepted);
    let after: Vec<String> = [rig.take(1), rig.take(2)]
        .concat()
        .into_iter()
        .map(|g| g.name)
        .collect();
    assert_eq!(after, ["A2"]);
}

#[test]
fn zero_buckets_turns_grouping_off_and_one_bucket_makes_one_group() {
    let mut off = Rig::new(QueueSettings {
        group_buckets: GroupBuckets::Off,
        ..QueueSettings::default()
    });
    off.attach(1);
    off.attach(2);
    for name in ["A1", "A2", "A3", "A4"] {
        off.send(name, Some("A"));
    }
    assert_eq!(off.fetch_names(1, 1), ["A1"]);
    assert_eq!(off.fetch_names(2, 1), ["A2"]);
    assert_eq!(off.queue.stats().groups, 0);

    let mut one = Rig::new(QueueSettings {
        group_buckets: GroupBuckets::Hashed(1),
        ..QueueSettings::default()
    });
    one.attach(1);
    one.attach(2);
    for name in ["A1", "B1", "C1"] {
        one.send(name, Some(&name[..1]));
    }
    assert_eq!(one.fetch_names(1, 1), ["A1"]);
    assert!(one.fetch(2, 5).is_empty(), "B and C share A's bucket");
    assert_eq!(one.owners().keys().collect::<Vec<_>>(), ["bucket 0"]);
}

#[test]
fn reset_groups_frees_every_owner_and_stats_show_owners() {
    let mut rig = Rig::new(QueueSettings {
        group_release: GroupRelease::OnClose,
        ..QueueSettings::default()
    });
    rig.attach(1);
    rig.send("A1", Some("A"));
    rig.send("B1", Some("B"));
    let got = rig.fetch(1, 1);
    rig.settle(1, &got, Outcome::Accepted);
    assert_eq!(rig.queue.stats().groups, 2);
    assert_eq!(
        rig.owners(),
        BTreeMap::from([("A".to_owned(), Some(1)), ("B".to_owned(), None)])
    );
    assert_eq!(rig.queue.reset_groups(), 1);
    // A has no messages and no owner any more: it is forgotten.
    assert_eq!(rig.owners(), BTreeMap::from([("B".to_owned(), None)]));
}

#[test]
fn undeliverable_here_on_a_grouped_message_does_not_block_other_groups() {
    let mut rig = Rig::new(QueueSettings::default());
    rig.attach(1);
    rig.send("A1", Some("A"));
    rig.send("B1", Some("B"));
    let got = rig.fetch(1, 1);
    assert_eq!(names(&got), ["A1"]);
    rig.settle(
        1,
        &got,
        Outcome::Modified {
            delivery_failed: false,
            undeliverable_here: true,
            annotations: None,
        },
    );
    assert_eq!(rig.fetch_names(1, 5), ["B1"]);
    rig.attach(2);
    assert_eq!(rig.fetch_names(2, 5), ["A1"]);
}

fn forget(table: &mut GroupTable, g: GroupId) {
    let taken = table.take(g, 1).expect("a ready message");
    table.settled(taken.ticket, 1, None, false);
}

#[test]
fn ids_that_share_a_hash_still_get_groups_of_their_own() {
    let mut table = GroupTable::new(&QueueSettings::default());
    table.constant_hash = true;
    let m = |id: &str| message(id, Some(id), &[]);
    let mut seq = 0;
    let mut add = |table: &mut GroupTable, id: &str| {
        seq += 1;
        let g = table.group_of(&m(id)).unwrap();
        assert!(table.push_new(g, Entry::new(seq, m(id))).is_none());
        g
    };
    let a = add(&mut table, "A");
    let b = add(&mut table, "B");
    let c = add(&mut table, "C");
    assert!(a != b && b != c && a != c);
    forget(&mut table, a);
    assert_eq!(table.len(), 2);
    // A's entry is stale now; B and C are still found, and A comes back as a new group.
    assert_eq!(table.group_of(&m("B")), Some(b));
    assert_eq!(table.group_of(&m("C")), Some(c));
    let a2 = add(&mut table, "A");
    assert_eq!(table.group_of(&m("A")), Some(a2));
    assert_eq!(table.len(), 3);
    forget(&mut table, a2);
    forget(&mut table, b);
    assert_eq!(table.group_of(&m("C")), Some(c));
    assert_eq!(table.len(), 1);
}

#[test]
fn the_hash_entries_of_forgotten_groups_are_swept() {
    let mut table = GroupTable::new(&QueueSettings::default());
    let keep = message("kept", Some("kept"), &[]);
    let kept = table.group_of(&keep).unwrap();
    assert!(table.push_new(kept, Entry::new(0, keep.clone())).is_none());
    for seq in 1..=10_000u64 {
        let m = message("x", Some(&format!("g{seq}")), &[]);
        let g = table.group_of(&m).unwrap();
        assert!(table.push_new(g, Entry::new(seq, m)).is_none());
        forget(&mut table, g);
        // Swept when a creation finds them over 2 x live + 1024 (live counted before a forget).
        assert!(table.by_hash.len() <= 2 * (table.len() + 1) + 1025);
    }
    assert_eq!(table.len(), 1);
    assert_eq!(table.group_of(&keep), Some(kept));
}

mod property;
