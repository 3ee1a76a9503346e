//! Failed logins summarised in the log (issue 16): a password-guessing run makes thousands of
//! failures a minute, and a line each would bury everything else. Each failure (and each
//! login refused unchecked by the throttle) is counted here by source and by user name; a
//! task writes one line at most every [`PERIOD`], naming the busiest sources and names. The
//! first failure after a summary (or a quiet spell) is logged in full by the caller, so a lone
//! misconfigured client shows at once, with why.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// At most one summary line per this long.
pub const PERIOD: Duration = Duration::from_secs(60);
/// Sources and names named in a line; the rest are counted together.
const TOP: usize = 5;
/// Distinct sources or names counted per period; more are counted as "others" only.
const MAX_KEYS: usize = 10_000;

/// Failures since the last summary.
#[derive(Debug, Default)]
pub struct LoginSummary {
    state: Mutex<Pending>,
}

#[derive(Debug, Default)]
struct Pending {
    failed: u64,
    throttled: u64,
    sources: HashMap<IpAddr, u64>,
    users: HashMap<String, u64>,
    last: Option<Instant>,
}

impl LoginSummary {
    /// A login from `source` as `user` failed (`throttled`: refused unchecked). Whether it is
    /// the first since the last summary, to be logged in full.
    pub fn record(&self, source: IpAddr, user: Option<&str>, throttled: bool) -> bool {
        let mut p = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let first = p.failed + p.throttled == 0;
        if throttled {
            p.throttled += 1;
        } else {
            p.failed += 1;
        }
        if p.sources.len() < MAX_KEYS || p.sources.contains_key(&source) {
            *p.sources.entry(source).or_default() += 1;
        }
        if let Some(user) = user {
            if p.users.len() < MAX_KEYS || p.users.contains_key(user) {
                *p.users.entry(user.to_owned()).or_default() += 1;
            }
        }
        first
    }

    /// The line to log at `now`, if anything failed since the last one and that was at least
    /// [`PERIOD`] ago; the counts start again.
    pub fn take(&self, now: Instant) -> Option<String> {
        let mut p = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if p.failed + p.throttled == 0
            || p.last
                .is_some_and(|last| now.saturating_duration_since(last) < PERIOD)
        {
            return None;
        }
        let since = p.last.map_or("since the start".to_owned(), |last| {
            format!(
                "in the last {} s",
                now.saturating_duration_since(last).as_secs()
            )
        });
        let pending = std::mem::replace(
            &mut *p,
            Pending {
                last: Some(now),
                ..Pending::default()
            },
        );
        let sources = top(pending.sources.iter().map(|(ip, n)| (ip.to_string(), *n)));
        let users = top(pending
            .users
            .iter()
            .map(|(u, n)| (format!("'{}'", crate::logging::PeerText(u)), *n)));
        Some(format!(
            "{} failed logins and {} refused unchecked (throttled) {since}; by source: {sources}; by user name: {users}",
            pending.failed, pending.throttled
        ))
    }
}

/// "a (12), b (3) and 4 others", busiest first.
fn top(counts: impl Iterator<Item = (String, u64)>) -> String {
    let mut all: Vec<(String, u64)> = counts.collect();
    if all.is_empty() {
        return "none given".to_owned();
    }
    all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let others = all.len().saturating_sub(TOP);
    let named: Vec<String> = all
        .iter()
        .take(TOP)
        .map(|(k, n)| format!("{k} ({n})"))
        .collect();
    match others {
        0 => named.join(", "),
        n => format!("{} and {n} others", named.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_one_line_a_period_naming_the_busiest() {
        let s = LoginSummary::default();
        let t0 = Instant::now();
        assert_eq!(s.take(t0), None, "nothing failed");
        let guesser: IpAddr = "192.0.2.9".parse().unwrap();
        assert!(
            s.record(guesser, Some("admin"), false),
            "the first is logged in full"
        );
        for i in 1..1000 {
            assert!(!s.record(guesser, Some("admin"), i >= 10));
        }
        for i in 0..7u8 {
            s.record(IpAddr::from([198, 51, 100, i]), Some("app"), false);
        }
        let line = s.take(t0).unwrap();
        assert!(
            line.starts_with("17 failed logins and 990 refused unchecked"),
            "{line}"
        );
        assert!(
            line.contains("192.0.2.9 (1000)") && line.contains("and 3 others"),
            "{line}"
        );
        assert!(line.contains("'admin' (1000), 'app' (7)"), "{line}");
        // More failures within the period wait for its end.
        assert!(s.record(guesser, None, false), "the first after a summary");
        assert_eq!(s.take(t0 + Duration::from_secs(30)), None);
        let line = s.take(t0 + PERIOD).unwrap();
        assert!(
            line.starts_with(
                "1 failed logins and 0 refused unchecked (throttled) in the last 60 s"
            ),
            "{line}"
        );
        assert!(line.contains("by user name: none given"), "{line}");
        assert_eq!(s.take(t0 + PERIOD * 3), None);
    }
}
