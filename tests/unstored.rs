//! `rejected` means not stored (issue 12 §5): a durable message whose journal write fails is
//! taken out of the queue before its producer hears `rejected`, so no consumer receives it
//! afterwards; with `[storage] deliver_after_sync = true` no consumer sees a durable message
//! before its record is on disk at all.
//!
//! The journal runs on the simulated disk, whose next fsync is made to fail.

#![allow(clippy::unwrap_used)] // a test, bench or tool: a panic here is a failed run, not a broker down

mod support;

use std::path::PathBuf;
use std::sync::Arc;

use fe2o3_amqp::types::messaging::Outcome;
use fe2o3_amqp::types::primitives::Value;
use fe2o3_amqp::Sender;
use sluice::testing::{FaultOp, SimFs};
use sluice::{Broker, BrokerHandle, Config};
use support::time::{annotated, nothing_within, recv, send, text, Client, Msg, QUIET, WAIT};

async fn start_on(fs: &SimFs, storage_toml: &str) -> BrokerHandle {
    let parsed = Config::from_toml(&format!("[storage]\n{storage_toml}"), "test.toml")
        .expect("valid test config");
    let mut config = support::broker::test_config();
    config.data_dir = PathBuf::from("/sim/data");
    config.storage = parsed.storage;
    tokio::time::timeout(WAIT, Broker::start_on(config, Arc::new(fs.clone())))
        .await
        .expect("start timed out")
        .expect("broker starts")
}

/// Sends `message` and expects `rejected` with amqp:internal-error.
async fn send_rejected(sender: &mut Sender, message: Msg) {
    let outcome = sender.send(message).await.expect("an outcome");
    let Outcome::Rejected(rejected) = outcome else {
        panic!("expected a rejection, got {outcome:?}");
    };
    let error = rejected.error.expect("an error");
    let description = error.description.unwrap_or_default();
    assert!(description.contains("not stored"), "{description}");
}

#[tokio::test]
async fn a_message_whose_write_failed_is_never_delivered() {
    let fs = SimFs::new();
    let broker = start_on(&fs, "").await;
    let mut client = Client::connect(&broker).await;
    let mut sender = client.sender("q").await;
    send(&mut sender, text("before")).await;
    fs.fail_next(FaultOp::Sync, std::io::ErrorKind::Other);
    send_rejected(&mut sender, text("failed")).await;

    let mut receiver = client.receiver("q", 10).await;
    assert_eq!(recv(&mut receiver).await.body(), "before");
    nothing_within(&mut receiver, QUIET).await;
    let stats = broker.queue_stats("q").expect("the queue exists");
    assert_eq!(stats.unstored, 1, "{stats:?}");
    client.close().await;
    broker.shutdown().await;
}

#[tokio::test]
async fn after_sync_a_waiting_consumer_never_sees_a_message_whose_write_failed() {
    let fs = SimFs::new();
    let broker = start_on(&fs, "deliver_after_sync = true\n").await;
    let mut client = Client::connect(&broker).await;
    let mut sender = client.sender("q").await;
    // The consumer waits with credit, so a message would go to it the moment it is ready.
    let mut receiver = client.receiver("q", 10).await;
    send(&mut sender, text("stored")).await;
    assert_eq!(recv(&mut receiver).await.body(), "stored");

    fs.fail_next(FaultOp::Sync, std::io::ErrorKind::Other);
    send_rejected(&mut sender, text("failed")).await;
    nothing_within(&mut receiver, QUIET).await;
    client.close().await;
    broker.shutdown().await;
}

#[tokio::test]
async fn after_sync_delayed_messages_still_wait_for_their_time() {
    let fs = SimFs::new();
    let broker = start_on(&fs, "deliver_after_sync = true\n").await;
    let mut client = Client::connect(&broker).await;
    let mut sender = client.sender("q").await;
    let mut receiver = client.receiver("q", 10).await;
    let delayed = annotated("later", &[("x-opt-delivery-delay", Value::Long(300))]);
    send(&mut sender, delayed).await;
    send(&mut sender, text("now")).await;
    assert_eq!(recv(&mut receiver).await.body(), "now");
    nothing_within(&mut receiver, QUIET).await;
    assert_eq!(recv(&mut receiver).await.body(), "later");
    client.close().await;
    broker.shutdown().await;
}
