//! Which node a link attaches to: its terminus read (address, capabilities, dynamic-node
//! properties, binding filter) and resolved through the router to a queue, an exchange, or a
//! subscription queue of its own on an exchange or topic.

use std::sync::Arc;

use fe2o3_amqp_types::definitions::{AmqpError, Fields};
use fe2o3_amqp_types::messaging::{
    DistributionMode, FilterSet, Source, Target, TerminusDurability, TerminusExpiryPolicy,
};

use crate::broker::routing::address::{self, Address, Kind};
use crate::broker::routing::exchange::Matcher;
use crate::broker::routing::Node;
use crate::broker::{Lifetime, Queue, RouteError};
use crate::config::{vhosts, Action};
use crate::engine::filters::{self, SourceFilters};
use crate::engine::terminus::{capabilities, lifetime_policy, node_properties};
use crate::engine::AmqpFailure;
use crate::selector::Filter;

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
    /// What the consumer takes of the queue: its selectors and filters (None: everything).
    pub filter: Option<Arc<Filter>>,
    /// The filters applied, which the attach reply echoes.
    pub applied: FilterSet,
    pub queue: Arc<Queue>,
    /// The link created it (a dynamic source, or a subscription): it owns it.
    pub created: bool,
    /// A durable subscription: kept when the link detaches, deleted when it closes.
    pub durable_subscription: bool,
}

/// The queue name of a named (durable or shared) subscription, as Qpid JMS names its links:
/// the link name up to a `|` (`sub|2`, `sub|volatile1`, `sub|global` are `sub`), prefixed by
/// the container-id unless global (no client-ID), as Artemis names them
/// (`container-id:link-name`). Also whether the link asked for a volatile (non-durable) one.
pub(super) fn subscription_name(
    link: &str,
    container: Option<&str>,
    global: bool,
) -> (String, bool) {
    let (base, suffix) = link.split_once('|').unwrap_or((link, ""));
    let global = global || suffix.starts_with("global");
    let volatile = suffix.contains("volatile");
    let name = match (global, container) {
        (false, Some(c)) => format!("{c}:{base}"),
        _ => format!("global:{base}"),
    };
    (name, volatile)
}

