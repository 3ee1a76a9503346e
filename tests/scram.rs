//! SASL SCRAM-SHA-256, black-box with fe2o3-amqp's SCRAM client (which checks the broker's
//! server signature too): logins with a clear password and with SCRAM keys from `sluice
//! hash-password --scram` (which PLAIN accepts as well), a wrong password refused like any
//! failed login, and the mechanism left out while an account has an Argon2 hash it cannot use.

#![allow(clippy::unwrap_used)] // a test, bench or tool: a panic here is a failed run, not a broker down

mod support;

use std::time::Duration;

use fe2o3_amqp::connection::OpenError;
use fe2o3_amqp::sasl_profile::{SaslProfile, SaslScramSha256};
use fe2o3_amqp::types::sasl::{SaslCode, SaslMechanisms};
use fe2o3_amqp::{Connection, Sender, Session};
use sluice::config::password::{hash_password, hash_password_scram};
use sluice::BrokerHandle;
use support::raw::RawPeer;

const STEP: Duration = Duration::from_secs(10);

async fn start(users: &[(&str, &str)]) -> BrokerHandle {
    let mut toml = String::from("[auth]\nfailure_delay_ms = 50\n");
    for (name, credential) in users {
        toml.push_str(&format!("[[users]]\nname = \"{name}\"\n{credential}\n"));
    }
    support::broker::start_with_toml(&toml).await
}

async fn login(broker: &BrokerHandle, profile: SaslProfile) -> Result<(), OpenError> {
    let url = format!("amqp://{}", broker.local_addrs()[0]);
    let mut connection = tokio::time::timeout(
        STEP,
        Connection::builder()
            .container_id("scram")
            .sasl_profile(profile)
            .open(url.as_str()),
    )
    .await
    .expect("login in time")?;
    let mut session = Session::begin(&mut connection).await.unwrap();
    let mut sender = Sender::attach(&mut session, "s", "scram.q").await.unwrap();
    sender.send("logged in").await.unwrap();
    sender.close().await.unwrap();
    connection.close().await.unwrap();
    Ok(())
}

fn scram(user: &str, password: &str) -> SaslProfile {
    SaslScramSha256::new(user, password).into()
}

/// The mechanisms the broker offers a loopback peer.
async fn mechanisms(broker: &BrokerHandle) -> Vec<String> {
    let mut peer = RawPeer::connect(broker.local_addrs()[0]).await;
    peer.send(b"AMQP\x03\x01\x00\x00").await;
    assert_eq!(&peer.read_header().await, b"AMQP\x03\x01\x00\x00");
    let frame = peer.read_frame().await.expect("sasl-mechanisms");
    let mechanisms: SaslMechanisms = serde_amqp::from_slice(&frame.body).unwrap();
    mechanisms
        .sasl_server_mechanisms
        .0
        .iter()
        .map(|m| m.as_str().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_logs_in_with_a_clear_password_and_with_scram_keys() {
    let keys = hash_password_scram("pencil").unwrap();
    let broker = start(&[
        ("clear", "password = \"secret\""),
        ("hashed", &format!("password_hash = \"{keys}\"")),
    ])
    .await;
    assert_eq!(mechanisms(&broker).await, ["SCRAM-SHA-256", "PLAIN"]);
    login(&broker, scram("clear", "secret")).await.unwrap();
    login(&broker, scram("hashed", "pencil")).await.unwrap();
    // SCRAM keys serve PLAIN too.
    let plain = SaslProfile::Plain {
        username: "hashed".into(),
        password: "pencil".into(),
    };
    login(&broker, plain).await.unwrap();
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_or_an_unknown_user_gets_auth_failure() {
    let broker = start(&[("clear", "password = \"secret\"")]).await;
    for profile in [scram("clear", "wrong"), scram("nobody", "secret")] {
        match login(&broker, profile).await {
            Err(OpenError::SaslError { code, .. }) => assert_eq!(code, SaslCode::Auth),
            other => panic!("expected a failed login, got {other:?}"),
        }
    }
    // The broker still serves the right password afterwards.
    login(&broker, scram("clear", "secret")).await.unwrap();
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_is_not_offered_while_an_account_has_an_argon2_hash() {
    // Qpid JMS picks the strongest mechanism offered: SCRAM would lock `argon` out.
    let argon = hash_password("secret").unwrap();
    let broker = start(&[
        ("clear", "password = \"secret\""),
        ("argon", &format!("password_hash = \"{argon}\"")),
    ])
    .await;
    assert_eq!(mechanisms(&broker).await, ["PLAIN"]);
    let plain = SaslProfile::Plain {
        username: "argon".into(),
        password: "secret".into(),
    };
    login(&broker, plain).await.unwrap();
    broker.shutdown().await;
}
