//! The integers a connection names things by, each a type of its own so that a channel cannot
//! be passed where a handle is meant, and the serial-number arithmetic of §2.8.9 (RFC 1982) in
//! one place instead of a `wrapping_add` at every use. The wire carries the bare integers: these
//! types are made at the edge of a handler and taken apart (`.0`) where a frame is written.

use std::fmt;

/// A session's channel number; we use the peer's channel as ours too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Channel(pub u16);

/// A link's handle on its session; we use the peer's handle as ours too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkHandle(pub u32);

/// A delivery's id on its session (§2.8.10). Ids are serial numbers, so a range of them may
/// wrap; `Ord` is the plain integer order a map needs, not the serial order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeliveryId(pub u32);

impl DeliveryId {
    /// The id after this one (wrapping).
    pub fn next(self) -> DeliveryId {
        DeliveryId(self.0.wrapping_add(1))
    }
}

/// A sequence-no (§2.8.9): transfer-ids and delivery-counts, which count up and wrap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Serial(pub u32);

impl Serial {
    /// The number after this one (wrapping).
    pub fn next(self) -> Serial {
        self.plus(1)
    }

    /// This number moved on by `n` (wrapping).
    pub fn plus(self, n: u32) -> Serial {
        Serial(self.0.wrapping_add(n))
    }

    /// How far `self` is ahead of `earlier`, as a wrapping difference: a window's remaining
    /// room, say, is `next_incoming_id.plus(incoming_window).since(next_outgoing_id)`.
    pub fn since(self, earlier: Serial) -> u32 {
        self.0.wrapping_sub(earlier.0)
    }

    /// The link credit left when deliveries may go up to `limit` and this is the
    /// delivery-count: `limit - count` in serial arithmetic, and 0 (not a huge number) when
    /// the count has passed the limit (a drain, or a peer that lowered its credit).
    pub fn credit_until(self, limit: Serial) -> u32 {
        let ahead = limit.since(self);
        if ahead > i32::MAX as u32 {
            0
        } else {
            ahead
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for DeliveryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for LinkHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_numbers_wrap() {
        assert_eq!(Serial(u32::MAX).next(), Serial(0));
        assert_eq!(Serial(u32::MAX - 1).plus(5), Serial(3));
        assert_eq!(Serial(3).since(Serial(u32::MAX)), 4);
        assert_eq!(DeliveryId(u32::MAX).next(), DeliveryId(0));
    }

    #[test]
    fn credit_is_never_negative() {
        assert_eq!(Serial(10).credit_until(Serial(15)), 5);
        assert_eq!(Serial(u32::MAX - 1).credit_until(Serial(2)), 4);
        // The count passed the limit: no credit, not 2^32 - 3.
        assert_eq!(Serial(15).credit_until(Serial(12)), 0);
        assert_eq!(Serial(7).credit_until(Serial(7)), 0);
    }
}
