//! Message groups: which consumer owns which group, and the ready messages of each group
//! (DESIGN.md §3; seeds: Qpid message groups, Artemis message grouping).
//!
//! Every group keeps its own ready list. A group with ready messages is indexed by the
//! sequence number of its first one: in `free` while no consumer owns the group, in
//! `owned[owner]` otherwise. The next grouped message a consumer may take is then the lower of
//! two first keys, an O(log groups) lookup that never looks at the messages waiting behind
//! groups owned by other consumers, however many there are.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::num::NonZeroU32;

use crate::config::{GroupBuckets, GroupKey, GroupRelease, QueueSettings};
use crate::int_map::IntMap;
use crate::message::Message;

use super::entry::{Entry, GroupId};
use crate::broker::consumer::ConsumerId;

/// What one acquisition of a grouped message did, kept with the message until it is settled:
/// a settlement only counts against the owner's hold if the group has not changed hands since.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    /// The message's group.
    pub group: GroupId,
    epoch: u32,
}

/// A grouped message taken for a consumer.
#[derive(Debug)]
pub struct Taken {
    /// The message.
    pub entry: Entry,
    /// To hand back with the settlement.
    pub ticket: Ticket,
    /// The first message of the group this consumer receives since it became the owner.
    pub first: bool,
}

/// One group as the statistics show it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GroupInfo {
    /// The group id, or `bucket N` when ids are hashed into buckets.
    pub group: String,
    /// The consumer that owns it, if any.
    pub owner: Option<ConsumerId>,
    /// The name of the owner's link.
    pub owner_link: Option<String>,
    /// Messages of the group ready for delivery.
    pub ready: usize,
    /// Messages of the group delivered and not yet settled.
    pub unacked: u32,
}

#[derive(Debug)]
struct Group {
    /// How the group is found: its id, or its bucket.
    name: Name,
    /// The keyed hash of the id, under which `by_hash` finds the group.
    hash: u64,
    ready: Lane,
    owner: Option<ConsumerId>,
    /// Messages the owner acquired since it became the owner and has not settled yet.
    held: u32,
    /// Acquired messages of the group, whoever holds them: the group stays in the table while
    /// any is out, so a message that comes back finds its group.
    acquired: u32,
    /// Changes whenever the owner does.
    epoch: u32,
    /// The owner has not received a message of the group yet.
    first_pending: bool,
}

#[derive(Debug, Clone)]
enum Name {
    Id(Box<str>),
    Bucket(u32),
}

/// The groups of one queue.
#[derive(Debug)]
pub struct GroupTable {
    key: GroupKey,
    buckets: GroupBuckets,
    release: GroupRelease,
    /// Groups by a keyed hash of their id: a probe of small entries, and the id itself is
    /// compared in the group's slot, which dispatch reads next anyway. The key is random per
    /// queue, so clients cannot aim ids at one hash; should two ids still share one, the
    /// later goes to `collided`. Entries of forgotten groups are left behind (the slot check
    /// sees through them) and swept when they outnumber the live groups, so forgetting a group
    /// costs no probe of this cold map.
    by_hash: IntMap<u64, GroupId>,
    collided: HashMap<Box<str>, GroupId>,
    hasher: RandomState,
    /// Tests set this to make every id collide.
    #[cfg(test)]
    constant_hash: bool,
    by_bucket: IntMap<u32, GroupId>,
    slots: Vec<Option<Group>>,
    vacant: Vec<GroupId>,
    /// Groups with ready messages by their first one's sequence number, free and per owner.
    heads: HeadIndex,
    ready_len: usize,
    ready_bytes: u64,
    /// Grouped messages acquired and not settled, all groups together.
    acquired: usize,
    /// Grouped messages wait until every acquired one is settled (a rebalance with pause).
    paused: bool,
    next_epoch: u32,
}

