//! The ready messages of a queue, in enqueue order.
//!
//! New messages arrive at the tail in increasing sequence order, so they live in a `VecDeque`
//! (O(1) push and pop). A released message must go back to its original position; such messages
//! are the exception, so they live in a small ordered map and `pop` takes whichever head has the
//! lower sequence number. The queue never rescans its messages to find the next one.

use std::collections::{BTreeMap, VecDeque};

use super::queue::Entry;

/// Ready entries ordered by sequence number.
#[derive(Debug, Default)]
pub struct ReadyList {
    fresh: VecDeque<Entry>,
    returned: BTreeMap<u64, Entry>,
    bytes: u64,
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
        self.returned.insert(entry.seq, entry);
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
            self.fresh.pop_front()
        }?;
        self.bytes -= entry.message.len() as u64;
        Some(entry)
    }

    /// Number of ready entries.
    pub fn len(&self) -> usize {
        self.fresh.len() + self.returned.len()
    }

    /// Whether no entry is ready.
    pub fn is_empty(&self) -> bool {
        self.fresh.is_empty() && self.returned.is_empty()
    }

    /// Total encoded size of the ready messages.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Removes every entry, returning how many there were.
    pub fn clear(&mut self) -> usize {
        let n = self.len();
        self.fresh.clear();
        self.returned.clear();
        self.bytes = 0;
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
}
