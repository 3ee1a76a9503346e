//! What a peer can make the broker log. It cannot forge log lines (issue 12 §7): a SASL user
//! name and a container-id holding a newline and a terminal escape reach the log escaped, on
//! the line they belong to. Nor flood it (issue 16): failed logins are logged once, then
//! summarised.
//!
//! The broker runs on this test's thread (a current-thread runtime), so the subscriber set
//! for the thread sees everything the connection tasks log.

#![allow(clippy::unwrap_used)] // a test, bench or tool: a panic here is a failed run, not a broker down

mod support;

use std::sync::{Arc, Mutex};

use fe2o3_amqp::sasl_profile::SaslProfile;
use fe2o3_amqp::Connection;

use sluice::config::User;
use support::broker::{start, test_config};
use support::raw::RawPeer;

/// What the subscriber wrote.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        let bytes = self.0.lock().expect("not poisoned").clone();
        String::from_utf8(bytes).expect("the log is UTF-8")
    }
}

/// The tail every forged string carries: a line of its own, then "clear the screen".
const FORGED: &str = "\nERROR forged line\x1b[2J";

/// Captures what the broker logs on this thread, with the subscriber `sluice` installs: the
/// escaping field formatter, plain text.
fn capture() -> (Captured, tracing::subscriber::DefaultGuard) {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .fmt_fields(sluice::log_fields())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || writer.clone())
        .finish();
    (captured, tracing::subscriber::set_default(subscriber))
}

#[tokio::test]
async fn user_names_and_container_ids_are_logged_escaped() {
    let (captured, _guard) = capture();

    let mut config = test_config();
    config.users = vec![User {
        name: "app".into(),
        password: "secret".into(),
        password_hash: None,
        roles: vec![],
        ..Default::default()
    }];
    config.auth.failure_delay_ms = 0;
    let (broker, url) = start(config).await;

    let user = format!("mallory{FORGED}");
    let refused = Connection::builder()
        .container_id("log-test")
        .sasl_profile(SaslProfile::Plain {
            username: user,
            password: "wrong".into(),
        })
        .open(url.as_str())
        .await;
    assert!(refused.is_err(), "a wrong password was accepted");

    let container_id = format!("client{FORGED}");
    let peer = RawPeer::opened(broker.local_addrs()[0], &container_id).await;
    drop(peer);
    broker.shutdown().await;

    let log = captured.text();
    let escaped = r"\nERROR forged line\u{1b}[2J";
    assert!(
        log.contains(&format!("mallory{escaped}")),
        "the user name is not in the log, escaped:\n{log}"
    );
    assert!(
        log.contains(&format!("client{escaped}")),
        "the container-id is not in the log, escaped:\n{log}"
    );
    assert!(
        !log.contains('\x1b'),
        "a terminal escape reached the log:\n{log}"
    );
    for line in log.lines() {
        assert!(
            line.starts_with(|c: char| c.is_ascii_digit()),
            "a line that does not start with a timestamp: {line:?}\n{log}"
        );
    }
}

#[tokio::test]
async fn failed_logins_are_logged_once_then_summarised() {
    let (captured, _guard) = capture();
    let mut config = test_config();
    config.users = vec![User {
        name: "app".into(),
        password: "secret".into(),
        ..Default::default()
    }];
    config.auth.failure_delay_ms = 0;
    let (broker, url) = start(config).await;
    for i in 0..8 {
        let refused = Connection::builder()
            .container_id("guesser")
            .sasl_profile(SaslProfile::Plain {
                username: format!("user{}", i % 2),
                password: "guess".into(),
            })
            .open(url.as_str())
            .await;
        assert!(refused.is_err(), "a wrong password was accepted");
    }
    // The summary task looks every 5 s.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while !captured.text().contains("failed logins and") && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    broker.shutdown().await;
    let log = captured.text();
    assert_eq!(log.matches("login failed").count(), 1, "{log}");
    let summary = log
        .lines()
        .find(|l| l.contains("failed logins and"))
        .unwrap_or_else(|| panic!("no summary line:\n{log}"));
    assert!(
        summary.contains("8 failed logins and 0 refused unchecked"),
        "{summary}"
    );
    assert!(summary.contains("127.0.0.1 (8)"), "{summary}");
    assert!(summary.contains("'user0' (4), 'user1' (4)"), "{summary}");
}