impl GroupTable {
    /// The groups of a queue with these settings; none yet.
    pub fn new(settings: &QueueSettings) -> GroupTable {
        GroupTable {
            key: settings.group_key.clone(),
            buckets: settings.group_buckets,
            release: settings.group_release,
            by_hash: IntMap::default(),
            collided: HashMap::new(),
            hasher: RandomState::new(),
            #[cfg(test)]
            constant_hash: false,
            by_bucket: IntMap::default(),
            slots: Vec::new(),
            vacant: Vec::new(),
            heads: HeadIndex::default(),
            ready_len: 0,
            ready_bytes: 0,
            acquired: 0,
            paused: false,
            next_epoch: 0,
        }
    }

    /// The group `message` belongs to, created on first sight; None for an ungrouped message
    /// (no group id, or grouping off).
    pub fn group_of(&mut self, message: &Message) -> Option<GroupId> {
        if self.buckets == GroupBuckets::Off {
            return None;
        }
        let id = group_id(&self.key, message)?;
        if let GroupBuckets::Hashed(n) = self.buckets {
            let bucket = (fnv1a(id.as_bytes()) % u64::from(n)) as u32;
            if let Some(&g) = self.by_bucket.get(&bucket) {
                return Some(g);
            }
            let g = self.create(Name::Bucket(bucket), 0);
            self.by_bucket.insert(bucket, g);
            return Some(g);
        }
        let hash = self.hash_id(&id);
        let live = self.by_hash.get(&hash).and_then(|&g| {
            let group = self.slot(g).filter(|gr| gr.hash == hash)?;
            Some((g, matches!(&group.name, Name::Id(name) if **name == *id)))
        });
        match live {
            Some((g, true)) => return Some(g),
            Some((_, false)) => {}
            // A stale entry (or none) hides no live group, except one that collided with an
            // id since forgotten.
            None if !self.collided.is_empty() && self.collided.contains_key(&*id) => {}
            None => {
                let g = self.create(Name::Id(id.into()), hash);
                self.by_hash.insert(hash, g);
                self.sweep_stale_hashes();
                return Some(g);
            }
        }
        if let Some(&g) = self.collided.get(&*id) {
            return Some(g);
        }
        let id: Box<str> = id.into();
        let g = self.create(Name::Id(id.clone()), hash);
        self.collided.insert(id, g);
        Some(g)
    }

    /// Appends a newly enqueued message of group `g` (just returned by
    /// [`GroupTable::group_of`]). Returns None once it is placed, or the entry if the group is
    /// somehow gone, so the caller can keep it elsewhere rather than lose it.
    #[must_use]
    pub fn push_new(&mut self, g: GroupId, entry: Entry) -> Option<Entry> {
        let bytes = entry.message.len() as u64;
        let Some(group) = self.slot_mut(g) else {
            return Some(entry);
        };
        let was_empty = group.ready.is_empty();
        group.ready.push_new(entry);
        self.ready_len += 1;
        self.ready_bytes += bytes;
        if was_empty {
            self.index(g);
        }
        None
    }

    /// Takes the ready message `seq` of group `g` out of the queue (it expired, or was
    /// cancelled); None if it is not there.
    pub fn remove(&mut self, g: GroupId, seq: u64) -> Option<Entry> {
        self.unindex(g);
        let entry = self.slot_mut(g).and_then(|group| group.ready.remove(seq));
        if let Some(e) = &entry {
            self.ready_len -= 1;
            self.ready_bytes -= e.message.len() as u64;
        }
        self.index(g);
        self.collect(g);
        entry
    }

    /// Puts a message of group `g` back among the group's ready messages at its original
    /// position (a rewound message); hands it back if the group is gone.
    #[must_use]
    pub fn push_back(&mut self, g: GroupId, entry: Entry) -> Option<Entry> {
        if self.slot(g).is_none() {
            return Some(entry);
        }
        self.push_returned(g, entry);
        None
    }

