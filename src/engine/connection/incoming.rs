//! Deliveries from producers: transfers assembled into messages, routed and queued, and the
//! producer told the outcome: accepted at once, or for a durable message once the journal has
//! it on disk.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use fe2o3_amqp_types::definitions::{AmqpError, LinkError, Role, SessionError};
use fe2o3_amqp_types::messaging::{Accepted, DeliveryState, Rejected, Released};
use fe2o3_amqp_types::performatives::Performative;

use crate::broker::routing::address;
use crate::broker::routing::exchange::Unroutable;
use crate::broker::routing::publish::publish_all;
use crate::broker::routing::Node;
use crate::broker::{Publish, Queue};
use crate::codec::transfer::Transfer;
use crate::config::Action;
use crate::engine::ids::{Channel, DeliveryId, LinkHandle};
use crate::message::Message;
use crate::store::StoreError;

use super::outgoing::{disposition, queue_deleted};
use super::transactions::transactional;
use super::Connection;
use crate::engine::link::{Incoming, Link, LinkKind};
use crate::engine::reassembly::{self, HoldCtx, Step, StepError};
use crate::engine::session::Session;
use crate::engine::{AmqpFailure, Failure};

/// What the producer is told of a delivery answered now (one answered later, once its record
/// is on disk, is not here).
enum Answer {
    Accept,
    Reject(AmqpFailure),
    /// Not taken, nothing wrong with it: an exchange had nowhere to route it.
    Release,
}

/// Where a message goes.
enum Dest {
    /// The queue the link (or the message's `to`) names.
    Direct(Arc<Queue>),
    /// The queues an exchange routed it to (at least one).
    Routed(Vec<Arc<Queue>>),
}

impl Dest {
    fn queues(&self) -> &[Arc<Queue>] {
        match self {
            Dest::Direct(q) => std::slice::from_ref(q),
            Dest::Routed(qs) => qs,
        }
    }
}

