//! A queue: ready messages, the consumers that take them, and what each consumer holds.
//!
//! All of a queue's state sits behind one mutex that is never held across an `.await`; every
//! operation is a short critical section that ends by dispatching whatever it made possible.
//! Dispatch is FIFO (by enqueue sequence) and round-robin among the consumers that have credit;
//! grouped messages go only to their group's owner (see [`groups`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use crate::config::QueueSettings;
use crate::int_map::IntMap;
use crate::message::Message;

use self::clock::{now_ms, Now};
use self::entry::GroupId;
pub use self::entry::{Entry, Outcome, SegmentRef};
use self::groups::{GroupInfo, GroupTable, Ticket};
use self::lifecycle::expiry_of;
use self::priority::Ready;
use self::rewind::{Retention, RewindError};
use self::schedule::{Due, Schedule, ScheduledInfo};
pub use self::stats::{ConsumerInfo, QueueStats};
use self::temporary::Temporary;
use self::timer::Timer;
use crate::broker::consumer::{lock, ConnWaker, ConsumerId, OutItem};
use crate::broker::durable::journaled::Journaled;

mod admission;
mod browse;
pub mod clock;
mod compact;
mod consumers;
pub(in crate::broker) use consumers::Consumer;
pub mod dead_letter;
pub mod delayed;
mod dispatch;
pub mod entry;
pub mod groups;
mod lifecycle;
mod nodes;
mod priority;
mod publish;
pub mod ready;
mod restore;
pub mod rewind;
mod room;
pub mod schedule;
mod settle;
pub mod stats;
pub mod temporary;
pub mod timer;

#[cfg(test)]
mod filter_tests;
#[cfg(test)]
mod time_tests;

use nodes::NoNodes;
pub use nodes::Nodes;
pub use publish::Publish;

/// A message delivered and not yet settled.
#[derive(Debug)]
pub(in crate::broker) struct Acquired {
    pub consumer: ConsumerId,
    pub ticket: Option<Ticket>,
    /// When the visibility timeout takes it back (ms since the epoch; 0: never).
    pub visible_until: i64,
    pub entry: Entry,
}

/// Where a ready message waits: with the ungrouped ones, or in its group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::broker) enum Lane {
    /// The first ungrouped message.
    Ungrouped,
    /// The ungrouped message with this sequence number (what a filtered consumer found).
    At(u64),
    Group(GroupId),
}

#[derive(Debug)]
pub(in crate::broker) struct State {
    pub settings: QueueSettings,
    pub next_seq: u64,
    /// Ready messages that belong to no group.
    pub ready: Ready,
    pub groups: GroupTable,
    pub acquired: IntMap<u64, Acquired>,
    pub consumers: Vec<Consumer>,
    pub next_consumer: usize,
    pub stats: QueueStats,
    /// Delayed messages and deadlines.
    pub schedule: Schedule,
    /// Consumed messages kept for rewind.
    pub retention: Retention,
    /// Messages to hand to the dead-letter address once the lock is released.
    pub dead: Vec<DeadLetter>,
    /// The journal, for a durable queue.
    pub journal: Option<Arc<Journaled>>,
    /// With `deliver_after_sync`: messages whose enqueue record is not on disk yet, with the
    /// time they are due if delayed. No consumer sees them before it is.
    pub syncing: IntMap<u64, (Entry, Option<i64>)>,
    /// Messages out with a consumer whose journal write failed: dropped when they come back.
    pub unstored: Vec<u64>,
    /// Connections whose producers wait for room (`overflow = "block"`): see `room`.
    pub room_waiters: Vec<Weak<ConnWaker>>,
}

/// A message on its way to the dead-letter address.
#[derive(Debug)]
pub(in crate::broker) struct DeadLetter {
    pub message: Message,
    /// The message is a rewritten copy (annotated), not counted in the memory account yet.
    pub rewritten: bool,
    /// Its sequence number and journal segment here: its settle is journaled only once the
    /// dead-letter queue has journaled its enqueue, so a crash between the two duplicates it
    /// rather than losing it.
    pub seq: u64,
    pub segment: SegmentRef,
}

