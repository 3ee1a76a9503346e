//! The ready messages of a queue, in enqueue order.
//!
//! New messages arrive at the tail in increasing sequence order, so they live in a `VecDeque`
//! (O(1) push and pop). A released message must go back to its original position; such messages
//! are the exception, so they live in a small ordered map and `pop` takes whichever head has the
//! lower sequence number. The queue never rescans its messages to find the next one.

use std::collections::{BTreeMap, VecDeque};

use super::entry::Entry;
use crate::message::Message;

/// Ready entries ordered by sequence number.
///
/// An entry taken out of the middle of `fresh` (it expired, or a scheduled message was
/// cancelled) leaves a tombstone behind, so the removal is O(log n) instead of a shift of
/// everything after it; tombstones are dropped when they reach the front, which is never one.
#[derive(Debug)]
pub struct ReadyList {
    fresh: VecDeque<Entry>,
    returned: BTreeMap<u64, Entry>,
    bytes: u64,
    /// Tombstones in `fresh`.
    dead: usize,
    /// The lowest sequence number put back since [`ReadyList::take_rewound`] last asked
    /// (u64::MAX: none): filtered consumers look again from there.
    rewound: u64,
}

impl Default for ReadyList {
    fn default() -> ReadyList {
        ReadyList {
            fresh: VecDeque::new(),
            returned: BTreeMap::new(),
            bytes: 0,
            dead: 0,
            rewound: u64::MAX,
        }
    }
}

fn tombstone(seq: u64) -> Entry {
    let mut entry = Entry::new(seq, Message::default());
    entry.delivery_count = u32::MAX;
    entry
}

fn is_tombstone(entry: &Entry) -> bool {
    entry.delivery_count == u32::MAX && entry.message.is_empty()
}

impl ReadyList {
    /// Appends a newly enqueued entry; its sequence number is above every other.
    pub fn push_new(&mut self, entry: Entry) {
        self.bytes += entry.message.len() as u64;
        self.fresh.push_back(entry);
    }

    /// Puts back an entry that had been acquired, at its original position.
    pub fn push_returned(&mut self, entry: Entry) {
        self.bytes += entry.message.len() as u64;
        self.rewound = self.rewound.min(entry.seq);
        self.returned.insert(entry.seq, entry);
    }

    /// The lowest sequence number put back since the last call, if any.
    pub fn take_rewound(&mut self) -> Option<u64> {
        let low = std::mem::replace(&mut self.rewound, u64::MAX);
        (low != u64::MAX).then_some(low)
    }

    /// The first entry from sequence number `from` on that `wanted` accepts, in order, and
    /// where to look from next time: every entry below it was shown to `wanted` and refused.
    /// What a filtered consumer looks for: each entry is shown to it once, not once per
    /// credit (a put-back entry again, see [`ReadyList::take_rewound`]).
    pub fn first_from(
        &self,
        from: u64,
        mut wanted: impl FnMut(&Entry) -> bool,
    ) -> (Option<u64>, u64) {
        let mut next = from;
        for entry in self.iter_from(from) {
            if wanted(entry) {
                return (Some(entry.seq), entry.seq);
            }
            next = entry.seq + 1;
        }
        (None, next)
    }

    /// The entry with sequence number `seq`, if ready.
    pub fn get(&self, seq: u64) -> Option<&Entry> {
        if let Some(entry) = self.returned.get(&seq) {
            return Some(entry);
        }
        let i = self.fresh.binary_search_by_key(&seq, |e| e.seq).ok()?;
        Some(&self.fresh[i]).filter(|e| !is_tombstone(e))
    }

    /// The entry that would be popped next.
    pub fn peek(&self) -> Option<&Entry> {
        match (self.fresh.front(), self.returned.first_key_value()) {
            (Some(f), Some((&r, e))) => Some(if r < f.seq { e } else { f }),
            (Some(f), None) => Some(f),
            (None, Some((_, e))) => Some(e),
            (None, None) => None,
        }
    }

    /// Removes the entry with sequence number `seq`, wherever it is.
    pub fn remove(&mut self, seq: u64) -> Option<Entry> {
        if let Some(entry) = self.returned.remove(&seq) {
            self.bytes -= entry.message.len() as u64;
            return Some(entry);
        }
        let i = self.fresh.binary_search_by_key(&seq, |e| e.seq).ok()?;
        if is_tombstone(&self.fresh[i]) {
            return None;
        }
        let entry = if i == 0 {
            self.fresh.pop_front()?
        } else {
            self.dead += 1;
            std::mem::replace(&mut self.fresh[i], tombstone(seq))
        };
        self.bytes -= entry.message.len() as u64;
        self.drop_dead_front();
        Some(entry)
    }

    fn drop_dead_front(&mut self) {
        while self.fresh.front().is_some_and(is_tombstone) {
            self.fresh.pop_front();
            self.dead -= 1;
        }
    }

