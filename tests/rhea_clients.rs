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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rhea_connects_over_tls_and_logs_in_with_its_certificate() {
    let certs = support::certs::Certs::new();
    let ca = certs.path("ca.pem").display().to_string();
    let extra =
        format!("client_ca = \"{ca}\"\n[[users]]\nname = \"node\"\ncertificate_cn = \"client\"\n");
    let broker = support::broker::start_with_toml(&certs.tls_toml(&extra)).await;
    let addr = broker.tls_addrs()[0].to_string();
    // With users configured and anonymous access off, only EXTERNAL logs in: rhea trusts the
    // CA, checks the server's name and shows its certificate.
    let args = [
        addr,
        ca,
        certs.path("client.pem").display().to_string(),
        certs.path("client.key").display().to_string(),
    ];
    let output = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        rhea::run("tls.js", &args)
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "rhea failed:\n{stdout}\n{stderr}");
    assert_eq!(stdout, "accepted 20\nreceived 20, last: over tls 19\n");
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rhea_connects_over_websocket_and_secure_websocket() {
    let certs = support::certs::Certs::new();
    let ca = certs.path("ca.pem").display().to_string();
    let extra = "[websocket]\nlisten = [\"127.0.0.1:0\"]\ntls_listen = [\"127.0.0.1:0\"]\npath = \"/amqp\"\n";
    let broker = support::broker::start_with_toml(&certs.tls_toml(extra)).await;
    let ws = format!("ws://127.0.0.1:{}/amqp", broker.websocket_addrs()[0].port());
    // The certificate names localhost, which Node checks against the URL's host.
    let wss = format!(
        "wss://localhost:{}/amqp",
        broker.secure_websocket_addrs()[0].port()
    );
    for args in [vec![ws], vec![wss, ca.clone()]] {
        let output = tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            rhea::run("websocket.js", &args)
        })
        .await
        .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "rhea failed:\n{stdout}\n{stderr}");
        assert_eq!(
            stdout,
            "accepted 20\nreceived 20, last: over websocket 19\n"
        );
    }
    broker.shutdown().await;
}
