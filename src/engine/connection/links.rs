//! Link handlers: attach (finding or creating the node), detach and link flow.

use fe2o3_amqp_types::definitions::{
    AmqpError, Handle, ReceiverSettleMode, Role, SenderSettleMode, SessionError,
};
use fe2o3_amqp_types::messaging::{DistributionMode, FilterSet, Source, TargetArchetype};
use fe2o3_amqp_types::performatives::{Attach, Detach, Flow, Performative};

use crate::broker::routing::Node;
use crate::broker::Outbox;
use crate::engine::ids::{Channel, LinkHandle, Serial};
use crate::engine::link::{Consumer, Link, LinkKind, Producer};

use crate::engine::window::session_flow;
use crate::engine::{AmqpFailure, Failure};

use super::nodes::{ConsumerQueue, ProducerNode};
use super::Connection;

impl Connection {
    pub(super) fn on_attach(&mut self, channel: Channel, attach: Attach) -> Result<(), Failure> {
        let handle = LinkHandle(attach.handle.0);
        let session = self.session_mut(channel)?;
        if handle.0 > session.handle_max {
            return Err(AmqpFailure::new(
                AmqpError::InvalidField,
                format!(
                    "handle {handle} exceeds the session's handle-max {}",
                    session.handle_max
                ),
            )
            .into());
        }
        if session.links.contains_key(&handle) {
            return Err(AmqpFailure::new(
                SessionError::HandleInUse,
                format!("attach on handle {handle}, which is already in use"),
            )
            .into());
        }
        let cap = self.config.max_links;
        let result = if cap > 0 && self.counts().1 >= cap as usize {
            Err(AmqpFailure::new(
                AmqpError::ResourceLimitExceeded,
                format!(
                    "a connection may have at most {cap} links (limits.max_links_per_connection)"
                ),
            ))
        } else {
            match attach.role {
                Role::Sender => self.attach_producer(channel, &attach),
                Role::Receiver => self.attach_consumer(channel, &attach),
            }
        };
        if let Err(error) = result {
            self.refuse_attach(channel, &attach, error);
        }
        Ok(())
    }

    fn attach_producer(&mut self, channel: Channel, attach: &Attach) -> Result<(), AmqpFailure> {
        let target = match attach.target.as_deref() {
            Some(TargetArchetype::Target(t)) => Some(t.clone()),
            None => None,
            Some(TargetArchetype::Coordinator(c)) => {
                return self.attach_coordinator(channel, attach, c);
            }
        };
        let ProducerNode {
            node,
            created: created_node,
            max_message_size,
        } = self.producer_node(target.as_ref())?;
        let mut reply_target = target.unwrap_or_default();
        if let (true, Some(node)) = (created_node, &node) {
            // The generated name of the node it asked for.
            reply_target.address = Some(self.client_name(node.name()).to_owned());
        }
        let reply = Attach {
            target: Some(Box::new(TargetArchetype::Target(reply_target))),
            max_message_size: (max_message_size > 0).then_some(max_message_size),
            ..answer(attach)
        };
        self.out
            .push_frame(channel.0, &Performative::Attach(reply), &[]);
        let delivery_count = attach.initial_delivery_count.unwrap_or(0);
        // Above the memory watermark (or with the store full) a new producer starts with no
        // credit, and one on a full queue that blocks with what fits; `flush` grants the rest
        // once the gate opens or room is made.
        let memory = self.router.memory();
        let mut credit = if memory.admits_producers() {
            memory.credit(self.config.link_credit)
        } else {
            0
        };
        if let Some(Node::Queue(queue)) = &node {
            if let Some(room) = queue.room(&self.waker) {
                credit = credit.min(room);
            }
        }
        let producer = Producer {
            target: node,
            coordinator: None,
            delivery_count: Serial(delivery_count),
            credit,
            incoming: None,
            settle_second: matches!(attach.rcv_settle_mode, ReceiverSettleMode::Second),
            max_message_size,
        };
        self.add_producer(channel, attach, producer, created_node)
    }

