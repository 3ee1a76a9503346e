//! Bounded memory (issue 12 §1): the memory watermark holds producers back with link credit,
//! incomplete deliveries are capped per connection, and a consumer that does not read cannot
//! take a queue's messages from the others. Every test asserts on the broker's own account
//! (the admin API and `BrokerHandle::memory`), never on the process RSS, which parallel tests
//! share.

#![allow(clippy::unwrap_used)] // a test, bench or tool: a panic here is a failed run, not a broker down

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fe2o3_amqp::types::primitives::Binary;
use fe2o3_amqp::{Connection, Receiver, Sender, Session};
use fe2o3_amqp_types::definitions::Handle;
use fe2o3_amqp_types::performatives::{Performative, Transfer};
use sluice::{BrokerHandle, Config};
use support::admin::{eventually, scrape};
use support::broker::{start, test_config};
use support::http::{get_json, request};
use support::raw::{amqp_frame, attach_receiver, attach_sender, begin, link_flow, RawPeer};

const WAIT: Duration = Duration::from_secs(20);

/// A broker whose memory watermark is `high` (e.g. "8MiB") and whose producers get
/// `link_credit` credit, with `toml` for anything else.
async fn broker_with(toml: &str, link_credit: u32) -> (BrokerHandle, String) {
    let parsed = Config::from_toml(toml, "test.toml").expect("valid test config");
    let defaults = test_config();
    let config = Config {
        listen: defaults.listen,
        admin: defaults.admin,
        data_dir: defaults.data_dir,
        storage: defaults.storage,
        link_credit,
        ..parsed
    };
    start(config).await
}

fn body(size: usize, i: usize) -> Binary {
    let mut bytes = vec![b'.'; size];
    bytes[..8].copy_from_slice(&(i as u64).to_be_bytes());
    Binary::from(bytes)
}

/// Waits until `accepted` has not moved for `quiet`.
async fn until_still(accepted: &AtomicU64, quiet: Duration) -> u64 {
    let mut last = accepted.load(Ordering::SeqCst);
    loop {
        tokio::time::sleep(quiet).await;
        let now = accepted.load(Ordering::SeqCst);
        if now == last {
            return now;
        }
        last = now;
    }
}

#[tokio::test]
async fn a_flood_without_consumer_stops_at_the_watermark_and_loses_nothing() {
    flood(false).await;
}

#[tokio::test]
async fn a_durable_flood_without_consumer_stops_at_the_watermark_and_loses_nothing() {
    flood(true).await;
}

