//! Black-box tests of the queues' time-based behaviours (issue 6) with real fe2o3-amqp clients
//! and short real delays: delayed delivery (the three annotations and `default_delay`), the
//! visibility timeout, rewind and the scheduled-message admin endpoints. Expiry and dead
//! letters are in tests/dead_letters.rs; the core's edge cases in src/broker/time_tests.rs,
//! under a paused clock.
//!
//! Timings: delays are 200 to 400 ms. A test measures from just before its send (the broker
//! computes a due time when it enqueues, which is after that) and allows [`EARLY`] for the
//! broker's millisecond rounding, and a second of lateness. A deadline is checked by polling
//! the broker's counters, so no test sleeps longer than it must.

#![allow(clippy::unwrap_used)] // a test, bench or tool: a panic here is a failed run, not a broker down

mod support;

use std::time::Duration;

use fe2o3_amqp::types::primitives::Value;
use fe2o3_amqp_types::messaging::{Accepted, DeliveryState};
use fe2o3_amqp_types::performatives::{Open, Performative};
use serde_json::json;
use support::clock::{now_ms, rfc3339};
use support::http::{get_json, request};
use support::raw::{amqp_frame, begin, close, RawPeer, AMQP_HEADER};
use support::time::{
    annotated, assert_due, attach_receiver, broker, delivery_count, eventually, in_ms, link_flow,
    nothing_within, parse_rfc3339, recv, rewind, send, settle, text, Client, QUIET,
};
use tokio::time::Instant;

/// Opens a raw AMQP connection (no SASL) to `broker`; returns it with the broker's `open`.
async fn raw_open(broker: &sluice::BrokerHandle) -> (RawPeer, Open) {
    let mut peer = RawPeer::connect(broker.local_addrs()[0]).await;
    peer.send(&AMQP_HEADER).await;
    assert_eq!(peer.read_header().await, AMQP_HEADER);
    peer.send(&amqp_frame(0, &support::raw::open("raw"), &[]))
        .await;
    let open = peer.expect_open().await;
    (peer, open)
}

/// Closes a raw connection cleanly, so the broker's shutdown need not wait for it.
async fn raw_close(mut peer: RawPeer) {
    peer.send(&amqp_frame(0, &close(), &[])).await;
    while !matches!(peer.read_performative().await, (0, Performative::Close(_))) {}
    peer.expect_eof().await;
}