    /// Records an attached producer link (an ordinary one or a coordinator) and grants it
    /// its first credit.
    pub(super) fn add_producer(
        &mut self,
        channel: Channel,
        attach: &Attach,
        producer: Producer,
        created_node: bool,
    ) -> Result<(), AmqpFailure> {
        let (delivery_count, credit) = (producer.delivery_count, producer.credit);
        let handle = LinkHandle(attach.handle.0);
        let session = self.sessions.get_mut(&channel).ok_or_else(no_session)?;
        session.links.insert(
            handle,
            Link {
                name: attach.name.clone(),
                kind: LinkKind::Producer(producer),
                detach_sent: false,
                created_node,
                durable_subscription: false,
            },
        );
        let mut flow = session_flow(&session.window);
        flow.handle = Some(Handle(handle.0));
        flow.delivery_count = Some(delivery_count.0);
        flow.link_credit = Some(credit);
        self.out
            .push_frame(channel.0, &Performative::Flow(flow), &[]);
        Ok(())
    }

    fn attach_consumer(&mut self, channel: Channel, attach: &Attach) -> Result<(), AmqpFailure> {
        let stored;
        let (source, resolved) = match attach.source.as_deref() {
            Some(source) => (source, self.consumer_queue(source, &attach.name)?),
            // Qpid JMS unsubscribes by attaching with no source, then closing the link.
            None => match self.existing_subscription(&attach.name) {
                Some((queue, source)) => {
                    stored = source;
                    let resolved = ConsumerQueue {
                        queue,
                        created: false,
                        durable_subscription: true,
                        filter: None,
                        applied: FilterSet::new(),
                    };
                    (&stored, resolved)
                }
                None => {
                    return Err(AmqpFailure::new(
                        AmqpError::NotFound,
                        format!(
                            "a receiving link needs a source; and there is no durable subscription named '{}'",
                            attach.name
                        ),
                    ))
                }
            },
        };
        let ConsumerQueue {
            queue,
            created: created_node,
            durable_subscription,
            filter,
            applied,
        } = resolved;
        let presettled = matches!(attach.snd_settle_mode, SenderSettleMode::Settled);
        let id = self.router.next_id();
        let outbox = Outbox::new(id, self.waker.clone());
        // `copy` on a queue it did not create is a browser; on its own subscription (Qpid JMS
        // asks for copy on durable topic subscriptions) the messages are its to take.
        let browse = matches!(source.distribution_mode, Some(DistributionMode::Copy));
        if browse && !created_node {
            queue.add_browser(outbox.clone(), &attach.name, filter);
        } else if !queue.add_consumer(outbox.clone(), &attach.name, filter) {
            self.router.link_ended(&queue, created_node);
            return Err(AmqpFailure::new(
                AmqpError::ResourceLocked,
                format!(
                    "queue '{}' is exclusive and has a consumer already",
                    queue.name()
                ),
            ));
        }
        let reply_source = Source {
            // A dynamic source learns the name generated for it; others are echoed.
            address: if source.dynamic {
                Some(self.client_name(queue.name()).to_owned())
            } else {
                source.address.clone()
            },
            // Exactly the filters applied (WIRE.md §3): the client compares.
            filter: (!applied.is_empty()).then_some(applied),
            ..source.clone()
        };
        let reply = Attach {
            snd_settle_mode: if presettled {
                SenderSettleMode::Settled
            } else {
                SenderSettleMode::Unsettled
            },
            source: Some(Box::new(reply_source)),
            ..answer(attach)
        };
        self.out
            .push_frame(channel.0, &Performative::Attach(reply), &[]);
        let handle = LinkHandle(attach.handle.0);
        self.consumers.insert(id, (channel, handle));
        let session = self.sessions.get_mut(&channel).ok_or_else(no_session)?;
        session.links.insert(
            handle,
            Link {
                name: attach.name.clone(),
                kind: LinkKind::Consumer(Consumer {
                    id,
                    queue,
                    outbox,
                    delivery_count: Serial(0),
                    credit_limit: Serial(0),
                    presettled,
                    sending: None,
                    settlements: Vec::new(),
                    unsettled: 0,
                    active_at: self.clock,
                    transactional: false,
                }),
                detach_sent: false,
                created_node,
                durable_subscription,
            },
        );
        Ok(())
    }