/// One producer sends three times the watermark to a queue nobody consumes from.
async fn flood(durable: bool) {
    const SIZE: usize = 16 * 1024;
    const TOTAL: usize = 1500; // 24 MiB: three times the watermark
    const CREDIT: u32 = 20;
    let toml = format!(
        "[limits]\nmemory_high_watermark = \"8MiB\"\n[queues.flood]\ndurable = {durable}\n"
    );
    let toml = toml.as_str();
    let (broker, url) = broker_with(toml, CREDIT).await;
    let admin = broker.admin_addr().expect("admin enabled");

    let accepted = Arc::new(AtomicU64::new(0));
    let producer = {
        let (url, accepted) = (url.clone(), accepted.clone());
        tokio::spawn(async move {
            let mut conn = Connection::open("flood", url.as_str()).await.unwrap();
            let mut session = Session::begin(&mut conn).await.unwrap();
            let mut sender = Sender::attach(&mut session, "p", "flood").await.unwrap();
            for i in 0..TOTAL {
                let outcome = sender.send(body(SIZE, i)).await.unwrap();
                assert!(outcome.is_accepted(), "message {i}: {outcome:?}");
                accepted.fetch_add(1, Ordering::SeqCst);
            }
            sender.close().await.unwrap();
            session.end().await.unwrap();
            conn.close().await.unwrap();
        })
    };

    // The producer is held back (it waits for credit; nothing is refused) ...
    let held = until_still(&accepted, Duration::from_millis(500)).await;
    assert!(
        (held as usize) < TOTAL,
        "every message was accepted: nothing pushed back"
    );
    let status = broker.memory();
    assert!(status.alarm && status.producers_blocked, "{status:?}");
    // ... within the watermark plus what its credit let it send on (each message with its
    // encoding and the per-message cost the account adds).
    let margin = u64::from(CREDIT) * (SIZE as u64 + 512);
    assert!(
        status.used <= status.high_watermark + margin,
        "{} bytes used, watermark {} + margin {margin}",
        status.used,
        status.high_watermark
    );
    let stats = broker.queue_stats("flood").expect("queue exists");
    assert_eq!(stats.ready as u64, held, "every accepted message is queued");

    // The admin API and /metrics show it.
    let overview = get_json(admin, "/api/overview").await;
    assert_eq!(overview["memory"]["alarm"], true, "{overview}");
    assert_eq!(overview["memory"]["producers_blocked"], true);
    assert_eq!(overview["memory"]["high_watermark"], 8 * 1024 * 1024);
    let metrics = request(admin, "GET", "/metrics", None, None).await;
    let samples = scrape(&metrics.body);
    let sample = |name: &str| samples.get(&(name.to_owned(), String::new())).copied();
    assert_eq!(sample("sluice_memory_alarm"), Some(1.0));
    assert_eq!(sample("sluice_producers_blocked"), Some(1.0));
    assert!(sample("sluice_memory_used_bytes").is_some_and(|b| b > 8.0 * 1024.0 * 1024.0));

    // A consumer drains the queue; the producer gets credit again as memory falls, and every
    // message arrives exactly once, in order.
    let mut conn = Connection::open("drain", url.as_str()).await.unwrap();
    let mut session = Session::begin(&mut conn).await.unwrap();
    let mut receiver = Receiver::attach(&mut session, "c", "flood").await.unwrap();
    for i in 0..TOTAL {
        let d = tokio::time::timeout(WAIT, receiver.recv::<Binary>())
            .await
            .unwrap_or_else(|_| panic!("message {i} never arrived"))
            .unwrap();
        assert_eq!(d.body()[..8], (i as u64).to_be_bytes(), "message {i}");
        receiver.accept(&d).await.unwrap();
    }
    tokio::time::timeout(WAIT, producer)
        .await
        .expect("the producer finished")
        .unwrap();
    assert_eq!(accepted.load(Ordering::SeqCst), TOTAL as u64);
    eventually("the alarm to clear", async || !broker.memory().alarm).await;
    eventually("memory to be released", async || {
        broker.memory().used < 1024 * 1024
    })
    .await;
    receiver.close().await.unwrap();
    session.end().await.unwrap();
    conn.close().await.unwrap();
    broker.shutdown().await;
}

/// A transfer frame of delivery `delivery_id` on `handle` (the id only on the first frame),
/// pre-settled.
fn transfer_frame(handle: u32, delivery_id: Option<u32>, more: bool, payload: &[u8]) -> Vec<u8> {
    let transfer = Performative::Transfer(Transfer {
        handle: Handle(handle),
        delivery_id,
        delivery_tag: delivery_id.map(|id| id.to_be_bytes().to_vec().into()),
        message_format: delivery_id.map(|_| 0),
        settled: Some(true),
        more,
        rcv_settle_mode: None,
        state: None,
        resume: false,
        aborted: false,
        batchable: false,
    });
    amqp_frame(0, &transfer, payload)
}

/// A message with one data section of `len` bytes.
fn data_message(len: usize) -> Vec<u8> {
    let mut m = vec![0x00, 0x53, 0x75, 0xb0];
    m.extend_from_slice(&u32::try_from(len).expect("small").to_be_bytes());
    m.resize(8 + len, b'.');
    m
}

