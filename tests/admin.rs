//! Black-box tests of the admin API (docs/admin-api.md): what it reports matches what real
//! fe2o3-amqp clients did, its actions act on the broker, its errors are JSON with the right
//! status, and /metrics is valid Prometheus exposition.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use fe2o3_amqp::link::receiver::CreditMode;
use fe2o3_amqp::types::messaging::{Message, MessageAnnotations, Properties};
use fe2o3_amqp::types::primitives::{Symbol, Value as AmqpValue};
use fe2o3_amqp::{Connection, Receiver, Sender, Session};
use serde_json::{json, Value};
use sluice::BrokerHandle;
use support::broker::{start, test_config};
use support::http::{get_json, request};

const WAIT: Duration = Duration::from_secs(5);

async fn broker() -> (BrokerHandle, String, SocketAddr) {
    let (broker, url) = start(test_config()).await;
    let admin = broker.admin_addr().expect("the admin listener is on");
    (broker, url, admin)
}

/// Sends `bodies` to `queue` (in group `group` when given), each accepted by the broker.
async fn send(
    session: &mut fe2o3_amqp::session::SessionHandle<()>,
    queue: &str,
    bodies: &[&str],
    group: Option<&str>,
) {
    let mut sender = Sender::attach(session, format!("send-{queue}"), queue)
        .await
        .unwrap();
    for body in bodies {
        let message = Message::builder()
            .properties(Properties {
                group_id: group.map(String::from),
                ..Properties::default()
            })
            .value(body.to_string())
            .build();
        let outcome = sender.send(message).await.unwrap();
        assert!(outcome.is_accepted(), "{outcome:?}");
    }
    sender.close().await.unwrap();
}

/// Sends `bodies` to `queue`, each with message annotation `x-opt-delivery-delay` (a long, in
/// ms) as given with it.
async fn send_delayed(
    session: &mut fe2o3_amqp::session::SessionHandle<()>,
    queue: &str,
    bodies: &[(&str, i64)],
) {
    let mut sender = Sender::attach(session, format!("send-delayed-{queue}"), queue)
        .await
        .unwrap();
    for &(body, delay_ms) in bodies {
        let annotations = MessageAnnotations::builder()
            .insert(
                Symbol::from("x-opt-delivery-delay"),
                AmqpValue::Long(delay_ms),
            )
            .build();
        let message = Message::builder()
            .message_annotations(annotations)
            .value(body.to_string())
            .build();
        let outcome = sender.send(message).await.unwrap();
        assert!(outcome.is_accepted(), "{outcome:?}");
    }
    sender.close().await.unwrap();
}

/// Receives `n` messages from `queue` on a link of its own, accepts each, and detaches;
/// returns the bodies with their delivery-count.
async fn consume(
    session: &mut fe2o3_amqp::session::SessionHandle<()>,
    queue: &str,
    n: u32,
) -> Vec<(String, u32)> {
    let mut receiver = Receiver::builder()
        .name(format!("consume-{queue}"))
        .source(queue)
        .credit_mode(CreditMode::Manual)
        .attach(session)
        .await
        .unwrap();
    receiver.set_credit(n).await.unwrap();
    let mut got = Vec::new();
    for _ in 0..n {
        let delivery = tokio::time::timeout(WAIT, receiver.recv::<String>())
            .await
            .expect("a delivery")
            .unwrap();
        receiver.accept(&delivery).await.unwrap();
        let count = delivery
            .message()
            .header
            .as_ref()
            .map_or(0, |h| h.delivery_count);
        got.push((delivery.body().clone(), count));
    }
    receiver.close().await.unwrap();
    got
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

/// `POST /api/queues/{queue}/rewind` with `body`.
async fn rewind(admin: SocketAddr, queue: &str, body: &str) -> support::http::Answer {
    let path = format!("/api/queues/{queue}/rewind");
    request(admin, "POST", &path, Some(body), None).await
}

/// Polls `check` until it holds, for up to 5 s (the broker applies dispositions a moment after
/// the client sends them).
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn queue_named<'a>(queues: &'a Value, name: &str) -> &'a Value {
    queues
        .as_array()
        .and_then(|qs| qs.iter().find(|q| q["name"] == name))
        .unwrap_or_else(|| panic!("no queue {name} in {queues}"))
}

