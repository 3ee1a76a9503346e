//! Rewind (seed: the cloud queue's message rewind): consumed messages are kept for
//! `rewind_seconds` after they were enqueued, within `rewind_max_bytes`, so that
//! `rewind(t)` can make every one enqueued at or after `t` ready again.
//!
//! Enqueue times are not stored per message (every queued message would pay for them):
//! sequence numbers grow with time, so a list of (first sequence number, millisecond) steps
//! maps any sequence number to its enqueue time, with one step per millisecond at most.

use std::collections::{BTreeMap, VecDeque};

use super::entry::{Entry, SegmentRef};

/// Why a rewind cannot be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RewindError {
    /// The queue keeps nothing for rewind (`rewind_seconds = 0`).
    #[error("rewind is off for this queue (rewind_seconds = 0)")]
    Off,
    /// `t` is before what the queue still keeps.
    #[error("the earliest time this queue can rewind to is {earliest_ms} ms since the epoch")]
    TooEarly {
        /// The earliest time that can be served, in ms since the Unix epoch.
        earliest_ms: i64,
    },
}

/// The enqueue time of `seq` in the (first sequence number, time) steps `times`.
fn time_of(times: &VecDeque<(u64, i64)>, seq: u64) -> Option<i64> {
    let i = times.partition_point(|&(first, _)| first <= seq);
    i.checked_sub(1).map(|i| times[i].1)
}

/// The consumed messages a queue keeps for rewind.
#[derive(Debug, Default)]
pub struct Retention {
    window_ms: i64,
    max_bytes: u64,
    /// Consumed messages by sequence number.
    kept: BTreeMap<u64, Entry>,
    bytes: u64,
    /// (first sequence number, enqueue time) steps, oldest first.
    times: VecDeque<(u64, i64)>,
    /// Messages enqueued at or before this time may have been dropped for the byte bound.
    floor_ms: i64,
    /// Journal segments of the journaled messages dropped, for the queue to release.
    released: Vec<SegmentRef>,
}

impl Retention {
    /// Keeps consumed messages `window_ms` after their enqueue, in at most `max_bytes`
    /// (0: no bound); a zero window turns rewind off.
    pub fn new(window_ms: i64, max_bytes: u64) -> Retention {
        Retention {
            window_ms,
            max_bytes,
            floor_ms: i64::MIN,
            ..Retention::default()
        }
    }

    /// Whether the queue keeps anything.
    pub fn is_on(&self) -> bool {
        self.window_ms > 0
    }

    /// Message `seq` was enqueued (or became ready) at `now`.
    pub fn enqueued(&mut self, seq: u64, now: i64) {
        if self.is_on() && self.times.back().is_none_or(|&(_, ms)| ms < now) {
            self.times.push_back((seq, now));
        }
    }

    /// When message `seq` was enqueued, if it is still within the steps kept.
    pub fn enqueued_at(&self, seq: u64) -> Option<i64> {
        time_of(&self.times, seq)
    }

    /// Keeps a consumed message.
    pub fn keep(&mut self, mut entry: Entry, now: i64) {
        if !self.is_on() {
            return;
        }
        // What it carried for this delivery only has no place in a later one.
        entry.clear_avoid();
        self.bytes += entry.message.len() as u64;
        self.kept.insert(entry.seq, entry);
        self.prune(now);
    }

    /// Messages kept.
    pub fn len(&self) -> usize {
        self.kept.len()
    }

    /// Encoded bytes kept.
    #[cfg(test)]
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The earliest time a rewind can start from.
    pub fn earliest(&self, now: i64) -> i64 {
        now.saturating_sub(self.window_ms)
            .max(self.floor_ms.saturating_add(1))
    }

    /// Takes every kept message enqueued at or after `t`, in their original order.
    pub fn take_from(&mut self, t: i64, now: i64) -> Result<Vec<Entry>, RewindError> {
        if !self.is_on() {
            return Err(RewindError::Off);
        }
        self.prune(now);
        let earliest_ms = self.earliest(now);
        if t < earliest_ms {
            return Err(RewindError::TooEarly { earliest_ms });
        }
        let Some(&(first, _)) = self
            .times
            .get(self.times.partition_point(|&(_, ms)| ms < t))
        else {
            return Ok(Vec::new());
        };
        let taken = self.kept.split_off(&first);
        self.bytes -= taken.values().map(|e| e.message.len() as u64).sum::<u64>();
        Ok(taken.into_values().collect())
    }

