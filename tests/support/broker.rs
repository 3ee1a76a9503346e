//! Starting an in-process broker for a test.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Once;
use std::time::Duration;

use sluice::config::User;
use sluice::{Broker, BrokerHandle, Config};

/// A config listening on ephemeral loopback ports (AMQP and admin), with a data directory
/// of its own, otherwise the embedded default.
pub fn test_config() -> Config {
    let mut config = Config {
        listen: vec!["127.0.0.1:0".parse().expect("loopback address")],
        data_dir: fresh_data_dir(),
        ..Config::default()
    };
    config.admin.listen = "127.0.0.1:0".parse().expect("loopback address");
    // Test machines may have little free disk; the floor is tested on a simulated disk.
    config.storage.min_free_bytes = 0;
    config.storage.segment_size = 4 * 1024 * 1024;
    config
}

/// A new, empty data directory under the target directory. Directories left by earlier test
/// processes that have exited are removed first (once per process).
pub fn fresh_data_dir() -> PathBuf {
    static CLEANED: Once = Once::new();
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("sluice-data");
    CLEANED.call_once(|| {
        for entry in std::fs::read_dir(&root).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let pid = name.split('-').next().unwrap_or_default();
            if !Path::new("/proc").join(pid).exists() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    });
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = root.join(format!("{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a test data directory");
    dir
}

/// Starts a broker whose configuration is `toml` (usually `[queues.*]` tables), on ephemeral
/// loopback ports like [`test_config`].
pub async fn start_with_toml(toml: &str) -> BrokerHandle {
    let config = Config::from_toml(toml, "test.toml").expect("valid test config");
    let defaults = test_config();
    let config = Config {
        listen: defaults.listen,
        admin: defaults.admin,
        data_dir: defaults.data_dir,
        storage: defaults.storage,
        ..config
    };
    start(config).await.0
}

/// Two accounts: `ops` with the admin role and `app` without, with these passwords.
pub fn ops_and_app_users(ops_password: &str, app_password: &str) -> Vec<User> {
    vec![
        User {
            name: "ops".into(),
            password: ops_password.into(),
            password_hash: None,
            roles: vec!["admin".into()],
            ..Default::default()
        },
        User {
            name: "app".into(),
            password: app_password.into(),
            password_hash: None,
            roles: vec![],
            ..Default::default()
        },
    ]
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

/// Waits for the broker to close `connection` and checks it said `amqp:connection:forced`.
pub async fn assert_closed_with_connection_forced(
    connection: &mut fe2o3_amqp::connection::ConnectionHandle<()>,
) {
    use fe2o3_amqp::connection;
    use fe2o3_amqp::types::definitions::{ConnectionError, ErrorCondition};
    let closed = tokio::time::timeout(Duration::from_secs(10), connection.on_close())
        .await
        .expect("the broker did not close the connection");
    match closed {
        Err(connection::Error::RemoteClosedWithError(error)) => assert_eq!(
            error.condition,
            ErrorCondition::ConnectionError(ConnectionError::ConnectionForced),
            "{error:?}"
        ),
        other => panic!("expected a close with amqp:connection:forced, got {other:?}"),
    }
}

/// Everything `receiver` gets within a short wait, in order, each accepted.
pub async fn drain(receiver: &mut fe2o3_amqp::Receiver) -> Vec<String> {
    let mut got = Vec::new();
    while let Ok(Ok(d)) =
        tokio::time::timeout(Duration::from_millis(300), receiver.recv::<String>()).await
    {
        receiver.accept(&d).await.unwrap();
        got.push(d.body().clone());
    }
    got
}
