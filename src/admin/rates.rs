//! Message rates: counters sampled once a second, rates over the last few seconds.
//!
//! Queues keep only monotonic totals (no clock in the hot path); the admin side turns them
//! into per-second rates by keeping a short window of samples.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::transport::shutdown::Shutdown;
use serde::Serialize;

use crate::broker::consumer::lock;
use crate::broker::Router;

/// Samples kept: the rate is over the last `WINDOW - 1` seconds.
const WINDOW: usize = 6;
const EVERY: Duration = Duration::from_secs(1);

/// Messages per second.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Rate {
    /// Messages enqueued per second.
    pub enqueue: f64,
    /// Deliveries per second.
    pub deliver: f64,
    /// Messages consumed per second.
    pub ack: f64,
}

/// Totals of one queue at one moment: enqueued, delivered, acked.
type Totals = [u64; 3];

#[derive(Debug, Default)]
struct Window {
    samples: VecDeque<(Instant, HashMap<String, Totals>)>,
}

/// The sampled rates of every queue.
#[derive(Debug, Default)]
pub struct Rates {
    window: Mutex<Window>,
}

impl Rates {
    /// The rate of queue `name` over the window (zero until two samples exist).
    pub fn queue(&self, name: &str) -> Rate {
        let window = lock(&self.window);
        rate_between(&window, |totals| totals.get(name).copied())
    }

    /// The rate over all queues.
    pub fn total(&self) -> Rate {
        let window = lock(&self.window);
        rate_between(&window, |totals| {
            Some(totals.values().fold([0; 3], |mut sum, t| {
                for (s, v) in sum.iter_mut().zip(t) {
                    *s += v;
                }
                sum
            }))
        })
    }

    fn record(&self, at: Instant, totals: HashMap<String, Totals>) {
        let mut window = lock(&self.window);
        window.samples.push_back((at, totals));
        while window.samples.len() > WINDOW {
            window.samples.pop_front();
        }
    }
}

fn rate_between(
    window: &Window,
    pick: impl Fn(&HashMap<String, Totals>) -> Option<Totals>,
) -> Rate {
    let (Some((t0, first)), Some((t1, last))) = (window.samples.front(), window.samples.back())
    else {
        return Rate::default();
    };
    let seconds = t1.duration_since(*t0).as_secs_f64();
    let (Some(a), Some(b)) = (pick(first), pick(last)) else {
        // A queue that appeared within the window: count from zero.
        return match pick(last) {
            Some(b) if seconds > 0.0 => per_second([0; 3], b, seconds),
            _ => Rate::default(),
        };
    };
    if seconds <= 0.0 {
        return Rate::default();
    }
    per_second(a, b, seconds)
}

fn per_second(a: Totals, b: Totals, seconds: f64) -> Rate {
    let r = |i: usize| b[i].saturating_sub(a[i]) as f64 / seconds;
    Rate {
        enqueue: r(0),
        deliver: r(1),
        ack: r(2),
    }
}

/// Samples every queue's totals once a second until shutdown.
pub async fn sample(router: Arc<Router>, rates: Arc<Rates>, mut shutdown: Shutdown) {
    let mut tick = tokio::time::interval(EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.stopping() => return,
        }
        let totals = router
            .queues()
            .into_iter()
            .map(|q| {
                let s = q.stats();
                (q.name().to_owned(), [s.enqueued, s.delivered, s.acked])
            })
            .collect();
        rates.record(Instant::now(), totals);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(rates: &Rates, at: Instant, queues: &[(&str, Totals)]) {
        let totals = queues.iter().map(|(n, t)| (n.to_string(), *t)).collect();
        rates.record(at, totals);
    }

    #[test]
    fn rates_are_per_second_over_the_window() {
        let rates = Rates::default();
        let t0 = Instant::now();
        assert_eq!(rates.total(), Rate::default());
        sample(&rates, t0, &[("a", [100, 90, 80])]);
        sample(
            &rates,
            t0 + Duration::from_secs(2),
            &[("a", [300, 290, 280]), ("b", [10, 0, 0])],
        );
        let a = rates.queue("a");
        assert_eq!((a.enqueue, a.deliver, a.ack), (100.0, 100.0, 100.0));
        // A queue that appeared within the window counts from zero.
        assert_eq!(rates.queue("b").enqueue, 5.0);
        assert_eq!(rates.queue("missing"), Rate::default());
        assert_eq!(rates.total().enqueue, 105.0);
    }

    #[test]
    fn only_the_last_samples_count() {
        let rates = Rates::default();
        let t0 = Instant::now();
        for i in 0..10u64 {
            // Fast at first, then 10 per second.
            let total = if i < 4 { i * 1000 } else { 3000 + (i - 3) * 10 };
            sample(&rates, t0 + Duration::from_secs(i), &[("q", [total, 0, 0])]);
        }
        assert_eq!(rates.queue("q").enqueue, 10.0);
    }
}
