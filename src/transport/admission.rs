//! Who may take a socket: caps on sockets still in the handshake (in all, and per source) and
//! on connections past it, kept apart so that silent sockets, which never finish a handshake,
//! cannot use up the places of clients that do.
//!
//! A socket holds a [`HandshakeTicket`] from accept until the peer's `open` (or the handshake
//! timeout); a connection holds a permit of `max_connections` from the end of SASL until it
//! closes. Both are released when dropped, so no path can leak a place.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::log_limit::LogLimiter;
use super::settings::TransportConfig;

/// The places of one broker.
#[derive(Debug)]
pub struct Admission {
    connections: Option<(Arc<Semaphore>, u32)>,
    handshakes: Option<(Arc<Semaphore>, u32)>,
    per_source_cap: u32,
    per_source: SourceCounts,
    /// Sockets refused by a cap.
    pub refusals: LogLimiter,
    /// Handshakes that failed or timed out.
    pub handshake_failures: LogLimiter,
    /// `accept` errors (EMFILE and the like).
    pub accept_errors: LogLimiter,
}

/// Sockets in the handshake per source (sources with none are removed).
type SourceCounts = Arc<Mutex<HashMap<Source, u32>>>;

/// What a socket is counted under for `max_handshakes_per_source`: an IPv4 address, or an
/// IPv6 /64 (one host usually has a whole /64 to pick addresses from).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Source(IpAddr);

impl Source {
    fn of(ip: IpAddr) -> Source {
        match ip.to_canonical() {
            IpAddr::V6(v6) => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                Source(IpAddr::V6(Ipv6Addr::from(bits)))
            }
            v4 => Source(v4),
        }
    }
}

/// Why a socket was refused at accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// `broker.max_handshakes` sockets are in the handshake.
    #[error("{0} sockets are still in the handshake (broker.max_handshakes)")]
    Handshakes(u32),
    /// `broker.max_handshakes_per_source` sockets from this source are in the handshake.
    #[error("{0} sockets from this source are still in the handshake (broker.max_handshakes_per_source)")]
    PerSource(u32),
}

/// A place among the sockets in the handshake; given back when dropped.
#[derive(Debug)]
pub struct HandshakeTicket {
    _permit: Option<OwnedSemaphorePermit>,
    source: Option<(Source, SourceCounts)>,
}

impl Drop for HandshakeTicket {
    fn drop(&mut self) {
        if let Some((source, map)) = self.source.take() {
            let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(count) = map.get_mut(&source) {
                *count -= 1;
                if *count == 0 {
                    map.remove(&source);
                }
            }
        }
    }
}

/// Refusal and failure lines: ten per ten seconds of each kind.
const LINES: u32 = 10;
const WINDOW: Duration = Duration::from_secs(10);

impl Admission {
    /// The caps `config` sets.
    pub fn new(config: &TransportConfig) -> Admission {
        let cap = |n: u32| (n > 0).then(|| (Arc::new(Semaphore::new(n as usize)), n));
        Admission {
            connections: cap(config.max_connections),
            handshakes: cap(config.max_handshakes),
            per_source_cap: config.max_handshakes_per_source,
            per_source: Arc::default(),
            refusals: LogLimiter::new(LINES, WINDOW),
            handshake_failures: LogLimiter::new(LINES, WINDOW),
            // One line is enough to say the process ran out of descriptors.
            accept_errors: LogLimiter::new(1, WINDOW),
        }
    }

    /// A place in the handshake for a socket from `ip`, or why there is none. Never waits.
    pub fn admit(&self, ip: IpAddr) -> Result<HandshakeTicket, Refusal> {
        let permit = match &self.handshakes {
            Some((semaphore, cap)) => Some(
                semaphore
                    .clone()
                    .try_acquire_owned()
                    .map_err(|_| Refusal::Handshakes(*cap))?,
            ),
            None => None,
        };
        let source = if self.per_source_cap > 0 {
            let source = Source::of(ip);
            let mut map = self.per_source.lock().unwrap_or_else(|e| e.into_inner());
            let count = map.entry(source).or_insert(0);
            if *count >= self.per_source_cap {
                return Err(Refusal::PerSource(self.per_source_cap));
            }
            *count += 1;
            Some((source, self.per_source.clone()))
        } else {
            None
        };
        Ok(HandshakeTicket {
            _permit: permit,
            source,
        })
    }

    /// A place among the connections past the handshake: `Ok(None)` when they are not
    /// capped, `Err(cap)` when all `cap` places are taken. Never waits.
    pub fn connection(&self) -> Result<Option<OwnedSemaphorePermit>, u32> {
        match &self.connections {
            Some((semaphore, cap)) => semaphore
                .clone()
                .try_acquire_owned()
                .map(Some)
                .map_err(|_| *cap),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(handshakes: u32, per_source: u32, connections: u32) -> Admission {
        Admission::new(&TransportConfig {
            max_handshakes: handshakes,
            max_handshakes_per_source: per_source,
            max_connections: connections,
            ..TransportConfig::from(&crate::config::Config::default())
        })
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an IP address")
    }

    #[test]
    fn the_handshake_cap_counts_sockets_until_their_tickets_drop() {
        let a = admission(2, 0, 0);
        let one = a.admit(ip("10.0.0.1")).expect("first");
        let _two = a.admit(ip("10.0.0.2")).expect("second");
        assert_eq!(a.admit(ip("10.0.0.3")).unwrap_err(), Refusal::Handshakes(2));
        drop(one);
        assert!(a.admit(ip("10.0.0.3")).is_ok());
    }

    #[test]
    fn the_per_source_cap_leaves_other_sources_alone() {
        let a = admission(0, 2, 0);
        let held: Vec<_> = (0..2)
            .map(|_| a.admit(ip("10.0.0.1")).expect("under the cap"))
            .collect();
        assert_eq!(a.admit(ip("10.0.0.1")).unwrap_err(), Refusal::PerSource(2));
        // An IPv4-mapped IPv6 address is the same source.
        assert!(a.admit(ip("::ffff:10.0.0.1")).is_err());
        assert!(a.admit(ip("10.0.0.2")).is_ok());
        drop(held);
        assert!(a.admit(ip("10.0.0.1")).is_ok());
        assert!(a.per_source.lock().expect("not poisoned").is_empty());
    }

    #[test]
    fn one_ipv6_network_is_one_source() {
        let a = admission(0, 1, 0);
        let _held = a.admit(ip("2001:db8:1:2::1")).expect("first");
        assert!(a.admit(ip("2001:db8:1:2:ffff::7")).is_err());
        assert!(a.admit(ip("2001:db8:1:3::1")).is_ok());
    }

    #[test]
    fn zero_means_no_cap() {
        let a = admission(0, 0, 0);
        let held: Vec<_> = (0..1000)
            .map(|_| a.admit(ip("10.0.0.1")).expect("no cap"))
            .collect();
        assert_eq!(held.len(), 1000);
        assert!(matches!(a.connection(), Ok(None)));
    }

    #[test]
    fn connection_places_are_given_back_when_dropped() {
        let a = admission(0, 0, 1);
        let first = a.connection().expect("a place");
        assert!(first.is_some());
        assert_eq!(a.connection().unwrap_err(), 1);
        drop(first);
        assert!(a.connection().is_ok());
    }
}
