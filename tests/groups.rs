//! Black-box tests of message groups with the fe2o3-amqp client: every single-broker behaviour
//! of Artemis message grouping (pinning, owner close, closing a group with a negative sequence,
//! the first-for-consumer marker, rebalancing, buckets, resetAllGroups) and Qpid's on-ack
//! release, end to end over AMQP.
//!
//! Receivers use manual credit, so each broker decision has one right answer. Everything a
//! test's client does travels on one session, in order; [`Client::sync`] is a round trip on
//! that session, after which the broker has applied every earlier frame (credit, dispositions)
//! and dispatched what they allowed. Queue state is then read through the `BrokerHandle`, so
//! "not delivered" is mostly checked without waiting.

#![allow(clippy::unwrap_used)] // a test, bench or tool: a panic here is a failed run, not a broker down

mod support;

use fe2o3_amqp::link::delivery::Delivery;
use fe2o3_amqp::types::messaging::Properties;
use fe2o3_amqp::types::primitives::{SimpleValue, Value};
use fe2o3_amqp::Receiver;
use sluice::BrokerHandle;
use support::groups::{
    assert_groups, broker, delivery_count, from_both, grouped, marker, message, names,
    nothing_arrives, sorted, take, ungrouped, Client, Msg, FIRST_KEY, Q,
};

/// Artemis: "Messages in a message group are always consumed by the same consumer, even if
/// there are many consumers on a queue." Two receivers with credit for everything; groups A and
/// B interleaved; each group goes wholly, and in order, to one receiver (and round robin puts
/// the two groups on different receivers).
async fn each_group_sticks_to_one_receiver(queue_toml: &str, make: fn(&str, &str) -> Msg) {
    let broker = broker(queue_toml).await;
    let mut c = Client::connect(&broker, "c").await;
    let mut r1 = c.receiver("r1", 10).await;
    let mut r2 = c.receiver("r2", 10).await;
    c.send(["A1", "B1", "A2", "B2", "A3", "B3"].map(|n| make(n, &n[..1])))
        .await;
    let (got1, got2) = from_both(&mut r1, &mut r2, 6).await;
    assert_eq!(
        sorted([names(&got1), names(&got2)]),
        [["A1", "A2", "A3"], ["B1", "B2", "B3"]]
    );
    let owner_of_a = if names(&got1)[0] == "A1" { "r1" } else { "r2" };
    let owner_of_b = if owner_of_a == "r1" { "r2" } else { "r1" };
    assert_groups(
        &broker,
        &[("A", Some(owner_of_a), 0, 3), ("B", Some(owner_of_b), 0, 3)],
    );
    c.close().await;
    broker.shutdown().await;
}

#[tokio::test]
async fn pinning_by_group_id_sends_each_group_to_one_receiver_in_order() {
    each_group_sticks_to_one_receiver("", grouped).await;
}

#[tokio::test]
async fn pinning_by_the_jmsx_group_id_property_sends_each_group_to_one_receiver_in_order() {
    let toml = "[queues.orders]\ngroup_key = \"JMSXGroupID\"\n";
    each_group_sticks_to_one_receiver(toml, |body, group| {
        message(body, None, &[("JMSXGroupID", group.into())])
    })
    .await;
}

/// Artemis warns that a block of grouped messages at the head of a queue suspends the
/// consumption of the ungrouped ones behind it until the group's owner has taken them all.
/// sluice promises it never stalls: r1 owns A, has no credit left and holds A1; 100 more A
/// messages and then 10 ungrouped ones arrive; r2 gets the 10 at once and none of the A's,
/// which wait, in order, for r1.
#[tokio::test]
async fn ungrouped_messages_pass_a_group_whose_owner_has_no_credit() {
    let broker = broker("").await;
    let mut c = Client::connect(&broker, "c").await;
    let mut r1 = c.receiver("r1", 1).await;
    let mut r2 = c.receiver("r2", 0).await;
    c.send([grouped("A1", "A")]).await;
    let a1 = take(&mut r1, 1).await;
    assert_eq!(names(&a1), ["A1"]);
    c.send((2..=101).map(|i| grouped(&format!("A{i}"), "A")))
        .await;
    c.send((1..=10).map(|i| ungrouped(&format!("U{i}")))).await;
    r2.set_credit(20).await.unwrap();
    let got = take(&mut r2, 10).await;
    let expected: Vec<String> = (1..=10).map(|i| format!("U{i}")).collect();
    assert_eq!(names(&got), expected);
    c.sync().await;
    assert_groups(&broker, &[("A", Some("r1"), 100, 1)]);
    nothing_arrives(&mut r2).await;
    // The A's were only waiting for their owner's credit; they come in order.
    r1.set_credit(100).await.unwrap();
    let rest = take(&mut r1, 100).await;
    let expected: Vec<String> = (2..=101).map(|i| format!("A{i}")).collect();
    assert_eq!(names(&rest), expected);
    c.close().await;
    broker.shutdown().await;
}

