//! Failed logins, limited per source and per user name (issue 16): a token bucket each —
//! [`BURST`] failures at once, then one more per [`REFILL`] — on AMQP and on the admin API
//! alike. A source or name whose bucket is empty is refused before its password is even
//! looked at (so guessing costs the guesser, not the broker), whatever it sends; a successful
//! login costs nothing. Sources are counted per IPv4 address or IPv6 /64, as the handshake
//! cap counts them.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures a source or a user name may have in a burst.
const BURST: f64 = 10.0;
/// One more failure allowed per this long.
const REFILL: Duration = Duration::from_secs(1);
/// Buckets kept at most; full ones (nothing owed) are dropped first when there are more.
const MAX_BUCKETS: usize = 100_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Source(IpAddr),
    User(String),
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn tokens_at(&self, now: Instant) -> f64 {
        let refilled = now.saturating_duration_since(self.at).as_secs_f64() / REFILL.as_secs_f64();
        (self.tokens + refilled).min(BURST)
    }
}

/// The failed-login buckets of one broker.
#[derive(Debug, Default)]
pub struct LoginThrottle {
    buckets: Mutex<HashMap<Key, Bucket>>,
    failures: AtomicU64,
    throttled: AtomicU64,
    /// What the log's summary line will say.
    pub summary: super::login_summary::LoginSummary,
}

/// The source a peer counts as: its IPv4 address, or the /64 of its IPv6 address.
fn source(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut octets = v6.octets();
                octets[8..].fill(0);
                IpAddr::V6(octets.into())
            }
        },
        v4 => v4,
    }
}

impl LoginThrottle {
    /// Whether a login from `peer` as `user` (when the mechanism names one) may be checked
    /// now; counted as throttled when not.
    pub fn allows(&self, peer: IpAddr, user: Option<&str>, now: Instant) -> bool {
        let buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let empty = |key: &Key| buckets.get(key).is_some_and(|b| b.tokens_at(now) < 1.0);
        let refused = empty(&Key::Source(source(peer)))
            || user.is_some_and(|u| empty(&Key::User(u.to_owned())));
        if refused {
            self.throttled.fetch_add(1, Ordering::Relaxed);
            self.summary.record(source(peer), user, true);
        }
        !refused
    }

    /// A login from `peer` as `user` failed. Whether it is the first since the log's last
    /// summary of failures, and so to be logged in full.
    #[must_use]
    pub fn failed(&self, peer: IpAddr, user: Option<&str>, now: Instant) -> bool {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let first = self.summary.record(source(peer), user, false);
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_BUCKETS {
            buckets.retain(|_, b| b.tokens_at(now) < BURST);
        }
        let keys =
            std::iter::once(Key::Source(source(peer))).chain(user.map(|u| Key::User(u.to_owned())));
        for key in keys {
            let bucket = buckets.entry(key).or_insert(Bucket {
                tokens: BURST,
                at: now,
            });
            bucket.tokens = (bucket.tokens_at(now) - 1.0).max(0.0);
            bucket.at = now;
        }
        first
    }

    /// Failed logins since the start.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Logins refused unchecked since the start.
    pub fn throttled(&self) -> u64 {
        self.throttled.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_or_a_name_is_held_back_after_a_burst_of_failures_and_recovers() {
        let t = LoginThrottle::default();
        let start = Instant::now();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..10 {
            assert!(t.allows(a, Some("app"), start));
            let _ = t.failed(a, Some("app"), start);
        }
        assert!(!t.allows(a, Some("other"), start), "the source is spent");
        assert!(
            !t.allows(b, Some("app"), start),
            "the name is spent, from anywhere"
        );
        assert!(t.allows(b, Some("other"), start), "others are not affected");
        let later = start + REFILL;
        assert!(t.allows(a, Some("other"), later), "one more per second");
        let _ = t.failed(a, Some("other"), later);
        assert!(!t.allows(a, None, later));
        assert_eq!(t.failures(), 11);
        assert_eq!(t.throttled(), 3);
    }

    #[test]
    fn ipv6_sources_are_counted_per_64() {
        let t = LoginThrottle::default();
        let now = Instant::now();
        for i in 0..10 {
            let ip: IpAddr = format!("2001:db8::{i}").parse().unwrap();
            let _ = t.failed(ip, None, now);
        }
        let same_64: IpAddr = "2001:db8::ffff".parse().unwrap();
        let other_64: IpAddr = "2001:db8:0:1::1".parse().unwrap();
        assert!(!t.allows(same_64, None, now));
        assert!(t.allows(other_64, None, now));
    }
}
