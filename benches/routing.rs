//! Routing cost per message: a topic exchange with 1, 100 and 10,000 bindings (matched through
//! a trie, so the cost must not grow with the bindings), and a fanout exchange putting each
//! message into 1, 10 and 100 queues (routing and enqueueing every copy).

#![allow(clippy::unwrap_used, missing_docs)] // a bench or tool: a panic is a failed run, and criterion's macros make undocumented items

use std::sync::Arc;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use fe2o3_amqp_types::messaging::message::__private::Serializable;
use fe2o3_amqp_types::messaging::{Message as Amqp, Properties};
use sluice::config::QueueSettings;
use sluice::testing::{publish_all, Exchange, ExchangeKind, ExchangeSpec, Matcher, Queue};
use sluice::Message;

/// A 1 KiB message with `subject` as its routing key.
fn message(subject: &str) -> Message {
    let m = Amqp::builder()
        .properties(Properties::builder().subject(subject).build())
        .data(vec![0xab_u8; 1024])
        .build();
    Message::parse(Bytes::from(serde_amqp::to_vec(&Serializable(m)).unwrap())).unwrap()
}

/// Binding `i`: a third each of literal-then-`*`, `*`-first and `#`-first patterns, so the
/// trie has wildcard branches at the root; only binding 0 matches `region0.app0.error`.
fn pattern(i: usize) -> String {
    match i % 3 {
        0 => format!("region{}.app{i}.*", i % 100),
        1 => format!("*.app{i}.error"),
        _ => format!("#.app{i}.audit"),
    }
}

fn topic(c: &mut Criterion) {
    let mut group = c.benchmark_group("routing/topic exchange, one matching binding");
    group.throughput(Throughput::Elements(1));
    let m = message("region0.app0.error");
    for bindings in [1usize, 100, 10_000] {
        let exchange = Exchange::new(ExchangeSpec::new("t", ExchangeKind::Topic));
        for i in 0..bindings {
            let queue = Queue::alone(format!("q{i}"), QueueSettings::default());
            exchange.bind(queue, Matcher::Key(pattern(i))).unwrap();
        }
        let mut out = Vec::new();
        exchange.route(&m, None, &mut out);
        assert_eq!(out.len(), 1, "exactly one binding matches");
        group.bench_with_input(BenchmarkId::from_parameter(bindings), &bindings, |b, _| {
            b.iter(|| {
                out.clear();
                exchange.route(&m, None, &mut out);
            })
        });
    }
    group.finish();
}

fn fanout(c: &mut Criterion) {
    let mut group = c.benchmark_group("routing/fanout, route and enqueue every copy");
    group.throughput(Throughput::Elements(1));
    let m = message("any");
    for queues in [1usize, 10, 100] {
        let exchange = Exchange::new(ExchangeSpec::new("f", ExchangeKind::Fanout));
        let all: Vec<Arc<Queue>> = (0..queues)
            .map(|i| Queue::alone(format!("q{i}"), QueueSettings::default()))
            .collect();
        for q in &all {
            exchange.bind(q.clone(), Matcher::All).unwrap();
        }
        let mut out = Vec::new();
        let mut sent = 0u32;
        group.bench_with_input(BenchmarkId::from_parameter(queues), &queues, |b, _| {
            b.iter(|| {
                out.clear();
                exchange.route(&m, None, &mut out);
                publish_all(&out, m.clone(), None);
                sent += 1;
                // Nobody consumes: empty the queues now and then so memory stays flat.
                if sent.is_multiple_of(4096) {
                    all.iter().for_each(|q| {
                        q.purge();
                    });
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, topic, fanout);
criterion_main!(benches);
