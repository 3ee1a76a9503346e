//! A queue: ready messages, the consumers that take them, and what each consumer holds.
//!
//! All of a queue's state sits behind one mutex that is never held across an `.await`; every
//! operation is a short critical section that ends by dispatching whatever it made possible.
//! Dispatch is FIFO (by enqueue sequence) and round-robin among the consumers that have credit;
//! grouped messages go only to their group's owner (see [`super::groups`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::config::QueueSettings;
use crate::int_map::IntMap;
use crate::message::Message;

use super::consumer::{lock, ConsumerId, Delivery, OutItem, Outbox};
use super::groups::{closes_group, GroupId, GroupInfo, GroupTable, Ticket};
use super::ready::ReadyList;

/// What the consumer decided about a delivery (AMQP 1.0 §3.4 outcomes, in broker terms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Processed: the message is consumed.
    Accepted,
    /// Not processed: back to the queue at its original position, delivery-count unchanged.
    Released,
    /// Not processed, with instructions.
    Modified {
        /// The attempt counts as a failed delivery: delivery-count + 1.
        delivery_failed: bool,
        /// Do not deliver it to this consumer again.
        undeliverable_here: bool,
    },
    /// Invalid: dead-lettered when the queue has a dead-letter address, else dropped and counted.
    Rejected,
}

/// A message in a queue with the state the queue keeps about it.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Enqueue sequence number: the queue's order, and the key a consumer settles by.
    pub seq: u64,
    /// The message as received.
    pub message: Message,
    /// Failed deliveries so far (starts at the header's delivery-count).
    pub delivery_count: u32,
    /// The message's group, if it has one; sits in padding the entry has anyway.
    group: Option<GroupId>,
    /// Consumers that said `undeliverable-here` for this message; boxed because almost no
    /// message has any, and every queued message pays for this field.
    avoid: Option<Box<[ConsumerId]>>,
}

impl Entry {
    /// Whether `consumer` refused this message (`undeliverable-here`).
    fn avoids(&self, consumer: ConsumerId) -> bool {
        self.avoid.as_ref().is_some_and(|a| a.contains(&consumer))
    }

    /// A fresh entry for `message` at `seq`.
    pub fn new(seq: u64, message: Message) -> Entry {
        let delivery_count = message.header().delivery_count;
        Entry {
            seq,
            message,
            delivery_count,
            group: None,
            avoid: None,
        }
    }
}

/// Counters and gauges of one queue, as the admin API and tests read them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Messages ready for delivery.
    pub ready: usize,
    /// Messages delivered and not yet settled.
    pub unacked: usize,
    /// Attached consumers.
    pub consumers: usize,
    /// Message groups tracked (with an owner, ready messages or unsettled messages).
    pub groups: usize,
    /// Encoded bytes of the ready messages.
    pub ready_bytes: u64,
    /// Messages ever enqueued.
    pub enqueued: u64,
    /// Deliveries made (redeliveries included).
    pub delivered: u64,
    /// Messages consumed (accepted, or sent pre-settled).
    pub acked: u64,
    /// Deliveries returned to the queue (released, modified, or unsettled at detach).
    pub returned: u64,
    /// Messages rejected by a consumer and dropped.
    pub rejected: u64,
    /// Messages scheduled for later delivery (none until delayed delivery exists).
    pub delayed: usize,
    /// Messages that expired before delivery (none until expiry exists).
    pub expired: u64,
    /// Messages moved to a dead-letter address (none until dead-lettering exists).
    pub dead_lettered: u64,
}

/// One consumer of a queue, as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConsumerInfo {
    /// The consumer's broker-wide id (group owners are named by it).
    pub id: ConsumerId,
    /// The receiving link's name.
    pub link: String,
    /// The registry id of its connection.
    pub connection: u64,
    /// Deliveries it may still receive.
    pub credit: u32,
    /// Deliveries it holds unsettled.
    pub unacked: usize,
}

