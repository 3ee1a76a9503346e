//! Black-box tests of the admin API's time endpoints (docs/admin-api.md): rewind, the
//! scheduled messages, and the metrics that count timeouts, cancels, rewinds and what is kept
//! for rewind. The rest of the API is in tests/admin.rs.

#![allow(clippy::unwrap_used)] // a test, bench or tool: a panic here is a failed run, not a broker down

mod support;

use fe2o3_amqp::link::receiver::CreditMode;
use fe2o3_amqp::{Connection, Receiver, Session};
use serde_json::{json, Value};
use support::admin::{
    broker, consume, eventually, queue_named, rewind, scrape, send, send_delayed, WAIT,
};
use support::clock::{now_ms, rfc3339};
use support::http::{get_json, request};

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
