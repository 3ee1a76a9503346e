//! Deliveries both ways: transfers from producers assembled into messages and queued,
//! deliveries from queues split into transfers within the peer's window, and dispositions.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use fe2o3_amqp_types::definitions::{AmqpError, Handle, LinkError, Role, SessionError};
use fe2o3_amqp_types::messaging::{Accepted, DeliveryState, Modified, Rejected};
use fe2o3_amqp_types::performatives::{Disposition, Performative};

use crate::broker::{ConsumerId, Delivery, OutItem, Outcome, Publish, Queue};
use crate::message::Message;
use crate::store::StoreError;
use crate::transport::frame::{delivery_transfer_size, Output};
use crate::transport::transfer::{FirstFrame, Transfer};

use super::connection::Connection;
use super::link::{Incoming, Link, LinkKind};
use super::session::{session_flow, Session, Window};
use super::{AmqpFailure, Failure};

/// Room a transfer performative needs at most when it carries only the fields we set (handle,
/// delivery-id, a 4-byte tag, format, settled, more): below this, no size computation is needed.
const TRANSFER_OVERHEAD_BOUND: usize = 8 + 64;

/// A delivery to a consumer whose frames are not all sent yet.
#[derive(Debug)]
pub(super) struct Sending {
    delivery_id: u32,
    seq: u64,
    remaining: Remaining,
    message_format: u32,
    first_frame: bool,
    presettled: bool,
}

/// What became of a completed incoming delivery.
// Queued is the common case; boxing it would cost an allocation per message.
#[allow(clippy::large_enum_variant)]
enum Arrival {
    Queued(Arc<Queue>, Message),
    Accepted,
    Refused(AmqpFailure),
}

/// Why the store refused a durable message, as the producer hears it.
fn store_refused(e: &StoreError) -> AmqpFailure {
    let condition = match e {
        StoreError::Full { .. } => AmqpError::ResourceLimitExceeded,
        _ => AmqpError::InternalError,
    };
    AmqpFailure::new(condition, format!("the message was not stored: {e}"))
}

