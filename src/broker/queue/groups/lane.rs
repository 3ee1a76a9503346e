//! The ready messages of one group.

use crate::broker::queue::ready::ReadyList;
use crate::broker::queue::Entry;

/// A group's ready messages. Most groups hold one message at a time, so the first sits inline
/// in the group: no allocation for it, and it shares cache lines with the group's state.
#[derive(Debug, Default)]
pub(in crate::broker) struct Lane {
    /// The lowest-sequence ready message; None only when the lane is empty.
    first: Option<Entry>,
    /// The others, all after `first`.
    rest: ReadyList,
}

impl Lane {
    pub(in crate::broker) fn push_new(&mut self, entry: Entry) {
        match self.first {
            None => self.first = Some(entry),
            Some(_) => self.rest.push_new(entry),
        }
    }

    pub(in crate::broker) fn push_returned(&mut self, entry: Entry) {
        match &mut self.first {
            Some(first) if entry.seq < first.seq => {
                let later = std::mem::replace(first, entry);
                self.rest.push_returned(later);
            }
            Some(_) => self.rest.push_returned(entry),
            None => self.first = Some(entry),
        }
    }

    pub(in crate::broker) fn peek(&self) -> Option<&Entry> {
        self.first.as_ref()
    }

    pub(in crate::broker) fn pop(&mut self) -> Option<Entry> {
        let first = self.first.take();
        self.first = self.rest.pop();
        first
    }

    pub(in crate::broker) fn remove(&mut self, seq: u64) -> Option<Entry> {
        match &self.first {
            Some(first) if first.seq == seq => self.pop(),
            _ => self.rest.remove(seq),
        }
    }

    /// Up to `limit` messages from sequence number `from` on, in order (for browsers).
    pub(in crate::broker) fn from(&self, from: u64, limit: usize) -> Vec<&Entry> {
        let mut out: Vec<&Entry> = self.first.iter().filter(|e| e.seq >= from).collect();
        out.extend(self.rest.from(from, limit - out.len().min(limit)));
        out.truncate(limit);
        out
    }

    pub(in crate::broker) fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    pub(in crate::broker) fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.rest.len()
    }

    pub(in crate::broker) fn for_each_mut(&mut self, f: &mut impl FnMut(&mut Entry)) {
        if let Some(first) = &mut self.first {
            f(first);
        }
        self.rest.for_each_mut(f);
    }

    pub(in crate::broker) fn clear(&mut self, gone: &mut impl FnMut(&Entry)) -> usize {
        let n = self.len();
        if let Some(first) = self.first.take() {
            gone(&first);
        }
        self.rest.clear(gone);
        n
    }
}
