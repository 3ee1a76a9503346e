//! The hand-off between a queue and the connection that serves one of its consumers.
//!
//! A queue decides, under its own lock, which consumer gets which message; it then pushes the
//! delivery into that consumer's [`Outbox`] and wakes the connection task. The connection pulls
//! from the outbox when its session window allows and turns the items into transfers. The queue
//! never waits on a connection and a connection never holds a queue's lock while it writes.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use tokio::sync::Notify;

use crate::message::Message;
use crate::store::{Completion, Done};

/// Bytes of messages an outbox may hold before the queue stops assigning it more: what a
/// consumer that does not read can take from the others (its credit aside).
pub const OUTBOX_CAP: usize = 4 * 1024 * 1024;

/// Identifies one consumer (one receiving link) across the whole broker.
pub type ConsumerId = u64;

/// One thing a queue hands to a consumer.
// Deliveries are the common case; boxing them would cost an allocation per message.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum OutItem {
    /// A message acquired for this consumer; it stays acquired until settled or released.
    Deliver(Delivery),
    /// The visibility timeout took back the delivery of this message: the link settles it
    /// (modified, delivery-failed), so a late outcome from the peer settles nothing.
    Revoked {
        /// The queue's sequence number of the delivery's message.
        seq: u64,
    },
    /// The queue is gone (deleted by an administrator): the link must be detached with
    /// `amqp:resource-deleted`. Nothing follows it.
    QueueDeleted,
    /// The queue has honoured a drain request: the link's delivery-count is now `delivery_count`
    /// and its credit is zero. The connection answers the peer with a drained `flow`.
    DrainDone {
        /// The delivery-count after the drain (the credit limit the peer had granted).
        delivery_count: u32,
    },
}

/// A message on its way to a consumer.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The queue's sequence number of the entry: the key the consumer settles it by.
    pub seq: u64,
    /// The message as received; its header is rewritten on the wire when `delivery_count` differs.
    pub message: Message,
    /// How many earlier deliveries of this message failed (header delivery-count on the wire).
    pub delivery_count: u32,
}

/// Wakes one connection task when any of its consumers has something to send.
///
/// Outboxes mark themselves in `ready` so the connection visits only the consumers that have
/// work, not all of its links.
#[derive(Debug, Default)]
pub struct ConnWaker {
    notify: Notify,
    ready: Mutex<Vec<ConsumerId>>,
    /// The connection's id in the registry, for the admin view of consumers.
    connection: OnceLock<u64>,
    /// Producer deliveries whose journal records have completed.
    confirmed: Mutex<Vec<Confirmed>>,
    /// The connection's output is over its cap: its consumers are assigned nothing more.
    congested: AtomicBool,
}

/// A producer's delivery whose message the journal has written (or failed to): the
/// connection now answers the producer.
#[derive(Debug)]
pub struct Confirmed {
    /// The session's channel.
    pub channel: u16,
    /// The delivery.
    pub delivery_id: u32,
    /// Whether the disposition settles it (receiver-settle-mode first).
    pub settle: bool,
    /// Ok once the message is on disk.
    pub result: Completion,
}

/// A queue that can take back a message whose journal record failed.
pub trait Unstore: Send + Sync {
    /// The message `seq` was not stored: it leaves the queue wherever it waits; one out with a
    /// consumer is dropped when it comes back.
    fn unstore(&self, seq: u64);
}

impl ConnWaker {
    /// Creates a waker for one connection.
    pub fn new() -> Arc<ConnWaker> {
        Arc::new(ConnWaker::default())
    }

    /// Resolves when some consumer of this connection has become ready since the last call.
    pub async fn notified(&self) {
        self.notify.notified().await
    }

    /// Wakes the connection task without work for a consumer (an admin request).
    pub fn wake(&self) {
        self.notify.notify_one();
    }

    /// Records the registry id of the connection this waker serves.
    pub fn set_connection(&self, id: u64) {
        let _ = self.connection.set(id);
    }

    /// The registry id of the connection, once registered (0 before).
    pub fn connection(&self) -> u64 {
        self.connection.get().copied().unwrap_or(0)
    }

    /// The completion that answers a producer's delivery once its message is written (or
    /// failed to be): it records the outcome for the connection and wakes it (on the
    /// journal's thread). Taking the message back out of a queue whose write failed is the
    /// publisher's part (see `routing::publish`).
    pub fn confirmation(self: &Arc<Self>, channel: u16, delivery_id: u32, settle: bool) -> Done {
        let waker = self.clone();
        Box::new(move |result| {
            lock(&waker.confirmed).push(Confirmed {
                channel,
                delivery_id,
                settle,
                result,
            });
            waker.notify.notify_one();
        })
    }

