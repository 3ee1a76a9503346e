//! Log lines a flood cannot multiply. Refused sockets, failed handshakes and `accept` errors
//! happen as fast as a peer (or an exhausted fd table) makes them; each kind gets a budget of
//! lines per window, and the first line of the next window says how many were left out.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// At most `lines` lines per `window`.
#[derive(Debug)]
pub struct LogLimiter {
    lines: u32,
    window: Duration,
    state: Mutex<Window>,
}

#[derive(Debug)]
struct Window {
    started: Option<Instant>,
    written: u32,
    suppressed: u64,
}

impl LogLimiter {
    /// A budget of `lines` lines every `window`.
    pub const fn new(lines: u32, window: Duration) -> LogLimiter {
        LogLimiter {
            lines,
            window,
            state: Mutex::new(Window {
                started: None,
                written: 0,
                suppressed: 0,
            }),
        }
    }

    /// Whether a line may be written at `now`: `Some(n)` if so, `n` being how many lines were
    /// left out since the last one written; `None` if this one is to be left out.
    pub fn allow(&self, now: Instant) -> Option<u64> {
        // A poisoned lock only means another thread panicked while counting: keep counting.
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let expired = state
            .started
            .is_none_or(|started| now.saturating_duration_since(started) >= self.window);
        if expired {
            state.started = Some(now);
            state.written = 0;
        }
        if state.written >= self.lines {
            state.suppressed += 1;
            return None;
        }
        state.written += 1;
        Some(std::mem::take(&mut state.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_beyond_the_budget_is_counted_and_reported_in_the_next_window() {
        let limiter = LogLimiter::new(2, Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(limiter.allow(t0), Some(0));
        assert_eq!(limiter.allow(t0), Some(0));
        for _ in 0..1000 {
            assert_eq!(limiter.allow(t0 + Duration::from_secs(9)), None);
        }
        assert_eq!(limiter.allow(t0 + Duration::from_secs(10)), Some(1000));
        assert_eq!(limiter.allow(t0 + Duration::from_secs(11)), Some(0));
        assert_eq!(limiter.allow(t0 + Duration::from_secs(12)), None);
    }
}
