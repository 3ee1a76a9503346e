//! Authentication, black-box: a real broker on a loopback port and the fe2o3-amqp client.
//!
//! Over loopback every peer is local, so these tests cover the default "safe like RabbitMQ's
//! guest user" policy as a local client sees it: ANONYMOUS and PLAIN accepted, wrong
//! credentials refused after `auth.failure_delay_ms` with a `sasl-outcome` that does not say
//! which part was wrong. What a remote peer is allowed is tested beside the policy, in
//! `src/transport/handshake.rs`.

#![allow(clippy::unwrap_used)] // a test, bench or tool: a panic here is a failed run, not a broker down

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use fe2o3_amqp::connection::{ConnectionHandle, OpenError};
use fe2o3_amqp::sasl_profile::SaslProfile;
use fe2o3_amqp::types::primitives::{Binary, Symbol};
use fe2o3_amqp::types::sasl::{SaslCode, SaslInit, SaslMechanisms, SaslOutcome};
use fe2o3_amqp::{Connection, Receiver, Sender, Session};
use sluice::config::{Exposure, User};
use sluice::{Broker, BrokerHandle, Config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Limit on anything that should be quick, so a hang fails the test instead of stalling it.
const STEP: Duration = Duration::from_secs(10);
/// Kept short so the tests are quick, but long enough to measure.
const FAILURE_DELAY_MS: u64 = 300;

const AMQP_HEADER: [u8; 8] = *b"AMQP\x00\x01\x00\x00";
const SASL_HEADER: [u8; 8] = *b"AMQP\x03\x01\x00\x00";

/// A broker on an ephemeral loopback port with one user, `app` / `secret`, and a short
/// failure delay; `adjust` changes anything else before it starts.
async fn start(adjust: impl FnOnce(&mut Config)) -> (BrokerHandle, String) {
    let mut config = Config {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        users: vec![User {
            name: "app".into(),
            password: "secret".into(),
            password_hash: None,
            roles: vec![],
            ..Default::default()
        }],
        ..support::broker::test_config()
    };
    config.auth.failure_delay_ms = FAILURE_DELAY_MS;
    config.admin.listen = "127.0.0.1:0".parse().unwrap();
    adjust(&mut config);
    let broker = tokio::time::timeout(STEP, Broker::start(config))
        .await
        .expect("broker start timed out")
        .expect("broker starts");
    let url = format!("amqp://{}", broker.local_addrs()[0]);
    (broker, url)
}

async fn stop(broker: BrokerHandle) {
    tokio::time::timeout(STEP, broker.shutdown())
        .await
        .expect("broker shutdown timed out");
}

fn plain(username: &str, password: &str) -> SaslProfile {
    SaslProfile::Plain {
        username: username.into(),
        password: password.into(),
    }
}

/// Opens a connection with `profile`, or without SASL when it is `None`.
async fn open(url: &str, profile: Option<SaslProfile>) -> Result<ConnectionHandle<()>, OpenError> {
    let builder = Connection::builder().container_id("auth-test");
    match profile {
        Some(profile) => builder.sasl_profile(profile).open(url).await,
        None => builder.open(url).await,
    }
}

/// Opens with `profile` and returns the error, with how long the broker took to give it.
async fn refused(url: &str, profile: SaslProfile) -> (OpenError, Duration) {
    let started = Instant::now();
    let result = tokio::time::timeout(STEP, open(url, Some(profile)))
        .await
        .expect("open timed out");
    match result {
        Ok(_) => panic!("the broker accepted the login"),
        Err(e) => (e, started.elapsed()),
    }
}

fn assert_sasl_auth_failure(error: &OpenError) {
    match error {
        OpenError::SaslError {
            code: SaslCode::Auth,
            additional_data: None,
        } => {}
        other => panic!("expected sasl-outcome auth without additional data, got {other:?}"),
    }
}

/// Sends one message to `queue` and receives it back on the same connection.
async fn round_trip(connection: &mut ConnectionHandle<()>, queue: &str, body: &str) {
    let mut session = Session::begin(connection).await.expect("session begins");
    let mut sender = Sender::attach(&mut session, "auth-sender", queue)
        .await
        .expect("sender attaches");
    let outcome = sender.send(body.to_owned()).await.expect("send completes");
    outcome.accepted_or_else(|o| o).expect("message accepted");
    let mut receiver = Receiver::attach(&mut session, "auth-receiver", queue)
        .await
        .expect("receiver attaches");
    let delivery = tokio::time::timeout(STEP, receiver.recv::<String>())
        .await
        .expect("receive timed out")
        .expect("a delivery");
    assert_eq!(delivery.body(), body);
    receiver.accept(&delivery).await.expect("accept");
    sender.close().await.expect("sender detaches");
    receiver.close().await.expect("receiver detaches");
    session.end().await.expect("session ends");
}

#[tokio::test]
async fn anonymous_works_from_loopback_by_default() {
    let (broker, url) = start(|_| {}).await;
    let mut connection = open(&url, Some(SaslProfile::Anonymous))
        .await
        .expect("anonymous login from loopback");
    round_trip(&mut connection, "auth.anonymous", "hello").await;
    connection.close().await.expect("clean close");
    stop(broker).await;
}

#[tokio::test]
async fn a_configured_user_logs_in_with_plain_and_can_send_and_receive() {
    let (broker, url) = start(|_| {}).await;
    let mut connection = open(&url, Some(plain("app", "secret")))
        .await
        .expect("PLAIN login as a configured user");
    round_trip(&mut connection, "auth.plain", "hello from app").await;
    connection.close().await.expect("clean close");
    stop(broker).await;
}

#[tokio::test]
async fn a_wrong_password_is_refused_with_sasl_auth_after_the_failure_delay() {
    let (broker, url) = start(|_| {}).await;
    let (error, elapsed) = refused(&url, plain("app", "wrong")).await;
    assert_sasl_auth_failure(&error);
    assert!(
        elapsed >= Duration::from_millis(FAILURE_DELAY_MS),
        "refused after {elapsed:?}, before auth.failure_delay_ms"
    );
    stop(broker).await;
}

#[tokio::test]
async fn an_unknown_user_is_refused_exactly_like_a_wrong_password() {
    let (broker, url) = start(|_| {}).await;
    let (wrong_password, _) = refused(&url, plain("app", "wrong")).await;
    let (unknown_user, elapsed) = refused(&url, plain("nobody", "secret")).await;
    assert_sasl_auth_failure(&unknown_user);
    // Nothing the client can observe tells the two apart.
    assert_eq!(format!("{wrong_password:?}"), format!("{unknown_user:?}"));
    assert!(elapsed >= Duration::from_millis(FAILURE_DELAY_MS));
    stop(broker).await;
}

#[tokio::test]
async fn an_empty_password_is_refused() {
    let (broker, url) = start(|_| {}).await;
    let (error, _) = refused(&url, plain("app", "")).await;
    assert_sasl_auth_failure(&error);
    stop(broker).await;
}

#[tokio::test]
async fn a_failed_login_leaves_the_broker_serving_others() {
    let (broker, url) = start(|_| {}).await;
    let _ = refused(&url, plain("app", "wrong")).await;
    let mut connection = open(&url, Some(plain("app", "secret")))
        .await
        .expect("a correct login after a failed one");
    connection.close().await.expect("clean close");
    stop(broker).await;
}

#[tokio::test]
async fn with_anonymous_never_anonymous_fails_but_plain_works() {
    let (broker, url) = start(|c| c.auth.anonymous = Exposure::Never).await;
    let started = Instant::now();
    let result = tokio::time::timeout(STEP, open(&url, Some(SaslProfile::Anonymous)))
        .await
        .expect("open timed out");
    // The broker does not offer ANONYMOUS, so the client may give up before sasl-init; if it
    // tries anyway it gets sasl-outcome auth. Either way there is no connection.
    assert!(result.is_err(), "anonymous login accepted");
    assert!(started.elapsed() < STEP);

    let mut connection = open(&url, Some(plain("app", "secret")))
        .await
        .expect("PLAIN still works");
    round_trip(&mut connection, "auth.never-anonymous", "hi").await;
    connection.close().await.expect("clean close");
    stop(broker).await;
}

#[tokio::test]
async fn with_plain_never_a_correct_password_is_refused() {
    let (broker, url) = start(|c| c.auth.plain_without_tls = Exposure::Never).await;
    let (error, _) = refused(&url, plain("app", "secret")).await;
    assert_sasl_auth_failure(&error);
    stop(broker).await;
}

#[tokio::test]
async fn a_client_without_sasl_is_anonymous_when_anonymous_is_allowed() {
    let (broker, url) = start(|_| {}).await;
    let mut connection = open(&url, None)
        .await
        .expect("AMQP without a SASL layer from loopback");
    round_trip(&mut connection, "auth.no-sasl", "bare").await;
    connection.close().await.expect("clean close");
    stop(broker).await;
}

/// Sends `header` on a raw socket and returns everything the broker sends until it closes.
async fn raw_exchange(addr: SocketAddr, header: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(header).await.expect("send header");
    let mut answer = Vec::new();
    tokio::time::timeout(STEP, stream.read_to_end(&mut answer))
        .await
        .expect("the broker did not close the socket")
        .expect("read");
    answer
}

#[tokio::test]
async fn a_raw_amqp_header_is_echoed_when_anonymous_is_allowed() {
    let (broker, _) = start(|_| {}).await;
    let addr = broker.local_addrs()[0];
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(&AMQP_HEADER).await.expect("send header");
    let mut answer = [0u8; 8];
    tokio::time::timeout(STEP, stream.read_exact(&mut answer))
        .await
        .expect("no answer")
        .expect("read");
    assert_eq!(answer, AMQP_HEADER);
    drop(stream);
    stop(broker).await;
}

#[tokio::test]
async fn a_raw_amqp_header_gets_the_sasl_header_and_a_close_when_anonymous_is_not_allowed() {
    let (broker, _) = start(|c| c.auth.anonymous = Exposure::Never).await;
    let answer = raw_exchange(broker.local_addrs()[0], &AMQP_HEADER).await;
    assert_eq!(answer, SASL_HEADER);
    stop(broker).await;
}

#[tokio::test]
async fn a_tls_header_gets_the_sasl_header_and_a_close_while_tls_is_not_configured() {
    let (broker, _) = start(|_| {}).await;
    let answer = raw_exchange(broker.local_addrs()[0], b"AMQP\x02\x01\x00\x00").await;
    assert_eq!(answer, SASL_HEADER);
    stop(broker).await;
}

/// One SASL frame (AMQP part 2 §2.3.1, type 1, channel 0) around `body`.
fn sasl_frame(body: &impl serde::Serialize) -> Vec<u8> {
    let body = serde_amqp::to_vec(body).expect("encode");
    let size = u32::try_from(8 + body.len()).expect("small frame");
    let mut frame = size.to_be_bytes().to_vec();
    frame.extend_from_slice(&[2, 1, 0, 0]);
    frame.extend_from_slice(&body);
    frame
}

/// Splits what follows the protocol header into SASL frame bodies.
fn sasl_bodies(mut bytes: &[u8]) -> Vec<&[u8]> {
    let mut bodies = Vec::new();
    while bytes.len() >= 8 {
        let size = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
        let offset = usize::from(bytes[4]) * 4;
        assert_eq!(bytes[5], 1, "not a SASL frame");
        bodies.push(&bytes[offset..size]);
        bytes = &bytes[size..];
    }
    assert!(bytes.is_empty(), "a partial frame: {bytes:?}");
    bodies
}

/// Logs in over a raw socket with `init` and returns the mechanisms offered and the outcome,
/// after checking the broker closed the socket or kept it open as the outcome requires.
async fn raw_login(addr: SocketAddr, init: SaslInit) -> (Vec<String>, SaslOutcome) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut request = SASL_HEADER.to_vec();
    request.extend(sasl_frame(&init));
    stream.write_all(&request).await.expect("send");
    let mut answer = Vec::new();
    let mut chunk = [0u8; 1024];
    // Read until the outcome has arrived (it is the second frame).
    let outcome = loop {
        let n = tokio::time::timeout(STEP, stream.read(&mut chunk))
            .await
            .expect("no outcome")
            .expect("read");
        assert!(n > 0, "closed before the outcome: {answer:?}");
        answer.extend_from_slice(&chunk[..n]);
        if answer.len() > 8 {
            let bodies = sasl_bodies(&answer[8..]);
            if bodies.len() == 2 {
                let mechanisms: SaslMechanisms =
                    serde_amqp::from_slice(bodies[0]).expect("mechanisms");
                let outcome: SaslOutcome = serde_amqp::from_slice(bodies[1]).expect("outcome");
                let names = mechanisms
                    .sasl_server_mechanisms
                    .0
                    .iter()
                    .map(|m| m.as_str().to_owned())
                    .collect();
                break (names, outcome);
            }
        }
    };
    assert_eq!(answer[..8], SASL_HEADER);
    if outcome.1.code != SaslCode::Ok {
        let n = tokio::time::timeout(STEP, stream.read(&mut chunk))
            .await
            .expect("the broker kept the socket open after a failed login")
            .expect("read");
        assert_eq!(n, 0, "more bytes after a failed login: {:?}", &chunk[..n]);
    }
    outcome
}

