//! Delayed messages, in due order.
//!
//! A million delayed messages must cost each what a thousand do. An ordered map keyed by the
//! exact due time (or by due time and sequence number) reaches a random leaf for every insert,
//! and at a million entries every such reach misses the cache. So messages wait in coarse
//! buckets of [`WIDTH_MS`] of due time, unsorted, appended as they come: a million messages
//! due within a minute land in under a thousand buckets, whose map and tails stay in cache.
//! The first bucket is sorted once, when its earliest message falls due, and then fired from
//! the end of the sorted vector. A message that arrives for a bucket already sorted goes to
//! its place by binary search.

use std::collections::BTreeMap;

use super::entry::Entry;
use super::schedule::ScheduledInfo;

/// Width of a bucket of due times.
pub const WIDTH_MS: i64 = 64;

#[derive(Debug)]
struct Bucket {
    /// The earliest due time in the bucket.
    min_due: i64,
    /// Sorted latest first (so the earliest pops off the end), once firing has begun.
    sorted: bool,
    items: Vec<(i64, Entry)>,
}

/// Delayed messages by due time.
#[derive(Debug, Default)]
pub struct Delayed {
    buckets: BTreeMap<i64, Bucket>,
    len: usize,
    bytes: u64,
}

/// Latest first: (due, seq) descending.
fn latest_first(a: &(i64, Entry), b: &(i64, Entry)) -> std::cmp::Ordering {
    (b.0, b.1.seq).cmp(&(a.0, a.1.seq))
}

impl Delayed {
    /// Holds `entry` until `due`.
    pub fn push(&mut self, due: i64, entry: Entry) {
        self.len += 1;
        self.bytes += entry.message.len() as u64;
        let bucket = self
            .buckets
            .entry(due.div_euclid(WIDTH_MS))
            .or_insert(Bucket {
                min_due: due,
                sorted: false,
                items: Vec::new(),
            });
        bucket.min_due = bucket.min_due.min(due);
        let item = (due, entry);
        if bucket.sorted {
            let at = bucket
                .items
                .partition_point(|other| latest_first(other, &item).is_lt());
            bucket.items.insert(at, item);
        } else {
            bucket.items.push(item);
        }
    }

    /// Takes message `seq` out; `due` (when known) finds its bucket at once, else every bucket
    /// is searched (an administrator's cancel).
    pub fn remove(&mut self, seq: u64, due: Option<i64>) -> Option<Entry> {
        let key = match due {
            Some(due) => due.div_euclid(WIDTH_MS),
            None => {
                *self
                    .buckets
                    .iter()
                    .find(|(_, b)| b.items.iter().any(|(_, e)| e.seq == seq))?
                    .0
            }
        };
        let bucket = self.buckets.get_mut(&key)?;
        let i = bucket.items.iter().position(|(_, e)| e.seq == seq)?;
        // `remove`, not `swap_remove`: a sorted bucket stays sorted.
        let (due, entry) = bucket.items.remove(i);
        if bucket.items.is_empty() {
            self.buckets.remove(&key);
        } else if due == bucket.min_due {
            bucket.min_due = bucket.items.iter().map(|(d, _)| *d).min().unwrap_or(due);
        }
        self.len -= 1;
        self.bytes -= entry.message.len() as u64;
        Some(entry)
    }

    /// The earliest due time.
    pub fn next_due(&self) -> Option<i64> {
        self.buckets.first_key_value().map(|(_, b)| b.min_due)
    }

    /// The earliest message due at `now`, if any.
    pub fn pop_due(&mut self, now: i64) -> Option<Entry> {
        let mut first = self.buckets.first_entry()?;
        let bucket = first.get_mut();
        if bucket.min_due > now {
            return None;
        }
        if !bucket.sorted {
            bucket.items.sort_unstable_by(latest_first);
            bucket.sorted = true;
        }
        let (_, entry) = bucket.items.pop()?;
        match bucket.items.last() {
            Some(&(due, _)) => bucket.min_due = due,
            None => {
                first.remove();
            }
        }
        self.len -= 1;
        self.bytes -= entry.message.len() as u64;
        Some(entry)
    }

    /// Delayed messages.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The first `limit` in due order.
    pub fn list(&self, limit: usize) -> Vec<ScheduledInfo> {
        let mut listed = Vec::new();
        for bucket in self.buckets.values() {
            let mut infos: Vec<ScheduledInfo> = bucket
                .items
                .iter()
                .map(|(due, e)| ScheduledInfo {
                    id: e.seq,
                    due_ms: *due,
                    bytes: e.message.len(),
                })
                .collect();
            infos.sort_unstable_by_key(|i| (i.due_ms, i.id));
            listed.extend(infos.into_iter().take(limit - listed.len()));
            if listed.len() == limit {
                break;
            }
        }
        listed
    }

    /// Calls `f` on every delayed message with its due time.
    pub fn for_each_mut(&mut self, mut f: impl FnMut(i64, &mut Entry)) {
        for bucket in self.buckets.values_mut() {
            for (due, entry) in &mut bucket.items {
                f(*due, entry);
            }
        }
    }

    /// Drops them all; returns them.
    pub fn clear(&mut self) -> Vec<Entry> {
        let entries = std::mem::take(&mut self.buckets)
            .into_values()
            .flat_map(|b| b.items.into_iter().map(|(_, e)| e))
            .collect();
        *self = Delayed::default();
        entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Message;
    use bytes::Bytes;
    use proptest::prelude::*;

    fn entry(seq: u64) -> Entry {
        Entry::new(seq, Message::opaque(Bytes::from_static(b"x"), 0))
    }

    proptest! {
        /// Against a model (a sorted list): whatever is pushed, removed and fired, messages
        /// fire in (due, seq) order, exactly when due, each once.
        #[test]
        fn fires_in_due_order_exactly_once(
            ops in proptest::collection::vec((0u8..4, 0i64..500, any::<usize>()), 1..200),
        ) {
            let mut d = Delayed::default();
            let mut model: Vec<(i64, u64)> = Vec::new();
            let mut now = 0i64;
            let mut seq = 0u64;
            for (op, t, pick) in ops {
                match op {
                    0 | 1 => {
                        seq += 1;
                        let due = now + t;
                        d.push(due, entry(seq));
                        model.push((due, seq));
                    }
                    2 if !model.is_empty() => {
                        let (due, s) = model.remove(pick % model.len());
                        let hint = (pick % 2 == 0).then_some(due);
                        prop_assert_eq!(d.remove(s, hint).map(|e| e.seq), Some(s));
                    }
                    _ => {
                        now += t / 4;
                        model.sort_unstable();
                        while let Some(e) = d.pop_due(now) {
                            let expected = model.remove(0);
                            prop_assert_eq!((expected.1, expected.0 <= now), (e.seq, true));
                        }
                        prop_assert!(model.first().is_none_or(|&(due, _)| due > now));
                    }
                }
                model.sort_unstable();
                prop_assert_eq!(d.len(), model.len());
                prop_assert_eq!(d.next_due(), model.first().map(|&(due, _)| due));
                let listed: Vec<(i64, u64)> =
                    d.list(usize::MAX).iter().map(|i| (i.due_ms, i.id)).collect();
                prop_assert_eq!(listed, model.clone());
            }
        }
    }
}