impl Connection {
    pub(super) fn on_transfer(
        &mut self,
        channel: u16,
        transfer: Transfer,
        payload: Bytes,
    ) -> Result<(), Failure> {
        let handle = transfer.handle;
        let session = self.count_incoming_transfer(channel)?;
        let Some(link) = session.links.get_mut(&handle) else {
            return Err(AmqpFailure::new(
                SessionError::UnattachedHandle,
                format!("transfer on handle {handle}, which is not attached"),
            )
            .into());
        };
        let Link {
            name: link_name,
            kind,
            detach_sent,
        } = link;
        let producer = match kind {
            LinkKind::Producer(p) if !*detach_sent => p,
            // Transfers already in flight when we detached the link are dropped.
            LinkKind::Producer(_) | LinkKind::Refused => return Ok(()),
            LinkKind::Consumer(_) => {
                return Err(AmqpFailure::new(
                    AmqpError::NotAllowed,
                    format!("transfer on link '{link_name}', on which the broker is the sender"),
                )
                .into())
            }
        };
        let link_failure = |condition: AmqpError, description: String| Failure::Link {
            channel,
            handle,
            error: AmqpFailure::new(condition, description),
        };
        if transfer.resume {
            return Err(link_failure(
                AmqpError::NotImplemented,
                "resuming a delivery is not supported: the broker keeps no unsettled state across attaches".into(),
            ));
        }
        let mut incoming = match producer.incoming.take() {
            Some(mut inc) => {
                if transfer.delivery_id.is_some_and(|id| id != inc.delivery_id) {
                    return Err(AmqpFailure::new(
                        AmqpError::InvalidField,
                        format!(
                            "transfer for delivery {} while delivery {} on link '{link_name}' is incomplete",
                            transfer.delivery_id.unwrap_or_default(),
                            inc.delivery_id
                        ),
                    )
                    .into());
                }
                inc.settled |= transfer.settled.unwrap_or(false);
                inc
            }
            None => {
                let Some(delivery_id) = transfer.delivery_id else {
                    return Err(AmqpFailure::new(
                        AmqpError::InvalidField,
                        format!(
                            "first transfer of a delivery on link '{link_name}' has no delivery-id"
                        ),
                    )
                    .into());
                };
                if producer.credit == 0 {
                    return Err(AmqpFailure::new(
                        LinkError::TransferLimitExceeded,
                        format!("transfer on link '{link_name}', which has no credit"),
                    )
                    .into());
                }
                producer.credit -= 1;
                producer.delivery_count = producer.delivery_count.wrapping_add(1);
                Incoming {
                    delivery_id,
                    settled: transfer.settled.unwrap_or(false),
                    message_format: transfer.message_format.unwrap_or(0),
                    first: Bytes::new(),
                    rest: Vec::new(),
                    size: 0,
                }
            }
        };
        if transfer.aborted {
            return Ok(());
        }
        incoming.size += payload.len() as u64;
        let max = producer.max_message_size;
        if max > 0 && incoming.size > max {
            return Err(Failure::Link {
                channel,
                handle,
                error: AmqpFailure::new(
                    LinkError::MessageSizeExceeded,
                    format!(
                        "message of at least {} bytes exceeds the max-message-size of {max} bytes on link '{link_name}'",
                        incoming.size
                    ),
                ),
            });
        }
        if incoming.first.is_empty() {
            incoming.first = payload;
        } else if !payload.is_empty() {
            incoming.rest.push(payload);
        }
        if transfer.more {
            producer.incoming = Some(incoming);
            return Ok(());
        }
        let settle_second = producer.settle_second;
        let target = producer.target.clone();
        let arrival = self.arrive(target, &incoming);
        if let Arrival::Queued(queue, _) = &arrival {
            if queue.is_deleted() {
                return Err(Failure::Link {
                    channel,
                    handle,
                    error: queue_deleted(queue),
                });
            }
        }
        let arrival = match arrival {
            Arrival::Queued(queue, message) if incoming.settled => {
                // Sent settled (at-most-once): nobody waits for the disk.
                match queue.publish(message, None::<fn() -> crate::store::Done>) {
                    Publish::Refused(e) => Arrival::Refused(store_refused(&e)),
                    _ => return Ok(()),
                }
            }
            Arrival::Queued(queue, message) => {
                let waker = &self.waker;
                let (id, settle) = (incoming.delivery_id, !settle_second);
                match queue.publish(message, Some(|| waker.confirm_later(channel, id, settle))) {
                    Publish::Queued => Arrival::Accepted,
                    // Accepted once its record is on disk: see `apply_confirmed`.
                    Publish::Confirming => return Ok(()),
                    Publish::Refused(e) => Arrival::Refused(store_refused(&e)),
                }
            }
            other => other,
        };
        let session = self.session_mut(channel)?;
        match arrival {
            Arrival::Accepted => session
                .accepted
                .push((incoming.delivery_id, !settle_second)),
            Arrival::Queued(..) => unreachable!("published above"),
            Arrival::Refused(error) => {
                tracing::debug!(channel, handle, "message rejected: {}", error.description);
                if !incoming.settled {
                    let state = DeliveryState::Rejected(Rejected {
                        error: Some(error.to_error()),
                    });
                    self.out.push_frame(
                        channel,
                        &Performative::Disposition(disposition(
                            Role::Receiver,
                            incoming.delivery_id,
                            incoming.delivery_id,
                            !settle_second,
                            state,
                        )),
                        &[],
                    );
                }
            }
        }
        Ok(())
    }