impl ConsumerQueue {
    /// A consumer of a queue: its selectors and properties filters apply to what it takes;
    /// binding filters and no-local mean nothing on a queue, so they are not applied and not
    /// echoed (the client decides).
    fn on_queue(queue: Arc<Queue>, created: bool, mut filters: SourceFilters) -> ConsumerQueue {
        let ignored = filters::binding_and_no_local_keys(&filters.applied);
        for key in ignored {
            filters.applied.swap_remove(&key);
        }
        ConsumerQueue {
            queue,
            created,
            durable_subscription: false,
            filter: (!filters.filter.is_empty()).then(|| Arc::new(filters.filter)),
            applied: filters.applied,
        }
    }
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
                let queue = self.router.create_dynamic(self.id, lifetime, self.vhost());
                return Ok(ProducerNode {
                    max_message_size: queue.settings().max_message_size,
                    node: Some(Node::Queue(queue)),
                    created: true,
                });
            }
            Some(
                t @ Target {
                    address: Some(text),
                    capabilities: caps,
                    ..
                },
            ) => {
                let mut address = address::parse(text, &capabilities(caps.as_ref()))
                    .map_err(|why| AmqpFailure::new(AmqpError::InvalidField, why))?;
                declare(&mut address, t.dynamic_node_properties.as_ref())?;
                address.name = self.node_name(&address.name)?;
                let creates = self.authorize_node(Action::Send, &address.name)?;
                let node = self.router.target(&address).map_err(route_failure)?;
                if creates {
                    self.created(&address.name);
                }
                node
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
    pub(super) fn consumer_queue(
        &self,
        source: &Source,
        link: &str,
    ) -> Result<ConsumerQueue, AmqpFailure> {
        let filters = filters::read(source.filter.as_ref())
            .map_err(|why| AmqpFailure::new(AmqpError::InvalidField, why))?;
        let binding = filters.binding.clone();
        if source.dynamic {
            let lifetime = lifetime_policy(source.dynamic_node_properties.as_ref());
            let queue = self.router.create_dynamic(self.id, lifetime, self.vhost());
            return Ok(ConsumerQueue::on_queue(queue, true, filters));
        }
        let Some(text) = source.address.as_deref() else {
            return Err(AmqpFailure::new(
                AmqpError::InvalidField,
                "a receiving link needs a source address (or dynamic = true)",
            ));
        };
        let caps = capabilities(source.capabilities.as_ref());
        let mut address = address::parse(text, &caps)
            .map_err(|why| AmqpFailure::new(AmqpError::InvalidField, why))?;
        declare(&mut address, source.dynamic_node_properties.as_ref())?;
        address.name = self.node_name(&address.name)?;
        let name = address.name.as_str();
        self.router.check_kind(&address).map_err(route_failure)?;
        // Looking without taking (a browser) is its own permission, on a queue; on an exchange
        // every receiver takes from its own subscription.
        let on_queue = match address.kind {
            Kind::Queue => true,
            Kind::Exchange | Kind::Topic => false,
            Kind::Any => {
                self.router.get(name).is_some() || self.router.exchanges().get(name).is_none()
            }
        };
        let copy = matches!(source.distribution_mode, Some(DistributionMode::Copy));
        let action = if copy && on_queue {
            Action::Browse
        } else {
            Action::Consume
        };
        let creates = self.authorize_node(action, name)?;
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
            // Durable: the terminus keeps its state and never expires (Qpid JMS's durable
            // subscriber); shared: the `shared` capability (JMS 2 shared subscriptions).
            let durable = !matches!(source.durable, TerminusDurability::None)
                && matches!(source.expiry_policy, TerminusExpiryPolicy::Never);
            let shared = caps.contains(&"shared");
            if durable || shared {
                let (name, volatile) =
                    subscription_name(link, self.container_id(), caps.contains(&"global"));
                let name = vhosts::qualify(self.vhost(), &name);
                let durable = durable && !volatile;
                let (queue, created) = self
                    .router
                    .subscribe_named(&exchange, matcher, &name, durable)
                    .map_err(route_failure)?;
                return Ok(self.subscription(queue, created && !durable, durable, filters));
            }
            let queue = self
                .router
                .subscribe(&exchange, matcher, self.id, Lifetime::Close)
                .map_err(route_failure)?;
            return Ok(self.subscription(queue, true, false, filters));
        }
        let queue = self.router.queue_at(&address).map_err(route_failure)?;
        if creates {
            self.created(name);
        }
        if let Some(temporary) = queue.temporary() {
            // Only the owner's connection consumes from a temporary queue.
            if !temporary.may_consume(self.id) {
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
        Ok(ConsumerQueue::on_queue(queue, false, filters))
    }

    /// A subscription queue stores only what its filters pass, and with no-local nothing sent
    /// on this connection; every filter read applies.
    fn subscription(
        &self,
        queue: Arc<Queue>,
        created: bool,
        durable_subscription: bool,
        filters: SourceFilters,
    ) -> ConsumerQueue {
        let filter = (!filters.filter.is_empty()).then(|| Arc::new(filters.filter));
        queue.set_admission(filter, filters.no_local.then_some(self.id));
        if durable_subscription {
            // Its selectors are kept with the definitions, for after a restart.
            self.router.save_definitions();
        }
        ConsumerQueue {
            queue,
            created,
            durable_subscription,
            filter: None,
            applied: filters.applied,
        }
    }

    /// A receiver with no source: Qpid JMS unsubscribing (it then closes the link). The
    /// durable subscription its link name names, with the source it stands for; None if there
    /// is none.
    pub(super) fn existing_subscription(&self, link: &str) -> Option<(Arc<Queue>, Source)> {
        let name = vhosts::qualify(
            self.vhost(),
            &subscription_name(link, self.container_id(), false).0,
        );
        let global = vhosts::qualify(self.vhost(), &subscription_name(link, None, true).0);
        let queue = self
            .router
            .get(&name)
            .or_else(|| self.router.get(&global))?;
        let exchange = self.router.subscribed_to(queue.name())?;
        let source = Source {
            address: Some(self.client_name(exchange.name()).to_owned()),
            durable: TerminusDurability::UnsettledState,
            expiry_policy: TerminusExpiryPolicy::Never,
            ..Source::default()
        };
        Some((queue, source))
    }
}

/// A router refusal as the attaching peer hears it.
/// Adds the queue settings a terminus's node properties declare to those of its address
/// (`NAME?key=value`): both configure the queue when it is created, and an existing queue must
/// agree with both. Where they name the same key, they must agree with each other.
fn declare(address: &mut Address, properties: Option<&Fields>) -> Result<(), AmqpFailure> {
    let declared = node_properties(properties)
        .map_err(|why| AmqpFailure::new(AmqpError::InvalidField, why))?;
    for (key, value) in declared {
        match address.params.iter().find(|(k, _)| *k == key) {
            Some((_, v)) if *v == value => {}
            Some((_, v)) => {
                return Err(AmqpFailure::new(
                    AmqpError::InvalidField,
                    format!("'{key}' is '{v}' in the address and '{value}' in the node properties"),
                ))
            }
            None => address.params.push((key, value)),
        }
    }
    Ok(())
}

pub(super) fn route_failure(e: RouteError) -> AmqpFailure {
    let condition = match &e {
        RouteError::NotFound(_) | RouteError::NoExchange(_) => AmqpError::NotFound,
        RouteError::InvalidName(..) | RouteError::Invalid(_) => AmqpError::InvalidField,
        RouteError::Conflict(..) | RouteError::Exchange(_) => AmqpError::PreconditionFailed,
        RouteError::Store(..) => AmqpError::InternalError,
    };
    AmqpFailure::new(condition, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::subscription_name;

    #[test]
    fn subscription_names_follow_qpid_jms_link_names() {
        let named = |link, global| subscription_name(link, Some("app-1"), global);
        assert_eq!(named("orders", false), ("app-1:orders".into(), false));
        assert_eq!(named("orders|2", false), ("app-1:orders".into(), false));
        assert_eq!(
            named("orders|volatile1", false),
            ("app-1:orders".into(), true)
        );
        assert_eq!(
            named("orders|global", false),
            ("global:orders".into(), false)
        );
        assert_eq!(
            named("orders|global-volatile2", false),
            ("global:orders".into(), true)
        );
        assert_eq!(named("orders", true), ("global:orders".into(), false));
        assert_eq!(
            subscription_name("orders", None, false),
            ("global:orders".into(), false)
        );
    }
}
