//! Deliveries to consumers: what queues hand over, split into transfers within the peer's
//! window, and the dispositions that settle them. Deliveries from producers are in
//! `incoming.rs`.

use std::collections::BTreeMap;
use std::time::Instant;

use fe2o3_amqp_types::definitions::{AmqpError, Fields, Handle, Role};
use fe2o3_amqp_types::messaging::{DeliveryState, Modified};
use fe2o3_amqp_types::performatives::{Disposition, Flow, Performative};
use fe2o3_amqp_types::transaction::TransactionalState;

use crate::broker::{Annotations, ConsumerId, OutItem, Outcome, Queue};
use crate::codec::frame::Output;
use crate::engine::ids::{Channel, DeliveryId, LinkHandle, Serial};
use crate::engine::link::{Consumer, LinkKind};
use crate::engine::sending::{start_sending, Sending};
use crate::engine::session::Session;
use crate::engine::window::{session_flow, Window};
use crate::engine::{AmqpFailure, Failure};

use super::consumer_timeout::check_interval;
use super::Connection;

/// Output a connection may have waiting for its socket before its consumers stop taking
/// deliveries (the transport also stops reading at this size).
pub const OUTPUT_CAP: usize = 4 * 1024 * 1024;

impl Connection {
    pub(super) fn on_disposition(
        &mut self,
        channel: Channel,
        d: Disposition,
    ) -> Result<(), Failure> {
        self.session_mut(channel)?;
        if d.role == Role::Sender {
            // The peer settles deliveries it sent us (receiver-settle-mode second); we keep
            // nothing for them once queued.
            return Ok(());
        }
        if let Some(DeliveryState::TransactionalState(ts)) = &d.state {
            return self.on_transactional_disposition(channel, &d, ts);
        }
        let outcome = match d.state.as_ref().map(to_outcome) {
            Some(Some(o)) => o,
            // A settled delivery without outcome: taken as consumed, as RabbitMQ and Artemis do.
            _ if d.settled => Outcome::Accepted,
            // A non-terminal state (received): nothing to do yet.
            _ => return Ok(()),
        };
        let first = DeliveryId(d.first);
        let last = d.last.map_or(first, DeliveryId);
        let now = self.clock;
        let cap = self.config.max_unsettled;
        let session = self.session_mut(channel)?;
        let ids = take_range(session, first, last);
        let mut reply_settle = Vec::new();
        // Accepted messages are gone whenever their settlement is applied, so those are batched
        // until the end of the read; a message that goes back must be at its place before the
        // next frame is acted on (a flow right after a release must get it first).
        let returns = !matches!(outcome, Outcome::Accepted);
        let mut touched: Vec<LinkHandle> = Vec::new();
        let mut held = Vec::new();
        for (delivery_id, handle, seq) in ids {
            if let Some(link) = session.links.get_mut(&handle) {
                if let LinkKind::Consumer(c) = &mut link.kind {
                    if cap > 0 && c.unsettled == cap {
                        // It was held at limits.max_unsettled_per_link: it may have more now.
                        held.push(c.id);
                    }
                    c.unsettled = c.unsettled.saturating_sub(1);
                    c.active_at = now;
                    c.settlements.push((seq, outcome.clone()));
                    if !d.settled {
                        reply_settle.push(delivery_id);
                    }
                    if returns && touched.last() != Some(&handle) {
                        touched.push(handle);
                    }
                }
            }
        }
        for handle in touched {
            if let Some(LinkKind::Consumer(c)) = session.links.get_mut(&handle).map(|l| &mut l.kind)
            {
                c.flush_settlements();
            }
        }
        // The peer gave an outcome without settling (receiver-settle-mode second, or a client
        // that waits for us): we settle, echoing the outcome.
        if let (Some(&lo), Some(&hi), Some(state)) =
            (reply_settle.first(), reply_settle.last(), d.state)
        {
            let reply = disposition(Role::Sender, lo, hi, true, state);
            self.out
                .push_frame(channel.0, &Performative::Disposition(reply), &[]);
        }
        self.blocked.extend(held);
        Ok(())
    }

    /// Sends what queues have handed to this connection's consumers, as far as session windows
    /// allow. Consumers stopped by a window are retried when the peer widens it.
    pub fn pump(&mut self) {
        self.apply_confirmed();
        self.update_congestion();
        let mut ready = std::mem::take(&mut self.blocked);
        self.waker.take_ready(&mut ready);
        self.transactions.retry_held(&mut ready);
        if ready.is_empty() {
            return;
        }
        ready.sort_unstable();
        ready.dedup();
        for id in ready {
            self.pump_consumer(id);
        }
    }

    /// Tells the queues whether this connection's output is over its cap (they assign its
    /// consumers nothing more while it is), and once it is under again, has the queues that
    /// passed its consumers over dispatch to them again.
    fn update_congestion(&mut self) {
        // Cleared only at half the cap, so a connection at the edge does not flip every write.
        let was_congested = self.waker.is_congested();
        let congested = if was_congested {
            self.out.len() >= OUTPUT_CAP / 2
        } else {
            self.out.len() >= OUTPUT_CAP
        };
        let was = self.waker.set_congested(congested);
        if was && !congested {
            self.redispatch_starved();
        }
    }