    /// Turns the frames of a delivery into a message and finds its queue.
    fn arrive(&self, target: Option<Arc<Queue>>, incoming: &Incoming) -> Arrival {
        let bytes = concat(&incoming.first, &incoming.rest);
        let message = if incoming.message_format == 0 {
            match Message::parse(bytes) {
                Ok(m) => m,
                Err(e) => {
                    return Arrival::Refused(AmqpFailure::new(
                        AmqpError::DecodeError,
                        format!("malformed message: {e}"),
                    ))
                }
            }
        } else {
            Message::opaque(bytes, incoming.message_format)
        };
        let queue = match target {
            Some(q) => q,
            None => {
                // Anonymous relay: the message names its node.
                let Some(to) = message.to() else {
                    return Arrival::Refused(AmqpFailure::new(
                        AmqpError::NotFound,
                        "message sent on an anonymous link has no properties.to",
                    ));
                };
                match self.router.queue(to) {
                    Ok(q) => q,
                    Err(e) => {
                        return Arrival::Refused(AmqpFailure::new(
                            AmqpError::NotFound,
                            e.to_string(),
                        ))
                    }
                }
            }
        };
        let max = queue.settings().max_message_size;
        if max > 0 && message.len() as u64 > max {
            return Arrival::Refused(AmqpFailure::new(
                LinkError::MessageSizeExceeded,
                format!(
                    "message of {} bytes exceeds the max-message-size of {max} bytes of queue '{}'",
                    message.len(),
                    queue.name()
                ),
            ));
        }
        Arrival::Queued(queue, message)
    }

    pub(super) fn on_disposition(&mut self, channel: u16, d: Disposition) -> Result<(), Failure> {
        let session = self.session_mut(channel)?;
        if d.role == Role::Sender {
            // The peer settles deliveries it sent us (receiver-settle-mode second); we keep
            // nothing for them once queued.
            return Ok(());
        }
        let outcome = match d.state.as_ref().map(to_outcome) {
            Some(Some(o)) => o,
            // A settled delivery without outcome: taken as consumed, as RabbitMQ and Artemis do.
            _ if d.settled => Outcome::Accepted,
            // A non-terminal state (received): nothing to do yet.
            _ => return Ok(()),
        };
        let first = d.first;
        let last = d.last.unwrap_or(first);
        let ids = take_range(session, first, last);
        let mut reply_settle = Vec::new();
        for (delivery_id, handle, seq) in ids {
            if let Some(link) = session.links.get_mut(&handle) {
                if let LinkKind::Consumer(c) = &mut link.kind {
                    c.settlements.push((seq, outcome.clone()));
                    if !d.settled {
                        reply_settle.push(delivery_id);
                    }
                }
            }
        }
        // The peer gave an outcome without settling (receiver-settle-mode second, or a client
        // that waits for us): we settle, echoing the outcome.
        if let (Some(&lo), Some(&hi), Some(state)) =
            (reply_settle.first(), reply_settle.last(), d.state)
        {
            let reply = disposition(Role::Sender, lo, hi, true, state);
            self.out
                .push_frame(channel, &Performative::Disposition(reply), &[]);
        }
        Ok(())
    }

    /// Answers producers whose durable messages the journal has written: accepted once on
    /// disk, rejected with `amqp:internal-error` if the write failed.
    pub(super) fn apply_confirmed(&mut self) {
        for c in self.waker.take_confirmed() {
            match c.result {
                Ok(()) => {
                    if let Ok(session) = self.session_mut(c.channel) {
                        session.accepted.push((c.delivery_id, c.settle));
                    }
                }
                Err(e) => {
                    let state = DeliveryState::Rejected(Rejected {
                        error: Some(
                            AmqpFailure::new(
                                AmqpError::InternalError,
                                format!("the message was not stored: the journal failed: {e}"),
                            )
                            .to_error(),
                        ),
                    });
                    let d = disposition(
                        Role::Receiver,
                        c.delivery_id,
                        c.delivery_id,
                        c.settle,
                        state,
                    );
                    self.out
                        .push_frame(c.channel, &Performative::Disposition(d), &[]);
                }
            }
        }
    }

    /// Confirms queued producer deliveries, coalescing consecutive ids into ranges.
    pub(super) fn send_accepts(&mut self, session: &mut Session) {
        let mut i = 0;
        let accepted = std::mem::take(&mut session.accepted);
        while i < accepted.len() {
            let (first, settled) = accepted[i];
            let mut last = first;
            let mut j = i + 1;
            while j < accepted.len()
                && accepted[j].0 == last.wrapping_add(1)
                && accepted[j].1 == settled
            {
                last = accepted[j].0;
                j += 1;
            }
            let state = DeliveryState::Accepted(Accepted {});
            let d = disposition(Role::Receiver, first, last, settled, state);
            self.out
                .push_frame(session.channel, &Performative::Disposition(d), &[]);
            i = j;
        }
    }