/// One named queue.
#[derive(Debug)]
pub struct Queue {
    name: String,
    settings: QueueSettings,
    /// Set for a dynamic node: who owns it and when it goes.
    temporary: Option<Temporary>,
    /// Deleted by an administrator: producers still holding the queue are detached.
    deleted: AtomicBool,
    /// A consumer has attached at least once (an `auto_delete` queue goes when it has none).
    had_consumer: AtomicBool,
    /// A subscription queue's filter and no-local (admission.rs); `admits_all` is the lock-free
    /// answer for the queues that have neither.
    admission: Mutex<Option<Arc<admission::Admission>>>,
    admits_all: AtomicBool,
    /// Where dead letters go: the router finds (or creates) the dead-letter queue.
    router: Weak<dyn Nodes>,
    timer: Arc<Timer>,
    me: Weak<Queue>,
    state: Mutex<State>,
}

impl Queue {
    /// An empty queue named `name` with the settings in force for it. Dead letters are routed
    /// through `router`; with none (`Weak::new()`) they are dropped and counted.
    pub fn new(name: String, settings: QueueSettings, router: Weak<dyn Nodes>) -> Arc<Queue> {
        Queue::build(name, settings, None, router, None)
    }

    /// A queue on its own (benches, tests): its dead letters are dropped and counted.
    pub fn alone(name: String, settings: QueueSettings) -> Arc<Queue> {
        let nowhere: Weak<NoNodes> = Weak::new();
        Queue::build(name, settings, None, nowhere, None)
    }

    /// As [`Queue::new`], journaling durable messages to `journal`.
    pub fn with_journal(
        name: String,
        settings: QueueSettings,
        router: Weak<dyn Nodes>,
        journal: Option<Arc<Journaled>>,
    ) -> Arc<Queue> {
        Queue::build(name, settings, None, router, journal)
    }

    /// As [`Queue::new`], a temporary queue (a dynamic node; never journaled).
    pub fn new_temporary(
        name: String,
        settings: QueueSettings,
        temporary: Temporary,
        router: Weak<dyn Nodes>,
    ) -> Arc<Queue> {
        Queue::build(name, settings, Some(temporary), router, None)
    }

