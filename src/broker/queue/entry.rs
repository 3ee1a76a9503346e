//! A message as a queue holds it ([`Entry`]), and what a consumer can decide about it
//! ([`Outcome`]).

use crate::message::Message;
use crate::store::SegmentId;

use crate::broker::consumer::ConsumerId;

/// A group's slot in its queue's table; stored in every entry of the group (4 bytes, which
/// fit in the padding an [`Entry`] already has).
pub type GroupId = std::num::NonZeroU32;

/// Message annotations as symbol keys with their values encoded as AMQP.
pub type Annotations = std::sync::Arc<[(String, Vec<u8>)]>;

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
        /// Message annotations to merge into the message before it is delivered again, a key
        /// already there superseded (§3.4.5): symbol keys with their values as encoded on the
        /// wire. Shared, because one disposition can settle a range of deliveries.
        annotations: Option<Annotations>,
    },
    /// Invalid: dead-lettered when the queue has a dead-letter address, else dropped and counted.
    Rejected {
        /// The error condition the consumer gave, e.g. `amqp:not-allowed`.
        condition: Option<String>,
        /// Its description.
        description: Option<String>,
    },
}

/// The journal segment of a message's enqueue record, kept in the 4 bytes of padding its
/// [`Entry`] has spare rather than as the store's 8-byte [`SegmentId`]. Segments are numbered
/// from 1, so 0 means "not journaled" (a non-durable queue or message); one past `u32::MAX`
/// (256 PiB of default 64 MiB segments) would saturate, which only keeps that last segment
/// from being deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SegmentRef(u32);

impl SegmentRef {
    /// A message that is not journaled.
    pub const NONE: SegmentRef = SegmentRef(0);

    /// The compact form of `segment`.
    pub fn new(segment: SegmentId) -> SegmentRef {
        SegmentRef(u32::try_from(segment.0).unwrap_or(u32::MAX))
    }

    /// The segment, if the message is journaled.
    pub fn get(self) -> Option<SegmentId> {
        (self.0 != 0).then_some(SegmentId(u64::from(self.0)))
    }
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
    pub(in crate::broker) group: Option<GroupId>,
    /// The journal segment holding the message's enqueue record, if it is journaled. Also in
    /// padding.
    pub(in crate::broker) segment: SegmentRef,
    /// Consumers that said `undeliverable-here` for this message; boxed because almost no
    /// message has any, and every queued message pays for this field (a thin pointer: a
    /// boxed slice would take 8 bytes more, and the entry would not fit 128).
    #[allow(clippy::box_collection)]
    pub(in crate::broker) avoid: Option<Box<Vec<ConsumerId>>>,
}

impl Entry {
    /// Whether `consumer` refused this message (`undeliverable-here`).
    pub(in crate::broker) fn avoids(&self, consumer: ConsumerId) -> bool {
        self.avoid.as_ref().is_some_and(|a| a.contains(&consumer))
    }

    /// Forgets which consumers refused the message (it starts a new life after a rewind).
    pub(in crate::broker) fn clear_avoid(&mut self) {
        self.avoid = None;
    }

    /// A fresh entry for `message` at `seq`.
    pub fn new(seq: u64, message: Message) -> Entry {
        let delivery_count = message.header().delivery_count;
        Entry {
            seq,
            message,
            delivery_count,
            group: None,
            segment: SegmentRef::NONE,
            avoid: None,
        }
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
