//! Durable queues across restarts and failures (issue 7), black-box with fe2o3-amqp: what a
//! broker accepted is there after it restarts on the same data directory, in order and with
//! its delivery count; delayed messages, dead letters and messages kept for rewind come back
//! too; a failed disk fences the store; and a power loss (a simulated disk that drops every
//! write not yet fsynced) loses nothing that was accepted.

#![allow(clippy::unwrap_used)] // a test, bench or tool: a panic here is a failed run, not a broker down

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fe2o3_amqp::types::messaging::{Header, Message, Modified, Outcome};
use fe2o3_amqp::types::primitives::Value;
use fe2o3_amqp::Sender;
use sluice::testing::{FaultOp, SimFs};
use sluice::{Broker, BrokerHandle, Config};
use support::broker::{fresh_data_dir, test_config};
use support::time::{
    annotated, annotation, delivery_count, eventually, nothing_within, recv, send, text, Client,
    Msg, QUIET, WAIT,
};

fn config(queues_toml: &str, data_dir: &Path) -> Config {
    let parsed = Config::from_toml(queues_toml, "test.toml").expect("valid test config");
    let mut config = test_config();
    config.data_dir = data_dir.to_owned();
    config.queues = parsed.queues;
    config.storage.sync = parsed.storage.sync;
    config
}

async fn start(queues_toml: &str, data_dir: &Path) -> BrokerHandle {
    support::broker::start(config(queues_toml, data_dir))
        .await
        .0
}

async fn restart(broker: BrokerHandle, queues_toml: &str, data_dir: &Path) -> BrokerHandle {
    broker.shutdown().await;
    start(queues_toml, data_dir).await
}

/// Receives every message `queue` has until it stays quiet, accepting each.
async fn drain(client: &mut Client, queue: &str) -> Vec<String> {
    let mut receiver = client.receiver(queue, 10_000).await;
    let mut bodies = Vec::new();
    while let Some(d) = support::time::recv_within(&mut receiver, Duration::from_millis(500)).await
    {
        bodies.push(d.body().clone());
        receiver.accept(&d).await.unwrap();
    }
    receiver.close().await.unwrap();
    bodies
}

#[tokio::test]
async fn accepted_messages_survive_a_restart_in_order_with_their_delivery_counts() {
    let dir = fresh_data_dir();
    let broker = start("", &dir).await;
    let mut client = Client::connect(&broker).await;
    let mut sender = client.sender("orders").await;
    for i in 0..10 {
        send(&mut sender, text(&format!("m{i}"))).await;
    }
    let mut receiver = client.receiver("orders", 2).await;
    let first = recv(&mut receiver).await;
    receiver.accept(&first).await.unwrap();
    let second = recv(&mut receiver).await;
    let failed = Modified {
        delivery_failed: Some(true),
        undeliverable_here: None,
        message_annotations: None,
    };
    receiver.modify(&second, failed).await.unwrap();
    receiver.close().await.unwrap();
    client.sync().await;
    client.close().await;

    let broker = restart(broker, "", &dir).await;
    let stats = broker.queue_stats("orders").expect("the queue is back");
    assert_eq!(stats.ready, 9, "{stats:?}");
    let mut client = Client::connect(&broker).await;
    let mut receiver = client.receiver("orders", 20).await;
    let again = recv(&mut receiver).await;
    assert_eq!(again.body(), "m1");
    assert_eq!(
        delivery_count(&again),
        1,
        "the failed delivery is remembered"
    );
    receiver.accept(&again).await.unwrap();
    for i in 2..10 {
        let d = recv(&mut receiver).await;
        assert_eq!(d.body(), &format!("m{i}"));
        assert_eq!(delivery_count(&d), 0);
        receiver.accept(&d).await.unwrap();
    }
    nothing_within(&mut receiver, QUIET).await;
    receiver.close().await.unwrap();
    client.sync().await;
    client.close().await;

    // Consumed everywhere: nothing comes back a second time.
    let broker = restart(broker, "", &dir).await;
    assert_eq!(broker.queue_stats("orders").map(|s| s.ready), Some(0));
    broker.shutdown().await;
}