/// What became of a completed incoming delivery.
// Queued is the common case; boxing it would cost an allocation per message.
#[allow(clippy::large_enum_variant)]
enum Arrival {
    Queued(Dest, Message),
    /// An exchange matched no binding: what its policy says, and why.
    Unroutable(Unroutable, String),
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
        channel: Channel,
        transfer: Transfer,
        payload: Bytes,
    ) -> Result<(), Failure> {
        let handle = LinkHandle(transfer.handle);
        // What a frame of an unfinished delivery needs to be counted (see `hold`).
        let hold_ctx = transfer.more.then(|| HoldCtx {
            memory: self.router.memory().clone(),
            small: self.incomplete.clone(),
            cap: self.config.max_incomplete_bytes,
            large_elsewhere: self.large != Some((channel, handle))
                && self.large.is_some_and(|(c, h)| self.holds_large(c, h)),
        });
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
            ..
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
        let step = reassembly::step(producer, link_name, &transfer, payload, hold_ctx.as_ref());
        let incoming = match step {
            Ok(Step::Nothing) => return Ok(()),
            Ok(Step::More { designate }) => {
                if designate {
                    self.large = Some((channel, handle));
                }
                return Ok(());
            }
            Ok(Step::Complete(incoming)) => incoming,
            Err(StepError::Link(error)) => {
                return Err(Failure::Link {
                    channel,
                    handle,
                    error,
                })
            }
            Err(StepError::Connection(error)) => return Err(error.into()),
        };
        let (settle_second, target) = (producer.settle_second, producer.target.clone());
        if let Some(coordinator) = producer.coordinator {
            self.on_control(channel, incoming, settle_second, coordinator);
            return Ok(());
        }
        self.route_and_answer(channel, handle, incoming, settle_second, target)
    }

    /// Routes a complete delivery to its queue and answers the producer: accepted now,
    /// accepted once its record is on disk (`apply_confirmed`), or rejected with why.
    fn route_and_answer(
        &mut self,
        channel: Channel,
        handle: LinkHandle,
        incoming: Incoming,
        settle_second: bool,
        target: Option<Node>,
    ) -> Result<(), Failure> {
        let arrival = self.arrive(target, &incoming);
        if let Arrival::Queued(Dest::Direct(queue), _) = &arrival {
            if queue.is_deleted() {
                return Err(Failure::Link {
                    channel,
                    handle,
                    error: queue_deleted(queue),
                });
            }
        }
        if let Some(txn) = incoming.txn.clone() {
            self.answer_in_transaction(channel, &incoming, settle_second, &txn, arrival);
            return Ok(());
        }
        let answer = match arrival {
            Arrival::Queued(dest, message) if incoming.settled => {
                // Sent settled (at-most-once): nobody waits for the disk.
                match publish_all(dest.queues(), message, None) {
                    Publish::Refused(e) => Answer::Reject(self.store_refused(&e)),
                    _ => return Ok(()),
                }
            }
            Arrival::Queued(dest, message) => {
                let (id, settle) = (incoming.delivery_id, !settle_second);
                let finish = self.waker.confirmation(channel.0, id.0, settle);
                match publish_all(dest.queues(), message, Some(finish)) {
                    Publish::Queued => Answer::Accept,
                    // Accepted once its record is on disk: see `apply_confirmed`.
                    Publish::Confirming => return Ok(()),
                    Publish::Refused(e) => Answer::Reject(self.store_refused(&e)),
                    Publish::Full(why) => {
                        Answer::Reject(AmqpFailure::new(AmqpError::ResourceLimitExceeded, why))
                    }
                }
            }
            Arrival::Unroutable(Unroutable::Release, _) => Answer::Release,
            Arrival::Unroutable(Unroutable::Drop, why) => {
                tracing::debug!(%channel, %handle, "unroutable message dropped: {why}");
                Answer::Accept
            }
            Arrival::Unroutable(Unroutable::Reject, why) => {
                Answer::Reject(AmqpFailure::new(AmqpError::NotFound, why))
            }
            Arrival::Refused(error) => Answer::Reject(error),
        };
        let session = self.session_mut(channel)?;
        match answer {
            Answer::Accept => session
                .accepted
                .push((incoming.delivery_id, !settle_second)),
            Answer::Reject(_) | Answer::Release if incoming.settled => {}
            Answer::Reject(_) | Answer::Release => {
                let state = match answer {
                    Answer::Reject(error) => {
                        tracing::debug!(%channel, %handle, "message rejected: {}", error.description);
                        DeliveryState::Rejected(Rejected {
                            error: Some(error.to_error()),
                        })
                    }
                    _ => DeliveryState::Released(Released {}),
                };
                self.out.push_frame(
                    channel.0,
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
        Ok(())
    }

    /// Why the store refused a durable message, as the producer hears it; a full store also
    /// shuts the producer gate at once (the broker's monitor opens it when there is room).
    fn store_refused(&self, e: &StoreError) -> AmqpFailure {
        if matches!(e, StoreError::Full { .. }) {
            self.router.memory().set_store_full(true);
        }
        store_refused(e)
    }

    /// Whether the link on (channel, handle) has the connection's large delivery in progress.
    fn holds_large(&self, channel: Channel, handle: LinkHandle) -> bool {
        let link = self
            .sessions
            .get(&channel)
            .and_then(|s| s.links.get(&handle));
        match link.map(|l| &l.kind) {
            Some(LinkKind::Producer(p)) => p
                .incoming
                .as_ref()
                .and_then(|i| i.held.as_ref())
                .is_some_and(|h| h.is_large()),
            _ => false,
        }
    }

    /// Turns the frames of a delivery into a message and finds its queue.
    fn arrive(&self, target: Option<Node>, incoming: &Incoming) -> Arrival {
        // Counted against the memory watermark for as long as any copy of it lives.
        let bytes = self
            .router
            .memory()
            .track(concat(&incoming.first, &incoming.rest));
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
        // Credit holds back only a producer attached to the queue itself.
        let credit_blocks = matches!(target, Some(Node::Queue(_)));
        let node = match target {
            Some(node) => node,
            None => {
                // Anonymous relay: the message names its node.
                let Some(to) = message.to() else {
                    return Arrival::Refused(AmqpFailure::new(
                        AmqpError::NotFound,
                        "message sent on an anonymous link has no properties.to",
                    ));
                };
                let found = address::parse(to, &[])
                    .map_err(|why| AmqpFailure::new(AmqpError::InvalidField, why))
                    .and_then(|mut a| {
                        a.name = self.node_name(&a.name)?;
                        // Each message is checked as an attach to its `to` would be.
                        let creates = self.authorize_node(Action::Send, &a.name)?;
                        let node = self
                            .router
                            .target(&a)
                            .map_err(|e| AmqpFailure::new(AmqpError::NotFound, e.to_string()))?;
                        if creates {
                            self.created(&a.name);
                        }
                        Ok(node)
                    });
                match found {
                    Ok(node) => node,
                    Err(failure) => return Arrival::Refused(failure),
                }
            }
        };
        let dest = match node {
            Node::Queue(queue) => Dest::Direct(queue),
            Node::Exchange(exchange, key) => {
                let mut queues = Vec::new();
                if let Err(policy) =
                    self.router
                        .route(&exchange, &message, key.as_deref(), self.id, &mut queues)
                {
                    let key = key
                        .as_deref()
                        .or_else(|| message.routing_key())
                        .unwrap_or("");
                    let why = format!(
                        "no binding of exchange '{}' matches routing key '{key}'",
                        exchange.name()
                    );
                    return Arrival::Unroutable(policy, why);
                }
                Dest::Routed(queues)
            }
        };
        for queue in dest.queues() {
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
            if !credit_blocks && queue.blocks(message.len() as u64) {
                return Arrival::Refused(AmqpFailure::new(
                    AmqpError::ResourceLimitExceeded,
                    format!(
                        "queue '{}' is full (max_length {}, max_length_bytes {}; overflow = \"block\" holds back only producers attached to it)",
                        queue.name(),
                        queue.settings().max_length,
                        queue.settings().max_length_bytes
                    ),
                ));
            }
        }
        Arrival::Queued(dest, message)
    }

    /// Answers producers whose durable messages the journal has written: accepted once on
    /// disk, rejected with `amqp:internal-error` if the write failed, or with
    /// `amqp:resource-limit-exceeded` if the disk was full.
    pub(super) fn apply_confirmed(&mut self) {
        for c in self.waker.take_confirmed() {
            match c.result {
                Ok(()) => {
                    if let Ok(session) = self.session_mut(Channel(c.channel)) {
                        session.accepted.push((DeliveryId(c.delivery_id), c.settle));
                    }
                }
                Err(e) => {
                    let failure = if e.full {
                        AmqpFailure::new(
                            AmqpError::ResourceLimitExceeded,
                            format!("the message was not stored: {e}"),
                        )
                    } else {
                        AmqpFailure::new(
                            AmqpError::InternalError,
                            format!("the message was not stored: the journal failed: {e}"),
                        )
                    };
                    let state = DeliveryState::Rejected(Rejected {
                        error: Some(failure.to_error()),
                    });
                    let d = disposition(
                        Role::Receiver,
                        DeliveryId(c.delivery_id),
                        DeliveryId(c.delivery_id),
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
            while j < accepted.len() && accepted[j].0 == last.next() && accepted[j].1 == settled {
                last = accepted[j].0;
                j += 1;
            }
            let state = DeliveryState::Accepted(Accepted {});
            let d = disposition(Role::Receiver, first, last, settled, state);
            self.out
                .push_frame(session.channel.0, &Performative::Disposition(d), &[]);
            i = j;
        }
    }
}

impl Connection {
    /// A delivery sent under transaction `txn`: its message is held by the transaction (not
    /// queued before the commit), and the producer told the provisional outcome.
    fn answer_in_transaction(
        &mut self,
        channel: Channel,
        incoming: &Incoming,
        settle_second: bool,
        txn: &[u8],
        arrival: Arrival,
    ) {
        let state = match (arrival, self.transactions.get_mut(txn)) {
            (_, Err(e)) => rejected(e),
            (Arrival::Queued(dest, message), Ok(t)) => {
                t.publish(dest.queues().to_vec(), message);
                DeliveryState::Accepted(Accepted {})
            }
            (Arrival::Unroutable(Unroutable::Release, _), _) => {
                DeliveryState::Released(Released {})
            }
            (Arrival::Unroutable(Unroutable::Drop, _), _) => DeliveryState::Accepted(Accepted {}),
            (Arrival::Unroutable(Unroutable::Reject, why), _) => {
                rejected(AmqpFailure::new(AmqpError::NotFound, why))
            }
            (Arrival::Refused(e), _) => rejected(e),
        };
        if !incoming.settled {
            let id = incoming.delivery_id;
            let state = transactional(txn, state);
            let reply = disposition(Role::Receiver, id, id, !settle_second, state);
            self.out
                .push_frame(channel.0, &Performative::Disposition(reply), &[]);
        }
    }
}

fn rejected(e: AmqpFailure) -> DeliveryState {
    DeliveryState::Rejected(Rejected {
        error: Some(e.to_error()),
    })
}

/// The whole payload of a delivery.
pub(super) fn payload(incoming: &Incoming) -> Bytes {
    concat(&incoming.first, &incoming.rest)
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