fn raw_plain(response: &[u8]) -> SaslInit {
    SaslInit {
        mechanism: Symbol::from("PLAIN"),
        initial_response: Some(Binary::from(response.to_vec())),
        hostname: None,
    }
}

#[tokio::test]
async fn a_failed_login_gets_sasl_outcome_auth_with_no_hint_and_a_closed_socket() {
    let (broker, _) = start(|_| {}).await;
    let addr = broker.local_addrs()[0];
    for response in [
        &b"\0app\0wrong"[..],
        b"\0nobody\0secret",
        b"garbage",
        b"\0app\0secret\0x",
    ] {
        let (mechanisms, outcome) = raw_login(addr, raw_plain(response)).await;
        // SCRAM first: clients pick the strongest mechanism they share with the broker.
        assert_eq!(mechanisms, ["SCRAM-SHA-256", "ANONYMOUS", "PLAIN"]);
        assert_eq!(outcome.code, SaslCode::Auth, "{response:?}");
        assert_eq!(outcome.additional_data, None, "{response:?}");
    }
    let (_, outcome) = raw_login(addr, raw_plain(b"\0app\0secret")).await;
    assert_eq!(outcome.code, SaslCode::Ok);
    stop(broker).await;
}

#[tokio::test]
async fn anonymous_is_not_offered_where_it_is_not_allowed() {
    let (broker, _) = start(|c| c.auth.anonymous = Exposure::Never).await;
    let anonymous = SaslInit {
        mechanism: Symbol::from("ANONYMOUS"),
        initial_response: None,
        hostname: None,
    };
    let (mechanisms, outcome) = raw_login(broker.local_addrs()[0], anonymous).await;
    assert_eq!(mechanisms, ["SCRAM-SHA-256", "PLAIN"]);
    assert_eq!(outcome.code, SaslCode::Auth);
    stop(broker).await;
}

