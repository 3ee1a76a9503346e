//! Nobody can lock everyone out (issue 12 §6): sockets that never finish a handshake take
//! places of their own, not those of clients that do; they are capped in all and per source,
//! and closed when the handshake timeout passes without an `open`.
//!
//! Silent sockets come from other loopback addresses (127.0.0.2 and up: all of 127/8 is
//! local on Linux), so the per-source cap can be told apart from the total one.

#![allow(clippy::unwrap_used)] // a test, bench or tool: a panic here is a failed run, not a broker down

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use fe2o3_amqp::Connection;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpSocket, TcpStream};

use sluice::Config;
use support::broker::{start, test_config};
use support::raw::{amqp_frame, open, RawPeer, AMQP_HEADER};

/// How long a test waits for the broker to close a socket it refuses.
const CLOSE_WAIT: Duration = Duration::from_secs(5);
/// How long a socket must stay open to count as kept.
const KEPT: Duration = Duration::from_millis(200);

/// A TCP connection to `broker` from the loopback address `127.0.0.<host>`; sends nothing.
async fn silent(host: u8, broker: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("a socket");
    let from = SocketAddr::from(([127, 0, 0, host], 0));
    socket.bind(from).expect("bind a loopback source address");
    socket.connect(broker).await.expect("connect to the broker")
}

/// Whether the broker closed `stream` (EOF or reset) within `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    let mut byte = [0u8; 64];
    loop {
        match tokio::time::timeout(limit, stream.read(&mut byte)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {} // answers before the close (a header, open, close) are fine
        }
    }
}

fn config(edit: impl FnOnce(&mut Config)) -> Config {
    let mut config = test_config();
    edit(&mut config);
    config
}

#[tokio::test]
async fn silent_sockets_up_to_max_connections_do_not_lock_a_client_out() {
    let (broker, url) = start(config(|c| c.max_connections = 100)).await;
    let addr = broker.local_addrs()[0];
    // 100 sockets that never say a word, from four sources, all of them held by the broker
    // in the handshake (under the default caps).
    let mut sockets = Vec::new();
    for i in 0..100u8 {
        sockets.push(silent(2 + i % 4, addr).await);
    }
    let mut connection = tokio::time::timeout(
        Duration::from_secs(10),
        Connection::open("limits-client", url.as_str()),
    )
    .await
    .expect("the client got no answer")
    .expect("a real client connects beside 100 silent sockets");
    connection.close().await.expect("clean close");
    // The silent sockets were accepted and kept, not refused.
    for socket in sockets.iter_mut().step_by(25) {
        assert!(
            !closed_within(socket, KEPT).await,
            "a silent socket was refused"
        );
    }
    broker.shutdown().await;
}

#[tokio::test]
async fn past_max_connections_a_client_is_told_why() {
    let (broker, _url) = start(config(|c| c.max_connections = 1)).await;
    let addr = broker.local_addrs()[0];
    let first = RawPeer::opened(addr, "first").await;
    let mut second = RawPeer::connect(addr).await;
    second.send(&AMQP_HEADER).await;
    assert_eq!(second.read_header().await, AMQP_HEADER);
    second.send(&amqp_frame(0, &open("second"), &[])).await;
    let description = second
        .expect_closed_with("amqp:resource-limit-exceeded")
        .await;
    assert!(
        description.contains("broker.max_connections"),
        "{description}"
    );
    // Gone without a close: the broker drops it at once rather than waiting for one.
    drop(first);
    broker.shutdown().await;
}

#[tokio::test]
async fn a_socket_that_sends_only_the_header_is_closed_after_the_handshake_timeout() {
    let (broker, _url) = start(config(|c| c.handshake_timeout_ms = 300)).await;
    let addr = broker.local_addrs()[0];
    let started = Instant::now();
    let mut header_only = RawPeer::connect(addr).await;
    header_only.send(&AMQP_HEADER).await;
    assert_eq!(header_only.read_header().await, AMQP_HEADER);
    let description = header_only
        .expect_closed_with("amqp:resource-limit-exceeded")
        .await;
    assert!(description.contains("no open within"), "{description}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(5),
        "closed after {took:?}"
    );

    // A socket that sends nothing at all is closed too.
    let mut nothing = silent(1, addr).await;
    assert!(closed_within(&mut nothing, CLOSE_WAIT).await);

    // One that opens in time stays.
    let mut opened = RawPeer::opened(addr, "in-time").await;
    let (_, eof) = opened.read_to_end(Duration::from_millis(600)).await;
    assert!(
        !eof,
        "an opened connection was closed by the handshake timeout"
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn one_source_cannot_take_every_handshake_place() {
    let (broker, _url) = start(config(|c| c.max_handshakes_per_source = 3)).await;
    let addr = broker.local_addrs()[0];
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(silent(6, addr).await);
    }
    let mut fourth = silent(6, addr).await;
    assert!(
        closed_within(&mut fourth, CLOSE_WAIT).await,
        "a fourth socket from one source was kept"
    );
    // Another source still gets through the handshake.
    drop(RawPeer::opened(addr, "other-source").await);
    // A place given back is a place to take again: the broker sees the close, then admits.
    held.pop();
    let deadline = Instant::now() + CLOSE_WAIT;
    loop {
        let mut again = silent(6, addr).await;
        if !closed_within(&mut again, KEPT).await {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the freed place was never given back"
        );
    }
    broker.shutdown().await;
}

#[tokio::test]
async fn the_handshake_cap_refuses_extra_silent_sockets_but_not_opened_connections() {
    let (broker, _url) = start(config(|c| {
        c.max_handshakes = 2;
        c.max_handshakes_per_source = 0;
    }))
    .await;
    let addr = broker.local_addrs()[0];
    // Connections that have opened are out of the handshake: they take no place in it.
    let opened = opened_one_by_one(addr, 3).await;
    let _a = silent(7, addr).await;
    let _b = silent(8, addr).await;
    let mut c = silent(9, addr).await;
    assert!(
        closed_within(&mut c, CLOSE_WAIT).await,
        "a socket beyond max_handshakes was kept"
    );
    drop(opened);
    broker.shutdown().await;
}

/// `n` connections opened one after the other.
async fn opened_one_by_one(addr: SocketAddr, n: usize) -> Vec<RawPeer> {
    let mut peers = Vec::with_capacity(n);
    for i in 0..n {
        peers.push(RawPeer::opened(addr, &format!("opened-{i}")).await);
    }
    peers
}
