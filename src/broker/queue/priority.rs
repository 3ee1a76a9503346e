//! A queue's ready messages, in one FIFO list or, with `max_priority` set, one list per
//! priority level (RabbitMQ's priority queues): the header's `priority` (0–255, 4 when absent)
//! picks the level, capped at `max_priority`; dispatch takes from the highest level that has
//! a message, first in first out within it. Messages of a group lane keep their group's order
//! (priority orders the ungrouped ones), and delayed ones enter their level when due.

use super::entry::Entry;
use super::ready::ReadyList;

/// The ready messages.
#[derive(Debug)]
pub enum Ready {
    /// No priorities: one list, the common case.
    Fifo(ReadyList),
    /// One list per level, index = priority.
    Levels(Vec<ReadyList>),
}

/// The level of a message without a header priority (AMQP 1.0's default).
const DEFAULT_PRIORITY: u8 = 4;

impl Ready {
    /// Ready lists for a queue with `max_priority` (0: none).
    pub fn new(max_priority: u8) -> Ready {
        match max_priority {
            0 => Ready::Fifo(ReadyList::default()),
            max => Ready::Levels((0..=max).map(|_| ReadyList::default()).collect()),
        }
    }

    fn level_of(levels: &[ReadyList], entry: &Entry) -> usize {
        let priority = entry.message.header().priority.unwrap_or(DEFAULT_PRIORITY);
        usize::from(priority).min(levels.len() - 1)
    }

    /// Appends a newly enqueued entry to its level.
    pub fn push_new(&mut self, entry: Entry) {
        match self {
            Ready::Fifo(list) => list.push_new(entry),
            Ready::Levels(levels) => {
                let at = Ready::level_of(levels, &entry);
                levels[at].push_new(entry);
            }
        }
    }

    /// Puts back an entry that had been acquired, at its original position in its level.
    pub fn push_returned(&mut self, entry: Entry) {
        match self {
            Ready::Fifo(list) => list.push_returned(entry),
            Ready::Levels(levels) => {
                let at = Ready::level_of(levels, &entry);
                levels[at].push_returned(entry);
            }
        }
    }

    /// The entry that would be popped next.
    pub fn peek(&self) -> Option<&Entry> {
        match self {
            Ready::Fifo(list) => list.peek(),
            Ready::Levels(levels) => levels.iter().rev().find_map(|l| l.peek()),
        }
    }

    /// Removes and returns the next entry: the first of the highest level.
    pub fn pop(&mut self) -> Option<Entry> {
        match self {
            Ready::Fifo(list) => list.pop(),
            Ready::Levels(levels) => levels.iter_mut().rev().find_map(|l| l.pop()),
        }
    }

    /// Removes the entry with sequence number `seq`, wherever it is.
    pub fn remove(&mut self, seq: u64) -> Option<Entry> {
        match self {
            Ready::Fifo(list) => list.remove(seq),
            Ready::Levels(levels) => levels.iter_mut().find_map(|l| l.remove(seq)),
        }
    }

    /// The lowest sequence number put back since the last call, at any level.
    pub fn take_rewound(&mut self) -> Option<u64> {
        match self {
            Ready::Fifo(list) => list.take_rewound(),
            Ready::Levels(levels) => levels.iter_mut().filter_map(ReadyList::take_rewound).min(),
        }
    }

    /// How many lists a filtered consumer keeps a place in (one per level).
    pub fn lists(&self) -> usize {
        match self {
            Ready::Fifo(_) => 1,
            Ready::Levels(levels) => levels.len(),
        }
    }

    /// The first entry `wanted` accepts, highest level first, looking in each list from the
    /// consumer's place in it (`from`, one per list, advanced past what was refused).
    pub fn first_wanted(
        &self,
        from: &mut [u64],
        mut wanted: impl FnMut(&Entry) -> bool,
    ) -> Option<u64> {
        let lists: Vec<&ReadyList> = match self {
            Ready::Fifo(list) => vec![list],
            Ready::Levels(levels) => levels.iter().rev().collect(),
        };
        // `from` is indexed by level; the lists are visited highest first.
        let count = lists.len();
        for (k, list) in lists.into_iter().enumerate() {
            let slot = from.get_mut(count - 1 - k)?;
            let (found, next) = list.first_from(*slot, &mut wanted);
            *slot = next;
            if found.is_some() {
                return found;
            }
        }
        None
    }

