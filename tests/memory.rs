//! Bounded memory (issue 12 §1): the memory watermark holds producers back with link credit,
//! incomplete deliveries are capped per connection, and a consumer that does not read cannot
//! take a queue's messages from the others. Every test asserts on the broker's own account
//! (the admin API and `BrokerHandle::memory`), never on the process RSS, which parallel tests
//! share.

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fe2o3_amqp::types::primitives::Binary;
use fe2o3_amqp::{Connection, Receiver, Sender, Session};
use sluice::{BrokerHandle, Config};
use support::admin::{eventually, scrape};
use support::broker::{start, test_config};
use support::http::{get_json, request};

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
    const SIZE: usize = 16 * 1024;
    const TOTAL: usize = 1500; // 24 MiB: three times the watermark
    const CREDIT: u32 = 20;
    let toml = "[limits]\nmemory_high_watermark = \"8MiB\"\n[queues.flood]\ndurable = false\n";
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
    // ... within the watermark plus what its credit let it send on (plus frame overhead).
    let margin = u64::from(CREDIT) * (SIZE as u64 + 256);
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