    /// Returns a message of group `g` to the group's ready list at its original position; the
    /// caller checked that the group exists.
    fn push_returned(&mut self, g: GroupId, entry: Entry) {
        let bytes = entry.message.len() as u64;
        let seq = entry.seq;
        let moves_head = self.head(g).is_none_or(|head| seq < head.seq);
        if moves_head {
            self.unindex(g);
        }
        if let Some(group) = self.slot_mut(g) {
            group.ready.push_returned(entry);
            self.ready_len += 1;
            self.ready_bytes += bytes;
        }
        if moves_head {
            self.index(g);
        }
    }

    /// The grouped message `consumer` would take next: the lowest sequence number among the
    /// free groups and the groups it owns.
    pub fn next_for(&self, consumer: ConsumerId) -> Option<(u64, GroupId)> {
        if self.paused || self.ready_len == 0 {
            return None;
        }
        self.heads.next_for(consumer)
    }

    /// Like [`GroupTable::next_for`], for a consumer that takes only the messages `wanted`
    /// accepts: the first group (free or its own) whose head it accepts. A group whose head
    /// its owner refuses waits for the owner to go or the group to be freed.
    pub fn next_wanted_for(
        &self,
        consumer: ConsumerId,
        mut wanted: impl FnMut(&Entry) -> bool,
    ) -> Option<(u64, GroupId)> {
        if self.paused || self.ready_len == 0 {
            return None;
        }
        self.heads
            .next_wanted_for(consumer, |g| self.head(g).is_some_and(&mut wanted))
    }

    /// Whether `consumer` may take the messages of group `g` now.
    pub fn may_take(&self, g: GroupId, consumer: ConsumerId) -> bool {
        !self.paused
            && self
                .slot(g)
                .is_some_and(|group| group.owner.is_none_or(|o| o == consumer))
    }

    /// The first ready message of group `g`.
    pub fn head(&self, g: GroupId) -> Option<&Entry> {
        self.slot(g)?.ready.peek()
    }

    /// Takes the first ready message of group `g` for `consumer`, which becomes the owner if
    /// the group had none. The caller checked [`GroupTable::may_take`].
    pub fn take(&mut self, g: GroupId, consumer: ConsumerId) -> Option<Taken> {
        self.head(g)?;
        self.unindex(g);
        let assigns = self.slot(g)?.owner.is_none();
        let epoch = if assigns { self.bump_epoch() } else { 0 };
        let group = self.slot_mut(g)?;
        let entry = group.ready.pop()?;
        if assigns {
            group.owner = Some(consumer);
            group.held = 0;
            group.epoch = epoch;
            group.first_pending = true;
        }
        group.held += 1;
        group.acquired += 1;
        let taken = Taken {
            ticket: Ticket {
                group: g,
                epoch: group.epoch,
            },
            first: std::mem::take(&mut group.first_pending),
            entry,
        };
        self.ready_len -= 1;
        self.ready_bytes -= taken.entry.message.len() as u64;
        self.acquired += 1;
        self.index(g);
        Some(taken)
    }

    /// Records that `consumer` settled a message it took with `ticket`. `back` is the message
    /// when it returns to the queue (released or modified); `closes` when it was consumed and
    /// its group sequence was negative, which ends the group's ownership.
    ///
    /// Returns the message if its group is unexpectedly gone, so the caller never loses it.
    pub fn settled(
        &mut self,
        ticket: Ticket,
        consumer: ConsumerId,
        back: Option<Entry>,
        closes: bool,
    ) -> Option<Entry> {
        let g = ticket.group;
        let on_ack = self.release == GroupRelease::OnAck;
        let Some(group) = self.slot_mut(g) else {
            return back;
        };
        group.acquired = group.acquired.saturating_sub(1);
        let current = group.owner == Some(consumer) && group.epoch == ticket.epoch;
        if current {
            group.held = group.held.saturating_sub(1);
        }
        let release = closes || (current && on_ack && group.held == 0);
        self.acquired = self.acquired.saturating_sub(1);
        if self.acquired == 0 {
            self.paused = false;
        }
        if let Some(entry) = back {
            self.push_returned(g, entry);
        }
        if release {
            self.disown(g);
        }
        self.collect(g);
        None
    }

