//! Black-box tests of flow control with the fe2o3-amqp client: credit, drain, multi-frame
//! transfers, many sessions and links, heartbeats and idle timeouts.

#![allow(clippy::unwrap_used)] // a test, bench or tool: a panic here is a failed run, not a broker down

mod support;

use std::time::Duration;

use fe2o3_amqp::link::receiver::CreditMode;
use fe2o3_amqp::types::primitives::Binary;
use fe2o3_amqp::{Connection, Receiver, Sender, Session};
use support::broker::{start, test_config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(10);

async fn manual_receiver(
    session: &mut fe2o3_amqp::session::SessionHandle<()>,
    name: &str,
    queue: &str,
) -> Receiver {
    Receiver::builder()
        .name(name)
        .source(queue)
        .credit_mode(CreditMode::Manual)
        .attach(session)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_consumer_with_credit_one_gets_one_message_at_a_time() {
    let (broker, url) = start(test_config()).await;
    let mut conn = Connection::open("t", url.as_str()).await.unwrap();
    let mut session = Session::begin(&mut conn).await.unwrap();
    let mut sender = Sender::attach(&mut session, "s", "one").await.unwrap();
    for i in 0..3 {
        sender.send(format!("m{i}")).await.unwrap();
    }
    let mut receiver = manual_receiver(&mut session, "r", "one").await;
    for i in 0..3 {
        receiver.set_credit(1).await.unwrap();
        let d = tokio::time::timeout(WAIT, receiver.recv::<String>())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(d.body(), &format!("m{i}"));
        // No credit left: nothing more may arrive until the next grant.
        let more =
            tokio::time::timeout(Duration::from_millis(200), receiver.recv::<String>()).await;
        assert!(more.is_err(), "a delivery beyond credit arrived: {more:?}");
        let stats = broker.queue_stats("one").unwrap();
        assert_eq!((stats.ready, stats.unacked), (2 - i, 1));
        receiver.accept(&d).await.unwrap();
    }
    conn.close().await.unwrap();
    broker.shutdown().await;
}

#[tokio::test]
async fn drain_sends_what_is_there_and_then_uses_up_the_credit() {
    let (broker, url) = start(test_config()).await;
    let mut conn = Connection::open("t", url.as_str()).await.unwrap();
    let mut session = Session::begin(&mut conn).await.unwrap();
    let mut sender = Sender::attach(&mut session, "s", "drain").await.unwrap();
    sender.send("a").await.unwrap();
    sender.send("b").await.unwrap();
    let mut receiver = manual_receiver(&mut session, "r", "drain").await;
    receiver.set_credit(10).await.unwrap();
    receiver.drain().await.unwrap();
    for expected in ["a", "b"] {
        let d = tokio::time::timeout(WAIT, receiver.recv::<String>())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(d.body(), expected);
        receiver.accept(&d).await.unwrap();
    }
    // The broker answered the drain by advancing delivery-count: the link has no credit, so a
    // message sent now stays in the queue.
    tokio::time::sleep(Duration::from_millis(200)).await;
    sender.send("c").await.unwrap();
    let more = tokio::time::timeout(Duration::from_millis(300), receiver.recv::<String>()).await;
    assert!(more.is_err(), "a delivery after the drain: {more:?}");
    assert_eq!(broker.queue_stats("drain").unwrap().ready, 1);
    conn.close().await.unwrap();
    broker.shutdown().await;
}

#[tokio::test]
async fn a_ten_mib_message_crosses_a_max_frame_size_of_4096_both_ways() {
    let mut config = test_config();
    config.max_frame_size = 4096;
    let (broker, url) = start(config).await;
    let mut conn = Connection::builder()
        .container_id("big")
        .max_frame_size(4096)
        .open(url.as_str())
        .await
        .unwrap();
    let mut session = Session::begin(&mut conn).await.unwrap();
    let mut sender = Sender::attach(&mut session, "s", "big").await.unwrap();
    let body: Vec<u8> = (0..10 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let outcome = tokio::time::timeout(WAIT, sender.send(Binary::from(body.clone())))
        .await
        .unwrap()
        .unwrap();
    assert!(outcome.is_accepted());
    let mut receiver = Receiver::attach(&mut session, "r", "big").await.unwrap();
    let d = tokio::time::timeout(WAIT, receiver.recv::<Binary>())
        .await
        .unwrap()
        .unwrap();
    assert!(
        d.body().as_slice() == body.as_slice(),
        "the body came back changed"
    );
    receiver.accept(&d).await.unwrap();
    conn.close().await.unwrap();
    broker.shutdown().await;
}

#[tokio::test]
async fn one_connection_carries_100_sessions_of_10_links() {
    let (broker, url) = start(test_config()).await;
    // fe2o3 leaves Nagle on; each receiver attach is followed by a flow the broker has no
    // reason to answer, so with Nagle the next attach would wait for a delayed ACK (40 ms).
    let stream = tokio::net::TcpStream::connect(broker.local_addrs()[0])
        .await
        .unwrap();
    stream.set_nodelay(true).unwrap();
    let mut conn = Connection::builder()
        .container_id("many")
        .channel_max(255)
        .open_with_stream(stream)
        .await
        .unwrap();
    let _ = url;
    let mut sessions = Vec::new();
    for _ in 0..100 {
        sessions.push(Session::begin(&mut conn).await.unwrap());
    }
    let mut pairs = Vec::new();
    for (s, session) in sessions.iter_mut().enumerate() {
        for l in 0..5 {
            let queue = format!("q{s}.{l}");
            let sender = Sender::attach(session, format!("s{s}.{l}"), queue.as_str())
                .await
                .unwrap();
            let receiver = Receiver::attach(session, format!("r{s}.{l}"), queue.as_str())
                .await
                .unwrap();
            pairs.push((queue, sender, receiver));
        }
    }
    for (queue, sender, _) in pairs.iter_mut() {
        sender.send(queue.clone()).await.unwrap();
    }
    for (queue, _, receiver) in pairs.iter_mut() {
        let d = tokio::time::timeout(WAIT, receiver.recv::<String>())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(d.body(), queue);
        receiver.accept(&d).await.unwrap();
    }
    assert_eq!(broker.queue_names().len(), 500);
    conn.close().await.unwrap();
    broker.shutdown().await;
}

#[tokio::test]
async fn heartbeats_keep_an_idle_connection_open() {
    let mut config = test_config();
    config.idle_timeout_ms = 600;
    let (broker, url) = start(config).await;
    let mut conn = Connection::builder()
        .container_id("idle")
        .idle_time_out(600u32)
        .open(url.as_str())
        .await
        .unwrap();
    let mut session = Session::begin(&mut conn).await.unwrap();
    let mut sender = Sender::attach(&mut session, "s", "idle").await.unwrap();
    // Several idle timeouts pass with nothing but heartbeats on the wire.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let outcome = sender.send("still here").await.unwrap();
    assert!(outcome.is_accepted());
    conn.close().await.unwrap();
    broker.shutdown().await;
}

#[tokio::test]
async fn a_silent_peer_is_dropped_after_the_idle_timeout() {
    let mut config = test_config();
    config.idle_timeout_ms = 500;
    let (broker, _) = start(config).await;
    let mut tcp = tokio::net::TcpStream::connect(broker.local_addrs()[0])
        .await
        .unwrap();
    tcp.write_all(b"AMQP\x00\x01\x00\x00").await.unwrap();
    // A minimal open: container-id "silent", no idle timeout of its own.
    let open: &[u8] = &[
        0, 0, 0, 0x16, 2, 0, 0, 0, 0x00, 0x53, 0x10, 0xc0, 0x09, 0x01, 0xa1, 0x06, b's', b'i',
        b'l', b'e', b'n', b't',
    ];
    tcp.write_all(open).await.unwrap();
    let started = std::time::Instant::now();
    let mut received = Vec::new();
    let read = tokio::time::timeout(WAIT, tcp.read_to_end(&mut received)).await;
    assert!(read.is_ok(), "the broker did not drop a silent peer");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(450),
        "dropped too early: {elapsed:?}"
    );
    let text = String::from_utf8_lossy(&received);
    assert!(
        text.contains("amqp:resource-limit-exceeded"),
        "no close with resource-limit-exceeded: {text:?}"
    );
    broker.shutdown().await;
}
