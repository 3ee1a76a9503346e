//! The crash test of issue 7: durable queues keep every accepted message through SIGKILL.
//!
//! `sluice` runs as a child process on a data directory. Four producers stream numbered,
//! durable messages at-least-once (application properties `producer` and `n`; a message
//! counts as accepted only when its outcome is `accepted`), while one consumer per queue
//! accepts whatever arrives and records it. At R random points of the stream the broker is
//! killed with SIGKILL and started again on the same address and data directory; clients
//! reconnect with backoff, and a producer resends from its first message not yet accepted.
//! Producer 1 sends in transactions of ten (issue 15): its messages are accepted when their
//! commit is answered, and a batch whose commit was not answered is sent again whole.
//! When every message has been accepted and the consumers have gone idle, the broker is
//! stopped cleanly, started again, and drained. The checks (tests/support/crash/ledger.rs):
//!
//! - **lost** — accepted but never received — must be empty;
//! - **duplicates** are counted, and allowed only where a crash or a resend explains them:
//!   between two crashes, a message is delivered at most as many times as it was sent;
//! - **per-producer order**: each message a consumer sees for the first time has a higher `n`
//!   than every message of its producer seen before it.
//!
//! The order check is exact only with one consumer per queue: two consumers record what
//! they get in an order the broker did not choose. So the producers are split over two
//! queues, two each, with one consumer on each.
//!
//! The kill points are taken in the space of accepted messages (kill when the total
//! accepted reaches a random threshold, after a random delay of a few milliseconds), so
//! that all R kills land inside the stream however fast the machine is. The seed is printed;
//! `CRASH_SEED` replays the same kill points (thread timing still varies).
//!
//! `cargo test --test crash` runs a short version (N = 2000, R = 3). The long one is
//! `#[ignore]`d and parameterised by `CRASH_N`, `CRASH_R` and `CRASH_SEED`:
//! `benches/crash.sh` runs it in release.

#![allow(clippy::unwrap_used)] // a test, bench or tool: a panic here is a failed run, not a broker down

mod support;

use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::crash::clients::{consume, produce, Shared, QUEUES};
use support::crash::ledger::Verdict;
use support::crash::rng::XorShift;
use support::process::BrokerProcess;

/// Producers, over [`QUEUES`] queues.
const PRODUCERS: u32 = 4;
/// How long consumers wait, once the producers are done, before deciding the queue is
/// empty: while streaming, and when draining after the clean restart.
const IDLE: Duration = Duration::from_millis(500);
const DRAIN_IDLE: Duration = Duration::from_secs(1);
/// Longest delay between reaching a kill point and the kill.
const MAX_JITTER_MS: u64 = 20;

