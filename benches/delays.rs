//! Delayed delivery at scale: the cost per message of scheduling N delayed messages and of
//! firing them when due, for N up to 1,000,000 (DESIGN.md §3, issue 6: O(log n) per
//! message, no per-message timers). Runs under tokio's paused clock, so "later" costs no
//! waiting; the timings are wall-clock.
//!
//!   cargo bench --bench delays            (prints a table; SLUICE_DELAYS_MAX=N to stop earlier)

#![allow(clippy::unwrap_used, missing_docs)] // a bench or tool: a panic is a failed run, and criterion's macros make undocumented items

use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice::config::QueueSettings;
use sluice::testing::{ConnWaker, OutItem, Outbox, Outcome, Queue};
use sluice::Message;

/// A 256-byte message whose `x-opt-delivery-delay` is `delay_ms`.
fn message(delay_ms: i64) -> Message {
    let mut m = vec![0x00, 0x53, 0x72, 0xc1, 0x20, 0x02, 0xa3, 0x14];
    m.extend_from_slice(b"x-opt-delivery-delay");
    m.push(0x81);
    m.extend_from_slice(&delay_ms.to_be_bytes());
    m.extend_from_slice(&[0x00, 0x53, 0x75, 0xb0, 0x00, 0x00, 0x01, 0x00]);
    m.extend(std::iter::repeat_n(0xab, 256));
    Message::parse(Bytes::from(m)).expect("a valid message")
}

/// Spreads delays over a minute, in an order unrelated to the enqueue order.
fn delays(n: usize) -> Vec<i64> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            1 + (x % 60_000) as i64
        })
        .collect()
}

fn ns_per(d: Duration, n: usize) -> f64 {
    d.as_nanos() as f64 / n as f64
}

/// The reference: enqueueing `n` messages of the same size without a delay, which touches
/// the same cold message memory; what scheduling adds is the difference.
fn run_ready(n: usize) -> f64 {
    let queue = Queue::alone("bench".into(), QueueSettings::default());
    let messages: Vec<Message> = (0..n).map(|_| message(0)).collect();
    let started = Instant::now();
    for chunk in messages.chunks(256) {
        queue.enqueue(chunk.iter().cloned());
    }
    let took = started.elapsed();
    assert_eq!(queue.stats().ready, n);
    ns_per(took, n)
}

/// Schedules `n` delayed messages, lets a minute pass, fires them, and drains them.
/// Returns (schedule ns/msg, fire ns/msg).
async fn run(n: usize) -> (f64, f64) {
    let queue = Queue::alone("bench".into(), QueueSettings::default());
    let messages: Vec<Message> = delays(n).into_iter().map(message).collect();
    let started = Instant::now();
    for chunk in messages.chunks(256) {
        queue.enqueue(chunk.iter().cloned());
    }
    let scheduled = started.elapsed();
    assert_eq!(queue.stats().delayed, n);
    drop(messages);

    // The queue's own timer fires them as the paused clock moves on.
    let started = Instant::now();
    tokio::time::advance(Duration::from_secs(61)).await;
    queue.tick();
    let fired = started.elapsed();
    let stats = queue.stats();
    assert_eq!((stats.delayed, stats.ready), (0, n));

    // Drain, so the run also proves every message came out once.
    let outbox = Outbox::new(1, ConnWaker::new());
    queue.add_consumer(outbox.clone(), "drain", None);
    queue.flow(1, u32::try_from(n).unwrap_or(u32::MAX), false);
    let mut got = 0;
    while let Some(item) = outbox.pop() {
        if let OutItem::Deliver(d) = item {
            queue.settle(1, [(d.seq, Outcome::Accepted)]);
            got += 1;
        }
    }
    assert_eq!(got, n);
    (ns_per(scheduled, n), ns_per(fired, n))
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` runs this as a quick check.
    let quick = !std::env::args().any(|a| a == "--bench");
    let max: usize = std::env::var("SLUICE_DELAYS_MAX")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 10_000 } else { 1_000_000 });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a tokio runtime");
    println!("| messages | enqueue, no delay ns/msg | schedule ns/msg | fire ns/msg |");
    println!("|---:|---:|---:|---:|");
    for n in [1_000, 10_000, 100_000, 1_000_000]
        .into_iter()
        .filter(|&n| n <= max)
    {
        let ready = run_ready(n);
        let (schedule, fire) = runtime.block_on(run(n));
        println!("| {n} | {ready:.0} | {schedule:.0} | {fire:.0} |");
    }
}