#[tokio::test]
async fn a_user_with_a_hashed_password_logs_in_and_a_wrong_one_is_refused() {
    let hash = sluice::config::password::hash_password("s3cret").unwrap();
    let (broker, url) = start(|config| {
        config.users = vec![User {
            name: "hashed".into(),
            password: String::new(),
            password_hash: Some(hash),
            roles: vec![],
            ..Default::default()
        }];
        config.auth.failure_delay_ms = 0;
    })
    .await;
    let mut connection = open(&url, Some(plain("hashed", "s3cret")))
        .await
        .expect("PLAIN login against the hash");
    round_trip(&mut connection, "auth.hashed", "hello").await;
    connection.close().await.expect("clean close");
    let (wrong, _) = refused(&url, plain("hashed", "s3cret!")).await;
    assert_sasl_auth_failure(&wrong);
    let (nobody, _) = refused(&url, plain("nobody", "s3cret")).await;
    assert_sasl_auth_failure(&nobody);
    stop(broker).await;
}

#[tokio::test]
async fn a_source_that_keeps_failing_is_refused_unchecked_for_a_while() {
    let (broker, url) = start(|config| {
        config.auth.failure_delay_ms = 0;
        config.users.push(User {
            name: "watcher".into(),
            password: "pw".into(),
            password_hash: None,
            roles: vec!["monitoring".into()],
            ..Default::default()
        });
    })
    .await;
    for _ in 0..10 {
        let (e, _) = refused(&url, plain("app", "wrong")).await;
        assert_sasl_auth_failure(&e);
    }
    // Spent: even the right password is not looked at now.
    let (e, _) = refused(&url, plain("app", "secret")).await;
    assert_sasl_auth_failure(&e);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut connection = open(&url, Some(plain("app", "secret")))
        .await
        .expect("one more try a second later");
    connection.close().await.expect("clean close");
    let watcher = Some("Basic d2F0Y2hlcjpwdw=="); // watcher:pw
    let metrics = support::http::request(
        broker.admin_addr().unwrap(),
        "GET",
        "/metrics",
        None,
        watcher,
    )
    .await;
    assert!(
        metrics.body.contains("sluice_login_failures_total 10"),
        "{}",
        metrics.body
    );
    assert!(
        metrics.body.contains("sluice_logins_throttled_total 1"),
        "{}",
        metrics.body
    );
    stop(broker).await;
}
