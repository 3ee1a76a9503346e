//! Interop with rhea, the AMQP 1.0 client Node.js users have: the scripts of `tests/rhea/`
//! against an in-process broker.

#![allow(clippy::unwrap_used)] // a test, bench or tool: a panic here is a failed run, not a broker down

mod support;

use support::broker::{start, test_config};
use support::rhea;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rhea_subscribes_to_topic_and_fanout_exchanges_with_binding_filters() {
    let (broker, url) = start(test_config()).await;
    let addr = url.trim_start_matches("amqp://").to_owned();
    let output = tokio::task::spawn_blocking(move || rhea::run("topics.js", &[&addr]))
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "rhea failed:\n{stdout}\n{stderr}");
    assert_eq!(
        stdout,
        "log.*: log.info log.error\n\
         #.error: log.error mq.log.error\n\
         all: log.info log.error mq.log.error kern.warn\n\
         fanout: to all\n\
         unroutable: released\n"
    );
    broker.shutdown().await;
}