    /// Sends what queues have handed to this connection's consumers, as far as session windows
    /// allow. Consumers stopped by a window are retried when the peer widens it.
    pub fn pump(&mut self) {
        self.apply_confirmed();
        let mut ready = std::mem::take(&mut self.blocked);
        self.waker.take_ready(&mut ready);
        if ready.is_empty() {
            return;
        }
        ready.sort_unstable();
        ready.dedup();
        for id in ready {
            self.pump_consumer(id);
        }
    }

    pub(super) fn retry_blocked(&mut self) {
        self.pump();
    }

    fn pump_consumer(&mut self, id: ConsumerId) {
        let Some(&(channel, handle)) = self.consumers.get(&id) else {
            return;
        };
        let max_frame = self.remote_max_frame_size as usize;
        let Connection {
            sessions,
            out,
            blocked,
            ..
        } = self;
        let Some(session) = sessions.get_mut(&channel) else {
            return;
        };
        let Session {
            links,
            window,
            unsettled,
            ..
        } = session;
        let Some(link) = links.get_mut(&handle) else {
            return;
        };
        if link.detach_sent {
            return;
        }
        let LinkKind::Consumer(c) = &mut link.kind else {
            return;
        };
        let deleted = loop {
            if c.sending.is_none() {
                match c.outbox.pop() {
                    None => break None,
                    Some(OutItem::QueueDeleted) => break Some(queue_deleted(&c.queue)),
                    Some(OutItem::Revoked { seq }) => {
                        // The visibility timeout ran out: settle the delivery ourselves, so the
                        // peer knows it is over and its late outcome matches nothing.
                        let id = unsettled
                            .iter()
                            .find(|(_, &(h, s))| h == handle && s == seq)
                            .map(|(&id, _)| id);
                        if let Some(id) = id {
                            unsettled.remove(&id);
                            let state = DeliveryState::Modified(Modified {
                                delivery_failed: Some(true),
                                undeliverable_here: None,
                                message_annotations: None,
                            });
                            let revoked = disposition(Role::Sender, id, id, true, state);
                            out.push_frame(channel, &Performative::Disposition(revoked), &[]);
                        }
                        continue;
                    }
                    Some(OutItem::DrainDone { delivery_count }) => {
                        c.delivery_count = delivery_count;
                        let mut flow = session_flow(window);
                        flow.handle = Some(Handle(handle));
                        flow.delivery_count = Some(delivery_count);
                        flow.link_credit = Some(0);
                        flow.drain = true;
                        out.push_frame(channel, &Performative::Flow(flow), &[]);
                        continue;
                    }
                    Some(OutItem::Deliver(d)) => {
                        c.delivery_count = c.delivery_count.wrapping_add(1);
                        c.sending = Some(start_sending(window, d, c.presettled));
                    }
                }
            }
            let Some(sending) = c.sending.as_mut() else {
                break None;
            };
            if !sending.send_frames(channel, handle, window, out, max_frame) {
                blocked.push(id);
                break None;
            }
            if sending.presettled {
                c.settlements.push((sending.seq, Outcome::Accepted));
            } else {
                unsettled.insert(sending.delivery_id, (handle, sending.seq));
            }
            c.sending = None;
        };
        if let Some(error) = deleted {
            self.detach_with_error(channel, handle, error);
        }
    }
}

/// The error a link gets when its queue was deleted under it.
fn queue_deleted(queue: &Queue) -> AmqpFailure {
    AmqpFailure::new(
        AmqpError::ResourceDeleted,
        format!("queue '{}' was deleted by an administrator", queue.name()),
    )
}

fn start_sending(window: &mut Window, d: Delivery, presettled: bool) -> Sending {
    let delivery_id = window.next_delivery_id;
    window.next_delivery_id = delivery_id.wrapping_add(1);
    let (head, rest) = d.message.wire_chunks(d.delivery_count);
    let remaining = Remaining {
        head: head.unwrap_or_default(),
        rest,
    };
    Sending {
        delivery_id,
        seq: d.seq,
        remaining,
        message_format: d.message.message_format(),
        first_frame: true,
        presettled,
    }
}