#[tokio::test]
async fn queues_show_ready_and_unacked_counts_consumers_and_group_owners() {
    let (broker, url, admin) = broker().await;
    let mut conn = Connection::open("admin-test", url.as_str()).await.unwrap();
    let mut session = Session::begin(&mut conn).await.unwrap();
    send(&mut session, "orders", &["a", "b", "c", "d", "e"], None).await;
    send(&mut session, "grouped", &["g1", "g2"], Some("customer-42")).await;

    // Two of the five are received and left unsettled.
    let mut receiver = Receiver::builder()
        .name("orders-receiver")
        .source("orders")
        .credit_mode(fe2o3_amqp::link::receiver::CreditMode::Manual)
        .attach(&mut session)
        .await
        .unwrap();
    receiver.set_credit(2).await.unwrap();
    for _ in 0..2 {
        tokio::time::timeout(WAIT, receiver.recv::<String>())
            .await
            .unwrap()
            .unwrap();
    }
    let mut grouped = Receiver::attach(&mut session, "grouped-receiver", "grouped")
        .await
        .unwrap();
    let first = tokio::time::timeout(WAIT, grouped.recv::<String>())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.body(), "g1");

    eventually("ready 3 / unacked 2", async || {
        let queues = get_json(admin, "/api/queues").await;
        let q = queue_named(&queues, "orders");
        q["ready"] == 3 && q["unacked"] == 2
    })
    .await;
    let queues = get_json(admin, "/api/queues").await;
    let orders = queue_named(&queues, "orders");
    assert_eq!(orders["consumers"], 1);
    assert_eq!(orders["enqueued"], 5);
    assert_eq!(orders["durable"], true);
    assert_eq!(orders["settings"]["group_key"], "group-id");
    assert_eq!(orders["bytes"].as_u64().map(|b| b > 0), Some(true));

    let detail = get_json(admin, "/api/queues/orders").await;
    let consumer = &detail["consumers_detail"][0];
    assert_eq!(consumer["link"], "orders-receiver");
    assert_eq!(
        (consumer["credit"].clone(), consumer["unacked"].clone()),
        (json!(0), json!(2))
    );
    let connection_id = consumer["connection"].clone();

    let grouped_detail = get_json(admin, "/api/queues/grouped").await;
    assert_eq!(grouped_detail["groups"], 1);
    let group = &grouped_detail["groups_detail"][0];
    assert_eq!(group["group"], "customer-42");
    assert_eq!(group["owner_link"], "grouped-receiver");

    let overview = get_json(admin, "/api/overview").await;
    assert_eq!(overview["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(overview["connections"], 1);
    assert_eq!(overview["queues"], 2);
    assert!(overview["messages"]["unacked"].as_u64().unwrap() >= 2);

    // The connection's own view: its links, their credit and unsettled deliveries.
    let connections = get_json(admin, "/api/connections").await;
    assert_eq!(connections[0]["id"], connection_id);
    assert_eq!(connections[0]["container_id"], "admin-test");
    let detail = get_json(admin, &format!("/api/connections/{connection_id}")).await;
    let links = &detail["sessions_detail"][0]["links"];
    let link = links
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == "orders-receiver")
        .expect("the receiver's link");
    assert_eq!(link["role"], "consumer");
    assert_eq!(link["address"], "orders");
    assert_eq!(link["unsettled"], 2);
    assert_eq!(detail["links"], 2);

    grouped.close().await.unwrap();
    receiver.close().await.unwrap();
    session.end().await.unwrap();
    conn.close().await.unwrap();
    broker.shutdown().await;
}

