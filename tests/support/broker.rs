//! Starting an in-process broker for a test.

use std::time::Duration;

use sluice::config::User;
use sluice::{Broker, BrokerHandle, Config};

/// A config listening on ephemeral loopback ports (AMQP and admin), otherwise the embedded
/// default.
pub fn test_config() -> Config {
    let mut config = Config {
        listen: vec!["127.0.0.1:0".parse().expect("loopback address")],
        ..Config::default()
    };
    config.admin.listen = "127.0.0.1:0".parse().expect("loopback address");
    config
}

/// Starts a broker whose configuration is `toml` (usually `[queues.*]` tables), on ephemeral
/// loopback ports like [`test_config`].
pub async fn start_with_toml(toml: &str) -> BrokerHandle {
    let config = Config::from_toml(toml, "test.toml").expect("valid test config");
    let config = Config {
        listen: test_config().listen,
        admin: test_config().admin,
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
            roles: vec!["admin".into()],
        },
        User {
            name: "app".into(),
            password: app_password.into(),
            roles: vec![],
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