    fn dropped(&mut self, entry: &Entry) {
        if entry.segment != SegmentRef::NONE {
            self.released.push(entry.segment);
        }
    }

    /// The journal segments of journaled messages dropped since the last call.
    pub fn take_released(&mut self) -> Vec<SegmentRef> {
        std::mem::take(&mut self.released)
    }

    /// Calls `f` on every message kept, with its enqueue time if still known.
    pub fn for_each_mut(&mut self, mut f: impl FnMut(Option<i64>, &mut Entry)) {
        for entry in self.kept.values_mut() {
            f(time_of(&self.times, entry.seq), entry);
        }
    }

    /// Drops what is past the window or over the byte bound.
    pub fn prune(&mut self, now: i64) {
        let cutoff = now.saturating_sub(self.window_ms);
        // The first sequence number enqueued at or after the cutoff (the steps are in time
        // order: a binary search, since this runs for every consumed message).
        let stale = self.times.partition_point(|&(_, ms)| ms < cutoff);
        let keep_from = self.times.get(stale).map_or(u64::MAX, |&(seq, _)| seq);
        self.times.drain(..stale);
        while let Some(entry) = self.kept.first_entry().filter(|e| *e.key() < keep_from) {
            let entry = entry.remove();
            self.bytes -= entry.message.len() as u64;
            self.dropped(&entry);
        }
        while self.max_bytes > 0 && self.bytes > self.max_bytes {
            let Some((seq, entry)) = self.kept.pop_first() else {
                break;
            };
            self.bytes -= entry.message.len() as u64;
            self.dropped(&entry);
            let at = self.enqueued_at(seq).unwrap_or(cutoff);
            self.floor_ms = self.floor_ms.max(at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Message;
    use bytes::Bytes;

    fn entry(seq: u64) -> Entry {
        Entry::new(seq, Message::opaque(Bytes::from_static(b"0123456789"), 0))
    }

    #[test]
    fn rewind_takes_what_was_enqueued_since_t_in_order() {
        let mut r = Retention::new(60_000, 0);
        for (seq, at) in [(1, 1_000), (2, 1_000), (3, 2_000), (4, 3_000)] {
            r.enqueued(seq, at);
        }
        for seq in [4, 1, 3, 2] {
            r.keep(entry(seq), 5_000);
        }
        assert_eq!(r.enqueued_at(2), Some(1_000));
        assert_eq!(r.enqueued_at(3), Some(2_000));
        let taken: Vec<u64> = r
            .take_from(2_000, 5_000)
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(taken, [3, 4]);
        assert_eq!((r.len(), r.bytes()), (2, 20));
        // Taken once: a second rewind does not duplicate.
        assert!(r.take_from(2_000, 5_000).unwrap().is_empty());
    }

    #[test]
    fn the_window_and_the_byte_bound_set_the_earliest_time() {
        let mut r = Retention::new(10_000, 25);
        for seq in 1..=5u64 {
            let at = seq as i64 * 1_000;
            r.enqueued(seq, at);
            r.keep(entry(seq), at);
        }
        // 50 bytes kept would exceed 25: the oldest three went, so t = 3 s is too early.
        assert_eq!(r.len(), 2);
        assert_eq!(
            r.take_from(3_000, 5_000).err(),
            Some(RewindError::TooEarly { earliest_ms: 3_001 })
        );
        // Past the window nothing older than now - 10 s is served.
        assert_eq!(
            r.take_from(4_000, 20_000).err(),
            Some(RewindError::TooEarly {
                earliest_ms: 10_000
            })
        );
        assert_eq!(r.len(), 0, "everything aged out");
        assert_eq!(
            Retention::new(0, 0).take_from(0, 0).err(),
            Some(RewindError::Off)
        );
    }
}