    /// Takes the confirmations that arrived since the last call.
    pub fn take_confirmed(&self) -> Vec<Confirmed> {
        std::mem::take(&mut *lock(&self.confirmed))
    }

    /// Takes the consumers that became ready since the last call.
    pub fn take_ready(&self, into: &mut Vec<ConsumerId>) {
        into.append(&mut lock(&self.ready));
    }

    /// Records whether the connection's output is over its cap; returns the previous state.
    pub fn set_congested(&self, congested: bool) -> bool {
        self.congested.swap(congested, Ordering::Relaxed)
    }

    /// Whether the connection's output is over its cap.
    pub fn is_congested(&self) -> bool {
        self.congested.load(Ordering::Relaxed)
    }

    fn mark_ready(&self, consumer: ConsumerId) {
        lock(&self.ready).push(consumer);
        self.notify.notify_one();
    }
}

/// The queue-to-connection channel of one consumer.
#[derive(Debug)]
pub struct Outbox {
    consumer: ConsumerId,
    items: Mutex<VecDeque<OutItem>>,
    /// Message bytes of the deliveries waiting in `items`.
    bytes: AtomicUsize,
    /// The queue skipped this consumer for lack of room: it must dispatch again once there is.
    starved: AtomicBool,
    waker: Arc<ConnWaker>,
}

impl Outbox {
    /// Creates the outbox of `consumer`, waking `waker` when items arrive.
    pub fn new(consumer: ConsumerId, waker: Arc<ConnWaker>) -> Arc<Outbox> {
        Arc::new(Outbox {
            consumer,
            items: Mutex::new(VecDeque::new()),
            bytes: AtomicUsize::new(0),
            starved: AtomicBool::new(false),
            waker,
        })
    }

    /// The consumer this outbox belongs to.
    pub fn consumer(&self) -> ConsumerId {
        self.consumer
    }

    /// The registry id of the consumer's connection.
    pub fn connection(&self) -> u64 {
        self.waker.connection()
    }

    /// Appends an item; wakes the connection when the outbox was empty (it is already awake
    /// otherwise, or will find the items when it next looks).
    pub fn push(&self, item: OutItem) {
        let mut items = lock(&self.items);
        let was_empty = items.is_empty();
        self.bytes.fetch_add(item_bytes(&item), Ordering::Relaxed);
        items.push_back(item);
        drop(items);
        if was_empty {
            self.waker.mark_ready(self.consumer);
        }
    }

    /// Removes and returns the first item, if any.
    pub fn pop(&self) -> Option<OutItem> {
        let item = lock(&self.items).pop_front()?;
        self.bytes.fetch_sub(item_bytes(&item), Ordering::Relaxed);
        Some(item)
    }

    /// Puts an item back at the front (the connection could not send it yet).
    pub fn unpop(&self, item: OutItem) {
        let mut items = lock(&self.items);
        self.bytes.fetch_add(item_bytes(&item), Ordering::Relaxed);
        items.push_front(item);
    }

    /// Whether the queue may assign this consumer more: its outbox is under [`OUTBOX_CAP`]
    /// and its connection's output under its cap. When not, the consumer is marked starved.
    pub fn has_room(&self) -> bool {
        let room = self.bytes.load(Ordering::Relaxed) < OUTBOX_CAP && !self.waker.is_congested();
        if !room {
            self.starved.store(true, Ordering::Relaxed);
        }
        room
    }

    /// Whether the queue skipped this consumer for lack of room since the last call, and
    /// there is room now (the queue must then dispatch again).
    pub fn take_starved(&self) -> bool {
        self.starved.load(Ordering::Relaxed)
            && self.bytes.load(Ordering::Relaxed) < OUTBOX_CAP
            && !self.waker.is_congested()
            && self.starved.swap(false, Ordering::Relaxed)
    }

    /// Message bytes waiting in the outbox.
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        lock(&self.items).is_empty()
    }

    /// Empties the outbox, returning what was never sent.
    pub fn drain_all(&self) -> Vec<OutItem> {
        let mut items = lock(&self.items);
        self.bytes.store(0, Ordering::Relaxed);
        items.drain(..).collect()
    }
}

fn item_bytes(item: &OutItem) -> usize {
    match item {
        OutItem::Deliver(d) => d.message.len(),
        _ => 0,
    }
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it: every critical section
/// in the broker leaves its data consistent before anything that could panic.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