#[tokio::test]
async fn purge_reset_and_delete_act_on_the_queue() {
    let (broker, url, admin) = broker().await;
    let mut conn = Connection::open("admin-actions", url.as_str())
        .await
        .unwrap();
    let mut session = Session::begin(&mut conn).await.unwrap();
    send(&mut session, "work", &["1", "2", "3"], None).await;

    let purged = request(admin, "POST", "/api/queues/work/purge", None, None).await;
    assert_eq!((purged.status, purged.json()), (200, json!({"purged": 3})));
    assert_eq!(broker.queue_stats("work").unwrap().ready, 0);

    send(&mut session, "work", &["g"], Some("A")).await;
    let mut receiver = Receiver::attach(&mut session, "holder", "work")
        .await
        .unwrap();
    tokio::time::timeout(WAIT, receiver.recv::<String>())
        .await
        .unwrap()
        .unwrap();
    let reset = request(admin, "POST", "/api/queues/work/reset-groups", None, None).await;
    assert_eq!((reset.status, reset.json()), (200, json!({"reset": 1})));

    // Deleting the queue detaches its consumer with amqp:resource-deleted...
    let mut producer = Sender::attach(&mut session, "late-producer", "work")
        .await
        .unwrap();
    let deleted = request(admin, "DELETE", "/api/queues/work", None, None).await;
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    assert_eq!(deleted.json(), json!({"deleted": "work", "messages": 1}));
    assert!(broker.queue_stats("work").is_none());
    let err = tokio::time::timeout(WAIT, receiver.recv::<String>())
        .await
        .unwrap()
        .unwrap_err();
    assert!(format!("{err:?}").contains("ResourceDeleted"), "{err:?}");
    // ...and a producer that still holds it at its next message.
    let err = tokio::time::timeout(WAIT, producer.send("after delete"))
        .await
        .unwrap()
        .unwrap_err();
    assert!(format!("{err:?}").contains("ResourceDeleted"), "{err:?}");
    let _ = conn.close().await;
    broker.shutdown().await;
}

#[tokio::test]
async fn declare_creates_agrees_and_refuses_conflicts_with_clear_errors() {
    let (broker, _url, admin) = broker().await;
    let body = r#"{"settings": {"group_key": "JMSXGroupID", "max_message_size": 1024}}"#;
    let created = request(admin, "PUT", "/api/queues/orders%2Feu", Some(body), None).await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.json()["name"], "orders/eu");
    assert_eq!(created.json()["settings"]["group_key"], "JMSXGroupID");
    assert_eq!(broker.queue_names(), ["orders/eu"]);

    let again = request(admin, "PUT", "/api/queues/orders%2Feu", Some(body), None).await;
    assert_eq!(again.status, 200, "{}", again.body);

    let other = r#"{"settings": {"max_message_size": 2048}}"#;
    let conflict = request(admin, "PUT", "/api/queues/orders%2Feu", Some(other), None).await;
    assert_eq!(conflict.status, 409, "{}", conflict.body);
    let message = conflict.json()["error"].as_str().unwrap().to_owned();
    assert!(
        message.contains("max_message_size") && message.contains("group_key"),
        "{message}"
    );

    for (body, expected) in [
        (
            r#"{"settings": {"max_mesage_size": 1}}"#,
            "unknown key `max_mesage_size`",
        ),
        (
            r#"{"settings": {"group_release": "sometimes"}}"#,
            "group_release",
        ),
        (
            r#"{"settings": {"max_message_size": 1.5}}"#,
            "not an integer",
        ),
        (r#"{"setting": {}}"#, "invalid declare body"),
        ("not json", "invalid declare body"),
    ] {
        let answer = request(admin, "PUT", "/api/queues/bad", Some(body), None).await;
        assert_eq!(answer.status, 400, "{body}: {}", answer.body);
        let error = answer.json()["error"].as_str().unwrap().to_owned();
        assert!(error.contains(expected), "{body}: {error}");
    }
    assert!(broker.queue_stats("bad").is_none());
    broker.shutdown().await;
}

