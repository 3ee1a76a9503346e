//! AMQP over WebSocket, black-box: fe2o3-amqp on top of a tungstenite client WebSocket, on
//! `ws` and `wss`; and what the HTTP upgrade refuses (another path, a web origin not let in, a
//! subprotocol other than AMQP), each without taking the listener down. rhea over WebSocket is
//! in tests/rhea_clients.rs.

#![allow(clippy::unwrap_used)] // a test, bench or tool: a panic here is a failed run, not a broker down

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use fe2o3_amqp::{Connection, Receiver, Sender, Session};
use sluice::BrokerHandle;
use sluice::WsStream;
use support::certs::{self, Certs};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

const STEP: Duration = Duration::from_secs(10);

/// Upgrades `stream` to a WebSocket at `url` offering `protocol`, and opens AMQP inside it.
async fn open_ws<S>(
    stream: S,
    url: &str,
    protocol: &str,
) -> fe2o3_amqp::connection::ConnectionHandle<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + std::fmt::Debug + 'static,
{
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_str(protocol).unwrap(),
    );
    let (ws, response) = tokio_tungstenite::client_async(request, stream)
        .await
        .unwrap();
    let chosen = response.headers().get("Sec-WebSocket-Protocol").unwrap();
    assert_eq!(
        chosen, "amqp",
        "the broker picks the OASIS binding's subprotocol"
    );
    Connection::builder()
        .container_id("ws-client")
        .open_with_stream(WsStream::new(ws))
        .await
        .unwrap()
}

/// Sends ten messages to `queue` and receives them back.
async fn round_trip(connection: &mut fe2o3_amqp::connection::ConnectionHandle<()>, queue: &str) {
    let mut session = Session::begin(connection).await.unwrap();
    let mut sender = Sender::attach(&mut session, "ws-sender", queue)
        .await
        .unwrap();
    // One larger than a WebSocket frame's usual size and than the broker's read buffer.
    let big = "x".repeat(200_000);
    for i in 0..10 {
        sender.send(format!("{i}:{big}")).await.unwrap();
    }
    sender.close().await.unwrap();
    let mut receiver = Receiver::attach(&mut session, "ws-receiver", queue)
        .await
        .unwrap();
    for i in 0..10 {
        let delivery = tokio::time::timeout(STEP, receiver.recv::<String>())
            .await
            .expect("a message in time")
            .unwrap();
        assert_eq!(delivery.body(), &format!("{i}:{big}"));
        receiver.accept(&delivery).await.unwrap();
    }
    receiver.close().await.unwrap();
    session.end().await.unwrap();
}

/// The HTTP status line the broker answers an upgrade request with.
async fn upgrade_status(addr: SocketAddr, path: &str, headers: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{headers}\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    // The status line is all that is needed (an accepted upgrade keeps the socket open).
    let mut reply = Vec::new();
    let mut chunk = [0u8; 1024];
    while !reply.windows(2).any(|w| w == b"\r\n") {
        match tokio::time::timeout(STEP, stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => reply.extend_from_slice(&chunk[..n]),
            _ => break,
        }
    }
    let reply = String::from_utf8_lossy(&reply).into_owned();
    reply.lines().next().unwrap_or("").to_owned()
}

async fn start(toml: &str) -> BrokerHandle {
    support::broker::start_with_toml(toml).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_over_ws_carries_messages_across_websocket_messages() {
    let broker = start("[websocket]\nlisten = [\"127.0.0.1:0\"]\npath = \"/amqp\"\n").await;
    let addr = broker.websocket_addrs()[0];
    let stream = TcpStream::connect(addr).await.unwrap();
    let url = format!("ws://{addr}/amqp");
    let mut connection = open_ws(stream, &url, "binary, amqp").await;
    round_trip(&mut connection, "ws.queue").await;
    connection.close().await.unwrap();
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_over_wss_carries_messages() {
    let certs = Certs::new();
    let toml = certs.tls_toml("[websocket]\ntls_listen = [\"127.0.0.1:0\"]\n");
    let broker = start(&toml).await;
    assert!(
        broker.websocket_addrs().is_empty(),
        "only wss was asked for"
    );
    let addr = broker.secure_websocket_addrs()[0];
    let connector = certs::connector(&certs.path("ca.pem"), None);
    let stream = certs::connect(&connector, addr).await.unwrap();
    let url = format!("wss://localhost:{}/", addr.port());
    let mut connection = open_ws(stream, &url, "AMQPWSB10, amqp").await;
    round_trip(&mut connection, "wss.queue").await;
    connection.close().await.unwrap();
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upgrade_refuses_another_path_a_foreign_origin_and_another_subprotocol() {
    let toml = "[websocket]\nlisten = [\"127.0.0.1:0\"]\npath = \"/amqp\"\n\
                origins = [\"https://app.example.com\"]\n";
    let broker = start(toml).await;
    let addr = broker.websocket_addrs()[0];
    let amqp = "Sec-WebSocket-Protocol: amqp\r\n";
    assert!(upgrade_status(addr, "/", amqp).await.contains("404"));
    let foreign = format!("{amqp}Origin: https://evil.example.net\r\n");
    assert!(upgrade_status(addr, "/amqp", &foreign)
        .await
        .contains("403"));
    let mqtt = "Sec-WebSocket-Protocol: mqtt\r\n";
    assert!(upgrade_status(addr, "/amqp", mqtt).await.contains("400"));
    // A listed origin, and a program that sends none, are served; the listener still is.
    let listed = format!("{amqp}Origin: https://app.example.com\r\n");
    assert!(upgrade_status(addr, "/amqp", &listed).await.contains("101"));
    let stream = TcpStream::connect(addr).await.unwrap();
    let mut connection = open_ws(stream, &format!("ws://{addr}/amqp"), "amqp").await;
    connection.close().await.unwrap();
    broker.shutdown().await;
}