/// What one run does.
#[derive(Debug, Clone, Copy)]
struct Params {
    /// Messages per producer.
    per_producer: u64,
    /// SIGKILLs.
    kills: u32,
    seed: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_accepted_message_is_lost_when_the_broker_is_killed() {
    run(Params {
        per_producer: 2000 / u64::from(PRODUCERS),
        kills: 3,
        seed: env_u64("CRASH_SEED").unwrap_or_else(seed_from_clock),
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long; benches/crash.sh runs it (CRASH_N, CRASH_R, CRASH_SEED)"]
async fn no_accepted_message_is_lost_when_the_broker_is_killed_long() {
    let n = env_u64("CRASH_N").unwrap_or(100_000);
    run(Params {
        per_producer: n.div_ceil(u64::from(PRODUCERS)),
        kills: env_u64("CRASH_R").unwrap_or(20) as u32,
        seed: env_u64("CRASH_SEED").unwrap_or_else(seed_from_clock),
    })
    .await;
}

async fn run(params: Params) {
    let n = params.per_producer * u64::from(PRODUCERS);
    // First, so that a run that hangs or panics can still be replayed.
    println!(
        "crash test: N={n} R={} seed={} (CRASH_SEED={} replays the kill points)",
        params.kills, params.seed, params.seed
    );
    let started = Instant::now();
    let data = tempfile::tempdir().expect("temp dir");
    let mut broker = BrokerProcess::start(data.path(), &[]).await;
    let shared = Arc::new(Shared::new(broker.addr(), PRODUCERS, params.per_producer));
    // Generous: a hang is reported with the state so far instead of stalling the suite.
    let limit = Duration::from_secs(120) + Duration::from_millis(n * 5);

    let streamed = tokio::time::timeout(limit, async {
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|p| tokio::spawn(produce(shared.clone(), p)))
            .collect();
        let consumers: Vec<_> = (0..QUEUES)
            .map(|q| tokio::spawn(consume(shared.clone(), q, IDLE)))
            .collect();
        kill_at_random_points(&shared, &mut broker, params).await;
        for p in producers {
            p.await.expect("a producer panicked");
        }
        shared.producers_done.store(true, SeqCst);
        for c in consumers {
            c.await.expect("a consumer panicked");
        }
    })
    .await;
    if streamed.is_err() {
        panic!(
            "the stream did not finish within {limit:?}: {}\nbroker output:\n{}",
            shared.progress(),
            broker.log_tail()
        );
    }

    // The clean restart: what was settled before it must not come back after it.
    let first_stop = broker.terminate().await;
    let next = shared.incarnation.load(SeqCst) + 1;
    shared.after_clean_stop.lock().expect("lock").push(next);
    shared.incarnation.store(next, SeqCst);
    broker.restart().await;
    let drained = tokio::time::timeout(limit, async {
        let drainers: Vec<_> = (0..QUEUES)
            .map(|q| tokio::spawn(consume(shared.clone(), q, DRAIN_IDLE)))
            .collect();
        for d in drainers {
            d.await.expect("a consumer panicked");
        }
    })
    .await;
    if drained.is_err() {
        panic!(
            "the drain did not finish within {limit:?}: {}\nbroker output:\n{}",
            shared.progress(),
            broker.log_tail()
        );
    }
    let last_stop = broker.terminate().await;

    let verdict = Verdict::of(&shared);
    println!(
        "crash test: N={n} R={} accepted={} lost={} duplicated={} (seed={}, {}, {:.1} s)",
        params.kills,
        verdict.accepted,
        verdict.lost.len(),
        verdict.duplicated,
        params.seed,
        verdict.details(),
        started.elapsed().as_secs_f64()
    );
    let mut problems = verdict.problems();
    for (when, status) in [("before the drain", first_stop), ("at the end", last_stop)] {
        if !status.success() {
            problems.push(format!("the broker's clean stop {when} exited {status}"));
        }
    }
    assert!(
        problems.is_empty(),
        "crash test failed (seed {}; rerun with CRASH_SEED={}):\n{}\nbroker output (last lines):\n{}",
        params.seed,
        params.seed,
        problems.join("\n"),
        broker.log_tail()
    );
}

/// SIGKILLs the broker `params.kills` times, each when the total of accepted messages
/// reaches a random point of the stream, and starts it again each time.
async fn kill_at_random_points(shared: &Shared, broker: &mut BrokerProcess, params: Params) {
    let mut rng = XorShift::new(params.seed);
    let total = params.per_producer * u64::from(PRODUCERS);
    // Between 5 % and 95 % of the stream: some messages before the first kill, some after
    // the last.
    let (low, span) = (total / 20, total - total / 10);
    let mut points: Vec<u64> = (0..params.kills)
        .map(|_| low + rng.below(span.max(1)))
        .collect();
    points.sort_unstable();
    let mut at_restart = 0;
    for point in points {
        // And at least one acceptance by the restarted broker: a kill before any client is
        // back would test nothing the previous one did not.
        let point = point.max(at_restart + 1).min(total);
        while shared.accepted_total.load(Relaxed) < point {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.below(MAX_JITTER_MS + 1))).await;
        broker.kill();
        let next = shared.incarnation.load(SeqCst) + 1;
        shared.after_kill.lock().expect("lock").push(next);
        // Only now: a client that connected before this saw the old incarnation number.
        shared.incarnation.store(next, SeqCst);
        broker.restart().await;
        at_restart = shared.accepted_total.load(Relaxed);
    }
}

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value:?} is not a non-negative integer")),
    )
}

fn seed_from_clock() -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970");
    now.as_nanos() as u64 ^ u64::from(std::process::id())
}

// ---- the checks themselves, on made-up records: what the run above relies on ----