#[tokio::test]
async fn unknown_things_are_json_404s_and_bad_ids_are_400s() {
    let (broker, _url, admin) = broker().await;
    for (method, path, status, text) in [
        ("GET", "/api/queues/nope", 404, "no queue named 'nope'"),
        (
            "POST",
            "/api/queues/nope/purge",
            404,
            "no queue named 'nope'",
        ),
        ("DELETE", "/api/queues/nope", 404, "no queue named 'nope'"),
        (
            "GET",
            "/api/connections/99",
            404,
            "no open connection with id 99",
        ),
        ("DELETE", "/api/connections/abc", 400, "not a connection id"),
        (
            "POST",
            "/api/queues/nope/rewind",
            404,
            "no queue named 'nope'",
        ),
        (
            "GET",
            "/api/queues/nope/scheduled",
            404,
            "no queue named 'nope'",
        ),
        (
            "DELETE",
            "/api/queues/nope/scheduled/1",
            404,
            "no queue named 'nope'",
        ),
        ("GET", "/api/nothing-here", 404, "no such endpoint"),
    ] {
        let answer = request(admin, method, path, None, None).await;
        assert_eq!(answer.status, status, "{method} {path}: {}", answer.body);
        let error = answer.json()["error"].as_str().unwrap().to_owned();
        assert!(error.contains(text), "{method} {path}: {error}");
    }
    broker.shutdown().await;
}

#[tokio::test]
async fn closing_a_connection_closes_it_with_connection_forced() {
    let (broker, url, admin) = broker().await;
    let mut conn = Connection::open("to-be-closed", url.as_str())
        .await
        .unwrap();
    let connections = get_json(admin, "/api/connections").await;
    let id = connections[0]["id"].clone();
    let answer = request(
        admin,
        "DELETE",
        &format!("/api/connections/{id}"),
        None,
        None,
    )
    .await;
    assert_eq!(
        (answer.status, answer.json()),
        (202, json!({"closing": id}))
    );
    support::broker::assert_closed_with_connection_forced(&mut conn).await;
    eventually("the connection gone from the list", async || {
        get_json(admin, "/api/connections").await == json!([])
    })
    .await;
    broker.shutdown().await;
}

/// Parses the exposition with a Prometheus text-format parser and indexes samples by name
/// and `queue` label.
fn scrape(text: &str) -> HashMap<(String, String), f64> {
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text format");
    scrape
        .samples
        .into_iter()
        .map(|s| {
            let queue = s.labels.get("queue").unwrap_or_default().to_owned();
            let value = match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                other => panic!("unexpected sample {other:?}"),
            };
            ((s.metric, queue), value)
        })
        .collect()
}

#[tokio::test]
async fn metrics_are_valid_prometheus_exposition_with_the_queue_counts() {
    let (broker, url, admin) = broker().await;
    let mut conn = Connection::open("metrics", url.as_str()).await.unwrap();
    let mut session = Session::begin(&mut conn).await.unwrap();
    send(&mut session, "m", &["1", "2", "3", "4"], None).await;
    let mut receiver = Receiver::attach(&mut session, "r", "m").await.unwrap();
    let delivery = tokio::time::timeout(WAIT, receiver.recv::<String>())
        .await
        .unwrap()
        .unwrap();
    receiver.accept(&delivery).await.unwrap();
    eventually("one acked", async || {
        broker.queue_stats("m").is_some_and(|s| s.acked == 1)
    })
    .await;

    let answer = request(admin, "GET", "/metrics", None, None).await;
    assert_eq!(answer.status, 200);
    assert!(
        answer
            .header("content-type")
            .is_some_and(|c| c.starts_with("text/plain")),
        "{:?}",
        answer.headers
    );
    let samples = scrape(&answer.body);
    let get = |name: &str, queue: &str| {
        samples
            .get(&(name.to_owned(), queue.to_owned()))
            .copied()
            .unwrap_or_else(|| panic!("no {name}{{queue={queue:?}}} in\n{}", answer.body))
    };
    assert_eq!(get("sluice_queue_enqueued_total", "m"), 4.0);
    assert_eq!(get("sluice_queue_acked_total", "m"), 1.0);
    assert_eq!(get("sluice_queue_consumers", "m"), 1.0);
    // The receiver's credit is the default 1000, so the other three are out, unsettled.
    assert_eq!(
        get("sluice_queue_messages_ready", "m") + get("sluice_queue_messages_unacked", "m"),
        3.0
    );
    assert_eq!(get("sluice_connections", ""), 1.0);
    assert_eq!(get("sluice_sessions", ""), 1.0);
    assert_eq!(get("sluice_links", ""), 1.0);
    assert!(get("sluice_bytes_received_total", "") > 0.0);
    assert!(get("sluice_bytes_sent_total", "") > 0.0);
    assert!(answer
        .body
        .contains("# TYPE sluice_queue_enqueued_total counter"));
    assert!(answer
        .body
        .contains("# TYPE sluice_queue_messages_ready gauge"));
    // The time-based families are there from the start, at zero.
    for name in [
        "sluice_queue_timed_out_total",
        "sluice_queue_cancelled_total",
        "sluice_queue_rewound_total",
        "sluice_queue_messages_retained",
    ] {
        assert_eq!(get(name, "m"), 0.0, "{name}");
    }
    let _ = conn.close().await;
    broker.shutdown().await;
}