#[tokio::test]
async fn delayed_messages_dead_letters_and_messages_kept_for_rewind_survive_a_restart() {
    let toml = r#"
        [queues."work"]
        dead_letter_address = "work.dlq"
        rewind_seconds = 600
    "#;
    let dir = fresh_data_dir();
    let broker = start(toml, &dir).await;
    let mut client = Client::connect(&broker).await;
    let mut sender = client.sender("work").await;
    send(&mut sender, text("kept")).await;
    send(&mut sender, text("bad")).await;
    let delay = ("x-opt-delivery-delay", Value::Long(1_500));
    send(&mut sender, annotated("later", &[delay])).await;
    let mut receiver = client.receiver("work", 2).await;
    let kept = recv(&mut receiver).await;
    receiver.accept(&kept).await.unwrap();
    let bad = recv(&mut receiver).await;
    receiver.reject(&bad, None).await.unwrap();
    receiver.close().await.unwrap();
    eventually(&broker, "work", "consumed and rejected", |s| {
        s.retained == 1 && s.dead_lettered == 1 && s.delayed == 1
    })
    .await;
    client.close().await;

    let broker = restart(broker, toml, &dir).await;
    let stats = broker.queue_stats("work").expect("work is back");
    assert_eq!(
        (stats.ready, stats.delayed, stats.retained),
        (0, 1, 1),
        "{stats:?}"
    );
    let mut client = Client::connect(&broker).await;
    // The dead letter, with its annotations.
    let mut dlq = client.receiver("work.dlq", 10).await;
    let dead = recv(&mut dlq).await;
    assert_eq!(dead.body(), "bad");
    assert_eq!(
        annotation(&dead, "x-opt-dead-letter-reason"),
        Some(Value::Symbol("rejected".into()))
    );
    dlq.accept(&dead).await.unwrap();
    // The delayed message, when it is due and not before.
    let mut work = client.receiver("work", 10).await;
    nothing_within(&mut work, Duration::from_millis(300)).await;
    let later = recv(&mut work).await;
    assert_eq!(later.body(), "later");
    work.accept(&later).await.unwrap();
    // The consumed one, kept for rewind, comes back with a rewind.
    let admin = broker.admin_addr().expect("admin listener");
    let answer = support::admin::rewind(admin, "work", r#"{"to": 0}"#).await;
    assert!(
        answer.status == 400,
        "rewinding to 1970 is too early: {answer:?}"
    );
    let an_hour_ago = support::clock::now_ms() / 1000 - 300;
    let answer =
        support::admin::rewind(admin, "work", &format!(r#"{{"to": {an_hour_ago}}}"#)).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let rewound: BTreeSet<String> = [recv(&mut work).await, recv(&mut work).await]
        .iter()
        .map(|d| d.body().clone())
        .collect();
    assert!(rewound.contains("kept"), "{rewound:?}");
    client.close().await;
    broker.shutdown().await;
}

#[tokio::test]
async fn non_durable_messages_and_queues_are_not_kept() {
    let toml = "[queues.\"scratch.#\"]\ndurable = false\n";
    let dir = fresh_data_dir();
    let broker = start(toml, &dir).await;
    let mut client = Client::connect(&broker).await;
    let mut sender = client.sender("mixed").await;
    let transient: Msg = Message::builder()
        .header(Header {
            durable: false,
            ..Header::default()
        })
        .value("transient".to_owned())
        .build();
    send(&mut sender, transient).await;
    send(&mut sender, text("durable")).await;
    let mut scratch = client.sender("scratch.a").await;
    send(&mut scratch, text("in memory")).await;
    client.close().await;

    let broker = restart(broker, toml, &dir).await;
    assert!(
        broker.queue_stats("scratch.a").is_none(),
        "non-durable queue is gone"
    );
    let mut client = Client::connect(&broker).await;
    assert_eq!(drain(&mut client, "mixed").await, ["durable"]);
    client.close().await;
    broker.shutdown().await;
}

#[tokio::test]
async fn a_second_broker_on_the_same_data_directory_is_refused() {
    let dir = fresh_data_dir();
    let broker = start("", &dir).await;
    let second = Broker::start(config("", &dir)).await;
    let error = second.err().expect("refused").to_string();
    assert!(error.contains("in use by another sluice"), "{error}");
    assert!(error.contains(&dir.display().to_string()), "{error}");
    broker.shutdown().await;
}

/// A broker whose journal lives on `fs`.
async fn start_on(fs: &SimFs, sync: &str) -> BrokerHandle {
    let toml = format!("[storage]\nsync = \"{sync}\"\n");
    let config = config(&toml, &PathBuf::from("/sim/data"));
    tokio::time::timeout(WAIT, Broker::start_on(config, Arc::new(fs.clone())))
        .await
        .expect("start timed out")
        .expect("broker starts")
}

#[tokio::test]
async fn a_failed_fsync_fences_the_store_and_consumers_are_still_served() {
    let fs = SimFs::new();
    let broker = start_on(&fs, "batch").await;
    let mut client = Client::connect(&broker).await;
    let mut sender = client.sender("q").await;
    send(&mut sender, text("before")).await;
    fs.fail_next(FaultOp::Sync, std::io::ErrorKind::Other);
    for body in ["failed", "after"] {
        let outcome = sender.send(text(body)).await.unwrap();
        let Outcome::Rejected(rejected) = outcome else {
            panic!("expected a rejection, got {outcome:?}");
        };
        let error = rejected.error.expect("an error");
        assert_eq!(
            format!("{:?}", error.condition),
            "AmqpError(InternalError)",
            "{error:?}"
        );
        let description = error.description.unwrap_or_default();
        assert!(description.contains("not stored"), "{description}");
    }
    // What was accepted before is still served from memory.
    let mut receiver = client.receiver("q", 10).await;
    let got = recv(&mut receiver).await;
    assert_eq!(got.body(), "before");
    client.close().await;
    broker.shutdown().await;
}

/// Streams numbered messages from `producers` concurrent links until `stop` is set,
/// recording each one the broker accepted.
async fn produce(
    broker: &BrokerHandle,
    producers: usize,
    accepted: Arc<Mutex<BTreeSet<String>>>,
    enough: usize,
) {
    let mut tasks = Vec::new();
    for p in 0..producers {
        let mut client = Client::connect(broker).await;
        let mut sender: Sender = client.sender("power").await;
        let accepted = accepted.clone();
        tasks.push(tokio::spawn(async move {
            for n in 0.. {
                let body = format!("p{p}-{n}");
                match tokio::time::timeout(WAIT, sender.send(text(&body))).await {
                    Ok(Ok(outcome)) if outcome.is_accepted() => {
                        let mut set = accepted.lock().unwrap();
                        set.insert(body);
                        if set.len() >= enough {
                            break;
                        }
                    }
                    _ => break,
                }
            }
            drop(sender);
            drop(client);
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

/// Sends until `enough` are accepted, cuts the power, starts a new broker on what the disk
/// kept and returns (accepted, recovered).
async fn power_cut(sync: &str, enough: usize) -> (BTreeSet<String>, BTreeSet<String>) {
    let fs = SimFs::new();
    let broker = start_on(&fs, sync).await;
    let accepted = Arc::new(Mutex::new(BTreeSet::new()));
    produce(&broker, 4, accepted.clone(), enough).await;
    // Power goes with the broker running: every write not fsynced is lost.
    fs.crash();
    broker.shutdown().await;
    let broker = start_on(&fs, sync).await;
    let mut client = Client::connect(&broker).await;
    let recovered: BTreeSet<String> = drain(&mut client, "power").await.into_iter().collect();
    client.close().await;
    broker.shutdown().await;
    let accepted = accepted.lock().unwrap().clone();
    (accepted, recovered)
}

#[tokio::test]
async fn no_accepted_message_is_lost_in_a_power_loss() {
    let (accepted, recovered) = power_cut("batch", 400).await;
    assert!(accepted.len() >= 400);
    let lost: Vec<&String> = accepted.difference(&recovered).collect();
    assert!(
        lost.is_empty(),
        "lost {} accepted messages: {:?}",
        lost.len(),
        &lost[..lost.len().min(20)]
    );
}

/// The test above is not vacuous: a broker that accepts before fsync (sync = "never") loses
/// accepted messages when the power goes.
#[tokio::test]
async fn accepting_before_fsync_loses_messages_in_a_power_loss() {
    let (accepted, recovered) = power_cut("never", 400).await;
    let lost = accepted.difference(&recovered).count();
    assert!(lost > 0, "sync = never lost nothing of {}", accepted.len());
}

#[tokio::test]
async fn compaction_frees_old_segments_and_keeps_exactly_the_live_messages() {
    let dir = fresh_data_dir();
    let mut config = config("", &dir);
    config.storage.segment_size = 16384;
    let broker = support::broker::start(config.clone()).await.0;
    let mut client = Client::connect(&broker).await;
    // One message that stays, in the first segment, then many that are consumed.
    let mut keep = client.sender("keep").await;
    send(&mut keep, text("old")).await;
    let mut sender = client.sender("churn").await;
    for i in 0..800 {
        send(&mut sender, text(&format!("{i:0>90}"))).await;
    }
    let consumed = drain(&mut client, "churn").await;
    assert_eq!(consumed.len(), 800);
    send(&mut keep, text("new")).await;
    // The first segment is kept alive by "old" alone until compaction moves it forward.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while broker.journal().live_counts()[0].0 == 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never compacted: {:?}",
            broker.journal().live_counts()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Dead segments go after a write batch or on the writer's idle tick, which a loaded
    // machine may delay past the moment compaction is seen: wait for it, bounded.
    while broker.journal().live_counts().len() > 4 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "dead segments were not deleted: {:?}",
            broker.journal().live_counts()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    client.close().await;
    broker.shutdown().await;
    let broker = support::broker::start(config).await.0;
    let mut client = Client::connect(&broker).await;
    assert_eq!(drain(&mut client, "keep").await, ["old", "new"]);
    assert!(drain(&mut client, "churn").await.is_empty());
    client.close().await;
    broker.shutdown().await;
}

#[tokio::test]
async fn the_journal_reports_fsync_latency_and_batches_in_metrics() {
    let dir = fresh_data_dir();
    let broker = start("", &dir).await;
    let mut client = Client::connect(&broker).await;
    let mut sender = client.sender("m").await;
    for i in 0..20 {
        send(&mut sender, text(&format!("m{i}"))).await;
    }
    let admin = broker.admin_addr().expect("admin listener");
    let answer = support::http::request(admin, "GET", "/metrics", None, None).await;
    assert_eq!(answer.status, 200);
    let metrics = support::admin::scrape(&answer.body);
    let value = |name: &str| {
        metrics
            .get(&(name.to_owned(), String::new()))
            .copied()
            .unwrap_or_else(|| panic!("no {name} in {}", answer.body))
    };
    assert!(value("sluice_journal_confirmed_total") >= 20.0);
    let batches = value("sluice_journal_batches_total");
    assert!(batches >= 1.0 && batches <= value("sluice_journal_records_total"));
    assert!(
        value("sluice_journal_fsync_seconds") >= 1.0,
        "fsyncs observed"
    );
    assert_eq!(value("sluice_journal_fenced"), 0.0);
    client.close().await;
    broker.shutdown().await;
}