    /// Frees every group `consumer` owns (it detached).
    pub fn release_consumer(&mut self, consumer: ConsumerId) {
        for g in self.ids_where(|group| group.owner == Some(consumer)) {
            self.disown(g);
            self.collect(g);
        }
        self.heads.forget_owner(consumer);
    }

    /// Frees every group, so that the next consumers to ask spread them among themselves;
    /// with `pause`, grouped messages then wait until every acquired one is settled.
    /// Returns how many groups had an owner.
    pub fn reset(&mut self, pause: bool) -> usize {
        let owned = self.ids_where(|group| group.owner.is_some());
        for &g in &owned {
            self.disown(g);
            self.collect(g);
        }
        self.paused = pause && self.acquired > 0;
        owned.len()
    }

    /// Calls `f` on every ready grouped message.
    pub fn for_each_mut(&mut self, mut f: impl FnMut(&mut Entry)) {
        for g in self.ids_where(|group| !group.ready.is_empty()) {
            if let Some(group) = self.slot_mut(g) {
                group.ready.for_each_mut(&mut f);
            }
        }
    }

    /// Drops every ready grouped message, showing each to `gone`; returns how many.
    pub fn purge(&mut self, mut gone: impl FnMut(&Entry)) -> usize {
        let mut purged = 0;
        for g in self.ids_where(|group| !group.ready.is_empty()) {
            self.unindex(g);
            if let Some(group) = self.slot_mut(g) {
                purged += group.ready.clear(&mut gone);
            }
            self.collect(g);
        }
        self.ready_len = 0;
        self.ready_bytes = 0;
        purged
    }

    /// Takes group `g` out of the index for now (its first message is refused by every
    /// consumer that could take it); [`GroupTable::restore`] puts it back.
    pub fn set_aside(&mut self, g: GroupId) {
        self.unindex(g);
    }

    /// Undoes [`GroupTable::set_aside`].
    pub fn restore(&mut self, g: GroupId) {
        self.index(g);
    }

    /// Up to `limit` ready grouped messages from sequence number `from` on, in sequence
    /// order, whatever their group and owner (for browsers, which take none of them). Looks
    /// at every group with ready messages: browsing is rare, and a browser's credit bounds
    /// what each group contributes.
    pub fn ready_from(&self, from: u64, limit: usize) -> Vec<&Entry> {
        if self.ready_len == 0 {
            return Vec::new();
        }
        let mut all: Vec<&Entry> = self
            .slots
            .iter()
            .flatten()
            .flat_map(|group| group.ready.from(from, limit))
            .collect();
        all.sort_unstable_by_key(|e| e.seq);
        all.truncate(limit);
        all
    }

    /// Ready grouped messages.
    pub fn ready_len(&self) -> usize {
        self.ready_len
    }

    /// Encoded bytes of the ready grouped messages.
    pub fn ready_bytes(&self) -> u64 {
        self.ready_bytes
    }

    /// Groups tracked: those with an owner, ready messages or unsettled messages.
    pub fn len(&self) -> usize {
        self.slots.len() - self.vacant.len()
    }

    /// Every tracked group, sorted by name.
    pub fn info(&self) -> Vec<GroupInfo> {
        let mut groups: Vec<GroupInfo> = self
            .slots
            .iter()
            .flatten()
            .map(|group| GroupInfo {
                group: match &group.name {
                    Name::Id(id) => id.to_string(),
                    Name::Bucket(n) => format!("bucket {n}"),
                },
                owner: group.owner,
                owner_link: None,
                ready: group.ready.len(),
                unacked: group.acquired,
            })
            .collect();
        groups.sort_by(|a, b| a.group.cmp(&b.group));
        groups
    }

