//! `sluice ctl`, black-box: the built binary against an in-process broker's admin API, with
//! queues and connections made by the fe2o3-amqp client.
//!
//! The binary runs on a blocking thread so the broker's runtime keeps serving meanwhile.

mod support;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fe2o3_amqp::link::delivery::Delivery;
use fe2o3_amqp::link::receiver::CreditMode;
use fe2o3_amqp::types::messaging::{Message, MessageAnnotations};
use fe2o3_amqp::types::primitives::{Symbol, Value as AmqpValue};
use fe2o3_amqp::{Connection, Receiver, Sender, Session};
use sluice::BrokerHandle;
use support::broker::{assert_closed_with_connection_forced, start, test_config};
use support::groups::{grouped, Client, Q};
use tokio::net::TcpSocket;

/// Limit on anything that should be quick, so a hang fails the test instead of stalling it.
const STEP: Duration = Duration::from_secs(10);

/// `sluice ctl` with nothing from the environment that could change what it does.
fn sluice_ctl() -> Command {
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
async fn output(mut command: Command) -> Output {
    tokio::time::timeout(
        STEP,
        tokio::task::spawn_blocking(move || command.output().expect("the sluice binary runs")),
    )
    .await
    .expect("sluice ctl did not finish")
    .expect("the blocking task")
}

/// Runs `sluice ctl --admin <the broker's admin URL> args...`.
async fn ctl(broker: &BrokerHandle, args: &[&str]) -> Output {
    let mut command = sluice_ctl();
    command.args(["--admin", &admin_url(broker)]).args(args);
    output(command).await
}

fn admin_url(broker: &BrokerHandle) -> String {
    format!(
        "http://{}",
        broker.admin_addr().expect("the admin listener")
    )
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Checks that `output` succeeded and returns its stdout.
#[track_caller]
fn ok(output: &Output) -> String {
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
fn failed(output: &Output, code: i32) -> String {
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
async fn fill(session: &mut fe2o3_amqp::session::SessionHandle<()>, address: &str, n: usize) {
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
async fn take_unsettled(
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

/// Sends one message per delay to `address`, with message annotation `x-opt-delivery-delay`
/// (a long, in ms), and waits for each to be accepted.
async fn fill_delayed(
    session: &mut fe2o3_amqp::session::SessionHandle<()>,
    address: &str,
    delays_ms: &[i64],
) {
    let mut sender = Sender::attach(session, format!("{address}-delayed-sender"), address)
        .await
        .unwrap();
    for (i, &delay) in delays_ms.iter().enumerate() {
        let annotations = MessageAnnotations::builder()
            .insert(Symbol::from("x-opt-delivery-delay"), AmqpValue::Long(delay))
            .build();
        let message = Message::builder()
            .message_annotations(annotations)
            .value(format!("{address}-delayed-{i}"))
            .build();
        let outcome = tokio::time::timeout(STEP, sender.send(message))
            .await
            .expect("send timed out")
            .unwrap();
        assert!(outcome.is_accepted(), "{outcome:?}");
    }
    sender.close().await.unwrap();
}

/// Polls the broker until `queue`'s stats satisfy `check`, for up to [`STEP`].
async fn until_stats(
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

/// Milliseconds since the Unix epoch, by the wall clock.
fn now_ms() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    i64::try_from(since.as_millis()).unwrap()
}

/// `ms` since the Unix epoch as RFC 3339.
fn rfc3339(ms: i64) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap());
    humantime::format_rfc3339_millis(at).to_string()
}

/// A loopback port that refuses connections for as long as the socket lives: bound, so no one
/// else gets it, but not listening.
fn dead_port() -> (TcpSocket, u16) {
    let socket = TcpSocket::new_v4().expect("a socket");
    socket
        .bind("127.0.0.1:0".parse().expect("loopback address"))
        .expect("bind an ephemeral port");
    let port = socket.local_addr().expect("its address").port();
    (socket, port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_queues_shows_what_the_clients_did() {
    let (broker, url) = start(test_config()).await;
    let mut conn = Connection::open("ctl-lister", url.as_str()).await.unwrap();
    let mut session = Session::begin(&mut conn).await.unwrap();
    fill(&mut session, "orders", 5).await;
    fill(&mut session, "billing", 3).await;
    let (_receiver, unsettled) = take_unsettled(&mut session, "orders", 2).await;
    assert_eq!(unsettled.len(), 2);

    let table = ok(&ctl(&broker, &["list-queues", "--columns", "name,ready,unacked"]).await);
    assert_eq!(
        table,
        "name     ready  unacked\n\
         billing      3        0\n\
         orders       3        2\n"
    );
    // The default columns, and global flags after the verb.
    let mut command = sluice_ctl();
    command.args(["list-queues", "--admin", &admin_url(&broker)]);
    let table = ok(&output(command).await);
    assert_eq!(
        table,
        "name     ready  unacked  consumers\n\
         billing      3        0          0\n\
         orders       3        2          1\n"
    );
    // Every counter is a column; rates are per second with one decimal.
    let table = ok(&ctl(
        &broker,
        &[
            "list-queues",
            "--columns",
            "name,enqueued,delivered,acked,durable,ack_rate",
        ],
    )
    .await);
    let lines: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines[0],
        [
            "name",
            "enqueued",
            "delivered",
            "acked",
            "durable",
            "ack_rate"
        ]
    );
    assert_eq!(lines[2][..5], ["orders", "5", "2", "0", "true"]);
    assert!(lines[2][5].parse::<f64>().is_ok(), "{table}");

    let json = ok(&ctl(&broker, &["list-queues", "--format", "json"]).await);
    let queues: serde_json::Value = serde_json::from_str(&json).expect("a JSON array");
    let names: Vec<&str> = queues
        .as_array()
        .expect("an array")
        .iter()
        .map(|q| q["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["billing", "orders"]);
    assert_eq!(queues[1]["unacked"], 2);

    conn.close().await.unwrap();
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_drops_the_ready_messages_only() {
    let (broker, url) = start(test_config()).await;
    let mut conn = Connection::open("ctl-purger", url.as_str()).await.unwrap();
    let mut session = Session::begin(&mut conn).await.unwrap();
    fill(&mut session, "jobs", 5).await;
    let (_receiver, _unsettled) = take_unsettled(&mut session, "jobs", 1).await;

    assert_eq!(
        ok(&ctl(&broker, &["purge", "jobs"]).await),
        "purged 4 messages from jobs\n"
    );
    assert_eq!(
        ok(&ctl(&broker, &["list-queues", "--columns", "name,ready,unacked"]).await),
        "name  ready  unacked\n\
         jobs      0        1\n"
    );
    assert_eq!(
        ok(&ctl(&broker, &["purge", "jobs"]).await),
        "purged 0 messages from jobs\n"
    );
    conn.close().await.unwrap();
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declare_creates_then_checks_the_settings() {
    let (broker, _url) = start(test_config()).await;
    let declare = [
        "declare",
        "orders/eu",
        "--set",
        "group_key=JMSXGroupID",
        "--set",
        "max_message_size=1048576",
        "--set",
        "group_buckets=-1",
        "--set",
        "group_rebalance=true",
    ];
    assert_eq!(ok(&ctl(&broker, &declare).await), "declared orders/eu\n");
    // The name went percent-encoded and arrived whole.
    assert_eq!(broker.queue_names(), ["orders/eu"]);
    let json = ok(&ctl(&broker, &["list-queues", "--format", "json"]).await);
    let queues: serde_json::Value = serde_json::from_str(&json).unwrap();
    let settings = &queues[0]["settings"];
    assert_eq!(settings["group_key"], "JMSXGroupID");
    assert_eq!(settings["max_message_size"], 1048576);
    assert_eq!(settings["group_rebalance"], true);

    assert_eq!(
        ok(&ctl(&broker, &declare).await),
        "orders/eu already exists with these settings\n"
    );
    let conflict = failed(
        &ctl(
            &broker,
            &["declare", "orders/eu", "--set", "max_message_size=2048"],
        )
        .await,
        1,
    );
    assert!(conflict.starts_with("sluice ctl: 409: "), "{conflict}");
    assert!(conflict.contains("max_message_size"), "{conflict}");

    let bad_key = failed(
        &ctl(&broker, &["declare", "other", "--set", "no_such_key=1"]).await,
        1,
    );
    assert!(bad_key.starts_with("sluice ctl: 400: "), "{bad_key}");
    assert!(bad_key.contains("no_such_key"), "{bad_key}");
    assert_eq!(broker.queue_names(), ["orders/eu"]);

    let usage = failed(
        &ctl(&broker, &["declare", "other", "--set", "no-equals-sign"]).await,
        2,
    );
    assert!(usage.contains("KEY=VALUE"), "{usage}");
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_removes_the_queue_and_its_messages() {
    let (broker, url) = start(test_config()).await;
    let mut conn = Connection::open("ctl-deleter", url.as_str()).await.unwrap();
    let mut session = Session::begin(&mut conn).await.unwrap();
    fill(&mut session, "doomed", 2).await;
    fill(&mut session, "kept", 1).await;

    assert_eq!(
        ok(&ctl(&broker, &["delete", "doomed"]).await),
        "deleted doomed and its 2 messages\n"
    );
    assert_eq!(broker.queue_names(), ["kept"]);
    assert_eq!(
        failed(&ctl(&broker, &["delete", "doomed"]).await, 1),
        "sluice ctl: 404: no queue named 'doomed'\n"
    );
    conn.close().await.unwrap();
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_groups_frees_the_owned_groups() {
    let broker = support::groups::broker("").await;
    let mut client = Client::connect(&broker, "ctl-groups").await;
    let mut receiver = client.receiver("r1", 1).await;
    client.send([grouped("A1", "A"), grouped("A2", "A")]).await;
    let _unsettled = support::groups::take(&mut receiver, 1).await;
    client.sync().await;

    assert_eq!(
        ok(&ctl(&broker, &["reset-groups", Q]).await),
        "reset 1 message group of orders\n"
    );
    let groups = broker.queue_groups(Q).unwrap();
    assert!(groups.iter().all(|g| g.owner.is_none()), "{groups:?}");
    assert_eq!(
        ok(&ctl(&broker, &["reset-groups", Q]).await),
        "reset 0 message groups of orders\n"
    );
    client.close().await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewind_replays_consumed_messages_and_names_the_earliest_time() {
    let (broker, url) = start(test_config()).await;
    assert_eq!(
        ok(&ctl(
            &broker,
            &["declare", "replay", "--set", "rewind_seconds=60"]
        )
        .await),
        "declared replay\n"
    );
    assert_eq!(
        ok(&ctl(&broker, &["declare", "plain"]).await),
        "declared plain\n"
    );
    // Margin for the broker's clock, which follows the wall clock from its first reading.
    let before = now_ms() - 5_000;
    let mut conn = Connection::open("ctl-rewinder", url.as_str())
        .await
        .unwrap();
    let mut session = Session::begin(&mut conn).await.unwrap();
    fill(&mut session, "replay", 2).await;
    let (receiver, deliveries) = take_unsettled(&mut session, "replay", 2).await;
    for delivery in &deliveries {
        receiver.accept(delivery).await.unwrap();
    }
    receiver.close().await.unwrap();
    until_stats(&broker, "replay", |s| s.acked == 2).await;

    let columns = [
        "list-queues",
        "--columns",
        "name,ready,acked,rewound,retained",
    ];
    assert_eq!(
        ok(&ctl(&broker, &columns).await),
        "name    ready  acked  rewound  retained\n\
         plain       0      0        0         0\n\
         replay      0      2        0         2\n"
    );
    assert_eq!(
        ok(&ctl(&broker, &["rewind", "replay", "--to", &rfc3339(before)]).await),
        "rewound 2 messages of replay\n"
    );
    assert_eq!(
        ok(&ctl(&broker, &columns).await),
        "name    ready  acked  rewound  retained\n\
         plain       0      0        0         0\n\
         replay      2      2        2         0\n"
    );
    // Epoch seconds, whole or not; the ready messages are not taken twice.
    for to in [
        (before / 1000).to_string(),
        format!("{:.3}", before as f64 / 1000.0),
    ] {
        assert_eq!(
            ok(&ctl(&broker, &["rewind", "replay", "--to", &to]).await),
            "rewound 0 messages of replay\n",
            "{to}"
        );
    }

    // Before the window: the API's message, then the earliest time on a line of its own.
    let error = failed(
        &ctl(
            &broker,
            &["rewind", "replay", "--to", "2020-01-01T00:00:00Z"],
        )
        .await,
        1,
    );
    let lines: Vec<&str> = error.lines().collect();
    assert_eq!(lines.len(), 2, "{error}");
    assert!(
        lines[0].starts_with(
            "sluice ctl: 400: cannot rewind queue 'replay' to 2020-01-01T00:00:00.000Z: the \
             earliest time it can rewind to is "
        ),
        "{error}"
    );
    let earliest = lines[1]
        .strip_prefix("sluice ctl: earliest: ")
        .unwrap_or_else(|| panic!("{error}"));
    assert!(lines[0].ends_with(earliest), "{error}");
    let earliest = humantime::parse_rfc3339(earliest).expect("an RFC 3339 time");
    let earliest_ms = earliest.duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
    assert!((earliest_ms - (now_ms() - 60_000)).abs() < 5_000, "{error}");

    assert_eq!(
        failed(
            &ctl(&broker, &["rewind", "plain", "--to", "1763918400"]).await,
            1
        ),
        "sluice ctl: 400: rewind is off for queue 'plain': its rewind_seconds is 0, so it keeps \
         no consumed messages\n"
    );
    let error = failed(
        &ctl(&broker, &["rewind", "replay", "--to", "last tuesday"]).await,
        1,
    );
    assert!(
        error.starts_with("sluice ctl: 400: to: expected an RFC 3339 time"),
        "{error}"
    );
    assert_eq!(
        failed(&ctl(&broker, &["rewind", "nope", "--to", "0"]).await, 1),
        "sluice ctl: 404: no queue named 'nope'\n"
    );
    conn.close().await.unwrap();
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_messages_are_listed_and_cancelled() {
    let (broker, url) = start(test_config()).await;
    let mut conn = Connection::open("ctl-scheduler", url.as_str())
        .await
        .unwrap();
    let mut session = Session::begin(&mut conn).await.unwrap();
    let sent_at = now_ms();
    fill_delayed(&mut session, "later", &[120_000, 60_000]).await;

    let table = ok(&ctl(&broker, &["list-scheduled", "later"]).await);
    let lines: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert_eq!(lines[0], ["id", "due", "bytes"], "{table}");
    // Earliest due first.
    let mut ids = Vec::new();
    for (row, delay) in lines[1..].iter().zip([60_000, 120_000]) {
        assert!(row[0].parse::<u64>().is_ok(), "{table}");
        let due = humantime::parse_rfc3339(row[1]).expect("an RFC 3339 time");
        let due_ms = due.duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
        assert!((due_ms - (sent_at + delay)).abs() < 5_000, "{table}");
        assert!(row[2].parse::<u64>().is_ok_and(|b| b > 0), "{table}");
        ids.push(row[0].to_owned());
    }
    let limited = ok(&ctl(&broker, &["list-scheduled", "later", "--limit", "1"]).await);
    assert_eq!(limited.lines().count(), 2, "{limited}");
    assert!(limited.contains(&ids[0]), "{limited}");
    let json = ok(&ctl(&broker, &["list-scheduled", "later", "--format", "json"]).await);
    let listed: serde_json::Value = serde_json::from_str(&json).expect("a JSON array");
    assert_eq!(listed[0]["id"].to_string(), ids[0]);
    assert_eq!(listed[1]["id"].to_string(), ids[1]);

    assert_eq!(
        ok(&ctl(&broker, &["cancel-scheduled", "later", &ids[0]]).await),
        format!("cancelled scheduled message {} of later\n", ids[0])
    );
    assert_eq!(
        failed(
            &ctl(&broker, &["cancel-scheduled", "later", &ids[0]]).await,
            1
        ),
        format!(
            "sluice ctl: 404: no scheduled message {} in queue 'later' (it may have become ready \
             already)\n",
            ids[0]
        )
    );
    assert_eq!(
        ok(&ctl(&broker, &["cancel-scheduled", "later", &ids[1]]).await),
        format!("cancelled scheduled message {} of later\n", ids[1])
    );
    assert_eq!(
        ok(&ctl(&broker, &["list-scheduled", "later"]).await),
        "id  due  bytes\n"
    );
    assert_eq!(
        ok(&ctl(
            &broker,
            &["list-queues", "--columns", "name,delayed,cancelled,ready"]
        )
        .await),
        "name   delayed  cancelled  ready\n\
         later        0          2      0\n"
    );
    assert_eq!(
        failed(&ctl(&broker, &["cancel-scheduled", "nope", "1"]).await, 1),
        "sluice ctl: 404: no queue named 'nope'\n"
    );
    conn.close().await.unwrap();
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_listed_and_closed() {
    let (broker, url) = start(test_config()).await;
    let mut conn = Connection::builder()
        .container_id("ctl-test-client")
        .open(url.as_str())
        .await
        .unwrap();
    let _session = Session::begin(&mut conn).await.unwrap();

    let table = ok(&ctl(&broker, &["list-connections"]).await);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["id", "peer", "user", "container_id", "sessions", "links"]
    );
    assert_eq!(lines.len(), 2, "{table}");
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(row[2..], ["-", "ctl-test-client", "1", "0"], "{table}");
    let id = row[0];
    assert!(id.parse::<u64>().is_ok(), "{table}");

    let table = ok(&ctl(
        &broker,
        &["list-connections", "--columns", "container_id,id"],
    )
    .await);
    assert_eq!(
        table.lines().nth(1).map(|l| l.split_whitespace().collect()),
        Some(vec!["ctl-test-client", id])
    );

    assert_eq!(
        ok(&ctl(&broker, &["close-connection", id]).await),
        format!("closing connection {id}\n")
    );
    assert_closed_with_connection_forced(&mut conn).await;
    assert_eq!(
        failed(&ctl(&broker, &["close-connection", "999999"]).await, 1),
        "sluice ctl: 404: no open connection with id 999999\n"
    );
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_errors_are_printed_with_their_status() {
    let (broker, _url) = start(test_config()).await;
    for verb in ["purge", "reset-groups", "delete", "list-scheduled"] {
        assert_eq!(
            failed(&ctl(&broker, &[verb, "nope"]).await, 1),
            "sluice ctl: 404: no queue named 'nope'\n",
            "{verb}"
        );
    }
    // A name that needs encoding comes back whole in the error.
    assert_eq!(
        failed(&ctl(&broker, &["purge", "a b/c?d%"]).await, 1),
        "sluice ctl: 404: no queue named 'a b/c?d%'\n"
    );
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_broker_is_named_with_its_url() {
    let (_bound, port) = dead_port();
    let mut command = sluice_ctl();
    command.args([
        "--admin",
        &format!("http://127.0.0.1:{port}"),
        "list-queues",
    ]);
    assert_eq!(
        failed(&output(command).await, 1),
        format!(
            "sluice ctl: cannot reach the admin API at http://127.0.0.1:{port} (connection \
             refused); is the broker running, and is [admin] enabled?\n"
        )
    );
    // SLUICE_ADMIN is used when --admin is absent.
    let mut command = sluice_ctl();
    command
        .env("SLUICE_ADMIN", format!("http://127.0.0.1:{port}/"))
        .args(["purge", "orders"]);
    let error = failed(&output(command).await, 1);
    assert!(
        error.starts_with(&format!(
            "sluice ctl: cannot reach the admin API at http://127.0.0.1:{port} ("
        )),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_flag_wins_over_the_environment() {
    let (broker, _url) = start(test_config()).await;
    let (_bound, port) = dead_port();
    let mut command = sluice_ctl();
    command
        .env("SLUICE_ADMIN", format!("http://127.0.0.1:{port}"))
        .args(["--admin", &admin_url(&broker), "list-queues"]);
    assert_eq!(
        ok(&output(command).await),
        "name  ready  unacked  consumers\n"
    );
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_usage_exits_2() {
    // No broker: these fail before any request.
    let mut command = sluice_ctl();
    command.args(["list-queues", "--columns", "name,nonsense"]);
    let error = failed(&output(command).await, 2);
    assert!(error.contains("nonsense"), "{error}");
    for valid in [
        "ready",
        "unacked",
        "dead_lettered",
        "timed_out",
        "cancelled",
        "rewound",
        "retained",
        "enqueue_rate",
        "ack_rate",
    ] {
        assert!(error.contains(valid), "{valid} missing from: {error}");
    }

    let mut command = sluice_ctl();
    command.args(["list-connections", "--columns", "name"]);
    let error = failed(&output(command).await, 2);
    assert!(error.contains("container_id"), "{error}");

    for args in [
        &["frobnicate"][..],
        &["purge"],
        &["close-connection", "three"],
        &["rewind", "orders"],
        &["rewind", "orders", "--to", ""],
        &["list-scheduled", "orders", "--limit", "0"],
        &["list-scheduled", "orders", "--limit", "10001"],
        &["cancel-scheduled", "orders"],
        &["cancel-scheduled", "orders", "x"],
        &["--user", "ops", "list-queues"],
        &["--admin", "https://127.0.0.1:8672", "list-queues"],
    ] {
        let mut command = sluice_ctl();
        command.args(args);
        failed(&output(command).await, 2);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_comes_from_flags_or_the_environment() {
    let mut config = test_config();
    config.users = support::broker::ops_and_app_users("s3cret", "app");
    let (broker, _url) = start(config).await;
    let header = "name  ready  unacked  consumers\n";

    let error = failed(&ctl(&broker, &["list-queues"]).await, 1);
    assert!(error.starts_with("sluice ctl: 401: "), "{error}");
    let auth = ["--user", "ops", "--password", "s3cret", "list-queues"];
    assert_eq!(ok(&ctl(&broker, &auth).await), header);
    let wrong = ["--user", "ops", "--password", "nope", "list-queues"];
    let error = failed(&ctl(&broker, &wrong).await, 1);
    assert!(error.starts_with("sluice ctl: 401: "), "{error}");
    let no_role = ["--user", "app", "--password", "app", "list-queues"];
    assert_eq!(
        failed(&ctl(&broker, &no_role).await, 1),
        "sluice ctl: 403: user 'app' lacks the admin role\n"
    );

    let mut command = sluice_ctl();
    command
        .env("SLUICE_ADMIN", admin_url(&broker))
        .env("SLUICE_ADMIN_USER", "ops")
        .env("SLUICE_ADMIN_PASSWORD", "s3cret")
        .arg("list-queues");
    assert_eq!(ok(&output(command).await), header);
    broker.shutdown().await;
}
