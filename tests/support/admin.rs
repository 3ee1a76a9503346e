//! Helpers of the admin API tests: a broker with its admin address, sending and consuming
//! with fe2o3-amqp, times, and a Prometheus scrape parser.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use fe2o3_amqp::link::receiver::CreditMode;
use fe2o3_amqp::types::messaging::{Message, MessageAnnotations, Properties};
use fe2o3_amqp::types::primitives::{Symbol, Value as AmqpValue};
use fe2o3_amqp::{Receiver, Sender};
use serde_json::Value;
use sluice::BrokerHandle;

use super::broker::{start, test_config};
use super::http::request;

pub const WAIT: Duration = Duration::from_secs(5);

pub async fn broker() -> (BrokerHandle, String, SocketAddr) {
    let (broker, url) = start(test_config()).await;
    let admin = broker.admin_addr().expect("the admin listener is on");
    (broker, url, admin)
}

/// Sends `bodies` to `queue` (in group `group` when given), each accepted by the broker.
pub async fn send(
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
pub async fn send_delayed(
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
pub async fn consume(
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

/// `POST /api/queues/{queue}/rewind` with `body`.
pub async fn rewind(admin: SocketAddr, queue: &str, body: &str) -> super::http::Answer {
    let path = format!("/api/queues/{queue}/rewind");
    request(admin, "POST", &path, Some(body), None).await
}

/// Polls `check` until it holds, for up to 5 s (the broker applies dispositions a moment after
/// the client sends them).
pub async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn queue_named<'a>(queues: &'a Value, name: &str) -> &'a Value {
    queues
        .as_array()
        .and_then(|qs| qs.iter().find(|q| q["name"] == name))
        .unwrap_or_else(|| panic!("no queue {name} in {queues}"))
}

/// Parses the exposition with a Prometheus text-format parser and indexes samples by name
/// and `queue` label.
pub fn scrape(text: &str) -> HashMap<(String, String), f64> {
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
                // A histogram counts as its number of observations (the +Inf bucket).
                prometheus_parse::Value::Histogram(buckets) => {
                    buckets.last().map_or(0.0, |b| b.count)
                }
                other => panic!("unexpected sample {other:?}"),
            };
            ((s.metric, queue), value)
        })
        .collect()
}