#[derive(Debug)]
struct Consumer {
    outbox: Arc<Outbox>,
    /// The link's name, to show who owns a group.
    name: Box<str>,
    /// The delivery-count the consumer's credit reaches (RFC 1982 serial arithmetic, like the
    /// link's own delivery-count): the queue may dispatch while `dispatched` is below it.
    limit: u32,
    dispatched: u32,
    drain: bool,
}

impl Consumer {
    fn credit(&self) -> u32 {
        let c = self.limit.wrapping_sub(self.dispatched) as i32;
        c.max(0) as u32
    }
}

/// A message delivered and not yet settled.
#[derive(Debug)]
struct Acquired {
    consumer: ConsumerId,
    ticket: Option<Ticket>,
    entry: Entry,
}

/// Where a ready message waits: with the ungrouped ones, or in its group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lane {
    Ungrouped,
    Group(GroupId),
}

#[derive(Debug)]
struct State {
    next_seq: u64,
    /// Ready messages that belong to no group.
    ready: ReadyList,
    groups: GroupTable,
    acquired: IntMap<u64, Acquired>,
    consumers: Vec<Consumer>,
    next_consumer: usize,
    stats: QueueStats,
}

/// One named queue.
#[derive(Debug)]
pub struct Queue {
    name: String,
    settings: QueueSettings,
    dynamic: bool,
    /// Deleted by an administrator: producers still holding the queue are detached.
    deleted: AtomicBool,
    state: Mutex<State>,
}

impl Queue {
    /// An empty queue named `name` with the settings in force for it.
    pub fn new(name: String, settings: QueueSettings, dynamic: bool) -> Arc<Queue> {
        Arc::new(Queue {
            name,
            dynamic,
            deleted: AtomicBool::new(false),
            state: Mutex::new(State {
                next_seq: 1,
                ready: ReadyList::default(),
                groups: GroupTable::new(&settings),
                acquired: IntMap::default(),
                consumers: Vec::new(),
                next_consumer: 0,
                stats: QueueStats::default(),
            }),
            settings,
        })
    }

    /// The queue's name (its address).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The settings in force.
    pub fn settings(&self) -> &QueueSettings {
        &self.settings
    }

    /// Whether the queue was created for a dynamic link and dies with it.
    pub fn is_dynamic(&self) -> bool {
        self.dynamic
    }

    /// Appends messages and dispatches them to consumers with credit.
    pub fn enqueue(&self, messages: impl IntoIterator<Item = Message>) {
        let mut st = lock(&self.state);
        for message in messages {
            let seq = st.next_seq;
            st.next_seq += 1;
            st.stats.enqueued += 1;
            let mut entry = Entry::new(seq, message);
            entry.group = st.groups.group_of(&entry.message);
            let ungrouped = match entry.group {
                Some(g) => st.groups.push_new(g, entry),
                None => Some(entry),
            };
            if let Some(entry) = ungrouped {
                st.ready.push_new(entry);
            }
        }
        st.dispatch(&self.settings);
    }

    /// Registers a consumer with no credit yet. With `group_rebalance`, every group is freed
    /// so the groups spread over the consumers, the new one included.
    pub fn add_consumer(&self, outbox: Arc<Outbox>, link_name: &str) {
        let mut st = lock(&self.state);
        st.consumers.push(Consumer {
            outbox,
            name: link_name.into(),
            limit: 0,
            dispatched: 0,
            drain: false,
        });
        if self.settings.group_rebalance {
            st.groups
                .reset(self.settings.group_rebalance_pause_dispatch);
            st.dispatch(&self.settings);
        }
    }

    /// Sets a consumer's credit: it may receive deliveries until its delivery-count reaches
    /// `limit`. With `drain`, whatever credit is left once the ready messages are dispatched is
    /// used up and the consumer is told so with [`OutItem::DrainDone`].
    pub fn flow(&self, consumer: ConsumerId, limit: u32, drain: bool) {
        let mut st = lock(&self.state);
        if let Some(c) = st.consumer_mut(consumer) {
            c.limit = limit;
            c.drain = drain;
        }
        st.dispatch(&self.settings);
    }

