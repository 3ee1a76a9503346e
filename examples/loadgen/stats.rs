//! State shared by all connections of a run (counters, stop conditions, the rate limiter,
//! the error log) and what each connection hands back at the end (its tally).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::time::Instant;

/// After the producers of a `--duration` run stop, consumers wait at most this long for the
/// messages still queued.
const DRAIN_GRACE: Duration = Duration::from_secs(10);
/// At most this many error descriptions are kept for the report.
const ERROR_LOG_MAX: usize = 20;

/// The run, as every task sees it.
pub struct Run {
    start: OnceLock<Instant>,
    warmup: Duration,
    /// Total messages to move (`--messages`), or `None` for a `--duration` run.
    pub target: Option<u64>,
    duration: Option<Duration>,
    pub producers: usize,
    pub at_least_once: bool,
    pub sent: AtomicU64,
    pub accepted: AtomicU64,
    pub received: AtomicU64,
    pub errors: AtomicU64,
    pub producers_running: AtomicUsize,
    /// Set on a fatal error or the run's timeout: every task stops at its next wake-up.
    pub abort: AtomicBool,
    error_log: Mutex<Vec<String>>,
    pub bucket: Option<RateBucket>,
}

impl Run {
    pub fn new(
        target: Option<u64>,
        duration: Option<Duration>,
        warmup: Duration,
        producers: usize,
        at_least_once: bool,
        rate: Option<f64>,
    ) -> Run {
        Run {
            start: OnceLock::new(),
            warmup,
            target,
            duration,
            producers,
            at_least_once,
            sent: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            received: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            producers_running: AtomicUsize::new(producers),
            abort: AtomicBool::new(false),
            error_log: Mutex::new(Vec::new()),
            bucket: rate.map(RateBucket::new),
        }
    }

    /// The moment the run started: set by the first task through the start barrier.
    pub fn start(&self) -> Instant {
        *self.start.get_or_init(|| {
            if let Some(b) = &self.bucket {
                b.start_at(Instant::now());
            }
            Instant::now()
        })
    }

    /// Messages and latencies before this instant are warm-up and not counted.
    pub fn measure_from(&self) -> Instant {
        self.start() + self.warmup
    }

    /// When producers stop, in a `--duration` run.
    pub fn deadline(&self) -> Option<Instant> {
        self.duration.map(|d| self.start() + d)
    }

    /// Records `count` errors of one kind for the report; `fatal` ends the run.
    pub fn error(&self, count: u64, what: String, fatal: bool) {
        self.errors.fetch_add(count, Relaxed);
        if fatal {
            self.abort.store(true, Relaxed);
        }
        let mut log = self.error_log.lock().unwrap_or_else(|e| e.into_inner());
        if log.len() < ERROR_LOG_MAX {
            eprintln!("loadgen: error: {what}");
            log.push(what);
        }
    }

    pub fn aborted(&self) -> bool {
        self.abort.load(Relaxed)
    }

    /// Whether producers should stop sending (duration elapsed or run aborted).
    pub fn producers_should_stop(&self, now: Instant) -> bool {
        self.aborted() || self.deadline().is_some_and(|d| now >= d)
    }

    /// Whether consumers have everything they are going to get.
    pub fn consumers_done(&self, now: Instant) -> bool {
        if self.aborted() {
            return true;
        }
        let received = self.received.load(Relaxed);
        if let Some(n) = self.target {
            return received >= n;
        }
        let Some(deadline) = self.deadline() else {
            return false;
        };
        if now < deadline {
            return false;
        }
        if self.producers == 0 || now >= deadline + DRAIN_GRACE {
            return true;
        }
        let expected = if self.at_least_once {
            self.accepted.load(Relaxed)
        } else {
            self.sent.load(Relaxed)
        };
        self.producers_running.load(Relaxed) == 0 && received >= expected
    }

    /// The errors logged, for the report.
    pub fn error_log(&self) -> Vec<String> {
        self.error_log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// A token bucket over all producers: `rate` messages per second on a fixed schedule from the
/// start, so a stall is caught up afterwards rather than hidden (no coordinated omission).
pub struct RateBucket {
    per_sec: f64,
    start: OnceLock<Instant>,
    claimed: AtomicU64,
}

impl RateBucket {
    fn new(per_sec: f64) -> RateBucket {
        RateBucket {
            per_sec,
            start: OnceLock::new(),
            claimed: AtomicU64::new(0),
        }
    }

    fn start_at(&self, at: Instant) {
        let _ = self.start.set(at);
    }

    /// Claims up to `want` messages' worth of tokens; returns how many it got.
    pub fn take(&self, want: u64, now: Instant) -> u64 {
        let Some(&start) = self.start.get() else {
            return 0;
        };
        let allowed =
            (now.saturating_duration_since(start).as_secs_f64() * self.per_sec) as u64 + 1;
        let mut claimed = self.claimed.load(Relaxed);
        loop {
            let n = want.min(allowed.saturating_sub(claimed));
            if n == 0 {
                return 0;
            }
            match self
                .claimed
                .compare_exchange_weak(claimed, claimed + n, Relaxed, Relaxed)
            {
                Ok(_) => return n,
                Err(c) => claimed = c,
            }
        }
    }

    /// When the next token becomes available.
    pub fn next_at(&self) -> Instant {
        let start = self.start.get().copied().unwrap_or_else(Instant::now);
        let next = self.claimed.load(Relaxed) as f64 / self.per_sec;
        start + Duration::from_secs_f64(next)
    }
}

/// What one connection measured.
pub struct Tally {
    /// Messages counted (received by a consumer; accepted or sent by a producer) after warm-up.
    pub messages: u64,
    /// Their bytes (the encoded message).
    pub bytes: u64,
    /// When the last counted message was counted.
    pub last: Option<Instant>,
    /// End-to-end latency in ns (consumers only).
    pub latency_ns: Histogram<u64>,
    /// What the peer sent, to judge how chatty it is.
    pub peer: PeerFrames,
}

/// Frames received from the peer over the whole run (warm-up included).
#[derive(Debug, Default, Clone, Copy)]
pub struct PeerFrames {
    /// Socket reads that returned data.
    pub reads: u64,
    pub transfers: u64,
    pub flows: u64,
    pub dispositions: u64,
    /// Deliveries the dispositions covered.
    pub disposed: u64,
}

impl PeerFrames {
    fn add(&mut self, o: &PeerFrames) {
        self.reads += o.reads;
        self.transfers += o.transfers;
        self.flows += o.flows;
        self.dispositions += o.dispositions;
        self.disposed += o.disposed;
    }
}

impl Tally {
    pub fn new() -> Tally {
        Tally {
            messages: 0,
            bytes: 0,
            last: None,
            // 1 ns to 1 hour at 3 significant digits.
            latency_ns: Histogram::new_with_bounds(1, 3_600_000_000_000, 3)
                .expect("static histogram bounds are valid"),
            peer: PeerFrames::default(),
        }
    }

    /// Folds another connection's tally into this one.
    pub fn merge(&mut self, other: &Tally) {
        self.messages += other.messages;
        self.bytes += other.bytes;
        self.last = self.last.max(other.last);
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = self.latency_ns.add(&other.latency_ns);
        self.peer.add(&other.peer);
    }
}
