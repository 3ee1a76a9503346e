//! Black-box tests of the admin API (docs/admin-api.md): what it reports matches what real
//! fe2o3-amqp clients did, its actions act on the broker, its errors are JSON with the right
//! status, and /metrics is valid Prometheus exposition.

#![allow(clippy::unwrap_used)] // a test, bench or tool: a panic here is a failed run, not a broker down

mod support;

use base64::Engine;
use fe2o3_amqp::{Connection, Receiver, Sender, Session};
use serde_json::json;
use support::admin::{broker, eventually, queue_named, scrape, send, WAIT};
use support::broker::{start, test_config};
use support::http::{get_json, request};

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
    assert!(app.json()["error"]
        .as_str()
        .unwrap()
        .contains("none of the roles admin, management, monitoring"));
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

#[tokio::test]
async fn monitoring_reads_and_management_changes() {
    let mut config = test_config();
    let user = |name: &str, role: &str| sluice::config::User {
        name: name.into(),
        password: "pw".into(),
        password_hash: None,
        roles: vec![role.into()],
        ..Default::default()
    };
    config.users = vec![user("watcher", "monitoring"), user("manager", "management")];
    let (broker, _url) = start(config).await;
    let admin = broker.admin_addr().unwrap();
    let as_user = |name: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{name}:pw"))
        )
    };
    let read = request(admin, "GET", "/api/queues", None, Some(&as_user("watcher"))).await;
    assert_eq!(read.status, 200);
    let metrics = request(admin, "GET", "/metrics", None, Some(&as_user("watcher"))).await;
    assert_eq!(metrics.status, 200);
    let declare = request(
        admin,
        "PUT",
        "/api/queues/managed",
        Some("{}"),
        Some(&as_user("watcher")),
    )
    .await;
    assert_eq!(declare.status, 403);
    assert!(declare.json()["error"]
        .as_str()
        .unwrap()
        .contains("needs the admin or management role"));
    let declare = request(
        admin,
        "PUT",
        "/api/queues/managed",
        Some("{}"),
        Some(&as_user("manager")),
    )
    .await;
    assert!(declare.status < 300, "{}", declare.status);
    broker.shutdown().await;
}
