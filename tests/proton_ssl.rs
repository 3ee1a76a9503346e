//! The seed's SSL example (Example 3.5 of qpid-proton-python-client.txt, and its receiver) over
//! `amqps` against an in-process broker, with certificates made by the repository's own
//! `scripts/make-test-certs.sh`: the client trusts the CA, checks the server's name, and logs
//! in with its certificate (SASL EXTERNAL, its key encrypted with a password as in the seed).

#![allow(clippy::unwrap_used)] // a test, bench or tool: a panic here is a failed run, not a broker down

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::proton;

const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);
const MESSAGES: usize = 100;

#[tokio::test]
async fn the_seed_ssl_example_sends_and_receives_with_a_client_certificate() {
    let python = tokio::task::spawn_blocking(proton::python).await.unwrap();
    let ssl = Command::new(&python)
        .args([
            "-c",
            "import proton, sys; sys.exit(0 if proton.SSL.present() else 1)",
        ])
        .status()
        .unwrap();
    assert!(
        ssl.success(),
        "python-qpid-proton was built without SSL: install libssl-dev and remove target/proton-venv"
    );
    let certs = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/make-test-certs.sh");
    let made = Command::new(&script)
        .arg(certs.path())
        .output()
        .expect("run scripts/make-test-certs.sh (needs openssl)");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let file = |name: &str| certs.path().join(name).display().to_string();
    // Only the certificate logs in: no anonymous access, and the one user has no password.
    let toml = format!(
        "[tls]\nlisten = [\"127.0.0.1:0\"]\ncert = \"{}\"\nkey = \"{}\"\nclient_ca = \"{}\"\n\
         client_auth = \"required\"\n[[users]]\nname = \"example\"\ncertificate_cn = \"client\"\n",
        file("server.pem"),
        file("server.key"),
        file("ca.pem"),
    );
    let mut config = sluice::Config::from_toml(&toml, "test.toml").unwrap();
    let defaults = support::broker::test_config();
    config.listen = defaults.listen;
    config.admin.listen = defaults.admin.listen;
    config.data_dir = defaults.data_dir;
    config.storage = defaults.storage;
    let broker = sluice::Broker::start(config).await.unwrap();
    // The server certificate names localhost: VERIFY_PEER_NAME checks it.
    let url = format!(
        "amqps://localhost:{}/examples",
        broker.tls_addrs()[0].port()
    );
    let args = |url: &str| {
        vec![
            "-a".to_owned(),
            url.to_owned(),
            "-m".to_owned(),
            MESSAGES.to_string(),
            "--ca".to_owned(),
            file("ca.pem"),
            "--cert".to_owned(),
            file("client.pem"),
            "--key".to_owned(),
            file("client.key"),
            "--password".to_owned(),
            "client-password".to_owned(),
        ]
    };
    let run = |script: &'static str, args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            proton::run_example(script, &args, SCRIPT_TIMEOUT)
        })
    };
    let sent = run("ssl_send.py", args(&url)).await.unwrap();
    assert_eq!(sent.assert_success(), "all messages confirmed\n");
    let received = run("ssl_recv.py", args(&url)).await.unwrap();
    let expected: String = (1..=MESSAGES)
        .map(|n| format!("{{'sequence': {n}}}\n"))
        .collect();
    assert_eq!(received.assert_success(), expected);
    let stats = broker.queue_stats("examples").unwrap();
    assert_eq!(stats.ready, 0);
    broker.shutdown().await;
}
