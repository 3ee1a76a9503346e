//! TLS, black-box: a broker with `[tls]` on loopback, certificates made by rcgen, clients with
//! rustls and fe2o3-amqp on top. `amqps` on the TLS port, the AMQP TLS upgrade on the plain
//! port, client certificates (refused when untrusted, logging in with SASL EXTERNAL when
//! trusted), PLAIN inside TLS, a certificate reload under open connections, the admin API over
//! HTTPS, and what a client that speaks plain AMQP on the TLS port gets.

#![allow(clippy::unwrap_used)] // a test, bench or tool: a panic here is a failed run, not a broker down

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine;
use fe2o3_amqp::sasl_profile::SaslProfile;
use fe2o3_amqp::types::primitives::Binary;
use fe2o3_amqp::types::sasl::{SaslCode, SaslInit, SaslMechanisms, SaslOutcome};
use fe2o3_amqp::{Connection, Receiver, Sender, Session};
use sluice::{BrokerHandle, Config};
use support::certs::{self, Certs};
use support::raw::{frame, TYPE_SASL};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

const STEP: Duration = Duration::from_secs(10);
const TLS_HEADER: [u8; 8] = *b"AMQP\x02\x01\x00\x00";
const SASL_HEADER: [u8; 8] = *b"AMQP\x03\x01\x00\x00";

/// A broker with `toml` (which holds the `[tls]` table) on ephemeral loopback ports.
async fn start(toml: &str) -> BrokerHandle {
    let mut config = Config::from_toml(toml, "test.toml").expect("valid test config");
    let defaults = support::broker::test_config();
    config.listen = defaults.listen;
    config.admin.listen = defaults.admin.listen;
    config.data_dir = defaults.data_dir;
    config.storage = defaults.storage;
    tokio::time::timeout(STEP, sluice::Broker::start(config))
        .await
        .expect("broker start timed out")
        .expect("broker starts")
}

async fn stop(broker: BrokerHandle) {
    tokio::time::timeout(STEP, broker.shutdown())
        .await
        .expect("broker shutdown timed out");
}

/// Opens an AMQP connection over TLS to `addr` (anonymous).
async fn open_amqps(
    connector: &tokio_rustls::TlsConnector,
    addr: SocketAddr,
    container_id: &str,
) -> fe2o3_amqp::connection::ConnectionHandle<()> {
    let stream = certs::connect(connector, addr).await.unwrap();
    Connection::builder()
        .container_id(container_id)
        .open_with_stream(stream)
        .await
        .unwrap()
}

/// Sends `count` messages to `queue` and receives them back, on a connection already open.
async fn round_trip(connection: &mut fe2o3_amqp::connection::ConnectionHandle<()>, queue: &str) {
    let mut session = Session::begin(connection).await.unwrap();
    let mut sender = Sender::attach(&mut session, "tls-sender", queue)
        .await
        .unwrap();
    for i in 0..10 {
        sender.send(format!("secret {i}")).await.unwrap();
    }
    sender.close().await.unwrap();
    let mut receiver = Receiver::attach(&mut session, "tls-receiver", queue)
        .await
        .unwrap();
    for i in 0..10 {
        let delivery = tokio::time::timeout(STEP, receiver.recv::<String>())
            .await
            .expect("a message in time")
            .unwrap();
        assert_eq!(delivery.body(), &format!("secret {i}"));
        receiver.accept(&delivery).await.unwrap();
    }
    receiver.close().await.unwrap();
    session.end().await.unwrap();
}