    fn build(
        name: String,
        settings: QueueSettings,
        temporary: Option<Temporary>,
        router: Weak<dyn Nodes>,
        journal: Option<Arc<Journaled>>,
    ) -> Arc<Queue> {
        let window_ms =
            i64::try_from(settings.rewind_seconds.saturating_mul(1000)).unwrap_or(i64::MAX);
        Arc::new_cyclic(|me| Queue {
            name,
            temporary,
            deleted: AtomicBool::new(false),
            had_consumer: AtomicBool::new(false),
            admission: Mutex::new(None),
            admits_all: AtomicBool::new(true),
            router,
            timer: Arc::default(),
            me: me.clone(),
            state: Mutex::new(State {
                next_seq: 1,
                ready: Ready::new(settings.max_priority),
                groups: GroupTable::new(&settings),
                acquired: IntMap::default(),
                consumers: Vec::new(),
                next_consumer: 0,
                stats: QueueStats::default(),
                schedule: Schedule::default(),
                retention: Retention::new(window_ms, settings.rewind_max_bytes),
                dead: Vec::new(),
                journal,
                syncing: IntMap::default(),
                unstored: Vec::new(),
                room_waiters: Vec::new(),
                settings: settings.clone(),
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
        self.temporary.is_some()
    }

    /// The owner and lifetime of a temporary queue.
    pub fn temporary(&self) -> Option<&Temporary> {
        self.temporary.as_ref()
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
        self.finish(st);
    }

    /// Dispatches again: a consumer that was passed over for lack of room has room now.
    pub fn redispatch(&self) {
        let st = lock(&self.state);
        self.finish(st);
    }

    /// Does what has fallen due: delayed messages become ready (numbered anew, so they queue in
    /// due order), expired ones are dead-lettered or dropped, deliveries past the visibility
    /// timeout are taken back. Returns the next deadline. The queue's timer calls this; tests
    /// may too.
    pub fn tick(&self) -> Option<i64> {
        let mut st = lock(&self.state);
        let now = now_ms();
        let at = Now::at(now);
        while let Some(due) = st.schedule.pop_due(now) {
            match due {
                Due::Delayed(mut entry) => {
                    let seq = st.next_seq;
                    st.next_seq += 1;
                    st.schedule.renumber(entry.seq, seq);
                    let old_seq = std::mem::replace(&mut entry.seq, seq);
                    if let Some(journal) = &st.journal {
                        journal.due(old_seq, &entry, now);
                    }
                    st.retention.enqueued(seq, now);
                    st.make_ready(entry);
                }
                Due::Expired(seq) => st.expire_seq(seq, &self.name, &at),
                Due::Invisible(seq, deadline) => {
                    let Some(a) = st.acquired.get(&seq) else {
                        continue;
                    };
                    if a.visible_until != deadline {
                        continue;
                    }
                    let consumer = a.consumer;
                    // The consumer's delivery is over: tell its link, then take the message back.
                    if let Some(c) = st
                        .consumers
                        .iter()
                        .find(|c| c.outbox.consumer() == consumer)
                    {
                        c.outbox.push(OutItem::Revoked { seq });
                    }
                    st.stats.timed_out += 1;
                    let outcome = Outcome::Modified {
                        delivery_failed: true,
                        undeliverable_here: false,
                        annotations: None,
                    };
                    st.settle_one(consumer, seq, outcome, &self.name, &at);
                }
            }
        }
        st.dispatch();
        let next = st.schedule.next();
        let (dead, journal) = st.take_dead();
        let waiting = st.take_room_waiters();
        drop(st);
        for waker in waiting.iter().filter_map(Weak::upgrade) {
            waker.wake();
        }
        self.route_dead(dead, journal.as_deref());
        next
    }

    /// Makes every consumed message still kept for rewind and enqueued at or after `t_ms`
    /// ready again, in its original order, with delivery-count + 1. Returns how many became
    /// ready (one that has expired meanwhile is dead-lettered or dropped instead).
    pub fn rewind(&self, t_ms: i64) -> Result<usize, RewindError> {
        let mut st = lock(&self.state);
        let now = now_ms();
        let entries = st.retention.take_from(t_ms, now)?;
        let mut n = 0;
        for mut entry in entries {
            entry.delivery_count = entry.delivery_count.saturating_add(1);
            let at = Now::at(st.retention.enqueued_at(entry.seq).unwrap_or(now));
            if let Some(expires) = expiry_of(&entry.message, &at, &self.settings) {
                if expires <= now {
                    st.expire(entry, &self.name, &Now::at(now));
                    continue;
                }
                st.schedule.expire_at(entry.seq, expires, None);
            }
            st.stats.rewound += 1;
            n += 1;
            if let Some(journal) = &st.journal {
                journal.redelivered(&entry);
            }
            st.put_back(entry);
        }
        tracing::info!(queue = %self.name, t_ms, messages = n, "queue rewound");
        self.finish(st);
        Ok(n)
    }

    /// The earliest time a rewind can start from, if rewind is on.
    pub fn rewind_earliest(&self) -> Option<i64> {
        let st = lock(&self.state);
        st.retention
            .is_on()
            .then(|| st.retention.earliest(now_ms()))
    }

    /// The first `limit` delayed messages, earliest due first.
    pub fn scheduled(&self, limit: usize) -> Vec<ScheduledInfo> {
        lock(&self.state).schedule.scheduled(limit)
    }

    /// Cancels the delayed message `id` (from [`Queue::scheduled`]): it is dropped. Returns
    /// whether there was such a message.
    pub fn cancel_scheduled(&self, id: u64) -> bool {
        let mut st = lock(&self.state);
        let Some(entry) = st.schedule.cancel(id) else {
            return false;
        };
        st.schedule.forget(id);
        st.stats.cancelled += 1;
        st.gone(&entry);
        true
    }

    /// Frees every message group, so the next consumers to ask spread them among themselves
    /// (Artemis `resetAllGroups`). Returns how many groups had an owner.
    pub fn reset_groups(&self) -> usize {
        let mut st = lock(&self.state);
        let n = st
            .groups
            .reset(self.settings.group_rebalance_pause_dispatch);
        self.finish(st);
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
    /// Returns how many messages were dropped: ready, delayed and unacknowledged.
    pub fn delete(&self) -> usize {
        self.deleted.store(true, Ordering::Relaxed);
        self.timer.stop();
        let mut st = lock(&self.state);
        let mut segments = Vec::new();
        let mut gone = |e: &Entry| {
            if e.segment != SegmentRef::NONE {
                segments.push(e.segment);
            }
        };
        let dropped = st.ready.clear(&mut gone)
            + st.groups.purge(&mut gone)
            + st.schedule.clear_delayed(&mut gone)
            + st.acquired.len();
        st.acquired.values().for_each(|a| gone(&a.entry));
        st.retention.for_each_mut(|_, e| gone(e));
        st.acquired.clear();
        st.schedule = Schedule::default();
        st.retention = Retention::new(0, 0);
        if let Some(journal) = st.journal.take() {
            journal.delete(segments);
        }
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

    /// Drops every ready message (not the delayed or unacknowledged ones); returns how many.
    pub fn purge(&self) -> usize {
        let mut st = lock(&self.state);
        let mut gone = Vec::new();
        let n = st.ready.clear(|e| gone.push((e.seq, e.segment)))
            + st.groups.purge(|e| gone.push((e.seq, e.segment)));
        if let Some(journal) = &st.journal {
            for (seq, segment) in gone {
                journal.settle(seq, segment);
            }
        }
        // Room again: producers a blocking queue held back get credit.
        self.finish(st);
        n
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
            delayed: st.schedule.delayed_len(),
            retained: st.retention.len(),
            ..st.stats.clone()
        }
    }

    /// Ends an operation: dispatches what it made possible, lets go of the lock, hands dead
    /// letters on (never under this queue's lock: the dead-letter queue takes its own), and
    /// makes sure the timer wakes for the next deadline.
    fn finish(&self, mut st: MutexGuard<'_, State>) {
        st.dispatch();
        let next = st.schedule.next();
        let (dead, journal) = st.take_dead();
        drop(st);
        self.route_dead(dead, journal.as_deref());
        if let Some(at) = next {
            self.timer.arm(at, &self.me);
        }
    }

    /// Hands dead letters to the dead-letter queue, then journals that they left this one.
    fn route_dead(&self, dead: Vec<DeadLetter>, journal: Option<&Journaled>) {
        if dead.is_empty() {
            return;
        }
        let router = self.router.upgrade();
        let target = match (&self.settings.dead_letter_address, &router) {
            // In this queue's virtual host: the address is a name there.
            (Some(address), Some(router)) => {
                let vhost = crate::config::vhosts::split(&self.name).0;
                router.queue_named(&crate::config::vhosts::qualify(vhost, address))
            }
            (Some(_), None) => Err("the broker is stopping".to_owned()),
            (None, _) => Err("the queue has no dead_letter_address".to_owned()),
        };
        let settled: Vec<(u64, SegmentRef)> = dead.iter().map(|d| (d.seq, d.segment)).collect();
        let messages = dead.into_iter().map(|d| match (&router, d.rewritten) {
            (Some(router), true) => {
                let tracked = router.memory().track(d.message.bytes().clone());
                Message::parse(tracked).unwrap_or(d.message)
            }
            _ => d.message,
        });
        match target {
            Ok(queue) => queue.enqueue_dead_letters(messages),
            Err(e) => tracing::error!(
                queue = %self.name,
                dead_letter_address = ?self.settings.dead_letter_address,
                messages = settled.len(),
                "cannot dead-letter messages, they are dropped: {e}"
            ),
        }
        if let Some(journal) = journal {
            for (seq, segment) in settled {
                journal.settle(seq, segment);
            }
        }
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        self.timer.stop();
    }
}

impl State {
    /// The dead letters to route, with the journal their settles go to; also releases the
    /// journal records of kept messages that aged out.
    fn take_dead(&mut self) -> (Vec<DeadLetter>, Option<Arc<Journaled>>) {
        if let Some(journal) = &self.journal {
            for segment in self.retention.take_released() {
                journal.release(segment);
            }
        }
        (std::mem::take(&mut self.dead), self.journal.clone())
    }

    /// A message leaves the queue for good: journaled as settled.
    pub(in crate::broker) fn gone(&self, entry: &Entry) {
        if let Some(journal) = &self.journal {
            journal.settle(entry.seq, entry.segment);
        }
    }

    pub(in crate::broker) fn consumer_mut(&mut self, id: ConsumerId) -> Option<&mut Consumer> {
        self.consumers
            .iter_mut()
            .find(|c| c.outbox.consumer() == id)
    }
}