    /// Refuses an attach the way clients expect (WIRE.md §2): an attach with null source and
    /// target, then a closing detach carrying the error.
    fn refuse_attach(&mut self, channel: Channel, attach: &Attach, error: AmqpFailure) {
        tracing::info!(
            peer = %self.peer.addr,
            link = %attach.name,
            condition = %crate::engine::condition_name(&error.condition),
            "attach refused: {}",
            error.description
        );
        let reply = Attach {
            source: None,
            target: None,
            ..answer(attach)
        };
        self.out
            .push_frame(channel.0, &Performative::Attach(reply), &[]);
        self.close_refused(
            channel,
            LinkHandle(attach.handle.0),
            attach.name.clone(),
            error,
        );
    }

    pub(super) fn on_detach(&mut self, channel: Channel, detach: Detach) -> Result<(), Failure> {
        let handle = LinkHandle(detach.handle.0);
        let session = self.session_mut(channel)?;
        let Some(link) = session.links.remove(&handle) else {
            return Err(AmqpFailure::new(
                SessionError::UnattachedHandle,
                format!("detach of handle {handle}, which is not attached"),
            )
            .into());
        };
        session.unsettled.retain(|_, (h, _)| *h != handle);
        if let Some(e) = &detach.error {
            tracing::info!(peer = %self.peer.addr, link = %link.name, error = ?e, "peer detached a link with an error");
        }
        let detach_sent = link.detach_sent;
        // Closing (not just detaching) a durable subscriber's link ends the subscription.
        let unsubscribed = match (&link.kind, detach.closed && link.durable_subscription) {
            (LinkKind::Consumer(c), true) => Some(c.queue.name().to_owned()),
            _ => None,
        };
        self.teardown_link(link);
        if let Some(name) = unsubscribed {
            tracing::info!(subscription = %name, "durable subscription closed: deleted");
            self.router.delete(&name);
        }
        if !detach_sent {
            let reply = Detach {
                handle: Handle(handle.0),
                closed: detach.closed,
                error: None,
            };
            self.out
                .push_frame(channel.0, &Performative::Detach(reply), &[]);
        }
        Ok(())
    }

    /// Detaches (closes) one link because of an error on it; the connection goes on.
    pub(super) fn detach_with_error(
        &mut self,
        channel: Channel,
        handle: LinkHandle,
        error: AmqpFailure,
    ) {
        let Some(session) = self.sessions.get_mut(&channel) else {
            return;
        };
        let Some(mut link) = session.links.remove(&handle) else {
            return;
        };
        session.unsettled.retain(|_, (h, _)| *h != handle);
        if link.detach_sent {
            session.links.insert(handle, link);
            return;
        }
        tracing::warn!(
            peer = %self.peer.addr,
            link = %link.name,
            condition = %crate::engine::condition_name(&error.condition),
            "detaching link: {}",
            error.description
        );
        let name = std::mem::take(&mut link.name);
        self.teardown_link(link);
        self.close_refused(channel, handle, name, error);
    }

    /// Sends a closing detach with `error` and keeps the handle taken, as a refused link,
    /// until the peer's detach arrives (§2.6.7: the handle is not free before that).
    fn close_refused(
        &mut self,
        channel: Channel,
        handle: LinkHandle,
        name: String,
        error: AmqpFailure,
    ) {
        self.send_detach(channel, handle, Some(error));
        if let Some(session) = self.sessions.get_mut(&channel) {
            let kind = LinkKind::Refused;
            let link = Link {
                name,
                kind,
                detach_sent: true,
                created_node: false,
                durable_subscription: false,
            };
            session.links.insert(handle, link);
        }
    }