#[tokio::test]
async fn amqps_carries_messages_and_the_plain_port_upgrades_on_the_tls_header() {
    let certs = Certs::new();
    let broker = start(&certs.tls_toml("")).await;
    let connector = certs::connector(&certs.path("ca.pem"), None);

    // amqps: TLS from the first byte, on the TLS port.
    let tls_addr = broker.tls_addrs()[0];
    let mut connection = open_amqps(&connector, tls_addr, "amqps").await;
    round_trip(&mut connection, "tls.amqps").await;
    connection.close().await.unwrap();

    // The AMQP TLS header on the plain port: the broker answers with it, then TLS starts.
    let mut tcp = TcpStream::connect(broker.local_addrs()[0]).await.unwrap();
    tcp.write_all(&TLS_HEADER).await.unwrap();
    let mut header = [0u8; 8];
    tcp.read_exact(&mut header).await.unwrap();
    assert_eq!(header, TLS_HEADER, "the broker agrees to TLS");
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let stream = connector.connect(name, tcp).await.unwrap();
    let mut connection = Connection::builder()
        .container_id("upgraded")
        .open_with_stream(stream)
        .await
        .unwrap();
    round_trip(&mut connection, "tls.upgraded").await;
    connection.close().await.unwrap();
    stop(broker).await;
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_certificate_gets_no_connection() {
    let certs = Certs::new();
    let broker = start(&certs.tls_toml("")).await;
    let stranger = certs::connector(&certs.path("rogue-ca.pem"), None);
    let refused = certs::connect(&stranger, broker.tls_addrs()[0]).await;
    assert!(
        refused.is_err(),
        "a server certificate from an unknown CA is refused"
    );
    // The port keeps serving clients that trust it.
    let connector = certs::connector(&certs.path("ca.pem"), None);
    let mut connection = open_amqps(&connector, broker.tls_addrs()[0], "after").await;
    connection.close().await.unwrap();
    stop(broker).await;
}

#[tokio::test]
async fn plain_amqp_on_the_tls_port_is_told_to_use_tls_and_counted() {
    let certs = Certs::new();
    let broker = start(&certs.tls_toml("")).await;
    let mut tcp = TcpStream::connect(broker.tls_addrs()[0]).await.unwrap();
    tcp.write_all(b"AMQP\x00\x01\x00\x00").await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(STEP, tcp.read_to_end(&mut answer))
        .await
        .expect("the broker closes")
        .unwrap();
    assert_eq!(
        answer, TLS_HEADER,
        "told which protocol the port speaks, then closed"
    );
    let metrics =
        support::http::request(broker.admin_addr().unwrap(), "GET", "/metrics", None, None).await;
    assert!(
        metrics
            .body
            .contains("sluice_tls_handshake_failures_total 1"),
        "{}",
        metrics.body
    );
    // And the port still serves TLS.
    let connector = certs::connector(&certs.path("ca.pem"), None);
    let mut connection = open_amqps(&connector, broker.tls_addrs()[0], "after").await;
    connection.close().await.unwrap();
    stop(broker).await;
}

/// The SASL exchange of EXTERNAL on `stream`: the mechanisms offered, then the outcome.
async fn sasl_external<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    authzid: &str,
) -> (Vec<String>, SaslCode) {
    stream.write_all(&SASL_HEADER).await.unwrap();
    let mut header = [0u8; 8];
    stream.read_exact(&mut header).await.unwrap();
    assert_eq!(header, SASL_HEADER);
    let mechanisms: SaslMechanisms = read_sasl(stream).await;
    let offered = mechanisms
        .sasl_server_mechanisms
        .0
        .iter()
        .map(|m| m.to_string())
        .collect();
    let init = SaslInit {
        mechanism: "EXTERNAL".into(),
        initial_response: Some(Binary::from(authzid.as_bytes().to_vec())),
        hostname: None,
    };
    let body = serde_amqp::to_vec(&init).unwrap();
    stream.write_all(&frame(TYPE_SASL, 0, &body)).await.unwrap();
    let outcome: SaslOutcome = read_sasl(stream).await;
    (offered, outcome.code)
}

async fn read_sasl<S, T>(stream: &mut S) -> T
where
    S: AsyncRead + Unpin,
    T: serde::de::DeserializeOwned,
{
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).await.unwrap();
    let mut rest = vec![0u8; u32::from_be_bytes(size) as usize - 4];
    stream.read_exact(&mut rest).await.unwrap();
    let doff = usize::from(rest[0]) * 4;
    serde_amqp::from_slice(&rest[doff - 4..]).unwrap()
}

#[tokio::test]
async fn client_certificates_are_required_checked_and_log_in_with_external() {
    let certs = Certs::new();
    let extra = format!(
        "client_ca = \"{}\"\nclient_auth = \"required\"\n\
         [[users]]\nname = \"app\"\ncertificate_cn = \"client\"\n\
         [[users]]\nname = \"ops\"\npassword = \"pw\"\nroles = [\"admin\"]\n",
        certs.path("ca.pem").display()
    );
    let broker = start(&certs.tls_toml(&extra)).await;
    let addr = broker.tls_addrs()[0];

    // No certificate: refused (TLS 1.3 tells the client once it reads).
    let without = certs::connector(&certs.path("ca.pem"), None);
    assert!(
        refused_on_first_read(certs::connect(&without, addr).await).await,
        "a client without a certificate is refused"
    );
    // A certificate from another CA: refused.
    let rogue = certs::connector(
        &certs.path("ca.pem"),
        Some((&certs.path("rogue.pem"), &certs.path("rogue.key"))),
    );
    assert!(
        refused_on_first_read(certs::connect(&rogue, addr).await).await,
        "a certificate from an untrusted CA is refused"
    );

    // A trusted certificate: EXTERNAL is offered first and logs in as the mapped user.
    let trusted = certs::connector(
        &certs.path("ca.pem"),
        Some((&certs.path("client.pem"), &certs.path("client.key"))),
    );
    let mut stream = certs::connect(&trusted, addr).await.unwrap();
    let (offered, code) = sasl_external(&mut stream, "").await;
    assert_eq!(offered.first().map(String::as_str), Some("EXTERNAL"));
    assert_eq!(code, SaslCode::Ok);
    // After SASL, the AMQP header and open: fe2o3 without a SASL profile sends exactly those.
    let mut connection = Connection::builder()
        .container_id("external")
        .open_with_stream(stream)
        .await
        .unwrap();
    round_trip(&mut connection, "tls.external").await;
    let ops = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("ops:pw")
    );
    let connections = support::http::request(
        broker.admin_addr().unwrap(),
        "GET",
        "/api/connections",
        None,
        Some(&ops),
    )
    .await
    .json();
    let users: Vec<&str> = connections
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["user"].as_str())
        .collect();
    assert_eq!(users, ["app"], "{connections}");
    connection.close().await.unwrap();

    // Asking to act as someone else is refused.
    let mut stream = certs::connect(&trusted, addr).await.unwrap();
    let (_, code) = sasl_external(&mut stream, "root").await;
    assert_eq!(code, SaslCode::Auth);
    stop(broker).await;
}