/// Artemis: "If that consumer closes another consumer is chosen and will receive all messages
/// with the same group id." With on-close (so nothing but the close can move the group), r1
/// owns A, took A1..A4 and accepted only A2, and A5 waits. Once r1 is gone, r2 receives the
/// unsettled A1, A3, A4 in their original order with delivery-count + 1, then A5, and the
/// group is r2's from then on.
async fn the_group_moves_when_the_owner_goes(separate_connection: bool) {
    let broker = broker("[queues.orders]\ngroup_release = \"on-close\"\n").await;
    let mut c = Client::connect(&broker, "c").await;
    let mut owner_client = if separate_connection {
        Some(Client::connect(&broker, "owner").await)
    } else {
        None
    };
    let owner = owner_client.as_mut().unwrap_or(&mut c);
    let mut r1 = owner.receiver("r1", 4).await;
    owner
        .send((1..=5).map(|i| grouped(&format!("A{i}"), "A")))
        .await;
    let held = take(&mut r1, 4).await;
    assert_eq!(names(&held), ["A1", "A2", "A3", "A4"]);
    r1.accept(&held[1]).await.unwrap();
    owner_client.as_mut().unwrap_or(&mut c).sync().await;
    let mut r2 = c.receiver("r2", 10).await;
    c.sync().await;
    assert_groups(&broker, &[("A", Some("r1"), 1, 3)]);
    match owner_client {
        // Closing the whole connection: the broker detaches every link on it.
        Some(owner) => owner.close().await,
        None => drop(r1.detach().await.unwrap()),
    }
    let moved = take(&mut r2, 4).await;
    assert_eq!(names(&moved), ["A1", "A3", "A4", "A5"]);
    let counts: Vec<u32> = moved.iter().map(delivery_count).collect();
    assert_eq!(counts, [1, 1, 1, 0]);
    assert_groups(&broker, &[("A", Some("r2"), 0, 4)]);
    c.send([grouped("A6", "A")]).await;
    assert_eq!(names(&take(&mut r2, 1).await), ["A6"]);
    c.close().await;
    broker.shutdown().await;
}

#[tokio::test]
async fn when_the_owner_detaches_its_unsettled_messages_and_the_group_move_to_another_receiver() {
    the_group_moves_when_the_owner_goes(false).await;
}

#[tokio::test]
async fn when_the_owner_connection_closes_its_unsettled_messages_and_the_group_move_on() {
    the_group_moves_when_the_owner_goes(true).await;
}

/// r1 takes A1 and A2 and A3 waits behind them, with r2 ready to take it. Returns the broker,
/// the client, both receivers and r1's deliveries.
async fn owner_with_two_unsettled(
    queue_toml: &str,
) -> (
    BrokerHandle,
    Client,
    Receiver,
    Receiver,
    Vec<Delivery<String>>,
) {
    let broker = broker(queue_toml).await;
    let mut c = Client::connect(&broker, "c").await;
    let mut r1 = c.receiver("r1", 2).await;
    c.send([grouped("A1", "A"), grouped("A2", "A")]).await;
    let held = take(&mut r1, 2).await;
    assert_eq!(names(&held), ["A1", "A2"]);
    let r2 = c.receiver("r2", 5).await;
    c.send([grouped("A3", "A")]).await;
    assert_groups(&broker, &[("A", Some("r1"), 1, 2)]);
    (broker, c, r1, r2, held)
}

