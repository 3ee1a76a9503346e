//! `sluice ctl`'s time verbs against an in-process broker: rewind (and the earliest time it
//! names when asked for too early a time), and the scheduled messages. The rest is in
//! tests/ctl.rs.

#![allow(clippy::unwrap_used)] // a test, bench or tool: a panic here is a failed run, not a broker down

mod support;

use std::time::UNIX_EPOCH;

use fe2o3_amqp::{Connection, Session};
use support::broker::{start, test_config};
use support::clock::{now_ms, rfc3339};
use support::ctl::*;

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
    support::admin::send_delayed(
        &mut session,
        "later",
        &[("later-0", 120_000), ("later-1", 60_000)],
    )
    .await;

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