    fn send_detach(&mut self, channel: Channel, handle: LinkHandle, error: Option<AmqpFailure>) {
        let detach = Detach {
            handle: Handle(handle.0),
            closed: true,
            error: error.map(|e| e.to_error()),
        };
        self.out
            .push_frame(channel.0, &Performative::Detach(detach), &[]);
    }

    /// Ends a link's use of the broker: a consumer's held messages return to its queue (sent
    /// ones with delivery-count + 1), and a temporary queue is deleted when its lifetime
    /// policy ends with this link.
    pub(super) fn teardown_link(&mut self, link: Link) {
        if let LinkKind::Consumer(mut c) = link.kind {
            c.flush_settlements();
            c.queue.detach_consumer(c.id);
            self.consumers.remove(&c.id);
            self.router.link_ended(&c.queue, link.created_node);
        } else if let LinkKind::Producer(p) = link.kind {
            if let Some(Node::Queue(q)) = p.target {
                self.router.link_ended(&q, link.created_node);
            }
            if let Some(coordinator) = p.coordinator {
                // Transactions do not outlive the coordinator link that declared them.
                self.transactions.rollback_declared_by(coordinator);
            }
        }
    }

    pub(super) fn on_link_flow(
        &mut self,
        channel: Channel,
        handle: LinkHandle,
        flow: Flow,
    ) -> Result<(), Failure> {
        let session = self.session_mut(channel)?;
        let Some(link) = session.links.get_mut(&handle) else {
            return Err(AmqpFailure::new(
                SessionError::UnattachedHandle,
                format!("flow for handle {handle}, which is not attached"),
            )
            .into());
        };
        let (delivery_count, credit) = match &mut link.kind {
            LinkKind::Consumer(c) => {
                let limit =
                    Serial(flow.delivery_count.unwrap_or(0)).plus(flow.link_credit.unwrap_or(0));
                c.credit_limit = limit;
                c.queue.flow(c.id, limit.0, flow.drain);
                let credit = c.delivery_count.credit_until(limit);
                (c.delivery_count, credit)
            }
            LinkKind::Producer(p) => (p.delivery_count, p.credit),
            LinkKind::Refused => return Ok(()),
        };
        if flow.echo {
            let mut reply = session_flow(&session.window);
            reply.handle = Some(Handle(handle.0));
            reply.delivery_count = Some(delivery_count.0);
            reply.link_credit = Some(credit);
            self.out
                .push_frame(channel.0, &Performative::Flow(reply), &[]);
        }
        Ok(())
    }
}

pub(super) fn no_session() -> AmqpFailure {
    AmqpFailure::new(AmqpError::InternalError, "session vanished during attach")
}

/// The attach that answers `attach`: its name and handle, the other role, the peer's settle
/// modes, source and target echoed, and an initial delivery-count when we are the sender.
/// Each caller sets what it decided (the address it resolved, a limit, or null terminus for
/// a refusal) on top.
pub(super) fn answer(attach: &Attach) -> Attach {
    let we_send = matches!(attach.role, Role::Receiver);
    Attach {
        name: attach.name.clone(),
        handle: attach.handle.clone(),
        role: if we_send {
            Role::Sender
        } else {
            Role::Receiver
        },
        snd_settle_mode: attach.snd_settle_mode.clone(),
        rcv_settle_mode: attach.rcv_settle_mode.clone(),
        source: attach.source.clone(),
        target: attach.target.clone(),
        unsettled: None,
        incomplete_unsettled: false,
        initial_delivery_count: we_send.then_some(0),
        max_message_size: None,
        offered_capabilities: None,
        desired_capabilities: None,
        properties: None,
    }
}