mod verdict {
    use std::sync::atomic::Ordering::SeqCst;

    use super::support::crash::clients::{Received, SendRun, Shared};
    use super::support::crash::ledger::Verdict;

    /// One producer with messages `0..per_producer`, all accepted.
    fn ledger(per_producer: u64) -> Shared {
        let shared = Shared::new("127.0.0.1:1".parse().expect("address"), 1, per_producer);
        shared.acked[0].store(per_producer, SeqCst);
        shared
    }

    fn sent(shared: &Shared, incarnation: u32, first: u64, end: u64) {
        let run = SendRun {
            producer: 0,
            incarnation,
            first,
            end,
        };
        shared.runs.lock().expect("lock").push(run);
    }

    fn got(shared: &Shared, incarnation: u32, ns: &[u64]) {
        let mut received = shared.received.lock().expect("lock");
        received.extend(ns.iter().map(|&n| Received {
            producer: 0,
            n,
            incarnation,
            delivery_count: 0,
        }));
    }

    #[test]
    fn an_accepted_message_never_received_is_lost() {
        let shared = ledger(3);
        sent(&shared, 0, 0, 3);
        got(&shared, 0, &[0, 2]);
        let verdict = Verdict::of(&shared);
        assert_eq!(verdict.lost, [(0, 1)]);
        let problems = verdict.problems().join("\n");
        assert!(
            problems.contains("1 runs of consecutive accepted messages lost, 1 messages in all"),
            "{problems}"
        );
        assert!(problems.contains("producer 0 n=1"), "{problems}");
    }

    #[test]
    fn a_redelivery_after_a_kill_is_a_duplicate_and_not_a_problem() {
        let shared = ledger(2);
        sent(&shared, 0, 0, 2);
        got(&shared, 0, &[0, 1]);
        shared.after_kill.lock().expect("lock").push(1);
        got(&shared, 1, &[1]);
        let verdict = Verdict::of(&shared);
        assert_eq!((verdict.duplicated, verdict.duplicated_messages), (1, 1));
        assert_eq!(verdict.problems(), Vec::<String>::new());
    }

    #[test]
    fn a_redelivery_with_no_restart_in_between_is_a_problem() {
        let shared = ledger(2);
        sent(&shared, 0, 0, 2);
        got(&shared, 0, &[0, 1, 1]);
        let verdict = Verdict::of(&shared);
        assert_eq!(verdict.duplicated_without_restart.len(), 1);
        assert!(verdict.duplicated_without_restart[0].contains("n=1: delivered 2 times"));
    }

    #[test]
    fn a_message_sent_twice_may_come_twice_without_a_restart() {
        let shared = ledger(2);
        sent(&shared, 0, 0, 2);
        sent(&shared, 0, 1, 2);
        got(&shared, 0, &[0, 1, 1]);
        assert_eq!(Verdict::of(&shared).problems(), Vec::<String>::new());
    }

    #[test]
    fn a_redelivery_across_the_clean_restart_is_reported_as_such() {
        let shared = ledger(2);
        sent(&shared, 0, 0, 2);
        got(&shared, 0, &[0, 1]);
        shared.after_clean_stop.lock().expect("lock").push(1);
        got(&shared, 1, &[1]);
        let verdict = Verdict::of(&shared);
        assert_eq!(verdict.duplicated_without_restart, Vec::<String>::new());
        assert_eq!(verdict.duplicated_across_clean_restart.len(), 1);
    }

    #[test]
    fn a_first_delivery_below_an_earlier_n_is_out_of_order_and_a_redelivery_is_not() {
        let shared = ledger(4);
        sent(&shared, 0, 0, 4);
        got(&shared, 0, &[0, 1, 2]);
        shared.after_kill.lock().expect("lock").push(1);
        sent(&shared, 1, 1, 4);
        got(&shared, 1, &[1, 2, 3]);
        assert_eq!(Verdict::of(&shared).problems(), Vec::<String>::new());

        let shared = ledger(3);
        sent(&shared, 0, 0, 3);
        got(&shared, 0, &[0, 2, 1]);
        assert_eq!(
            Verdict::of(&shared).out_of_order,
            ["producer 0: n=1 first received after n=2"]
        );
    }
}
