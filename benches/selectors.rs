//! Selectors: evaluation per message (an equality, a five-term expression, a LIKE), on a
//! 1 KiB message with six application properties read from its bytes in place; and dispatch
//! to a filtered consumer of a queue of 1,000,000 messages where 1 in 1,000 matches, given one
//! credit at a time (what a rescan per credit would make quadratic).

#![allow(clippy::unwrap_used, missing_docs)] // a bench or tool: a panic is a failed run, and criterion's macros make undocumented items

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fe2o3_amqp_types::messaging::message::__private::Serializable;
use fe2o3_amqp_types::messaging::{ApplicationProperties, Message as Amqp, Properties};
use fe2o3_amqp_types::primitives::SimpleValue;
use sluice::config::QueueSettings;
use sluice::testing::{ConnWaker, Dialect, Filter, OutItem, Outbox, Outcome, Queue, Selector};
use sluice::Message;

fn message(colour: &str) -> Message {
    let m = Amqp::builder()
        .properties(Properties::builder().subject("orders.eu").build())
        .application_properties(
            ApplicationProperties::builder()
                .insert("region", "eu")
                .insert("name", "O'Brien")
                .insert("size", SimpleValue::Int(10))
                .insert("weight", SimpleValue::Double(2.5.into()))
                .insert("express", true)
                .insert("colour", colour)
                .build(),
        )
        .data(vec![0xab_u8; 1024])
        .build();
    Message::parse(Bytes::from(serde_amqp::to_vec(&Serializable(m)).unwrap())).unwrap()
}

fn evaluation(c: &mut Criterion) {
    let mut group = c.benchmark_group("selector/evaluate one message");
    group.throughput(Throughput::Elements(1));
    let m = message("green");
    for (name, text) in [
        ("equality", "colour = 'green'"),
        (
            "five terms",
            "colour = 'green' AND size > 5 AND weight < 3.0 AND region IN ('eu', 'us') AND NOT express = FALSE",
        ),
        ("like", "name LIKE '%Bri_n'"),
    ] {
        let selector = Selector::parse(text, Dialect::Jms).unwrap();
        assert!(selector.matches(&m, 0), "{text}");
        group.bench_function(name, |b| b.iter(|| selector.matches(&m, 0)));
    }
    group.finish();
}

/// A queue of `total` messages, one in `every` green, the rest blue.
fn filled(total: u64, every: u64) -> Arc<Queue> {
    let queue = Queue::alone(
        "sparse".into(),
        QueueSettings {
            durable: false,
            ..QueueSettings::default()
        },
    );
    let (green, blue) = (message("green"), message("blue"));
    queue.enqueue((0..total).map(|i| {
        if i % every == every - 1 {
            green.clone()
        } else {
            blue.clone()
        }
    }));
    queue
}

fn sparse_dispatch(c: &mut Criterion) {
    const TOTAL: u64 = 1_000_000;
    const EVERY: u64 = 1_000;
    let mut group = c.benchmark_group("selector/dispatch");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Elements(TOTAL / EVERY));
    let filter = Arc::new(Filter {
        selectors: vec![Selector::parse("colour = 'green'", Dialect::Jms).unwrap()],
        properties: Vec::new(),
    });
    group.bench_function("1 in 1,000 of 1,000,000 matches, credit 1 at a time", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                let queue = filled(TOTAL, EVERY);
                let outbox = Outbox::new(1, ConnWaker::new());
                queue.add_consumer(outbox.clone(), "green", Some(filter.clone()));
                let start = Instant::now();
                for n in 1..=(TOTAL / EVERY) as u32 {
                    queue.flow(1, n, false);
                    let Some(OutItem::Deliver(d)) = outbox.pop() else {
                        panic!("no delivery for credit {n}")
                    };
                    queue.settle(1, [(d.seq, Outcome::Accepted)]);
                }
                spent += start.elapsed();
                assert_eq!(queue.stats().ready as u64, TOTAL - TOTAL / EVERY);
            }
            spent
        })
    });
    group.finish();
}

criterion_group!(benches, evaluation, sparse_dispatch);
criterion_main!(benches);