#[tokio::test]
async fn incomplete_deliveries_are_capped_per_connection_but_one_large_message_may_finish() {
    const FRAME: usize = 60 * 1024;
    let toml = "[limits]\nmax_incomplete_bytes = \"1MiB\"\n[queues.big]\ndurable = false\n";
    let (broker, _) = broker_with(toml, 100).await;
    let mut peer = RawPeer::opened(broker.local_addrs()[0], "incomplete").await;
    peer.send(&amqp_frame(0, &begin(), &[])).await;
    for handle in 0..3 {
        let attach = attach_sender(&format!("link-{handle}"), handle, "big");
        peer.send(&amqp_frame(0, &attach, &[])).await;
    }
    for _ in 0..4 {
        let (_, p) = peer.read_skipping_flows().await;
        assert!(
            matches!(p, Performative::Begin(_) | Performative::Attach(_)),
            "{p:?}"
        );
    }
    // Link 0 sends all but the last frame of a 2 MiB message: beyond 1 MiB it becomes the
    // connection's one large message, which may go on.
    let large = data_message(2 * 1024 * 1024);
    let chunks: Vec<&[u8]> = large.chunks(FRAME).collect();
    let (last, head) = chunks.split_last().expect("frames");
    for (i, chunk) in head.iter().enumerate() {
        peer.send(&transfer_frame(0, (i == 0).then_some(0), true, chunk))
            .await;
    }
    // Link 1 holds 900 KiB of another message: within the cap.
    let small = data_message(4 * 1024 * 1024);
    for (i, chunk) in small.chunks(FRAME).take(15).enumerate() {
        peer.send(&transfer_frame(1, (i == 0).then_some(1), true, chunk))
            .await;
    }
    // Link 2 starts a third: its third frame would take the connection past 1 MiB of small
    // incomplete deliveries while link 0 has the large one in progress.
    for (i, chunk) in small.chunks(FRAME).take(3).enumerate() {
        peer.send(&transfer_frame(2, (i == 0).then_some(2), true, chunk))
            .await;
    }
    match peer.read_skipping_flows().await {
        (0, Performative::Detach(d)) => {
            assert_eq!(d.handle, Handle(2));
            let error = d.error.expect("the detach says why");
            assert_eq!(
                sluice::testing::condition_name(&error.condition),
                "amqp:resource-limit-exceeded"
            );
            let description = error.description.unwrap_or_default();
            assert!(
                description.contains("max_incomplete_bytes"),
                "{description}"
            );
        }
        other => panic!("expected link 2 to be detached, got {other:?}"),
    }
    // What the connection holds stays within the large message plus the cap.
    let used = broker.memory().used;
    assert!(
        used <= (2 + 1) * 1024 * 1024 + 64 * 1024,
        "{used} bytes held for incomplete deliveries"
    );
    // The large message completes and is queued; link 1's partial message is released when
    // the connection goes.
    peer.send(&transfer_frame(0, None, false, last)).await;
    eventually("the large message to be queued", async || {
        broker.queue_stats("big").is_some_and(|s| s.ready == 1)
    })
    .await;
    drop(peer);
    eventually("incomplete deliveries to be released", async || {
        broker.memory().used <= large.len() as u64 + 64 * 1024
    })
    .await;
    broker.shutdown().await;
}

/// The unsettled deliveries of the consumer named `link` of `queue`, from the admin API.
async fn unacked_of(broker: &BrokerHandle, queue: &str, link: &str) -> u64 {
    let admin = broker.admin_addr().expect("admin enabled");
    let detail = get_json(admin, &format!("/api/queues/{queue}")).await;
    detail["consumers_detail"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["link"] == link))
        .and_then(|c| c["unacked"].as_u64())
        .unwrap_or_else(|| panic!("no consumer {link} in {detail}"))
}

#[tokio::test]
async fn a_consumer_that_does_not_read_cannot_take_the_queue_from_the_others() {
    const SIZE: usize = 32 * 1024;
    const TOTAL: usize = 2000; // 64 MiB
    let toml = "[queues.shared]\ndurable = false\n";
    let (broker, url) = broker_with(toml, 1000).await;
    let mut conn = Connection::open("fill", url.as_str()).await.unwrap();
    let mut session = Session::begin(&mut conn).await.unwrap();
    let mut sender = Sender::attach(&mut session, "p", "shared").await.unwrap();
    for i in 0..TOTAL {
        sender.send(body(SIZE, i)).await.unwrap();
    }

    // A consumer grants a million credit and never reads its socket.
    let mut stuck = RawPeer::opened(broker.local_addrs()[0], "stuck").await;
    stuck.send(&amqp_frame(0, &begin(), &[])).await;
    stuck
        .send(&amqp_frame(0, &attach_receiver("stuck", 0, "shared"), &[]))
        .await;
    stuck
        .send(&amqp_frame(0, &link_flow(0, 1_000_000), &[]))
        .await;
    let mut held = 0;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = unacked_of(&broker, "shared", "stuck").await;
        if now == held && now > 0 {
            break;
        }
        held = now;
    }
    // It holds what its outbox, the connection's output and the socket buffers take, not
    // the queue.
    assert!(
        held > 0 && (held as usize) < TOTAL / 2,
        "the stuck consumer holds {held} of {TOTAL} messages"
    );

    // A healthy consumer gets every other message at once, not after an idle timeout.
    let mut receiver = Receiver::attach(&mut session, "healthy", "shared")
        .await
        .unwrap();
    let mut got = 0;
    while got < TOTAL - held as usize {
        let d = tokio::time::timeout(WAIT, receiver.recv::<Binary>())
            .await
            .unwrap_or_else(|_| panic!("only {got} messages reached the healthy consumer"))
            .unwrap();
        receiver.accept(&d).await.unwrap();
        got += 1;
    }
    // When the stuck consumer goes, what it held comes back to the healthy one.
    drop(stuck);
    while got < TOTAL {
        let d = tokio::time::timeout(WAIT, receiver.recv::<Binary>())
            .await
            .unwrap_or_else(|_| panic!("only {got} messages reached the healthy consumer"))
            .unwrap();
        receiver.accept(&d).await.unwrap();
        got += 1;
    }
    receiver.close().await.unwrap();
    sender.close().await.unwrap();
    session.end().await.unwrap();
    conn.close().await.unwrap();
    broker.shutdown().await;
}