/// Qpid shared groups (sluice's default, `group_release = "on-ack"`): a consumer owns a group
/// while it holds unsettled messages of it. Accepting A1 is not enough; once A2 is accepted
/// too, A3 goes to r2 (r1 has no credit left), which now owns A.
#[tokio::test]
async fn on_ack_frees_the_group_once_the_owner_has_accepted_everything_it_took() {
    let (broker, mut c, r1, mut r2, held) = owner_with_two_unsettled("").await;
    r1.accept(&held[0]).await.unwrap();
    c.sync().await;
    assert_groups(&broker, &[("A", Some("r1"), 1, 1)]);
    r1.accept(&held[1]).await.unwrap();
    assert_eq!(names(&take(&mut r2, 1).await), ["A3"]);
    assert_groups(&broker, &[("A", Some("r2"), 0, 1)]);
    c.close().await;
    broker.shutdown().await;
}

/// Artemis (`group_release = "on-close"`): the group stays with its consumer after everything
/// is accepted; r2 gets nothing and A3 goes to r1 as soon as r1 grants credit.
#[tokio::test]
async fn on_close_keeps_the_group_with_the_owner_after_everything_is_accepted() {
    let toml = "[queues.orders]\ngroup_release = \"on-close\"\n";
    let (broker, mut c, mut r1, mut r2, held) = owner_with_two_unsettled(toml).await;
    for d in &held {
        r1.accept(d).await.unwrap();
    }
    c.sync().await;
    assert_groups(&broker, &[("A", Some("r1"), 1, 0)]);
    nothing_arrives(&mut r2).await;
    r1.set_credit(1).await.unwrap();
    assert_eq!(names(&take(&mut r1, 1).await), ["A3"]);
    c.close().await;
    broker.shutdown().await;
}

/// Artemis "Closing a Message Group": a message with a negative group sequence closes its group
/// once consumed, "so if another message is sent in the future with the same message group ID
/// it will be reassigned to a new consumer". With on-close only the close can move the group:
/// A2 waits for r1 while A1 is merely delivered, and goes to r2 once r1 accepts A1.
async fn a_negative_sequence_closes_the_group(closing: Msg) {
    let broker = broker("[queues.orders]\ngroup_release = \"on-close\"\n").await;
    let mut c = Client::connect(&broker, "c").await;
    let mut r1 = c.receiver("r1", 1).await;
    c.send([closing]).await;
    let a1 = take(&mut r1, 1).await;
    assert_eq!(names(&a1), ["A1"]);
    let mut r2 = c.receiver("r2", 5).await;
    c.send([grouped("A2", "A")]).await;
    assert_groups(&broker, &[("A", Some("r1"), 1, 1)]);
    r1.accept(&a1[0]).await.unwrap();
    assert_eq!(names(&take(&mut r2, 1).await), ["A2"]);
    assert_groups(&broker, &[("A", Some("r2"), 0, 1)]);
    c.close().await;
    broker.shutdown().await;
}

#[tokio::test]
async fn jmsx_group_seq_minus_one_closes_the_group() {
    let properties = Properties::builder().group_id("A".to_string()).build();
    let closing = message(
        "A1",
        Some(properties),
        &[("JMSXGroupSeq", SimpleValue::Int(-1))],
    );
    a_negative_sequence_closes_the_group(closing).await;
}

#[tokio::test]
async fn group_sequence_0xffffffff_closes_the_group() {
    // Qpid JMS sends JMSXGroupSeq -1 as the unsigned group-sequence 0xFFFFFFFF.
    let properties = Properties::builder()
        .group_id("A".to_string())
        .group_sequence(u32::MAX)
        .build();
    a_negative_sequence_closes_the_group(message("A1", Some(properties), &[])).await;
}

/// Artemis `group-first-key`: "every time a new group is assigned a consumer the header
/// JMSXGroupFirstForConsumer will be set to true on the first message" (a message annotation,
/// and with `group_first_as_property` an application property for JMS). Later messages and
/// ungrouped ones carry no marker; when the owner detaches, the new owner's first message (A1
/// again, redelivered) is marked.
async fn the_first_message_for_each_owner_is_marked(as_property: bool) {
    let toml = format!(
        "[queues.orders]\ngroup_first_key = \"{FIRST_KEY}\"\n\
         group_first_as_property = {as_property}\n"
    );
    let marked = (
        Some(Value::Bool(true)),
        as_property.then_some(SimpleValue::Bool(true)),
    );
    let broker = broker(&toml).await;
    let mut c = Client::connect(&broker, "c").await;
    let mut r1 = c.receiver("r1", 2).await;
    c.send([
        grouped("A1", "A"),
        grouped("A2", "A"),
        grouped("A3", "A"),
        ungrouped("U1"),
    ])
    .await;
    let got = take(&mut r1, 2).await;
    assert_eq!(names(&got), ["A1", "A2"]);
    assert_eq!(marker(&got[0]), marked);
    assert_eq!(marker(&got[1]), (None, None));
    let mut r2 = c.receiver("r2", 5).await;
    let u1 = take(&mut r2, 1).await;
    assert_eq!(names(&u1), ["U1"]);
    assert_eq!(marker(&u1[0]), (None, None));
    r1.close().await.unwrap();
    let moved = take(&mut r2, 3).await;
    assert_eq!(names(&moved), ["A1", "A2", "A3"]);
    let markers: Vec<_> = moved.iter().map(marker).collect();
    assert_eq!(markers, [marked, (None, None), (None, None)]);
    c.close().await;
    broker.shutdown().await;
}