    /// Applies consumer outcomes to acquired messages; unknown or foreign sequence numbers are
    /// ignored, so a late or repeated settlement can never settle a message twice.
    pub fn settle(&self, consumer: ConsumerId, outcomes: impl IntoIterator<Item = (u64, Outcome)>) {
        let mut st = lock(&self.state);
        for (seq, outcome) in outcomes {
            st.settle_one(consumer, seq, outcome);
        }
        st.dispatch(&self.settings);
    }

    /// Removes a consumer. Everything it still holds goes back to the queue in order: messages it
    /// was sent count as a failed delivery (delivery-count + 1), messages still in its outbox
    /// were never sent and do not. Its groups are free for the next consumer that asks.
    pub fn detach_consumer(&self, consumer: ConsumerId) {
        let mut st = lock(&self.state);
        let Some(pos) = st
            .consumers
            .iter()
            .position(|c| c.outbox.consumer() == consumer)
        else {
            return;
        };
        let removed = st.consumers.remove(pos);
        if st.next_consumer > pos {
            st.next_consumer -= 1;
        }
        let mut unsent = std::collections::HashSet::new();
        for item in removed.outbox.drain_all() {
            if let OutItem::Deliver(d) = item {
                unsent.insert(d.seq);
            }
        }
        let mut held: Vec<u64> = st
            .acquired
            .iter()
            .filter(|(_, a)| a.consumer == consumer)
            .map(|(seq, _)| *seq)
            .collect();
        held.sort_unstable();
        for seq in held {
            let outcome = if unsent.contains(&seq) {
                Outcome::Released
            } else {
                Outcome::Modified {
                    delivery_failed: true,
                    undeliverable_here: false,
                }
            };
            st.settle_one(consumer, seq, outcome);
        }
        st.groups.release_consumer(consumer);
        st.dispatch(&self.settings);
    }

    /// Frees every message group, so the next consumers to ask spread them among themselves
    /// (Artemis `resetAllGroups`). Returns how many groups had an owner.
    pub fn reset_groups(&self) -> usize {
        let mut st = lock(&self.state);
        let n = st
            .groups
            .reset(self.settings.group_rebalance_pause_dispatch);
        st.dispatch(&self.settings);
        n
    }

    /// Every tracked message group with its owner.
    pub fn groups(&self) -> Vec<GroupInfo> {
        let st = lock(&self.state);
        let mut groups = st.groups.info();
        for group in &mut groups {
            let owner = group
                .owner
                .and_then(|id| st.consumers.iter().find(|c| c.outbox.consumer() == id));
            group.owner_link = owner.map(|c| c.name.to_string());
        }
        groups
    }

    /// Whether the queue was deleted; a producer still holding it must stop using it.
    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Relaxed)
    }

    /// Deletes the queue's messages and tells its consumers the queue is gone (their links are
    /// detached with `amqp:resource-deleted`); the router has already forgotten the name.
    /// Returns how many messages were dropped, ready and unacknowledged.
    pub fn delete(&self) -> usize {
        self.deleted.store(true, Ordering::Relaxed);
        let mut st = lock(&self.state);
        let dropped = st.ready.clear() + st.groups.purge() + st.acquired.len();
        st.acquired.clear();
        for c in std::mem::take(&mut st.consumers) {
            c.outbox.drain_all();
            c.outbox.push(OutItem::QueueDeleted);
        }
        dropped
    }

    /// The attached consumers, in attach order.
    pub fn consumers(&self) -> Vec<ConsumerInfo> {
        let st = lock(&self.state);
        let mut unacked: IntMap<ConsumerId, usize> = IntMap::default();
        for a in st.acquired.values() {
            *unacked.entry(a.consumer).or_default() += 1;
        }
        st.consumers
            .iter()
            .map(|c| ConsumerInfo {
                id: c.outbox.consumer(),
                link: c.name.to_string(),
                connection: c.outbox.connection(),
                credit: c.credit(),
                unacked: unacked.get(&c.outbox.consumer()).copied().unwrap_or(0),
            })
            .collect()
    }

    /// Drops every ready message; returns how many.
    pub fn purge(&self) -> usize {
        let mut st = lock(&self.state);
        st.ready.clear() + st.groups.purge()
    }

    /// A snapshot of the queue's counters.
    pub fn stats(&self) -> QueueStats {
        let st = lock(&self.state);
        QueueStats {
            ready: st.ready.len() + st.groups.ready_len(),
            unacked: st.acquired.len(),
            consumers: st.consumers.len(),
            groups: st.groups.len(),
            ready_bytes: st.ready.bytes() + st.groups.ready_bytes(),
            ..st.stats.clone()
        }
    }
}

