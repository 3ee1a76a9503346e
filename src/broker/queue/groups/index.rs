//! The index that makes "which grouped message may this consumer take next" one lookup: groups
//! with ready messages, keyed by the sequence number of their first ready message — the free
//! ones in one map, the owned ones in a map per owner. A consumer's next message is the lower
//! of the first keys of `free` and of its own map, however many messages wait behind groups
//! that others own.

use std::collections::BTreeMap;

use crate::broker::consumer::ConsumerId;
use crate::broker::queue::entry::GroupId;
use crate::int_map::IntMap;

/// Groups with ready messages by the sequence number of their head.
#[derive(Debug, Default)]
pub(super) struct HeadIndex {
    /// Unowned groups.
    free: BTreeMap<u64, GroupId>,
    /// Owned groups, per owner.
    owned: IntMap<ConsumerId, BTreeMap<u64, GroupId>>,
}

impl HeadIndex {
    /// Indexes group `g`, whose head is `seq`, under its `owner` (None: free).
    pub(super) fn insert(&mut self, seq: u64, g: GroupId, owner: Option<ConsumerId>) {
        match owner {
            None => self.free.insert(seq, g),
            Some(c) => self.owned.entry(c).or_default().insert(seq, g),
        };
    }

    /// Removes the group indexed under head `seq` and `owner`.
    pub(super) fn remove(&mut self, seq: u64, owner: Option<ConsumerId>) {
        match owner {
            None => {
                self.free.remove(&seq);
            }
            Some(c) => {
                if let Some(heads) = self.owned.get_mut(&c) {
                    heads.remove(&seq);
                    if heads.is_empty() {
                        self.owned.remove(&c);
                    }
                }
            }
        }
    }

    /// The lowest head among the free groups and those `consumer` owns.
    pub(super) fn next_for(&self, consumer: ConsumerId) -> Option<(u64, GroupId)> {
        let free = self.free.first_key_value();
        let own = self
            .owned
            .get(&consumer)
            .and_then(BTreeMap::first_key_value);
        match (free, own) {
            (Some(f), Some(o)) => Some(if f.0 < o.0 { f } else { o }),
            (f, o) => f.or(o),
        }
        .map(|(&seq, &g)| (seq, g))
    }

    /// The lowest head among the free groups and those `consumer` owns that `wanted` accepts
    /// (a filtered consumer): the heads are looked at in order until one is.
    pub(super) fn next_wanted_for(
        &self,
        consumer: ConsumerId,
        mut wanted: impl FnMut(GroupId) -> bool,
    ) -> Option<(u64, GroupId)> {
        let mut first = |map: Option<&BTreeMap<u64, GroupId>>| {
            map.into_iter()
                .flatten()
                .find(|(_, &g)| wanted(g))
                .map(|(&seq, &g)| (seq, g))
        };
        let free = first(Some(&self.free));
        let own = first(self.owned.get(&consumer));
        match (free, own) {
            (Some(f), Some(o)) => Some(if f.0 < o.0 { f } else { o }),
            (f, o) => f.or(o),
        }
    }

    /// Forgets `consumer`'s map (its groups were all re-indexed as free).
    pub(super) fn forget_owner(&mut self, consumer: ConsumerId) {
        self.owned.remove(&consumer);
    }
}
