//! The broker's clock: wall-clock milliseconds since the Unix epoch, advancing with tokio's
//! clock.
//!
//! Message times (delivery-time, absolute-expiry-time) are wall-clock, while deadlines are
//! slept on with tokio's timer. Reading the time as "the wall clock at the first reading, plus
//! tokio's elapsed time since" makes the two agree, and lets tests pause and advance tokio's
//! clock to drive every deadline without sleeping.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

static BASE: OnceLock<(i64, Instant)> = OnceLock::new();

fn base() -> (i64, Instant) {
    *BASE.get_or_init(|| {
        let epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        (epoch, Instant::now())
    })
}

/// Now, in milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    let (epoch, at) = base();
    let elapsed = Instant::now().saturating_duration_since(at).as_millis();
    epoch.saturating_add(i64::try_from(elapsed).unwrap_or(i64::MAX))
}

/// The tokio instant at which the clock reads `ms` (now, if that is past).
pub fn instant_at(ms: i64) -> Instant {
    let (epoch, at) = base();
    let offset = u64::try_from(ms.saturating_sub(epoch)).unwrap_or(0);
    let when = at + Duration::from_millis(offset);
    when.max(Instant::now())
}