impl State {
    fn consumer_mut(&mut self, id: ConsumerId) -> Option<&mut Consumer> {
        self.consumers
            .iter_mut()
            .find(|c| c.outbox.consumer() == id)
    }

    fn settle_one(&mut self, consumer: ConsumerId, seq: u64, outcome: Outcome) {
        match self.acquired.get(&seq) {
            Some(a) if a.consumer == consumer => {}
            // Unknown, or not this consumer's to settle (a late outcome after a redelivery).
            _ => return,
        }
        let Some(Acquired {
            ticket, mut entry, ..
        }) = self.acquired.remove(&seq)
        else {
            return;
        };
        let consumed = matches!(outcome, Outcome::Accepted | Outcome::Rejected);
        let closes = consumed && ticket.is_some() && closes_group(&entry.message);
        let back = match outcome {
            Outcome::Accepted => {
                self.stats.acked += 1;
                None
            }
            Outcome::Rejected => {
                self.stats.rejected += 1;
                None
            }
            Outcome::Released => Some(entry),
            Outcome::Modified {
                delivery_failed,
                undeliverable_here,
            } => {
                if delivery_failed {
                    entry.delivery_count = entry.delivery_count.saturating_add(1);
                }
                if undeliverable_here && !entry.avoids(consumer) {
                    let mut avoid = entry.avoid.take().map(Vec::from).unwrap_or_default();
                    avoid.push(consumer);
                    entry.avoid = Some(avoid.into_boxed_slice());
                }
                Some(entry)
            }
        };
        if back.is_some() {
            self.stats.returned += 1;
        }
        let back = match ticket {
            Some(ticket) => self.groups.settled(ticket, consumer, back, closes),
            None => back,
        };
        if let Some(entry) = back {
            self.ready.push_returned(entry);
        }
    }

    /// The ready message `consumer` would take next: the first of the ungrouped messages, the
    /// free groups and the groups it owns.
    fn candidate(&self, consumer: ConsumerId) -> Option<Lane> {
        let ungrouped = self.ready.peek().map(|e| e.seq);
        let grouped = self.groups.next_for(consumer);
        match (ungrouped, grouped) {
            (Some(u), Some((g_seq, g))) if g_seq < u => Some(Lane::Group(g)),
            (Some(_), _) => Some(Lane::Ungrouped),
            (None, Some((_, g))) => Some(Lane::Group(g)),
            (None, None) => None,
        }
    }

    fn head(&self, lane: Lane) -> Option<&Entry> {
        match lane {
            Lane::Ungrouped => self.ready.peek(),
            Lane::Group(g) => self.groups.head(g),
        }
    }

    /// Whether consumer `i` has credit and may take the first message of `lane`.
    fn may_take(&self, i: usize, lane: Lane) -> bool {
        let c = &self.consumers[i];
        let id = c.outbox.consumer();
        let allowed = match lane {
            Lane::Ungrouped => true,
            Lane::Group(g) => self.groups.may_take(g, id),
        };
        c.credit() > 0 && allowed && self.head(lane).is_some_and(|e| !e.avoids(id))
    }