#[tokio::test]
async fn rewind_makes_consumed_messages_ready_again() {
    let (broker, url, admin) = broker().await;
    let declared = request(
        admin,
        "PUT",
        "/api/queues/replay",
        Some(r#"{"settings": {"rewind_seconds": 60}}"#),
        None,
    )
    .await;
    assert_eq!(declared.status, 201, "{}", declared.body);
    let settings = &declared.json()["settings"];
    assert_eq!(settings["rewind_seconds"], 60);
    assert_eq!(settings["rewind_max_bytes"], 64 * 1024 * 1024);
    assert_eq!(settings["dead_letter_address"], Value::Null);
    assert_eq!(
        (
            settings["default_delay"].clone(),
            settings["default_ttl"].clone(),
            settings["visibility_timeout"].clone(),
            settings["max_delivery_attempts"].clone()
        ),
        (json!(0), json!(0), json!(0), json!(0))
    );

    // Margin for the broker's clock, which follows the wall clock from its first reading.
    let before = now_ms() - 5_000;
    let mut conn = Connection::open("rewind", url.as_str()).await.unwrap();
    let mut session = Session::begin(&mut conn).await.unwrap();
    send(&mut session, "replay", &["a", "b"], None).await;
    let first = consume(&mut session, "replay", 2).await;
    assert_eq!(first, [("a".to_owned(), 0), ("b".to_owned(), 0)]);
    eventually("two acked", async || {
        broker.queue_stats("replay").is_some_and(|s| s.acked == 2)
    })
    .await;
    let detail = get_json(admin, "/api/queues/replay").await;
    assert_eq!(
        (detail["ready"].clone(), detail["retained"].clone()),
        (json!(0), json!(2))
    );
    let earliest_ms = detail["rewind_earliest_ms"].as_i64().expect("rewind is on");
    assert!(earliest_ms < before, "{detail}");
    assert_eq!(detail["rewind_earliest"], rfc3339(earliest_ms));

    let body = json!({ "to": rfc3339(before) }).to_string();
    let answer = rewind(admin, "replay", &body).await;
    assert_eq!((answer.status, answer.json()), (200, json!({"rewound": 2})));
    let stats = broker.queue_stats("replay").unwrap();
    assert_eq!((stats.ready, stats.rewound, stats.retained), (2, 2, 0));
    // Ready messages are not taken twice.
    let answer = rewind(admin, "replay", &body).await;
    assert_eq!((answer.status, answer.json()), (200, json!({"rewound": 0})));

    // Back in their order, delivered once more; then again, by epoch seconds this time.
    let second = consume(&mut session, "replay", 2).await;
    assert_eq!(second, [("a".to_owned(), 1), ("b".to_owned(), 1)]);
    eventually("four acked", async || {
        broker.queue_stats("replay").is_some_and(|s| s.acked == 4)
    })
    .await;
    let seconds = before as f64 / 1000.0;
    let answer = rewind(admin, "replay", &json!({ "to": seconds }).to_string()).await;
    assert_eq!((answer.status, answer.json()), (200, json!({"rewound": 2})));
    let queues = get_json(admin, "/api/queues").await;
    let replay = queue_named(&queues, "replay");
    assert_eq!(
        (
            replay["ready"].clone(),
            replay["rewound"].clone(),
            replay["retained"].clone()
        ),
        (json!(2), json!(4), json!(0))
    );

    // A time after the sends: nothing was enqueued since.
    let later = json!({ "to": rfc3339(now_ms() + 60_000) }).to_string();
    let answer = rewind(admin, "replay", &later).await;
    assert_eq!((answer.status, answer.json()), (200, json!({"rewound": 0})));
    let _ = conn.close().await;
    broker.shutdown().await;
}

#[tokio::test]
async fn rewind_before_the_window_or_when_off_or_with_a_bad_body_is_a_400() {
    let (broker, _url, admin) = broker().await;
    let declare = |name: &'static str, body: &'static str| async move {
        let path = format!("/api/queues/{name}");
        let answer = request(admin, "PUT", &path, Some(body), None).await;
        assert_eq!(answer.status, 201, "{}", answer.body);
    };
    declare("short", r#"{"settings": {"rewind_seconds": 1}}"#).await;
    declare("plain", "").await;

    for to in [json!("2020-01-01T00:00:00Z"), json!(0)] {
        let asked_at = now_ms();
        let answer = rewind(admin, "short", &json!({ "to": to }).to_string()).await;
        assert_eq!(answer.status, 400, "{}", answer.body);
        let error = answer.json();
        let earliest_ms = error["earliest_ms"].as_i64().expect("earliest_ms");
        // One second back from the broker's now, give or take the clocks.
        assert!(
            (earliest_ms - (asked_at - 1_000)).abs() < 5_000,
            "{earliest_ms} vs {asked_at}"
        );
        assert_eq!(error["earliest"], rfc3339(earliest_ms));
        let message = error["error"].as_str().unwrap();
        assert!(
            message.contains("cannot rewind queue 'short'")
                && message.contains(error["earliest"].as_str().unwrap()),
            "{message}"
        );
    }

    let off = rewind(admin, "plain", r#"{"to": "2026-11-23T17:20:00Z"}"#).await;
    assert_eq!(off.status, 400, "{}", off.body);
    let error = off.json();
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .contains("rewind is off for queue 'plain'"),
        "{error}"
    );
    assert_eq!(error.get("earliest"), None, "{error}");
    let detail = get_json(admin, "/api/queues/plain").await;
    assert_eq!(detail["rewind_earliest"], Value::Null);

    for (body, expected) in [
        ("", "needs a body"),
        ("not json", "invalid rewind body"),
        ("{}", "missing field `to`"),
        (r#"{"to": 1, "from": 2}"#, "unknown field `from`"),
        (r#"{"to": "yesterday"}"#, "expected an RFC 3339 time"),
        (
            r#"{"to": "2026-11-23T17:20:00Zjunk"}"#,
            "expected an RFC 3339 time",
        ),
        (r#"{"to": true}"#, "expected an RFC 3339 time"),
        (r#"{"to": 1e300}"#, "out of range"),
    ] {
        let answer = rewind(admin, "short", body).await;
        assert_eq!(answer.status, 400, "{body}: {}", answer.body);
        let error = answer.json()["error"].as_str().unwrap().to_owned();
        assert!(error.contains(expected), "{body}: {error}");
    }
    assert_eq!(broker.queue_stats("short").unwrap().rewound, 0);
    broker.shutdown().await;
}

#[tokio::test]
async fn scheduled_messages_are_listed_and_cancelled() {
    let (broker, url, admin) = broker().await;
    let mut conn = Connection::open("scheduler", url.as_str()).await.unwrap();
    let mut session = Session::begin(&mut conn).await.unwrap();
    let sent_at = now_ms();
    send_delayed(
        &mut session,
        "later",
        &[("in two minutes", 120_000), ("in one", 60_000)],
    )
    .await;
    send(&mut session, "later", &["now"], None).await;

    let detail = get_json(admin, "/api/queues/later").await;
    assert_eq!(
        (detail["delayed"].clone(), detail["ready"].clone()),
        (json!(2), json!(1))
    );
    let listed = get_json(admin, "/api/queues/later/scheduled").await;
    let listed = listed.as_array().expect("an array").clone();
    assert_eq!(listed.len(), 2, "{listed:?}");
    // Earliest due first, each with its due time both ways.
    for (entry, delay) in listed.iter().zip([60_000, 120_000]) {
        let due_ms = entry["due_ms"].as_i64().unwrap();
        assert!(
            (due_ms - (sent_at + delay)).abs() < 5_000,
            "{entry} (sent at {sent_at})"
        );
        assert_eq!(entry["due"], rfc3339(due_ms));
        assert!(entry["bytes"].as_u64().unwrap() > 0, "{entry}");
    }
    let (first, second) = (listed[0]["id"].clone(), listed[1]["id"].clone());
    let limited = get_json(admin, "/api/queues/later/scheduled?limit=1").await;
    assert_eq!(limited, json!([listed[0]]));

    for (path, expected) in [
        (
            "/api/queues/later/scheduled?limit=0",
            "limit: expected an integer from 1 to 10000",
        ),
        ("/api/queues/later/scheduled?limit=10001", "found '10001'"),
        ("/api/queues/later/scheduled?limit=many", "found 'many'"),
        (
            "/api/queues/later/scheduled?lmit=1",
            "'lmit' is not a parameter",
        ),
    ] {
        let answer = request(admin, "GET", path, None, None).await;
        assert_eq!(answer.status, 400, "{path}: {}", answer.body);
        let error = answer.json()["error"].as_str().unwrap().to_owned();
        assert!(error.contains(expected), "{path}: {error}");
    }

    let cancel = |id: Value| async move {
        let path = format!("/api/queues/later/scheduled/{id}");
        request(admin, "DELETE", &path, None, None).await
    };
    let answer = cancel(first.clone()).await;
    assert_eq!(
        (answer.status, answer.json()),
        (200, json!({"cancelled": first}))
    );
    let answer = cancel(first.clone()).await;
    assert_eq!(answer.status, 404, "{}", answer.body);
    assert_eq!(
        answer.json()["error"],
        format!("no scheduled message {first} in queue 'later' (it may have become ready already)")
    );
    let answer = cancel(json!("abc")).await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert!(answer.json()["error"]
        .as_str()
        .unwrap()
        .contains("not a scheduled message id"));
    assert_eq!(
        get_json(admin, "/api/queues/later/scheduled").await,
        json!([listed[1]])
    );
    let answer = cancel(second.clone()).await;
    assert_eq!(
        (answer.status, answer.json()),
        (200, json!({"cancelled": second}))
    );
    assert_eq!(
        get_json(admin, "/api/queues/later/scheduled").await,
        json!([])
    );

    let queues = get_json(admin, "/api/queues").await;
    let later = queue_named(&queues, "later");
    assert_eq!(
        (
            later["delayed"].clone(),
            later["cancelled"].clone(),
            later["ready"].clone()
        ),
        (json!(0), json!(2), json!(1))
    );
    let overview = get_json(admin, "/api/overview").await;
    assert_eq!(overview["messages"]["delayed"], 0);
    let _ = conn.close().await;
    broker.shutdown().await;
}

#[tokio::test]
async fn metrics_count_timeouts_cancels_rewinds_and_retained_messages() {
    let (broker, url, admin) = broker().await;
    let body = r#"{"settings": {"visibility_timeout": 100, "rewind_seconds": 60}}"#;
    let declared = request(admin, "PUT", "/api/queues/t", Some(body), None).await;
    assert_eq!(declared.status, 201, "{}", declared.body);
    assert_eq!(declared.json()["settings"]["visibility_timeout"], 100);
    let before = now_ms() - 5_000;
    let mut conn = Connection::open("metrics-time", url.as_str())
        .await
        .unwrap();
    let mut session = Session::begin(&mut conn).await.unwrap();
    send(&mut session, "t", &["x"], None).await;
    send_delayed(&mut session, "t", &[("later", 60_000)]).await;

    // Received and left unsettled past the visibility timeout: taken back.
    let mut holder = Receiver::builder()
        .name("holder")
        .source("t")
        .credit_mode(CreditMode::Manual)
        .attach(&mut session)
        .await
        .unwrap();
    holder.set_credit(1).await.unwrap();
    tokio::time::timeout(WAIT, holder.recv::<String>())
        .await
        .unwrap()
        .unwrap();
    eventually("the delivery timed out", async || {
        broker
            .queue_stats("t")
            .is_some_and(|s| s.timed_out == 1 && s.ready == 1)
    })
    .await;
    holder.close().await.unwrap();
    assert_eq!(consume(&mut session, "t", 1).await, [("x".to_owned(), 1)]);
    eventually("one acked", async || {
        broker.queue_stats("t").is_some_and(|s| s.acked == 1)
    })
    .await;

    let scrape_t = async |name: &str| {
        let answer = request(admin, "GET", "/metrics", None, None).await;
        let samples = scrape(&answer.body);
        samples
            .get(&(name.to_owned(), "t".to_owned()))
            .copied()
            .unwrap_or_else(|| {
                panic!(
                    "no {name} in
{}",
                    answer.body
                )
            })
    };
    assert_eq!(scrape_t("sluice_queue_timed_out_total").await, 1.0);
    assert_eq!(scrape_t("sluice_queue_messages_retained").await, 1.0);
    assert_eq!(scrape_t("sluice_queue_messages_delayed").await, 1.0);

    let id = get_json(admin, "/api/queues/t/scheduled").await[0]["id"].clone();
    let cancelled = request(
        admin,
        "DELETE",
        &format!("/api/queues/t/scheduled/{id}"),
        None,
        None,
    )
    .await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.body);
    let answer = rewind(admin, "t", &json!({ "to": before / 1000 }).to_string()).await;
    assert_eq!((answer.status, answer.json()), (200, json!({"rewound": 1})));

    assert_eq!(scrape_t("sluice_queue_cancelled_total").await, 1.0);
    assert_eq!(scrape_t("sluice_queue_rewound_total").await, 1.0);
    assert_eq!(scrape_t("sluice_queue_messages_retained").await, 0.0);
    assert_eq!(scrape_t("sluice_queue_messages_delayed").await, 0.0);
    let answer = request(admin, "GET", "/metrics", None, None).await;
    for (name, kind) in [
        ("sluice_queue_timed_out_total", "counter"),
        ("sluice_queue_cancelled_total", "counter"),
        ("sluice_queue_rewound_total", "counter"),
        ("sluice_queue_messages_retained", "gauge"),
    ] {
        assert!(
            answer.body.contains(&format!("# TYPE {name} {kind}")),
            "{name}"
        );
    }
    let _ = conn.close().await;
    broker.shutdown().await;
}

#[tokio::test]
async fn with_users_configured_only_admins_may_call_the_api() {
    let mut config = test_config();
    config.users = support::broker::ops_and_app_users("pw", "pw");
    let (broker, _url) = start(config).await;
    let admin = broker.admin_addr().unwrap();
    let basic = |user: &str, pw: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"))
        )
    };
    let none = request(admin, "GET", "/api/overview", None, None).await;
    assert_eq!(none.status, 401);
    assert_eq!(
        none.header("www-authenticate"),
        Some("Basic realm=\"sluice\"")
    );
    let wrong = request(
        admin,
        "GET",
        "/api/overview",
        None,
        Some(&basic("ops", "nope")),
    )
    .await;
    assert_eq!(wrong.status, 401);
    let app = request(
        admin,
        "GET",
        "/api/overview",
        None,
        Some(&basic("app", "pw")),
    )
    .await;
    assert_eq!(app.status, 403);
    assert!(app.json()["error"].as_str().unwrap().contains("admin role"));
    let ops = request(admin, "GET", "/metrics", None, Some(&basic("ops", "pw"))).await;
    assert_eq!(ops.status, 200);
    broker.shutdown().await;
}

#[tokio::test]
async fn the_console_and_its_assets_are_served() {
    let (broker, _url, admin) = broker().await;
    let index = request(admin, "GET", "/", None, None).await;
    assert_eq!(index.status, 200);
    assert!(index
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    assert!(index.body.contains("/console/app.js"));
    for (path, kind) in [
        ("/console/app.js", "text/javascript"),
        ("/console/style.css", "text/css"),
    ] {
        let asset = request(admin, "GET", path, None, None).await;
        assert_eq!(asset.status, 200, "{path}");
        assert!(
            asset.header("content-type").unwrap().starts_with(kind),
            "{path}"
        );
    }
    assert_eq!(
        request(admin, "GET", "/console/x.js", None, None)
            .await
            .status,
        404
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn the_admin_listener_can_be_turned_off() {
    let mut config = test_config();
    config.admin.enabled = false;
    let (broker, _url) = start(config).await;
    assert_eq!(broker.admin_addr(), None);
    broker.shutdown().await;
}
