//! Which node a link attaches to: its terminus read (address, capabilities, dynamic-node
//! properties, binding filter) and resolved through the router to a queue, an exchange, or a
//! subscription queue of its own on an exchange or topic.

use std::sync::Arc;

use fe2o3_amqp_types::definitions::AmqpError;
use fe2o3_amqp_types::messaging::{Source, Target};

use crate::broker::routing::address::{self, Kind};
use crate::broker::routing::exchange::Matcher;
use crate::broker::routing::Node;
use crate::broker::{Lifetime, Queue, RouteError};
use crate::engine::terminus::{binding_filter, capabilities, lifetime_policy};
use crate::engine::AmqpFailure;

use super::Connection;

/// The node a producer's link sends to.
pub(super) struct ProducerNode {
    /// None: anonymous relay (each message's `to` names its node).
    pub node: Option<Node>,
    /// The link created it (a dynamic target): it owns it.
    pub created: bool,
    /// The largest message it accepts (0: no limit).
    pub max_message_size: u64,
}

/// The queue a consumer's link takes messages from.
pub(super) struct ConsumerQueue {
    pub queue: Arc<Queue>,
    /// The link created it (a dynamic source, or a subscription): it owns it.
    pub created: bool,
}

impl Connection {
    /// Resolves a producer's target.
    pub(super) fn producer_node(
        &self,
        target: Option<&Target>,
    ) -> Result<ProducerNode, AmqpFailure> {
        let node = match target {
            Some(t) if t.dynamic => {
                let lifetime = lifetime_policy(t.dynamic_node_properties.as_ref());
                let queue = self.router.create_dynamic(self.id, lifetime);
                return Ok(ProducerNode {
                    max_message_size: queue.settings().max_message_size,
                    node: Some(Node::Queue(queue)),
                    created: true,
                });
            }
            Some(Target {
                address: Some(text),
                capabilities: caps,
                ..
            }) => {
                let address = address::parse(text, &capabilities(caps.as_ref()))
                    .map_err(|why| AmqpFailure::new(AmqpError::InvalidField, why))?;
                self.router.target(&address).map_err(route_failure)?
            }
            _ => {
                return Ok(ProducerNode {
                    node: None,
                    created: false,
                    max_message_size: 0,
                })
            }
        };
        let max_message_size = match &node {
            Node::Queue(q) => {
                // Anyone may send to a temporary queue (a reply-to address is the point of one).
                if let Some(temporary) = q.temporary() {
                    temporary.link_attached();
                }
                q.settings().max_message_size
            }
            Node::Exchange(x, _) => self.router.rules().settings_for(x.name()).max_message_size,
        };
        Ok(ProducerNode {
            node: Some(node),
            created: false,
            max_message_size,
        })
    }

    /// Resolves a consumer's source to the queue it reads: a temporary queue for a dynamic
    /// source, a subscription queue for an exchange or topic, else the named queue.
    pub(super) fn consumer_queue(&self, source: &Source) -> Result<ConsumerQueue, AmqpFailure> {
        let binding = binding_filter(source.filter.as_ref())
            .map_err(|why| AmqpFailure::new(AmqpError::NotImplemented, why))?;
        if source.dynamic {
            if binding.is_some() {
                return Err(AmqpFailure::new(
                    AmqpError::InvalidField,
                    "a binding filter needs an exchange or topic address, not a dynamic queue",
                ));
            }
            let lifetime = lifetime_policy(source.dynamic_node_properties.as_ref());
            return Ok(ConsumerQueue {
                queue: self.router.create_dynamic(self.id, lifetime),
                created: true,
            });
        }
        let Some(text) = source.address.as_deref() else {
            return Err(AmqpFailure::new(
                AmqpError::InvalidField,
                "a receiving link needs a source address (or dynamic = true)",
            ));
        };
        let address = address::parse(text, &capabilities(source.capabilities.as_ref()))
            .map_err(|why| AmqpFailure::new(AmqpError::InvalidField, why))?;
        let name = address.name.as_str();
        self.router.check_kind(&address).map_err(route_failure)?;
        let exchange = match address.kind {
            Kind::Queue => None,
            Kind::Exchange => Some(
                self.router
                    .exchanges()
                    .get(name)
                    .ok_or_else(|| route_failure(RouteError::NoExchange(name.to_owned())))?,
            ),
            Kind::Topic => Some(self.router.topic(name).map_err(route_failure)?),
            Kind::Any if self.router.get(name).is_some() => None,
            Kind::Any => match self.router.exchanges().get(name) {
                Some(x) => Some(x),
                // A binding filter on a name nothing has yet asks for a topic.
                None if binding.is_some() => Some(self.router.topic(name).map_err(route_failure)?),
                None => None,
            },
        };
        if let Some(exchange) = exchange {
            let matcher = binding
                .or_else(|| address.key.clone().map(Matcher::Key))
                .unwrap_or(Matcher::All);
            let queue = self
                .router
                .subscribe(&exchange, matcher, self.id, Lifetime::Close)
                .map_err(route_failure)?;
            return Ok(ConsumerQueue {
                queue,
                created: true,
            });
        }
        if binding.is_some() {
            return Err(AmqpFailure::new(
                AmqpError::NotImplemented,
                format!("'{name}' is a queue: binding filters apply to exchanges and topics, and other filters on queues are not supported yet"),
            ));
        }
        let queue = self.router.queue_at(&address).map_err(route_failure)?;
        if let Some(temporary) = queue.temporary() {
            // Only the owner's connection consumes from a temporary queue.
            if temporary.connection() != self.id {
                return Err(AmqpFailure::new(
                    AmqpError::ResourceLocked,
                    format!(
                        "'{name}' is a temporary queue of another connection: it may be sent \
                         to, not consumed from"
                    ),
                ));
            }
            temporary.link_attached();
        }
        Ok(ConsumerQueue {
            queue,
            created: false,
        })
    }
}

/// A router refusal as the attaching peer hears it.
pub(super) fn route_failure(e: RouteError) -> AmqpFailure {
    let condition = match &e {
        RouteError::NotFound(_) | RouteError::NoExchange(_) => AmqpError::NotFound,
        RouteError::InvalidName(..) | RouteError::Invalid(_) => AmqpError::InvalidField,
        RouteError::Conflict(..) | RouteError::Exchange(_) => AmqpError::PreconditionFailed,
        RouteError::Store(..) => AmqpError::InternalError,
    };
    AmqpFailure::new(condition, e.to_string())
}