    /// Removes and returns the entry with the lowest sequence number.
    pub fn pop(&mut self) -> Option<Entry> {
        let from_returned = match (self.fresh.front(), self.returned.first_key_value()) {
            (Some(f), Some((&r, _))) => r < f.seq,
            (None, Some(_)) => true,
            _ => false,
        };
        let entry = if from_returned {
            self.returned.pop_first().map(|(_, e)| e)
        } else {
            let entry = self.fresh.pop_front();
            self.drop_dead_front();
            entry
        }?;
        self.bytes -= entry.message.len() as u64;
        Some(entry)
    }

    /// Up to `limit` ready entries from sequence number `from` on, in order, without taking
    /// them: what a browser sees next.
    pub fn from(&self, from: u64, limit: usize) -> Vec<&Entry> {
        self.iter_from(from).take(limit).collect()
    }

    /// The ready entries from sequence number `from` on, in order: the fresh ones and the
    /// put-back ones merged.
    fn iter_from(&self, from: u64) -> impl Iterator<Item = &Entry> {
        let start = self.fresh.partition_point(|e| e.seq < from);
        let mut fresh = self
            .fresh
            .range(start..)
            .filter(|e| !is_tombstone(e))
            .peekable();
        let mut returned = self.returned.range(from..).map(|(_, e)| e).peekable();
        std::iter::from_fn(move || match (fresh.peek(), returned.peek()) {
            (Some(f), Some(r)) if r.seq < f.seq => returned.next(),
            (Some(_), _) => fresh.next(),
            (None, _) => returned.next(),
        })
    }

    /// Number of ready entries.
    pub fn len(&self) -> usize {
        self.fresh.len() - self.dead + self.returned.len()
    }

    /// Total encoded size of the ready messages.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Calls `f` on every ready entry, in no particular order.
    pub fn for_each_mut(&mut self, mut f: impl FnMut(&mut Entry)) {
        self.fresh
            .iter_mut()
            .filter(|e| !is_tombstone(e))
            .chain(self.returned.values_mut())
            .for_each(&mut f);
    }

    /// Removes every entry, showing each to `gone`; returns how many there were.
    pub fn clear(&mut self, mut gone: impl FnMut(&Entry)) -> usize {
        self.for_each_mut(|e| gone(e));
        let n = self.len();
        self.fresh.clear();
        self.returned.clear();
        self.bytes = 0;
        self.dead = 0;
        self.rewound = u64::MAX;
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Message;
    use bytes::Bytes;

    fn entry(seq: u64) -> Entry {
        Entry::new(seq, Message::opaque(Bytes::from_static(b"x"), 0))
    }

    #[test]
    fn a_returned_entry_goes_back_to_its_original_position() {
        let mut ready = ReadyList::default();
        for seq in 1..=3 {
            ready.push_new(entry(seq));
        }
        let first = ready.pop().unwrap();
        let second = ready.pop().unwrap();
        ready.push_returned(second);
        ready.push_returned(first);
        let order: Vec<u64> = std::iter::from_fn(|| ready.pop()).map(|e| e.seq).collect();
        assert_eq!(order, vec![1, 2, 3]);
        assert_eq!(ready.bytes(), 0);
    }

    #[test]
    fn a_browser_reads_fresh_and_returned_entries_in_order_without_taking_them() {
        let mut ready = ReadyList::default();
        for seq in 1..=6 {
            ready.push_new(entry(seq));
        }
        let first = ready.pop().unwrap();
        ready.push_returned(first);
        ready.remove(4);
        let seqs = |v: Vec<&Entry>| v.iter().map(|e| e.seq).collect::<Vec<_>>();
        assert_eq!(seqs(ready.from(0, 10)), [1, 2, 3, 5, 6]);
        assert_eq!(seqs(ready.from(3, 2)), [3, 5]);
        assert_eq!(seqs(ready.from(7, 10)), Vec::<u64>::new());
        assert_eq!(ready.len(), 5, "nothing taken");
    }

    #[test]
    fn entries_come_out_of_the_middle_and_the_order_holds() {
        let mut ready = ReadyList::default();
        for seq in 1..=6 {
            ready.push_new(entry(seq));
        }
        let second = ready.pop().unwrap();
        ready.push_returned(second);
        assert_eq!(ready.remove(4).map(|e| e.seq), Some(4));
        assert_eq!(ready.remove(4).map(|e| e.seq), None, "gone once");
        assert_eq!(ready.remove(1).map(|e| e.seq), Some(1));
        assert_eq!(ready.remove(9).map(|e| e.seq), None);
        assert_eq!(ready.len(), 4);
        assert_eq!(ready.bytes(), 4);
        assert_eq!(ready.remove(2).map(|e| e.seq), Some(2), "a returned entry");
        assert_eq!(ready.peek().map(|e| e.seq), Some(3));
        assert_eq!(ready.remove(3).map(|e| e.seq), Some(3));
        // 4's tombstone is at the front now and must not show.
        assert_eq!(ready.peek().map(|e| e.seq), Some(5));
        let order: Vec<u64> = std::iter::from_fn(|| ready.pop()).map(|e| e.seq).collect();
        assert_eq!(order, vec![5, 6]);
        assert_eq!(ready.len(), 0);
    }
}