    fn create(&mut self, name: Name, hash: u64) -> GroupId {
        let group = Group {
            name,
            hash,
            ready: Lane::default(),
            owner: None,
            held: 0,
            acquired: 0,
            epoch: 0,
            first_pending: false,
        };
        if let Some(g) = self.vacant.pop() {
            self.slots[slot_index(g)] = Some(group);
            return g;
        }
        self.slots.push(Some(group));
        // A queue holds far fewer than 2^32 groups: each one has a message or an owner.
        let n = u32::try_from(self.slots.len()).unwrap_or(u32::MAX);
        NonZeroU32::new(n).unwrap_or(NonZeroU32::MAX)
    }

    /// Ends the current ownership of group `g`.
    fn disown(&mut self, g: GroupId) {
        self.unindex(g);
        let epoch = self.bump_epoch();
        if let Some(group) = self.slot_mut(g) {
            group.owner = None;
            group.held = 0;
            group.epoch = epoch;
            group.first_pending = false;
        }
        self.index(g);
    }

    /// Forgets group `g` when nothing refers to it any more.
    fn collect(&mut self, g: GroupId) {
        let unused = self
            .slot(g)
            .is_some_and(|gr| gr.owner.is_none() && gr.acquired == 0 && gr.ready.is_empty());
        if !unused {
            return;
        }
        if let Some(group) = self.slots.get_mut(slot_index(g)).and_then(Option::take) {
            match group.name {
                Name::Id(id) => {
                    // Its by_hash entry, if it has one, goes stale; see `by_hash`.
                    self.collided.remove(&id);
                }
                Name::Bucket(n) => {
                    self.by_bucket.remove(&n);
                }
            }
            self.vacant.push(g);
        }
    }

    fn hash_id(&self, id: &str) -> u64 {
        #[cfg(test)]
        if self.constant_hash {
            return 42;
        }
        self.hasher.hash_one(id)
    }

    /// Drops the `by_hash` entries of forgotten groups once they outnumber the live ones:
    /// O(groups) now and then, so O(1) per group created.
    fn sweep_stale_hashes(&mut self) {
        if self.by_hash.len() <= 2 * self.len() + 1024 {
            return;
        }
        let slots = &self.slots;
        self.by_hash.retain(|&hash, &mut g| {
            let group = slots.get(slot_index(g)).and_then(Option::as_ref);
            group.is_some_and(|gr| gr.hash == hash && matches!(gr.name, Name::Id(_)))
        });
    }

    fn index(&mut self, g: GroupId) {
        let Some(group) = self.slot(g) else { return };
        let Some(head) = group.ready.peek() else {
            return;
        };
        let (seq, owner) = (head.seq, group.owner);
        self.heads.insert(seq, g, owner);
    }

    fn unindex(&mut self, g: GroupId) {
        let Some(group) = self.slot(g) else { return };
        let Some(head) = group.ready.peek() else {
            return;
        };
        let (seq, owner) = (head.seq, group.owner);
        self.heads.remove(seq, owner);
    }

    fn ids_where(&self, pred: impl Fn(&Group) -> bool) -> Vec<GroupId> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, slot)| slot.as_ref().is_some_and(&pred))
            .filter_map(|(i, _)| u32::try_from(i + 1).ok().and_then(NonZeroU32::new))
            .collect()
    }

    fn bump_epoch(&mut self) -> u32 {
        self.next_epoch = self.next_epoch.wrapping_add(1);
        self.next_epoch
    }

    fn slot(&self, g: GroupId) -> Option<&Group> {
        self.slots.get(slot_index(g))?.as_ref()
    }

    fn slot_mut(&mut self, g: GroupId) -> Option<&mut Group> {
        self.slots.get_mut(slot_index(g))?.as_mut()
    }
}

fn slot_index(g: GroupId) -> usize {
    g.get() as usize - 1
}

mod index;
mod key;
mod lane;

use index::HeadIndex;
pub use key::closes_group;
use key::{fnv1a, group_id};
use lane::Lane;

#[cfg(test)]
mod tests;