    /// Hands ready messages to consumers with credit, round-robin, then completes drains.
    ///
    /// Each consumer in turn takes the first message it may have, so grouped messages waiting
    /// for a busy owner never hold up the rest. A message that every consumer that could take
    /// it has refused (`undeliverable-here`) is set aside for this round, with the rest of its
    /// group, so the messages behind it keep flowing; it returns to its position after.
    fn dispatch(&mut self, settings: &QueueSettings) {
        let mut set_aside = Vec::new();
        let mut set_aside_groups = Vec::new();
        let mut idle = 0;
        while idle < self.consumers.len() {
            if self.ready.is_empty() && self.groups.ready_len() == 0 {
                break;
            }
            let n = self.consumers.len();
            let i = self.next_consumer % n;
            let id = self.consumers[i].outbox.consumer();
            let has_credit = self.consumers[i].credit() > 0;
            let lane = match has_credit.then(|| self.candidate(id)).flatten() {
                Some(lane) => lane,
                None => {
                    self.next_consumer = i + 1;
                    idle += 1;
                    continue;
                }
            };
            if self.may_take(i, lane) {
                self.deliver(i, lane, settings);
                self.next_consumer = i + 1;
                idle = 0;
                continue;
            }
            // This consumer refused the message; another may take it, else it waits.
            if let Some(j) = (1..n)
                .map(|k| (i + k) % n)
                .find(|&j| self.may_take(j, lane))
            {
                self.deliver(j, lane, settings);
                idle = 0;
                continue;
            }
            match lane {
                Lane::Ungrouped => set_aside.extend(self.ready.pop()),
                Lane::Group(g) => {
                    self.groups.set_aside(g);
                    set_aside_groups.push(g);
                }
            }
        }
        for entry in set_aside {
            self.ready.push_returned(entry);
        }
        for g in set_aside_groups {
            self.groups.restore(g);
        }
        for c in self.consumers.iter_mut().filter(|c| c.drain) {
            c.drain = false;
            c.dispatched = c.dispatched.wrapping_add(c.credit());
            c.outbox.push(OutItem::DrainDone {
                delivery_count: c.dispatched,
            });
        }
    }

    /// Sends the first message of `lane` to consumer `i`, which [`State::may_take`] it.
    fn deliver(&mut self, i: usize, lane: Lane, settings: &QueueSettings) {
        let id = self.consumers[i].outbox.consumer();
        let (entry, ticket, first) = match lane {
            Lane::Ungrouped => match self.ready.pop() {
                Some(entry) => (entry, None, false),
                None => return,
            },
            Lane::Group(g) => match self.groups.take(g, id) {
                Some(t) => (t.entry, Some(t.ticket), t.first),
                None => return,
            },
        };
        let message = match (&settings.group_first_key, first) {
            (Some(key), true) => entry
                .message
                .with_marker(key, settings.group_first_as_property),
            _ => entry.message.clone(),
        };
        let consumer = &mut self.consumers[i];
        consumer.dispatched = consumer.dispatched.wrapping_add(1);
        consumer.outbox.push(OutItem::Deliver(Delivery {
            seq: entry.seq,
            message,
            delivery_count: entry.delivery_count,
        }));
        self.stats.delivered += 1;
        self.acquired.insert(
            entry.seq,
            Acquired {
                consumer: id,
                ticket,
                entry,
            },
        );
    }
}

#[cfg(test)]
mod size {
    #[test]
    fn a_queue_entry_stays_small() {
        // Every queued message pays for its entry (DESIGN.md §6 bounds memory per queued
        // message); the group id fits in padding the entry had anyway.
        let size = std::mem::size_of::<super::Entry>();
        assert!(size <= 128, "Entry is {size} bytes");
    }
}
