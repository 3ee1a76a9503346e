//! The broker's clock: wall-clock milliseconds since the Unix epoch, advancing with tokio's
//! clock.
//!
//! Message times (delivery-time, absolute-expiry-time) are wall-clock, while deadlines are
//! slept on with tokio's timer. Reading the time as "the wall clock at a fixed real instant,
//! plus tokio's time since that instant" makes the two agree, and lets tests pause and advance
//! tokio's clock to drive every deadline without sleeping. The fixed instant is a real one
//! (never a paused runtime's), so runtimes with clocks of their own, as parallel tests have,
//! each see a consistent clock.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

static BASE: OnceLock<(i128, std::time::Instant)> = OnceLock::new();

/// The wall clock in nanoseconds since the epoch at a real instant. Kept in nanoseconds, so
/// `now_ms` rounds down once, as a client reading the system clock in milliseconds does.
fn base() -> (i128, Instant) {
    let (epoch, at) = *BASE.get_or_init(|| {
        let epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i128::try_from(d.as_nanos()).unwrap_or(i128::MAX));
        (epoch, std::time::Instant::now())
    });
    (epoch, Instant::from_std(at))
}

/// Now, in milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    let (epoch, at) = base();
    let now = Instant::now();
    // A paused runtime's clock may read before the base instant: signed nanoseconds rounded
    // down, so every millisecond boundary falls in the same place on both sides of the base.
    let nanos = match now.checked_duration_since(at) {
        Some(ahead) => i128::try_from(ahead.as_nanos()).unwrap_or(i128::MAX),
        None => -i128::try_from(at.duration_since(now).as_nanos()).unwrap_or(i128::MAX),
    };
    let millis = epoch.saturating_add(nanos).div_euclid(1_000_000);
    i64::try_from(millis).unwrap_or(i64::MAX)
}

/// The tokio instant at which the clock reads `ms` (now, if that is past).
pub fn instant_at(ms: i64) -> Instant {
    let wait = ms.saturating_sub(now_ms());
    let now = Instant::now();
    match u64::try_from(wait) {
        Ok(wait) => now + Duration::from_millis(wait),
        Err(_) => now,
    }
}

/// The time, read at most once and only when needed: most operations on most messages never
/// look at the clock, and reading it costs more than the rest of a dispatch.
#[derive(Debug, Default)]
pub struct Now(std::cell::Cell<Option<i64>>);

impl Now {
    /// A time that is read from the clock on first use.
    pub fn lazy() -> Now {
        Now::default()
    }

    /// A time fixed at `ms`.
    pub fn at(ms: i64) -> Now {
        Now(std::cell::Cell::new(Some(ms)))
    }

    /// The time, in ms since the Unix epoch.
    pub fn get(&self) -> i64 {
        match self.0.get() {
            Some(ms) => ms,
            None => {
                let ms = now_ms();
                self.0.set(Some(ms));
                ms
            }
        }
    }
}
