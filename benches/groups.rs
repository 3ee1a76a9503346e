//! Message-group dispatch: the cost of one enqueue → dispatch → accept cycle must not grow with
//! the number of groups, nor with the number of messages waiting behind groups other consumers
//! own (DESIGN.md §3: index group heads, never rescan).

#![allow(clippy::unwrap_used, missing_docs)] // a bench or tool: a panic is a failed run, and criterion's macros make undocumented items

use std::sync::Arc;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sluice::config::QueueSettings;
use sluice::testing::{ConnWaker, OutItem, Outbox, Outcome, Queue};
use sluice::Message;

/// A 1 KiB message in group `group` (properties.group-id), or ungrouped.
fn message(group: Option<&str>) -> Message {
    let mut m = Vec::new();
    if let Some(id) = group {
        // properties: list8 of 11 fields, ten nulls then group-id as str8.
        let fields = 10 + 2 + id.len();
        m.extend_from_slice(&[0x00, 0x53, 0x73, 0xc0, (fields + 1) as u8, 11]);
        m.extend(std::iter::repeat_n(0x40, 10));
        m.extend_from_slice(&[0xa1, id.len() as u8]);
        m.extend_from_slice(id.as_bytes());
    }
    m.extend_from_slice(&[0x00, 0x53, 0x75, 0xb0, 0x00, 0x00, 0x04, 0x00]);
    m.extend(std::iter::repeat_n(0xab, 1024));
    Message::parse(Bytes::from(m)).unwrap()
}

fn consumer(queue: &Queue, id: u64, credit: u32) -> Arc<Outbox> {
    let outbox = Outbox::new(id, ConnWaker::new());
    queue.add_consumer(outbox.clone(), "bench", None);
    queue.flow(id, credit, false);
    outbox
}

/// Pops the delivery the last operation made and accepts it.
fn accept_next(queue: &Queue, outbox: &Outbox) {
    let Some(OutItem::Deliver(d)) = outbox.pop() else {
        panic!("no delivery")
    };
    queue.settle(outbox.consumer(), [(d.seq, Outcome::Accepted)]);
}

/// `groups` groups each with one ready message; every cycle the consumer takes and accepts the
/// oldest, which frees and forgets its group, and one more message recreates that group. The
/// free-group index holds `groups` entries throughout.
fn many_groups(c: &mut Criterion) {
    let mut bench = c.benchmark_group("groups/cycle by number of groups");
    bench.throughput(Throughput::Elements(1));
    for groups in [10usize, 1_000, 100_000] {
        let queue = Queue::alone("bench".into(), QueueSettings::default());
        let messages: Vec<Message> = (0..groups)
            .map(|g| message(Some(&format!("g{g}"))))
            .collect();
        queue.enqueue(messages.iter().cloned());
        let outbox = consumer(&queue, 1, 0);
        let mut limit = 0u32;
        let mut next = 0;
        bench.bench_with_input(BenchmarkId::from_parameter(groups), &groups, |b, _| {
            b.iter(|| {
                // The oldest message is the one of group `next`: take it, then refill the group.
                limit = limit.wrapping_add(1);
                queue.flow(1, limit, false);
                accept_next(&queue, &outbox);
                queue.enqueue([messages[next].clone()]);
                next = (next + 1) % groups;
            })
        });
    }
    bench.finish();
}

/// One consumer owns group `blocked`, has no credit, and has `waiting` messages of it queued;
/// another consumer cycles messages of its own group past them.
fn waiting_behind_owned(c: &mut Criterion) {
    let mut bench = c.benchmark_group("groups/cycle with messages waiting behind an owned group");
    bench.throughput(Throughput::Elements(1));
    for waiting in [0usize, 100_000] {
        let queue = Queue::alone("bench".into(), QueueSettings::default());
        let owner = consumer(&queue, 1, 1);
        queue.enqueue([message(Some("blocked"))]);
        let Some(OutItem::Deliver(_held)) = owner.pop() else {
            panic!("the owner got nothing")
        };
        let blocked = message(Some("blocked"));
        queue.enqueue(std::iter::repeat_n(blocked, waiting));
        let other = consumer(&queue, 2, u32::MAX / 2);
        let m = message(Some("flowing"));
        bench.bench_with_input(BenchmarkId::from_parameter(waiting), &waiting, |b, _| {
            b.iter(|| {
                queue.enqueue([m.clone()]);
                accept_next(&queue, &other);
            })
        });
        assert_eq!(queue.stats().ready, waiting);
    }
    bench.finish();
}

/// The same cycles for ungrouped messages, as the reference: with nothing waiting, and with
/// 100,000 messages queued ahead, so the message taken is as cold in the cache as in the
/// 100,000-group cycle.
fn ungrouped(c: &mut Criterion) {
    let mut bench = c.benchmark_group("groups/cycle of ungrouped messages");
    bench.throughput(Throughput::Elements(1));
    for waiting in [0usize, 100_000] {
        let queue = Queue::alone("bench".into(), QueueSettings::default());
        let messages: Vec<Message> = (0..waiting.max(1)).map(|_| message(None)).collect();
        queue.enqueue(messages.iter().take(waiting).cloned());
        let outbox = consumer(&queue, 1, 0);
        let mut limit = 0u32;
        let mut next = 0;
        bench.bench_with_input(BenchmarkId::new("waiting", waiting), &waiting, |b, _| {
            b.iter(|| {
                queue.enqueue([messages[next].clone()]);
                next = (next + 1) % messages.len();
                limit = limit.wrapping_add(1);
                queue.flow(1, limit, false);
                accept_next(&queue, &outbox);
            })
        });
    }
    bench.finish();
}

criterion_group!(benches, many_groups, waiting_behind_owned, ungrouped);
criterion_main!(benches);
