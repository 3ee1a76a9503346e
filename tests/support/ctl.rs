//! Helpers of the `sluice ctl` tests: running the real binary against an in-process broker,
//! reading its output, and filling queues with fe2o3-amqp.
#![allow(dead_code)]

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use fe2o3_amqp::link::delivery::Delivery;
use fe2o3_amqp::link::receiver::CreditMode;
use fe2o3_amqp::{Receiver, Sender};
use sluice::BrokerHandle;
use tokio::net::TcpSocket;

/// Limit on anything that should be quick, so a hang fails the test instead of stalling it.
pub const STEP: Duration = Duration::from_secs(10);

/// `sluice ctl` with nothing from the environment that could change what it does.
pub fn sluice_ctl() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
    command
        .arg("ctl")
        .env_remove("SLUICE_ADMIN")
        .env_remove("SLUICE_ADMIN_USER")
        .env_remove("SLUICE_ADMIN_PASSWORD")
        .stdin(Stdio::null());
    command
}

/// Runs `command` to completion on a blocking thread.
pub async fn output(mut command: Command) -> Output {
    tokio::time::timeout(
        STEP,
        tokio::task::spawn_blocking(move || command.output().expect("the sluice binary runs")),
    )
    .await
    .expect("sluice ctl did not finish")
    .expect("the blocking task")
}

/// Runs `sluice ctl --admin <the broker's admin URL> args...`.
pub async fn ctl(broker: &BrokerHandle, args: &[&str]) -> Output {
    let mut command = sluice_ctl();
    command.args(["--admin", &admin_url(broker)]).args(args);
    output(command).await
}

pub fn admin_url(broker: &BrokerHandle) -> String {
    format!(
        "http://{}",
        broker.admin_addr().expect("the admin listener")
    )
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Checks that `output` succeeded and returns its stdout.
#[track_caller]
pub fn ok(output: &Output) -> String {
    assert_eq!(
        output.status.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        stdout(output),
        stderr(output)
    );
    assert_eq!(stderr(output), "");
    stdout(output)
}

/// Checks that `output` failed with `code` and printed nothing on stdout; returns its stderr.
#[track_caller]
pub fn failed(output: &Output, code: i32) -> String {
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        stdout(output),
        stderr(output)
    );
    assert_eq!(stdout(output), "");
    stderr(output)
}

/// Sends `n` messages to `address` and waits for each to be accepted.
pub async fn fill(session: &mut fe2o3_amqp::session::SessionHandle<()>, address: &str, n: usize) {
    let mut sender = Sender::attach(session, format!("{address}-sender"), address)
        .await
        .unwrap();
    for i in 0..n {
        let outcome = tokio::time::timeout(STEP, sender.send(format!("{address}-{i}")))
            .await
            .expect("send timed out")
            .unwrap();
        assert!(outcome.is_accepted(), "{outcome:?}");
    }
    sender.close().await.unwrap();
}

/// Attaches a receiver to `address` with `credit` and receives that many deliveries, leaving
/// them unsettled.
pub async fn take_unsettled(
    session: &mut fe2o3_amqp::session::SessionHandle<()>,
    address: &str,
    credit: u32,
) -> (Receiver, Vec<Delivery<String>>) {
    let mut receiver = Receiver::builder()
        .name(format!("{address}-receiver"))
        .source(address)
        .credit_mode(CreditMode::Manual)
        .attach(session)
        .await
        .unwrap();
    receiver.set_credit(credit).await.unwrap();
    let mut got = Vec::new();
    for _ in 0..credit {
        let delivery = tokio::time::timeout(STEP, receiver.recv::<String>())
            .await
            .expect("a delivery")
            .unwrap();
        got.push(delivery);
    }
    (receiver, got)
}

/// Polls the broker until `queue`'s stats satisfy `check`, for up to [`STEP`].
pub async fn until_stats(
    broker: &BrokerHandle,
    queue: &str,
    check: impl Fn(&sluice::QueueStats) -> bool,
) {
    let deadline = tokio::time::Instant::now() + STEP;
    while !broker.queue_stats(queue).is_some_and(|s| check(&s)) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting on {queue}: {:?}",
            broker.queue_stats(queue)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A loopback port that refuses connections for as long as the socket lives: bound, so no one
/// else gets it, but not listening.
pub fn dead_port() -> (TcpSocket, u16) {
    let socket = TcpSocket::new_v4().expect("a socket");
    socket
        .bind("127.0.0.1:0".parse().expect("loopback address"))
        .expect("bind an ephemeral port");
    let port = socket.local_addr().expect("its address").port();
    (socket, port)
}