    fn redispatch_starved(&mut self) {
        let mut queues = Vec::new();
        for &(channel, handle) in self.consumers.values() {
            let link = self
                .sessions
                .get(&channel)
                .and_then(|s| s.links.get(&handle));
            if let Some(LinkKind::Consumer(c)) = link.map(|l| &l.kind) {
                if c.outbox.take_starved() {
                    queues.push(c.queue.clone());
                }
            }
        }
        for q in queues {
            q.redispatch();
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
        let max_unsettled = self.config.max_unsettled;
        let Connection {
            sessions,
            out,
            blocked,
            waker,
            clock,
            consumer_check,
            transactions,
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
        if c.transactional && (!transactions.any_open() || c.unsettled > 0) {
            // A consumer that works in transactions is sent one message at a time, only while
            // a transaction is open, the next once the last has its outcome: so however much
            // credit it has granted, no message reaches it between its commit and its next
            // declare (the Proton transactional receiver grants credit before it has one, and
            // commits every N messages).
            transactions.hold(id);
            return;
        }
        let deleted = loop {
            if c.sending.is_none() {
                if out.len() >= OUTPUT_CAP {
                    // The peer is not reading fast enough: stop here, so the broker does not
                    // buffer without bound; what is left waits in the outbox (and what the
                    // queue has not assigned yet stays ready for other consumers).
                    waker.set_congested(true);
                    blocked.push(id);
                    break None;
                }
                if max_unsettled > 0 && !c.presettled && c.unsettled >= max_unsettled {
                    // A prefetch bound whatever credit the peer granted: what the queue has
                    // handed over waits in the outbox until the peer settles some.
                    break None;
                }
                match next_delivery(c, channel, handle, window, unsettled, out) {
                    Next::Ready => {}
                    Next::Empty => break None,
                    Next::Deleted(error) => break Some(error),
                }
            }
            let Some(sending) = c.sending.as_mut() else {
                break None;
            };
            if !sending.send_frames(channel, handle, window, out, max_frame) {
                blocked.push(id);
                break None;
            }
            if let Some(sending) = c.sending.take() {
                sent(c, sending, unsettled, handle, *clock, consumer_check);
                if c.transactional {
                    transactions.hold(id);
                    break None;
                }
            }
        };
        // The queue passed this consumer over while its outbox was full; it has room now.
        let starved = (c.outbox.take_starved()).then(|| c.queue.clone());
        if let Some(queue) = starved {
            queue.redispatch();
        }
        if let Some(error) = deleted {
            self.detach_with_error(channel, handle, error);
        }
    }
}

/// The error a link gets when its queue was deleted under it.
pub(super) fn queue_deleted(queue: &Queue) -> AmqpFailure {
    AmqpFailure::new(
        AmqpError::ResourceDeleted,
        format!("queue '{}' was deleted by an administrator", queue.name()),
    )
}

/// What a consumer's outbox held next.
enum Next {
    /// A delivery is in `sending`.
    Ready,
    /// Nothing to send.
    Empty,
    /// The queue was deleted: the link is to be detached with this error.
    Deleted(AmqpFailure),
}

/// Takes the consumer's next delivery from its outbox into `sending`, answering on the way
/// what is not a delivery (revocations, the end of a drain).
fn next_delivery(
    c: &mut Consumer,
    channel: Channel,
    handle: LinkHandle,
    window: &mut Window,
    unsettled: &mut BTreeMap<DeliveryId, (LinkHandle, u64)>,
    out: &mut Output,
) -> Next {
    loop {
        match c.outbox.pop() {
            None => return Next::Empty,
            Some(OutItem::QueueDeleted) => return Next::Deleted(queue_deleted(&c.queue)),
            Some(OutItem::Revoked { seq }) => {
                if let Some(d) = revoke(unsettled, c, handle, seq) {
                    out.push_frame(channel.0, &Performative::Disposition(d), &[]);
                }
            }
            Some(OutItem::DrainDone { delivery_count }) => {
                c.delivery_count = Serial(delivery_count);
                let flow = drained(window, handle, c.delivery_count);
                out.push_frame(channel.0, &Performative::Flow(flow), &[]);
            }
            Some(OutItem::Deliver(d)) => {
                c.delivery_count = c.delivery_count.next();
                c.sending = Some(start_sending(window, d, c.presettled));
                return Next::Ready;
            }
        }
    }
}

/// A delivery the queue took back (its visibility timeout ran out): we settle it ourselves, so
/// the peer knows it is over and its late outcome matches nothing. None if the peer had
/// already settled it.
fn revoke(
    unsettled: &mut BTreeMap<DeliveryId, (LinkHandle, u64)>,
    c: &mut Consumer,
    handle: LinkHandle,
    seq: u64,
) -> Option<Disposition> {
    let id = unsettled
        .iter()
        .find(|(_, &(h, s))| h == handle && s == seq)
        .map(|(&id, _)| id)?;
    unsettled.remove(&id);
    c.unsettled = c.unsettled.saturating_sub(1);
    let state = DeliveryState::Modified(Modified {
        delivery_failed: Some(true),
        undeliverable_here: None,
        message_annotations: None,
    });
    Some(disposition(Role::Sender, id, id, true, state))
}

/// The flow that ends a drain: the delivery-count advanced past the credit the consumer had
/// left, and no credit (§2.6.7).
fn drained(window: &Window, handle: LinkHandle, delivery_count: Serial) -> Flow {
    let mut flow = session_flow(window);
    flow.handle = Some(Handle(handle.0));
    flow.delivery_count = Some(delivery_count.0);
    flow.link_credit = Some(0);
    flow.drain = true;
    flow
}

/// Records a delivery whose last frame went out: settled at once if pre-settled, otherwise
/// held as unsettled (which starts the queue's `consumer_timeout` clock when it is the
/// consumer's first).
fn sent(
    c: &mut Consumer,
    sending: Sending,
    unsettled: &mut BTreeMap<DeliveryId, (LinkHandle, u64)>,
    handle: LinkHandle,
    clock: Instant,
    consumer_check: &mut Option<Instant>,
) {
    if sending.presettled {
        c.settlements.push((sending.seq, Outcome::Accepted));
        return;
    }
    unsettled.insert(sending.delivery_id, (handle, sending.seq));
    if c.unsettled == 0 {
        c.active_at = clock;
    }
    c.unsettled += 1;
    let timeout = c.queue.settings().consumer_timeout;
    if timeout > 0 && consumer_check.is_none() {
        *consumer_check = Some(clock + check_interval(timeout));
    }
}

/// Removes our unsettled deliveries with ids in `first..=last` (serial numbers, so the range may
/// wrap), visiting only deliveries that exist whatever the width of the range.
impl Connection {
    /// Outcomes given under a transaction: held by it until the discharge (the messages stay
    /// with their consumer); settled back if the peer did not settle them. An unknown
    /// transaction detaches the consumer link, with `amqp:transaction:unknown-id`.
    fn on_transactional_disposition(
        &mut self,
        channel: Channel,
        d: &Disposition,
        ts: &TransactionalState,
    ) -> Result<(), Failure> {
        let Some(outcome) = ts
            .outcome
            .clone()
            .map(DeliveryState::from)
            .as_ref()
            .and_then(to_outcome)
        else {
            return Ok(()); // no outcome yet
        };
        let first = DeliveryId(d.first);
        let last = d.last.map_or(first, DeliveryId);
        let ids = take_range(self.session_mut(channel)?, first, last);
        let handle = ids.first().map(|(_, h, _)| *h);
        if let Err(error) = self.settle_in_transaction(channel, ids, ts, outcome) {
            return match handle {
                Some(handle) => Err(Failure::Link {
                    channel,
                    handle,
                    error,
                }),
                None => Ok(()),
            };
        }
        if !d.settled {
            let state = DeliveryState::TransactionalState(ts.clone());
            let reply = disposition(Role::Sender, first, last, true, state);
            self.out
                .push_frame(channel.0, &Performative::Disposition(reply), &[]);
        }
        Ok(())
    }
}

fn take_range(
    session: &mut Session,
    first: DeliveryId,
    last: DeliveryId,
) -> Vec<(DeliveryId, LinkHandle, u64)> {
    let mut ids: Vec<DeliveryId> = if first <= last {
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
                .map(|e| crate::engine::condition_name(&e.condition)),
            description: r.error.as_ref().and_then(|e| e.description.clone()),
        }),
        DeliveryState::Released(_) => Some(Outcome::Released),
        DeliveryState::Modified(m) => Some(Outcome::Modified {
            delivery_failed: m.delivery_failed.unwrap_or(false),
            undeliverable_here: m.undeliverable_here.unwrap_or(false),
            annotations: m.message_annotations.as_ref().and_then(encode_annotations),
        }),
        _ => None,
    }
}

/// A `modified` outcome's message-annotations as symbol keys and encoded values (None when
/// empty). A value serde_amqp cannot encode again is left out rather than failing the
/// settlement: the outcome itself still applies.
fn encode_annotations(fields: &Fields) -> Option<Annotations> {
    let encoded: Vec<(String, Vec<u8>)> = fields
        .iter()
        .filter_map(|(key, value)| Some((key.0.clone(), serde_amqp::to_vec(value).ok()?)))
        .collect();
    (!encoded.is_empty()).then(|| encoded.into())
}

pub(super) fn disposition(
    role: Role,
    first: DeliveryId,
    last: DeliveryId,
    settled: bool,
    state: DeliveryState,
) -> Disposition {
    Disposition {
        role,
        first: first.0,
        last: (last != first).then_some(last.0),
        settled,
        state: Some(state),
        batchable: false,
    }
}