    /// The ready entry with sequence number `seq`.
    pub fn get(&self, seq: u64) -> Option<&Entry> {
        match self {
            Ready::Fifo(list) => list.get(seq),
            Ready::Levels(levels) => levels.iter().find_map(|l| l.get(seq)),
        }
    }

    /// Number of ready entries.
    pub fn len(&self) -> usize {
        match self {
            Ready::Fifo(list) => list.len(),
            Ready::Levels(levels) => levels.iter().map(ReadyList::len).sum(),
        }
    }

    /// Whether no entry is ready.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Total encoded size of the ready messages.
    pub fn bytes(&self) -> u64 {
        match self {
            Ready::Fifo(list) => list.bytes(),
            Ready::Levels(levels) => levels.iter().map(ReadyList::bytes).sum(),
        }
    }

    /// Calls `f` on every ready entry, in no particular order.
    pub fn for_each_mut(&mut self, mut f: impl FnMut(&mut Entry)) {
        match self {
            Ready::Fifo(list) => list.for_each_mut(f),
            Ready::Levels(levels) => levels.iter_mut().for_each(|l| l.for_each_mut(&mut f)),
        }
    }

    /// Removes every entry, showing each to `gone`; returns how many there were.
    pub fn clear(&mut self, mut gone: impl FnMut(&Entry)) -> usize {
        match self {
            Ready::Fifo(list) => list.clear(gone),
            Ready::Levels(levels) => levels.iter_mut().map(|l| l.clear(&mut gone)).sum(),
        }
    }

    /// Up to `limit` ready entries from sequence number `from` on, in enqueue order (a
    /// browser reads a priority queue in the order messages arrived).
    pub fn from(&self, from: u64, limit: usize) -> Vec<&Entry> {
        match self {
            Ready::Fifo(list) => list.from(from, limit),
            Ready::Levels(levels) => {
                let mut all: Vec<&Entry> =
                    levels.iter().flat_map(|l| l.from(from, limit)).collect();
                all.sort_unstable_by_key(|e| e.seq);
                all.truncate(limit);
                all
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    /// A message with header priority `p` (none: the default, 4).
    fn entry(seq: u64, p: Option<u8>) -> Entry {
        let mut bytes = vec![0x00, 0x53, 0x70];
        match p {
            Some(p) => bytes.extend([0xc0, 0x04, 0x02, 0x42, 0x50, p]),
            None => bytes.extend([0x45]),
        }
        bytes.extend([0x00, 0x53, 0x77, 0x40]);
        let message = crate::message::Message::parse(Bytes::from(bytes)).unwrap();
        Entry::new(seq, message)
    }

    #[test]
    fn higher_priorities_first_fifo_within_a_level_capped_at_the_maximum() {
        let mut ready = Ready::new(9);
        for (seq, p) in [
            (1, Some(1)),
            (2, None),
            (3, Some(9)),
            (4, Some(200)),
            (5, None),
        ] {
            ready.push_new(entry(seq, p));
        }
        let first = ready.pop().unwrap();
        assert_eq!(first.seq, 3);
        ready.push_returned(first);
        let order: Vec<u64> = std::iter::from_fn(|| ready.pop()).map(|e| e.seq).collect();
        assert_eq!(
            order,
            [3, 4, 2, 5, 1],
            "9 and 200 (capped to 9) in arrival order, then 4s, then 1"
        );
    }

    #[test]
    fn without_a_maximum_it_is_one_fifo_and_browsing_keeps_arrival_order() {
        let mut fifo = Ready::new(0);
        let mut levels = Ready::new(9);
        for (seq, p) in [(1, Some(1)), (2, Some(9)), (3, None)] {
            fifo.push_new(entry(seq, p));
            levels.push_new(entry(seq, p));
        }
        let seqs = |v: Vec<&Entry>| v.iter().map(|e| e.seq).collect::<Vec<_>>();
        assert_eq!(seqs(levels.from(0, 10)), [1, 2, 3]);
        assert_eq!(fifo.pop().map(|e| e.seq), Some(1));
        assert_eq!(levels.remove(3).map(|e| e.seq), Some(3));
        assert_eq!((levels.len(), levels.is_empty()), (2, false));
    }
}
