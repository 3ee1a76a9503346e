//! `sluice ctl`, black-box: the built binary against an in-process broker's admin API, with
//! queues and connections made by the fe2o3-amqp client.
//!
//! The binary runs on a blocking thread so the broker's runtime keeps serving meanwhile.

#![allow(clippy::unwrap_used)] // a test, bench or tool: a panic here is a failed run, not a broker down

mod support;

use fe2o3_amqp::{Connection, Session};
use support::broker::{assert_closed_with_connection_forced, start, test_config};
use support::ctl::*;
use support::groups::{grouped, Client, Q};

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
        "sluice ctl: 403: user 'app' has none of the roles admin, management, monitoring\n"
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchanges_and_bindings_are_declared_listed_and_removed() {
    let (broker, url) = start(test_config()).await;
    assert_eq!(
        ok(&ctl(&broker, &["declare-exchange", "logs", "--type", "topic"]).await),
        "declared exchange logs\n"
    );
    assert_eq!(
        ok(&ctl(&broker, &["declare-exchange", "logs", "--type", "topic"]).await),
        "exchange logs already exists with these properties\n"
    );
    let conflict = failed(
        &ctl(&broker, &["declare-exchange", "logs", "--type", "fanout"]).await,
        1,
    );
    assert!(
        conflict.contains("409") && conflict.contains("type (it is topic, not fanout)"),
        "{conflict}"
    );
    let bad = failed(
        &ctl(&broker, &["declare-exchange", "x", "--type", "weird"]).await,
        1,
    );
    assert!(
        bad.contains("expected direct, fanout, topic or headers"),
        "{bad}"
    );
    let reserved = failed(&ctl(&broker, &["delete-exchange", "amq.topic"]).await, 1);
    assert!(reserved.contains("reserved"), "{reserved}");

    ok(&ctl(&broker, &["declare", "audit"]).await);
    assert_eq!(
        ok(&ctl(&broker, &["bind", "logs", "audit", "--key", "log.#"]).await),
        "bound audit to logs with key 'log.#'\n"
    );
    let missing = failed(
        &ctl(&broker, &["bind", "logs", "nope", "--key", "a"]).await,
        1,
    );
    assert!(missing.contains("404"), "{missing}");
    let pattern = failed(
        &ctl(&broker, &["bind", "logs", "audit", "--key", "log.err*"]).await,
        1,
    );
    assert!(pattern.contains("whole words"), "{pattern}");
    assert_eq!(
        ok(&ctl(&broker, &["list-bindings"]).await),
        "exchange  queue  key\n\
         logs      audit  log.#\n"
    );
    let exchanges = ok(&ctl(&broker, &["list-exchanges"]).await);
    assert!(
        exchanges.starts_with("name        type     durable  unroutable  bindings\n"),
        "{exchanges}"
    );
    assert!(
        exchanges.contains("amq.topic   topic    true     release            0\n"),
        "{exchanges}"
    );
    assert!(
        exchanges.contains("logs        topic    true     release            1\n"),
        "{exchanges}"
    );

    // The binding routes what AMQP clients send to the exchange.
    let mut conn = Connection::open("ctl-router", url.as_str()).await.unwrap();
    let mut session = Session::begin(&mut conn).await.unwrap();
    let mut sender = fe2o3_amqp::Sender::attach(&mut session, "s", "logs")
        .await
        .unwrap();
    let message = fe2o3_amqp::types::messaging::Message::builder()
        .properties(
            fe2o3_amqp::types::messaging::Properties::builder()
                .subject("log.info")
                .build(),
        )
        .value("hello".to_string())
        .build();
    sender
        .send(message)
        .await
        .unwrap()
        .accepted_or_else(|o| o)
        .unwrap();
    assert_eq!(broker.queue_stats("audit").unwrap().ready, 1);

    assert_eq!(
        ok(&ctl(&broker, &["unbind", "logs", "audit", "--key", "log.#"]).await),
        "unbound audit from logs\n"
    );
    failed(
        &ctl(&broker, &["unbind", "logs", "audit", "--key", "log.#"]).await,
        1,
    );
    assert_eq!(
        ok(&ctl(&broker, &["delete-exchange", "logs"]).await),
        "deleted exchange logs\n"
    );
    conn.close().await.unwrap();
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchanges_and_bindings_declared_at_run_time_survive_a_restart() {
    let config = test_config();
    let (broker, _url) = start(config.clone()).await;
    ok(&ctl(&broker, &["declare-exchange", "events", "--type", "fanout"]).await);
    ok(&ctl(
        &broker,
        &[
            "declare-exchange",
            "scratch",
            "--type",
            "topic",
            "--transient",
        ],
    )
    .await);
    ok(&ctl(&broker, &["declare", "billing"]).await);
    ok(&ctl(&broker, &["declare", "shipping"]).await);
    ok(&ctl(&broker, &["bind", "events", "billing"]).await);
    ok(&ctl(
        &broker,
        &["bind", "amq.topic", "shipping", "--key", "order.*"],
    )
    .await);
    ok(&ctl(&broker, &["bind", "scratch", "billing", "--key", "x"]).await);
    broker.shutdown().await;

    let (broker, url) = start(config).await;
    let exchanges = ok(&ctl(&broker, &["list-exchanges"]).await);
    assert!(exchanges.contains("events "), "{exchanges}");
    assert!(
        !exchanges.contains("scratch"),
        "a transient exchange is not kept: {exchanges}"
    );
    assert_eq!(
        ok(&ctl(&broker, &["list-bindings"]).await),
        "exchange   queue     key\n\
         amq.topic  shipping  order.*\n\
         events     billing   #\n"
    );
    let mut conn = Connection::open("ctl-restart", url.as_str()).await.unwrap();
    let mut session = Session::begin(&mut conn).await.unwrap();
    let mut sender = fe2o3_amqp::Sender::attach(&mut session, "s", "events")
        .await
        .unwrap();
    let message = fe2o3_amqp::types::messaging::Message::builder()
        .value("hello".to_string())
        .build();
    sender
        .send(message)
        .await
        .unwrap()
        .accepted_or_else(|o| o)
        .unwrap();
    assert_eq!(broker.queue_stats("billing").unwrap().ready, 1);
    ok(&ctl(&broker, &["unbind", "events", "billing"]).await);
    conn.close().await.unwrap();
    broker.shutdown().await;
}