impl Sending {
    /// Sends frames until the delivery is complete (true) or the session window is shut (false).
    fn send_frames(
        &mut self,
        channel: u16,
        handle: u32,
        window: &mut Window,
        out: &mut Output,
        max_frame: usize,
    ) -> bool {
        loop {
            if window.remote_incoming_window == 0 {
                return false;
            }
            let first = self.first_frame.then_some(FirstFrame {
                delivery_id: self.delivery_id,
                message_format: self.message_format,
                settled: self.presettled,
            });
            let remaining = self.remaining.len();
            let room = if remaining + TRANSFER_OVERHEAD_BOUND <= max_frame {
                remaining
            } else {
                let overhead = 8 + delivery_transfer_size(handle, first.as_ref());
                max_frame.saturating_sub(overhead).max(1)
            };
            let payload = self.remaining.take(room);
            let more = self.remaining.len() > 0;
            out.push_delivery(channel, handle, first.as_ref(), more, &payload);
            window.next_outgoing_id = window.next_outgoing_id.wrapping_add(1);
            window.remote_incoming_window -= 1;
            self.first_frame = false;
            if !more {
                return true;
            }
        }
    }
}

/// The bytes of a delivery still to send: a rewritten header (often empty) and the rest of
/// the message, both slices of buffers the broker already holds.
#[derive(Debug)]
struct Remaining {
    head: Bytes,
    rest: Bytes,
}

impl Remaining {
    fn len(&self) -> usize {
        self.head.len() + self.rest.len()
    }

    /// Takes up to `room` bytes off the front, as (at most two) slices.
    fn take(&mut self, room: usize) -> [Bytes; 2] {
        let from_head = self.head.split_to(room.min(self.head.len()));
        let room = room - from_head.len();
        let from_rest = self.rest.split_to(room.min(self.rest.len()));
        [from_head, from_rest]
    }
}

/// Removes our unsettled deliveries with ids in `first..=last` (serial numbers, so the range may
/// wrap), visiting only deliveries that exist whatever the width of the range.
fn take_range(session: &mut Session, first: u32, last: u32) -> Vec<(u32, u32, u64)> {
    let mut ids: Vec<u32> = if first <= last {
        session
            .unsettled
            .range(first..=last)
            .map(|(&k, _)| k)
            .collect()
    } else {
        session
            .unsettled
            .range(first..)
            .chain(session.unsettled.range(..=last))
            .map(|(&k, _)| k)
            .collect()
    };
    ids.dedup();
    ids.into_iter()
        .filter_map(|id| session.unsettled.remove(&id).map(|(h, seq)| (id, h, seq)))
        .collect()
}

fn to_outcome(state: &DeliveryState) -> Option<Outcome> {
    match state {
        DeliveryState::Accepted(_) => Some(Outcome::Accepted),
        DeliveryState::Rejected(r) => Some(Outcome::Rejected {
            condition: r
                .error
                .as_ref()
                .map(|e| super::condition_name(&e.condition)),
            description: r.error.as_ref().and_then(|e| e.description.clone()),
        }),
        DeliveryState::Released(_) => Some(Outcome::Released),
        DeliveryState::Modified(m) => Some(Outcome::Modified {
            delivery_failed: m.delivery_failed.unwrap_or(false),
            undeliverable_here: m.undeliverable_here.unwrap_or(false),
        }),
        _ => None,
    }
}

fn disposition(
    role: Role,
    first: u32,
    last: u32,
    settled: bool,
    state: DeliveryState,
) -> Disposition {
    Disposition {
        role,
        first,
        last: (last != first).then_some(last),
        settled,
        state: Some(state),
        batchable: false,
    }
}

/// Joins the payloads of a delivery; a single frame's payload is used as it is, without a copy.
fn concat(first: &Bytes, rest: &[Bytes]) -> Bytes {
    if rest.is_empty() {
        return first.clone();
    }
    let mut all = BytesMut::with_capacity(first.len() + rest.iter().map(Bytes::len).sum::<usize>());
    all.extend_from_slice(first);
    for c in rest {
        all.extend_from_slice(c);
    }
    all.freeze()
}
