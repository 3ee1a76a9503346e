//! Starting an in-process broker for a test.

use std::time::Duration;

use sluice::{Broker, BrokerHandle, Config};

/// A config listening on an ephemeral loopback port, otherwise the embedded default.
pub fn test_config() -> Config {
    Config {
        listen: vec!["127.0.0.1:0".parse().expect("loopback address")],
        ..Config::default()
    }
}

/// Starts a broker with `config`; returns it and its `amqp://` URL.
pub async fn start(config: Config) -> (BrokerHandle, String) {
    // RUST_LOG=debug cargo test ... shows the broker's log for a failing test.
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
    let broker = tokio::time::timeout(Duration::from_secs(10), Broker::start(config))
        .await
        .expect("broker start timed out")
        .expect("broker starts");
    let url = format!("amqp://{}", broker.local_addrs()[0]);
    (broker, url)
}