#[tokio::test]
async fn a_consumer_that_settles_nothing_for_consumer_timeout_is_detached_and_its_messages_return()
{
    let toml = "[queues.slow]\ndurable = false\nconsumer_timeout = \"300ms\"\n";
    let (broker, url) = broker_with(toml, 100).await;
    let mut conn = Connection::open("slow", url.as_str()).await.unwrap();
    let mut session = Session::begin(&mut conn).await.unwrap();
    let mut sender = Sender::attach(&mut session, "p", "slow").await.unwrap();
    for i in 0..3 {
        sender.send(body(64, i)).await.unwrap();
    }
    let mut silent = Receiver::attach(&mut session, "silent", "slow")
        .await
        .unwrap();
    for _ in 0..3 {
        tokio::time::timeout(WAIT, silent.recv::<Binary>())
            .await
            .expect("a delivery")
            .unwrap();
    }
    // It settles nothing: after 300 ms its link is detached, saying why.
    let started = std::time::Instant::now();
    let detached = tokio::time::timeout(WAIT, silent.recv::<Binary>())
        .await
        .expect("the silent consumer is detached");
    let error = format!("{detached:?}");
    assert!(
        detached.is_err() && error.contains("consumer_timeout") && error.contains("DetachForced"),
        "{error}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    // Its messages return with delivery-count + 1, for another consumer.
    let mut patient = Receiver::attach(&mut session, "patient", "slow")
        .await
        .unwrap();
    for i in 0..3u64 {
        let d = tokio::time::timeout(WAIT, patient.recv::<Binary>())
            .await
            .expect("a returned message")
            .unwrap();
        assert_eq!(d.body()[..8], i.to_be_bytes());
        let count = d.message().header.as_ref().map(|h| h.delivery_count);
        assert_eq!(count, Some(1), "message {i}");
        patient.accept(&d).await.unwrap();
    }
    let _ = silent.close().await;
    patient.close().await.unwrap();
    sender.close().await.unwrap();
    session.end().await.unwrap();
    conn.close().await.unwrap();
    broker.shutdown().await;
}

#[tokio::test]
async fn dead_letters_are_counted_in_their_new_queue() {
    const SIZE: usize = 256 * 1024;
    let toml = "[queues.work]\ndurable = false\ndead_letter_address = \"dlq\"\n[queues.dlq]\ndurable = false\n";
    let (broker, url) = broker_with(toml, 100).await;
    let mut conn = Connection::open("dl", url.as_str()).await.unwrap();
    let mut session = Session::begin(&mut conn).await.unwrap();
    let mut sender = Sender::attach(&mut session, "p", "work").await.unwrap();
    sender.send(body(SIZE, 7)).await.unwrap();
    let mut receiver = Receiver::attach(&mut session, "c", "work").await.unwrap();
    let d = tokio::time::timeout(WAIT, receiver.recv::<Binary>())
        .await
        .expect("a delivery")
        .unwrap();
    receiver.reject(&d, None).await.unwrap();
    drop(d);
    eventually("the message to reach the dead-letter queue", async || {
        broker.queue_stats("dlq").is_some_and(|s| s.ready == 1)
    })
    .await;
    // The annotated copy is new bytes: it is what the account must see now.
    let used = broker.memory().used;
    assert!(
        used >= SIZE as u64,
        "{used} bytes counted for a {SIZE}-byte dead letter"
    );
    let mut dlq = Receiver::attach(&mut session, "d", "dlq").await.unwrap();
    let d = tokio::time::timeout(WAIT, dlq.recv::<Binary>())
        .await
        .expect("the dead letter")
        .unwrap();
    dlq.accept(&d).await.unwrap();
    drop(d);
    eventually("the dead letter's bytes to be released", async || {
        broker.memory().used < SIZE as u64 / 2
    })
    .await;
    dlq.close().await.unwrap();
    receiver.close().await.unwrap();
    sender.close().await.unwrap();
    session.end().await.unwrap();
    conn.close().await.unwrap();
    broker.shutdown().await;
}