#[tokio::test]
async fn group_first_key_marks_the_first_message_of_each_owner_with_an_annotation() {
    the_first_message_for_each_owner_is_marked(false).await;
}

#[tokio::test]
async fn group_first_as_property_marks_it_with_an_application_property_too() {
    the_first_message_for_each_owner_is_marked(true).await;
}

/// Artemis `group-rebalance`: "every time a consumer is added it will trigger a rebalance/reset
/// of the groups", so long-lived groups spread to new consumers. With on-close, r1 keeps A..D
/// after accepting them; r2's attach frees every group (A, which has A2 waiting, shows no
/// owner; the others are forgotten), A2 goes to r2, and new groups spread over both.
#[tokio::test]
async fn rebalance_frees_the_groups_when_a_receiver_attaches() {
    let toml = "[queues.orders]\ngroup_release = \"on-close\"\ngroup_rebalance = true\n";
    let broker = broker(toml).await;
    let mut c = Client::connect(&broker, "c").await;
    let mut r1 = c.receiver("r1", 4).await;
    c.send(["A1", "B1", "C1", "D1"].map(|n| grouped(n, &n[..1])))
        .await;
    for d in take(&mut r1, 4).await {
        r1.accept(&d).await.unwrap();
    }
    c.send([grouped("A2", "A")]).await;
    c.sync().await;
    let owned_by_r1 = ["A", "B", "C", "D"].map(|g| (g, Some("r1"), usize::from(g == "A"), 0));
    assert_groups(&broker, &owned_by_r1);
    let mut r2 = c.receiver("r2", 0).await;
    assert_groups(&broker, &[("A", None, 1, 0)]);
    r2.set_credit(1).await.unwrap();
    assert_eq!(names(&take(&mut r2, 1).await), ["A2"]);
    r1.set_credit(10).await.unwrap();
    r2.set_credit(10).await.unwrap();
    c.send(["E1", "F1", "G1", "H1"].map(|n| grouped(n, &n[..1])))
        .await;
    let (got1, got2) = from_both(&mut r1, &mut r2, 4).await;
    assert!(
        !got1.is_empty() && !got2.is_empty(),
        "new groups spread: {:?} {:?}",
        names(&got1),
        names(&got2)
    );
    c.close().await;
    broker.shutdown().await;
}

/// Artemis `group-rebalance-pause-dispatch`: "cause the dispatch to pause whilst rebalance
/// occurs, until all inflight messages are processed". r1 holds A1 when r2 attaches; A2 and B1
/// then go to nobody, not even r1 with fresh credit, while the ungrouped U1 flows to r2; once r1
/// accepts A1, both grouped messages are delivered.
#[tokio::test]
async fn rebalance_with_pause_holds_grouped_messages_until_in_flight_ones_are_settled() {
    let toml = "[queues.orders]\ngroup_release = \"on-close\"\ngroup_rebalance = true\n\
                group_rebalance_pause_dispatch = true\n";
    let broker = broker(toml).await;
    let mut c = Client::connect(&broker, "c").await;
    let mut r1 = c.receiver("r1", 1).await;
    c.send([grouped("A1", "A")]).await;
    let a1 = take(&mut r1, 1).await;
    let mut r2 = c.receiver("r2", 5).await;
    c.send([grouped("A2", "A"), grouped("B1", "B"), ungrouped("U1")])
        .await;
    assert_eq!(names(&take(&mut r2, 1).await), ["U1"]);
    r1.set_credit(5).await.unwrap();
    c.sync().await;
    assert_eq!(broker.queue_stats(Q).unwrap().ready, 2);
    assert_groups(&broker, &[("A", None, 1, 1), ("B", None, 1, 0)]);
    r1.accept(&a1[0]).await.unwrap();
    let (got1, got2) = from_both(&mut r1, &mut r2, 2).await;
    let mut all = [names(&got1), names(&got2)].concat();
    all.sort();
    assert_eq!(all, ["A2", "B1"]);
    c.close().await;
    broker.shutdown().await;
}