/// Whether a TLS connection was refused: at the handshake, or (TLS 1.3, where the client
/// finishes first) at the first read.
async fn refused_on_first_read(
    connected: std::io::Result<tokio_rustls::client::TlsStream<TcpStream>>,
) -> bool {
    let Ok(mut stream) = connected else {
        return true;
    };
    let _ = stream.write_all(&SASL_HEADER).await;
    let mut buf = [0u8; 8];
    matches!(
        tokio::time::timeout(STEP, stream.read(&mut buf)).await,
        Ok(Err(_)) | Ok(Ok(0))
    )
}

#[tokio::test]
async fn plain_inside_tls_is_allowed_where_plain_without_tls_is_not() {
    let certs = Certs::new();
    let extra = "[auth]\nplain_without_tls = \"never\"\n\
                 [[users]]\nname = \"app\"\npassword = \"secret\"\n";
    let broker = start(&certs.tls_toml(extra)).await;
    let plain = || SaslProfile::Plain {
        username: "app".into(),
        password: "secret".into(),
    };
    let url = format!("amqp://{}", broker.local_addrs()[0]);
    let refused = Connection::builder()
        .container_id("clear")
        .sasl_profile(plain())
        .open(url.as_str())
        .await;
    assert!(refused.is_err(), "PLAIN in clear is refused");
    let connector = certs::connector(&certs.path("ca.pem"), None);
    let stream = certs::connect(&connector, broker.tls_addrs()[0])
        .await
        .unwrap();
    let mut connection = Connection::builder()
        .container_id("encrypted")
        .sasl_profile(plain())
        .open_with_stream(stream)
        .await
        .unwrap();
    round_trip(&mut connection, "tls.plain").await;
    connection.close().await.unwrap();
    stop(broker).await;
}

#[tokio::test]
async fn certificates_reload_without_dropping_connections_and_a_bad_file_keeps_the_old() {
    let certs = Certs::new();
    let broker = start(&certs.tls_toml("")).await;
    let addr: SocketAddr = broker.tls_addrs()[0];
    let old_ca = certs::connector(&certs.path("ca.pem"), None);
    let mut open = open_amqps(&old_ca, addr, "before-reload").await;

    // A broken certificate file: the reload fails, naming it, and the old one stays.
    std::fs::write(certs.path("server.pem"), "not a certificate").unwrap();
    let error = broker.reload_tls().unwrap_err().to_string();
    assert!(error.contains("server.pem"), "{error}");
    certs::connect(&old_ca, addr)
        .await
        .expect("the old certificate still serves");

    // A certificate from a new CA: new connections get it, the open one goes on.
    let new_ca = certs::Ca::new("the next CA");
    let (cert, key) = new_ca.server();
    std::fs::write(certs.path("server.pem"), cert).unwrap();
    std::fs::write(certs.path("server.key"), key).unwrap();
    std::fs::write(certs.path("new-ca.pem"), new_ca.pem()).unwrap();
    assert_eq!(broker.reload_tls().unwrap(), 1);
    let new_client = certs::connector(&certs.path("new-ca.pem"), None);
    certs::connect(&new_client, addr)
        .await
        .expect("the new certificate serves");
    assert!(
        certs::connect(&old_ca, addr).await.is_err(),
        "the old certificate is gone for new connections"
    );
    round_trip(&mut open, "tls.reloaded").await;
    open.close().await.unwrap();
    stop(broker).await;
}

#[tokio::test]
async fn the_admin_api_serves_https() {
    let certs = Certs::new();
    let broker = start(&format!("{}\n[admin]\ntls = true\n", certs.tls_toml(""))).await;
    let connector = certs::connector(&certs.path("ca.pem"), None);
    let mut stream = certs::connect(&connector, broker.admin_addr().unwrap())
        .await
        .unwrap();
    stream
        .write_all(b"GET /api/overview HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(STEP, stream.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"queues\""), "{answer}");
    // Plain HTTP on the HTTPS port gets nothing useful.
    let mut tcp = TcpStream::connect(broker.admin_addr().unwrap())
        .await
        .unwrap();
    tcp.write_all(b"GET /api/overview HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut plain = Vec::new();
    let _ = tokio::time::timeout(STEP, tcp.read_to_end(&mut plain)).await;
    assert!(!String::from_utf8_lossy(&plain).contains("200 OK"));
    stop(broker).await;
}