/// Sends the message `make` builds (just before the send, so that times in it are measured
/// from there) to the queue `q` with a receiver already waiting (credit 1), and checks it
/// arrives `delay` after the send, not before; while it waits the queue counts it as delayed.
async fn arrives_after(queue_toml: &str, make: impl FnOnce() -> support::time::Msg, delay: u64) {
    let delay = Duration::from_millis(delay);
    let broker = broker(queue_toml).await;
    let mut c = Client::connect(&broker).await;
    let mut receiver = c.receiver("q", 1).await;
    let mut sender = c.sender("q").await;
    let start = Instant::now();
    send(&mut sender, make()).await;
    let stats = broker.queue_stats("q").unwrap();
    assert_eq!((stats.delayed, stats.ready), (1, 0), "{stats:?}");
    let d = recv(&mut receiver).await;
    assert_due(start, delay, "the delayed message");
    assert_eq!(d.body(), "m");
    assert_eq!(delivery_count(&d), 0);
    receiver.accept(&d).await.unwrap();
    let stats = eventually(&broker, "q", "the accept", |s| s.acked == 1).await;
    assert_eq!((stats.delayed, stats.ready, stats.unacked), (0, 0, 0));
    c.close().await;
    broker.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 1. Delayed delivery
// ---------------------------------------------------------------------------------------------

/// Qpid JMS only sends delivery times to a peer that offers DELAYED_DELIVERY. fe2o3's
/// connection handle does not expose the peer's `open`, so a raw peer reads it.
#[tokio::test]
async fn the_broker_offers_delayed_delivery_in_its_open() {
    let broker = broker("").await;
    let (peer, open) = raw_open(&broker).await;
    let offered: Vec<&str> = open
        .offered_capabilities
        .iter()
        .flat_map(|caps| caps.0.iter().map(|c| c.as_str()))
        .collect();
    assert!(offered.contains(&"DELAYED_DELIVERY"), "{offered:?}");
    raw_close(peer).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn x_opt_delivery_delay_holds_a_message_back_for_that_many_ms() {
    let delay = ("x-opt-delivery-delay", Value::Long(300));
    arrives_after("", || annotated("m", &[delay]), 300).await;
}

#[tokio::test]
async fn x_opt_delivery_time_holds_a_message_back_until_that_time() {
    let at = || ("x-opt-delivery-time", Value::Timestamp(in_ms(300)));
    arrives_after("", || annotated("m", &[at()]), 300).await;
}

#[tokio::test]
async fn x_opt_scheduled_enqueue_time_holds_a_message_back_until_that_time() {
    let at = || ("x-opt-scheduled-enqueue-time", Value::Timestamp(in_ms(300)));
    arrives_after("", || annotated("m", &[at()]), 300).await;
}

#[tokio::test]
async fn default_delay_holds_back_a_message_without_a_delay_of_its_own() {
    let toml = "[queues.q]\ndefault_delay = \"300ms\"\n";
    arrives_after(toml, || text("m"), 300).await;
}

/// The default is for messages that say nothing: one that asks for no delay is ready at once.
#[tokio::test]
async fn default_delay_gives_way_to_the_message_s_own_delay() {
    let broker = broker("[queues.q]\ndefault_delay = \"5s\"\n").await;
    let mut c = Client::connect(&broker).await;
    let mut receiver = c.receiver("q", 1).await;
    let mut sender = c.sender("q").await;
    let start = Instant::now();
    send(
        &mut sender,
        annotated("m", &[("x-opt-delivery-delay", Value::Long(200))]),
    )
    .await;
    let d = recv(&mut receiver).await;
    assert_due(
        start,
        Duration::from_millis(200),
        "the message with its own delay",
    );
    receiver.accept(&d).await.unwrap();
    c.close().await;
    broker.shutdown().await;
}

/// Two messages sent in the opposite order of their due times come out in due order, and the
/// queue counts each as delayed until it is due.
#[tokio::test]
async fn delayed_messages_arrive_in_due_order_and_are_counted_while_they_wait() {
    let broker = broker("").await;
    let mut c = Client::connect(&broker).await;
    let mut receiver = c.receiver("q", 2).await;
    let mut sender = c.sender("q").await;
    let start = Instant::now();
    send(
        &mut sender,
        annotated("late", &[("x-opt-delivery-delay", Value::Long(400))]),
    )
    .await;
    send(
        &mut sender,
        annotated("early", &[("x-opt-delivery-delay", Value::Long(200))]),
    )
    .await;
    assert_eq!(broker.queue_stats("q").unwrap().delayed, 2);
    let first = recv(&mut receiver).await;
    assert_eq!(first.body(), "early");
    assert_due(start, Duration::from_millis(200), "early");
    let stats = broker.queue_stats("q").unwrap();
    assert_eq!((stats.delayed, stats.unacked), (1, 1), "{stats:?}");
    let second = recv(&mut receiver).await;
    assert_eq!(second.body(), "late");
    assert_due(start, Duration::from_millis(400), "late");
    assert_eq!(broker.queue_stats("q").unwrap().delayed, 0);
    receiver.accept(&first).await.unwrap();
    receiver.accept(&second).await.unwrap();
    c.close().await;
    broker.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 4. Visibility timeout
// ---------------------------------------------------------------------------------------------

/// r1 takes the message and sits on it; after 300 ms the broker takes it back, r2 gets it
/// with delivery-count 1, and r1's late accept consumes nothing. fe2o3 drops the broker's
/// settlement of r1's delivery silently (and then sends no disposition for the late accept
/// at all); the next test watches both on the wire.
#[tokio::test]
async fn after_the_visibility_timeout_another_receiver_gets_the_message() {
    let broker = broker("[queues.q]\nvisibility_timeout = 300\n").await;
    let mut c = Client::connect(&broker).await;
    let mut r1 = c.receiver("q", 1).await;
    let mut sender = c.sender("q").await;
    let start = Instant::now();
    send(&mut sender, text("work")).await;
    let first = recv(&mut r1).await;
    assert_eq!((first.body().as_str(), delivery_count(&first)), ("work", 0));
    let mut r2 = c.receiver("q", 1).await;
    let second = recv(&mut r2).await;
    assert_due(start, Duration::from_millis(300), "the redelivery");
    assert_eq!(
        (second.body().as_str(), delivery_count(&second)),
        ("work", 1)
    );
    let stats = broker.queue_stats("q").unwrap();
    assert_eq!(
        (stats.timed_out, stats.unacked, stats.acked),
        (1, 1, 0),
        "{stats:?}"
    );
    r1.accept(&first).await.unwrap();
    // A round trip on the session: the broker has applied r1's late accept when it returns.
    c.sync().await;
    let stats = broker.queue_stats("q").unwrap();
    assert_eq!((stats.acked, stats.unacked), (0, 1), "{stats:?}");
    r2.accept(&second).await.unwrap();
    let stats = eventually(&broker, "q", "r2's accept", |s| s.acked == 1).await;
    assert_eq!((stats.unacked, stats.ready), (0, 0), "{stats:?}");
    c.close().await;
    broker.shutdown().await;
}

/// The same on the wire: the broker settles the timed-out delivery itself (modified,
/// delivery-failed) and a late settled accept for it changes nothing.
#[tokio::test]
async fn the_broker_settles_a_timed_out_delivery_and_ignores_its_late_accept() {
    let broker = broker("[queues.q]\nvisibility_timeout = 300\n").await;
    let mut c = Client::connect(&broker).await;
    let mut sender = c.sender("q").await;
    send(&mut sender, text("work")).await;

    let (mut peer, _) = raw_open(&broker).await;
    peer.send(&amqp_frame(0, &begin(), &[])).await;
    assert!(matches!(
        peer.read_skipping_flows().await,
        (0, Performative::Begin(_))
    ));
    peer.send(&amqp_frame(0, &attach_receiver("raw-r", 0, "q"), &[]))
        .await;
    assert!(matches!(
        peer.read_skipping_flows().await,
        (0, Performative::Attach(_))
    ));
    let start = Instant::now();
    peer.send(&amqp_frame(0, &link_flow(0, 0, 1, false), &[]))
        .await;
    let delivery_id = match peer.read_skipping_flows().await {
        (0, Performative::Transfer(t)) => {
            assert_ne!(t.settled, Some(true), "sent unsettled");
            t.delivery_id.expect("a delivery id")
        }
        other => panic!("expected a transfer, got {other:?}"),
    };
    match peer.read_skipping_flows().await {
        (0, Performative::Disposition(d)) => {
            assert_due(start, Duration::from_millis(300), "the broker's settlement");
            assert_eq!(d.first, delivery_id);
            assert!(d.settled, "{d:?}");
            match d.state {
                Some(DeliveryState::Modified(m)) => {
                    assert_eq!(m.delivery_failed, Some(true), "{m:?}")
                }
                other => panic!("expected modified(delivery-failed), got {other:?}"),
            }
        }
        other => panic!("expected a disposition, got {other:?}"),
    }
    let mut r2 = c.receiver("q", 1).await;
    let second = recv(&mut r2).await;
    assert_eq!(
        (second.body().as_str(), delivery_count(&second)),
        ("work", 1)
    );
    // The late accept, then a flow asking for an echo: when the echo comes, the broker has
    // dealt with the accept.
    let late = DeliveryState::Accepted(Accepted {});
    peer.send(&amqp_frame(0, &settle(delivery_id, late), &[]))
        .await;
    peer.send(&amqp_frame(0, &link_flow(0, 1, 0, true), &[]))
        .await;
    loop {
        match peer.read_performative().await {
            (0, Performative::Flow(f)) if f.handle.is_some() => break,
            (0, Performative::Flow(_)) => {}
            other => panic!("expected the echoed flow, got {other:?}"),
        }
    }
    let stats = broker.queue_stats("q").unwrap();
    assert_eq!(
        (stats.acked, stats.unacked, stats.timed_out),
        (0, 1, 1),
        "{stats:?}"
    );
    r2.accept(&second).await.unwrap();
    eventually(&broker, "q", "r2's accept", |s| {
        s.acked == 1 && s.unacked == 0
    })
    .await;
    assert_eq!(broker.connection_count(), 2, "the late accept is no error");
    raw_close(peer).await;
    c.close().await;
    broker.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 5. Rewind (through the admin API)
// ---------------------------------------------------------------------------------------------

/// Three messages consumed, then rewound (to an RFC 3339 time, then again to epoch seconds):
/// each time they come back in their original order with delivery-count + 1.
#[tokio::test]
async fn rewind_through_the_admin_api_makes_consumed_messages_ready_again_in_order() {
    let broker = broker("[queues.q]\nrewind_seconds = 60\n").await;
    let admin = broker.admin_addr().expect("the admin API is on");
    let mut c = Client::connect(&broker).await;
    let mut sender = c.sender("q").await;
    // A little before the sends: the broker's clock (the wall clock when it first read it,
    // plus monotonic time since, both in whole ms) may read a millisecond or two behind this
    // test's. Nothing else was ever enqueued to this queue. Epoch seconds round down, so
    // `before_s` is before the messages too.
    let before = now_ms() - 100;
    let before_s = before / 1000;
    for body in ["m1", "m2", "m3"] {
        send(&mut sender, text(body)).await;
    }
    let mut receiver = c.receiver("q", 3).await;
    for body in ["m1", "m2", "m3"] {
        let d = recv(&mut receiver).await;
        assert_eq!((d.body().as_str(), delivery_count(&d)), (body, 0));
        receiver.accept(&d).await.unwrap();
    }
    let stats = eventually(&broker, "q", "the accepts", |s| s.acked == 3).await;
    assert_eq!(stats.retained, 3, "{stats:?}");

    for (to, count) in [(json!(rfc3339(before)), 1), (json!(before_s), 2)] {
        let answer = rewind(admin, "q", to.clone()).await;
        assert_eq!(answer.status, 200, "rewind to {to}: {}", answer.body);
        assert_eq!(
            answer.json()["rewound"],
            json!(3),
            "to {to}: {}",
            answer.body
        );
        receiver.set_credit(3).await.unwrap();
        for body in ["m1", "m2", "m3"] {
            let d = recv(&mut receiver).await;
            assert_eq!((d.body().as_str(), delivery_count(&d)), (body, count));
            receiver.accept(&d).await.unwrap();
        }
        nothing_within(&mut receiver, QUIET).await;
    }
    let stats = eventually(&broker, "q", "the accepts", |s| s.acked == 9).await;
    assert_eq!((stats.rewound, stats.ready), (6, 0), "{stats:?}");
    c.close().await;
    broker.shutdown().await;
}

/// A time before the retention window is refused with 400, and the answer names the earliest
/// time that can be served (now - 60 s) as `earliest` (RFC 3339) and `earliest_ms`; a
/// moment after that time is served.
#[tokio::test]
async fn rewind_to_before_the_window_is_refused_with_the_earliest_time() {
    let broker = broker("[queues.q]\nrewind_seconds = 60\n").await;
    let admin = broker.admin_addr().expect("the admin API is on");
    let mut c = Client::connect(&broker).await;
    let mut sender = c.sender("q").await;
    send(&mut sender, text("m")).await;
    let asked = now_ms();
    let answer = rewind(admin, "q", json!(rfc3339(asked - 120_000))).await;
    let answered = now_ms();
    assert_eq!(answer.status, 400, "{}", answer.body);
    let body = answer.json();
    let earliest_ms = body["earliest_ms"]
        .as_i64()
        .unwrap_or_else(|| panic!("no earliest_ms in {body}"));
    let earliest = body["earliest"]
        .as_str()
        .unwrap_or_else(|| panic!("no earliest in {body}"));
    assert_eq!(parse_rfc3339(earliest), Some(earliest_ms), "{body}");
    assert!(
        (asked - 60_000 - 20..=answered - 60_000 + 20).contains(&earliest_ms),
        "earliest {earliest} should be now - 60 s: {body}"
    );
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains(earliest)),
        "the error names the earliest time: {body}"
    );
    // A second later than that is inside the window (which moves on with the clock).
    let answer = rewind(admin, "q", json!(rfc3339(earliest_ms + 1_000))).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.json(), json!({"rewound": 0}), "nothing was consumed");
    c.close().await;
    broker.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 6. Scheduled messages through the admin API
// ---------------------------------------------------------------------------------------------

/// Two delayed messages are listed earliest first with their due times; cancelling one drops
/// it (once: the second DELETE is a 404), and only the other arrives when due.
#[tokio::test]
async fn scheduled_messages_are_listed_and_cancelled_through_the_admin_api() {
    let broker = broker("").await;
    let admin = broker.admin_addr().expect("the admin API is on");
    let mut c = Client::connect(&broker).await;
    let mut receiver = c.receiver("q", 2).await;
    let mut sender = c.sender("q").await;
    let start = Instant::now();
    let sent_ms = now_ms();
    send(
        &mut sender,
        annotated("keep", &[("x-opt-delivery-delay", Value::Long(400))]),
    )
    .await;
    send(
        &mut sender,
        annotated("cancel", &[("x-opt-delivery-delay", Value::Long(200))]),
    )
    .await;
    let listed = get_json(admin, "/api/queues/q/scheduled").await;
    let items = listed
        .as_array()
        .unwrap_or_else(|| panic!("a list: {listed}"));
    assert_eq!(items.len(), 2, "{listed}");
    let due: Vec<i64> = items
        .iter()
        .map(|i| {
            let due_ms = i["due_ms"].as_i64().expect("due_ms");
            let due = i["due"].as_str().expect("due");
            assert_eq!(parse_rfc3339(due), Some(due_ms), "{i}");
            assert!(i["bytes"].as_u64().is_some_and(|b| b > 0), "{i}");
            due_ms
        })
        .collect();
    let after_ms = now_ms();
    for (due, delay) in due.iter().zip([200, 400]) {
        assert!(
            (sent_ms + delay - 20..=after_ms + delay + 20).contains(due),
            "due {due} should be sent + {delay} ms: {listed}"
        );
    }
    let id = items[0]["id"].as_u64().expect("a numeric id");
    let path = format!("/api/queues/q/scheduled/{id}");
    let answer = request(admin, "DELETE", &path, None, None).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.json(), json!({ "cancelled": id }));
    let again = request(admin, "DELETE", &path, None, None).await;
    assert_eq!(again.status, 404, "only once: {}", again.body);
    let stats = broker.queue_stats("q").unwrap();
    assert_eq!((stats.delayed, stats.cancelled), (1, 1), "{stats:?}");
    let d = recv(&mut receiver).await;
    assert_eq!(d.body(), "keep");
    assert_due(start, Duration::from_millis(400), "keep");
    receiver.accept(&d).await.unwrap();
    nothing_within(&mut receiver, QUIET).await;
    let stats = eventually(&broker, "q", "the accept", |s| s.acked == 1).await;
    assert_eq!(
        (stats.delayed, stats.ready, stats.dead_lettered),
        (0, 0, 0),
        "{stats:?}"
    );
    c.close().await;
    broker.shutdown().await;
}
