//! The queue core: one enqueue → dispatch → accept cycle, and the same with many consumers.

#![allow(clippy::unwrap_used, missing_docs)] // a bench or tool: a panic is a failed run, and criterion's macros make undocumented items

use std::sync::Arc;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sluice::config::QueueSettings;
use sluice::testing::{ConnWaker, OutItem, Outbox, Outcome, Queue};
use sluice::Message;

fn message() -> Message {
    let mut m = vec![0x00, 0x53, 0x75, 0xb0, 0x00, 0x00, 0x04, 0x00];
    m.extend(std::iter::repeat_n(0xab, 1024));
    Message::parse(Bytes::from(m)).unwrap()
}

fn cycle(c: &mut Criterion) {
    let mut group = c.benchmark_group("queue");
    group.throughput(Throughput::Elements(1));
    for consumers in [1u64, 16] {
        let queue = Queue::alone("bench".into(), QueueSettings::default());
        let waker = ConnWaker::new();
        let outboxes: Vec<Arc<Outbox>> = (0..consumers)
            .map(|id| {
                let outbox = Outbox::new(id, waker.clone());
                queue.add_consumer(outbox.clone(), "bench", None);
                queue.flow(id, u32::MAX / 2, false);
                outbox
            })
            .collect();
        let m = message();
        let mut next = 0;
        let name = format!("enqueue, dispatch, accept ({consumers} consumers)");
        group.bench_function(name, |b| {
            b.iter(|| {
                queue.enqueue([m.clone()]);
                // Round-robin: the message went to the next consumer in turn.
                let outbox = &outboxes[next];
                next = (next + 1) % outboxes.len();
                let Some(OutItem::Deliver(d)) = outbox.pop() else {
                    panic!("no delivery")
                };
                queue.settle(outbox.consumer(), [(d.seq, Outcome::Accepted)]);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, cycle);
criterion_main!(benches);