/// Artemis `group-buckets = 0` "disables grouping (0 buckets), on a queue": messages with a
/// group id are dealt round robin like any others, and no group is tracked.
#[tokio::test]
async fn zero_group_buckets_deals_grouped_messages_round_robin() {
    let broker = broker("[queues.orders]\ngroup_buckets = 0\n").await;
    let mut c = Client::connect(&broker, "c").await;
    let mut r1 = c.receiver("r1", 10).await;
    let mut r2 = c.receiver("r2", 10).await;
    c.send((1..=4).map(|i| grouped(&format!("A{i}"), "A")))
        .await;
    let (got1, got2) = from_both(&mut r1, &mut r2, 4).await;
    assert_eq!(
        sorted([names(&got1), names(&got2)]),
        [["A1", "A3"], ["A2", "A4"]]
    );
    assert_eq!(broker.queue_stats(Q).unwrap().groups, 0);
    assert_groups(&broker, &[]);
    c.close().await;
    broker.shutdown().await;
}

/// Artemis `group-buckets = N` hashes group ids into N buckets; with one bucket every id shares
/// it, so all grouped messages go to one receiver, and the statistics name it "bucket 0".
#[tokio::test]
async fn one_group_bucket_pins_every_group_to_one_receiver() {
    let broker = broker("[queues.orders]\ngroup_buckets = 1\n").await;
    let mut c = Client::connect(&broker, "c").await;
    let mut r1 = c.receiver("r1", 10).await;
    let mut r2 = c.receiver("r2", 10).await;
    c.send(["A1", "B1", "C1", "D1"].map(|n| grouped(n, &n[..1])))
        .await;
    let (got1, got2) = from_both(&mut r1, &mut r2, 4).await;
    assert_eq!(
        sorted([names(&got1), names(&got2)]),
        [vec![], vec!["A1", "B1", "C1", "D1"]]
    );
    let owner = if got1.is_empty() { "r2" } else { "r1" };
    assert_groups(&broker, &[("bucket 0", Some(owner), 0, 4)]);
    c.close().await;
    broker.shutdown().await;
}

/// Artemis `resetAllGroups` (the management operation), as `BrokerHandle::reset_groups`: every
/// owner is freed, and the statistics say so. r1 owns A (A2 waiting) and B (on-close); the reset
/// reports 2 owned groups, A is left without owner and B, with nothing left, is forgotten; r2
/// then takes A2 and owns A.
#[tokio::test]
async fn reset_groups_frees_every_owner_and_the_statistics_follow() {
    let broker = broker("[queues.orders]\ngroup_release = \"on-close\"\n").await;
    let mut c = Client::connect(&broker, "c").await;
    let mut r1 = c.receiver("r1", 2).await;
    c.send([grouped("A1", "A"), grouped("B1", "B")]).await;
    for d in take(&mut r1, 2).await {
        r1.accept(&d).await.unwrap();
    }
    c.send([grouped("A2", "A")]).await;
    c.sync().await;
    assert_eq!(broker.queue_stats(Q).unwrap().groups, 2);
    assert_groups(&broker, &[("A", Some("r1"), 1, 0), ("B", Some("r1"), 0, 0)]);
    let mut r2 = c.receiver("r2", 0).await;
    assert_eq!(broker.reset_groups(Q), Some(2));
    assert_eq!(broker.reset_groups("no-such-queue"), None);
    assert_groups(&broker, &[("A", None, 1, 0)]);
    assert_eq!(broker.queue_stats(Q).unwrap().groups, 1);
    r2.set_credit(5).await.unwrap();
    assert_eq!(names(&take(&mut r2, 1).await), ["A2"]);
    assert_groups(&broker, &[("A", Some("r2"), 0, 1)]);
    c.close().await;
    broker.shutdown().await;
}
