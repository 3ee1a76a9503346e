//! The state each kind of link keeps: a producer's credit and the delivery it is assembling,
//! a consumer's queue, outbox and credit. The handlers that change it are in
//! `connection/links.rs`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::broker::memory::{Charge, Memory};
use crate::broker::routing::Node;
use crate::broker::{ConsumerId, Outbox, Outcome, Queue};
use crate::engine::ids::{DeliveryId, Serial};

use super::sending::Sending;

/// One attached link.
#[derive(Debug)]
pub(super) struct Link {
    pub name: String,
    pub kind: LinkKind,
    /// We sent `detach` and wait for the peer's; nothing more flows on the link.
    pub detach_sent: bool,
    /// The link created its node (a dynamic one): it owns it.
    pub created_node: bool,
    /// It reads a durable subscription, which closing the link (not detaching it) deletes.
    pub durable_subscription: bool,
}

/// What a link does for its peer.
#[derive(Debug)]
pub(super) enum LinkKind {
    /// The peer sends messages to a node.
    Producer(Producer),
    /// The peer receives messages from a queue.
    Consumer(Consumer),
    /// An attach we refused; the handle stays taken until the peer's detach arrives.
    Refused,
}

/// The state of a link on which the peer sends.
#[derive(Debug)]
pub(super) struct Producer {
    /// Where messages go; `None` for an anonymous-relay link (each message names its node in
    /// `properties.to`).
    pub target: Option<Node>,
    /// A transaction coordinator link, with a connection-wide id (the transactions it declares
    /// end with it): its messages are declares and discharges.
    pub coordinator: Option<u64>,
    /// The peer's delivery-count as we have observed it.
    pub delivery_count: Serial,
    /// Transfers the peer may still start.
    pub credit: u32,
    /// A delivery arriving in several frames.
    pub incoming: Option<Incoming>,
    /// receiver-settle-mode second: our disposition leaves the delivery unsettled until the
    /// peer settles it.
    pub settle_second: bool,
    /// Largest message accepted on the link (0: no limit).
    pub max_message_size: u64,
}

/// A delivery whose frames are still arriving.
#[derive(Debug)]
pub(super) struct Incoming {
    pub delivery_id: DeliveryId,
    pub settled: bool,
    /// The transaction it was sent under (the first frame's `transactional-state`).
    pub txn: Option<Vec<u8>>,
    pub message_format: u32,
    /// The first frame's payload, and those of the frames after it (a single-frame delivery,
    /// the common case, needs no vector).
    pub first: Bytes,
    pub rest: Vec<Bytes>,
    pub size: u64,
    /// The bytes held so far, counted while the delivery is incomplete (None for the single
    /// frame of a one-frame delivery, which is never held).
    pub held: Option<Held>,
}

/// The bytes of an incomplete delivery: counted against the broker's memory watermark, and
/// against the connection's `max_incomplete_bytes` unless it is the connection's one large
/// delivery.
#[derive(Debug)]
pub(super) struct Held {
    charge: Charge,
    /// The connection's count of small incomplete bytes; None once this is the large one.
    small: Option<Arc<AtomicU64>>,
}

impl Held {
    pub fn new(memory: &Arc<Memory>, small: &Arc<AtomicU64>) -> Held {
        Held {
            charge: Charge::new(memory),
            small: Some(small.clone()),
        }
    }

    /// Counts `n` more bytes.
    pub fn add(&mut self, n: u64) {
        self.charge.set(self.charge.bytes() + n);
        if let Some(small) = &self.small {
            small.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Makes this the connection's large delivery: no longer counted as small.
    pub fn make_large(&mut self) {
        if let Some(small) = self.small.take() {
            small.fetch_sub(self.charge.bytes(), Ordering::Relaxed);
        }
    }

    pub fn is_large(&self) -> bool {
        self.small.is_none()
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(small) = &self.small {
            small.fetch_sub(self.charge.bytes(), Ordering::Relaxed);
        }
    }
}

/// The state of a link on which the peer receives from a queue.
#[derive(Debug)]
pub(super) struct Consumer {
    pub id: ConsumerId,
    pub queue: Arc<Queue>,
    pub outbox: Arc<Outbox>,
    /// Our delivery-count: deliveries started on this link.
    pub delivery_count: Serial,
    /// The delivery-count up to which the peer has granted credit.
    pub credit_limit: Serial,
    /// sender-settle-mode settled: deliveries go out pre-settled (at-most-once).
    pub presettled: bool,
    /// A delivery whose frames could not all be sent yet (session window).
    pub sending: Option<Sending>,
    /// Outcomes to hand to the queue at the next flush, in one lock.
    pub settlements: Vec<(u64, Outcome)>,
    /// Deliveries sent and not yet settled by the peer.
    pub unsettled: u32,
    /// When the peer last settled a delivery on this link, or when it went from holding none
    /// to holding some: `consumer_timeout` runs from here.
    pub active_at: Instant,
    /// It has settled deliveries inside a transaction: it is sent messages only while its
    /// connection has a transaction open, so each can be accepted under one.
    pub transactional: bool,
}

impl Consumer {
    /// Hands batched outcomes to the queue.
    pub fn flush_settlements(&mut self) {
        if !self.settlements.is_empty() {
            self.queue.settle(self.id, self.settlements.drain(..));
        }
    }
}
