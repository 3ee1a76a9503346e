//! Addresses to nodes: finds or creates the queue an attach or a message names.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use dashmap::mapref::entry::Entry as MapEntry;
use dashmap::DashMap;

use crate::config::{vhosts, ConfigError, QueueRules, QueueSettings};
use crate::store::{SegmentId, Store};

use crate::broker::consumer::ConsumerId;
use crate::broker::durable::events::QueueNo;
use crate::broker::durable::journaled::Journaled;
use crate::broker::memory::Memory;
use crate::broker::queue::temporary::{Lifetime, Temporary};
use crate::broker::queue::{Nodes, Queue};
use crate::broker::routing::address::{Address, Kind};
use crate::broker::routing::exchanges::{ExchangeError, ExchangeTable};
use crate::broker::routing::Node;

mod exchanges;

/// Why an address could not be resolved to a node.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RouteError {
    /// No such queue, and the configuration does not allow creating it on demand.
    #[error("no queue named '{0}' (auto_create is off for it)")]
    NotFound(String),
    /// The address is not a usable queue name.
    #[error("'{0}' is not a valid queue name: {1}")]
    InvalidName(String, &'static str),
    /// A declaration asked for settings other than the existing queue's.
    #[error("queue '{0}' exists with other settings for: {1}")]
    Conflict(String, String),
    /// A durable queue cannot be created: the journal refuses writes.
    #[error("cannot create durable queue '{0}': {1}")]
    Store(String, String),
    /// No such exchange.
    #[error("no exchange named '{0}'")]
    NoExchange(String),
    /// An exchange could not be declared, deleted or bound as asked.
    #[error(transparent)]
    Exchange(#[from] ExchangeError),
    /// The address or the binding asked for is not one the broker understands.
    #[error("{0}")]
    Invalid(String),
}

impl Nodes for Router {
    fn queue_named(&self, name: &str) -> Result<Arc<Queue>, String> {
        self.queue(name).map_err(|e| e.to_string())
    }

    fn memory(&self) -> &Arc<Memory> {
        &self.memory
    }
}

/// Every queue of the broker, by name.
#[derive(Debug)]
pub struct Router {
    me: Weak<Router>,
    rules: QueueRules,
    queues: DashMap<String, Arc<Queue>>,
    exchanges: ExchangeTable,
    /// Where the run-time definitions are kept (routing::saved); unset, they are not.
    saved_at: OnceLock<PathBuf>,
    next_id: AtomicU64,
    /// Where durable queues journal their messages (None: nothing is durable).
    store: Option<Arc<dyn Store>>,
    next_queue_no: AtomicU32,
    /// `[storage] deliver_after_sync`, for the durable queues it creates.
    deliver_after_sync: bool,
    /// The bytes its messages hold, and the producer gate.
    memory: Arc<Memory>,
    /// Who created which queue by attaching, for users' `max_queues` (since the broker
    /// started: it is not kept across restarts).
    creators: DashMap<String, String>,
}

impl Router {
    /// A router with no queues yet; `rules` gives the settings of queues created on demand.
    /// Its queues route dead letters back through it.
    pub fn new(rules: QueueRules) -> Arc<Router> {
        Router::with_store(rules, None, 1, false)
    }

    /// A router whose durable queues journal to `store`, numbering new queues from
    /// `next_queue_no` (past every number the journal has used); with `deliver_after_sync`
    /// their messages reach consumers only once on disk.
    pub fn with_store(
        rules: QueueRules,
        store: Option<Arc<dyn Store>>,
        next_queue_no: QueueNo,
        deliver_after_sync: bool,
    ) -> Arc<Router> {
        Arc::new_cyclic(|me| Router {
            me: me.clone(),
            rules,
            queues: DashMap::new(),
            exchanges: ExchangeTable::default(),
            saved_at: OnceLock::new(),
            next_id: AtomicU64::new(1),
            store,
            next_queue_no: AtomicU32::new(next_queue_no),
            deliver_after_sync,
            memory: Memory::new(),
            creators: DashMap::new(),
        })
    }

    /// The memory account of the broker's messages.
    pub fn memory(&self) -> &Arc<Memory> {
        &self.memory
    }

    /// The store durable queues journal to, if any.
    pub fn store(&self) -> Option<&Arc<dyn Store>> {
        self.store.as_ref()
    }

    /// Creates the queue `name`; a durable one is declared in the journal first.
    fn create(&self, name: &str, settings: QueueSettings) -> Result<Arc<Queue>, RouteError> {
        let journal = match (&self.store, settings.durable) {
            (Some(store), true) => {
                let no = self.next_queue_no.fetch_add(1, Ordering::Relaxed);
                let journaled =
                    Journaled::declare(store.clone(), no, name, self.deliver_after_sync)
                        .map_err(|e| RouteError::Store(name.to_string(), e.to_string()))?;
                Some(Arc::new(journaled))
            }
            _ => None,
        };
        Ok(Queue::with_journal(
            name.to_string(),
            settings,
            self.me.clone(),
            journal,
        ))
    }

    /// Puts back a durable queue found in the journal, as queue `no` declared in `segment`.
    pub fn recovered(&self, name: &str, no: QueueNo, segment: SegmentId) -> Option<Arc<Queue>> {
        let store = self.store.as_ref()?;
        let settings = self.rules.settings_for(name);
        let journal = Arc::new(Journaled::recovered(
            store.clone(),
            no,
            segment,
            self.deliver_after_sync,
        ));
        let queue = Queue::with_journal(name.to_string(), settings, self.me.clone(), Some(journal));
        self.queues.insert(name.to_string(), queue.clone());
        Some(queue)
    }

    /// Declares the queue `name` with `settings` (what the configured patterns say, overridden
    /// by the declaration). Returns the queue and whether it was created; an existing queue
    /// with other settings is a conflict naming the keys that differ.
    pub fn declare(
        &self,
        name: &str,
        settings: QueueSettings,
    ) -> Result<(Arc<Queue>, bool), RouteError> {
        validate_name(name)?;
        let mut created = false;
        let queue = match self.queues.entry(name.to_string()) {
            MapEntry::Occupied(q) => q.get().clone(),
            MapEntry::Vacant(slot) => {
                let queue = self.create(name, settings.clone())?;
                created = true;
                tracing::info!(queue = name, "queue declared");
                slot.insert(queue).clone()
            }
        };
        let differ = queue.settings().differences(&settings);
        if !differ.is_empty() {
            return Err(RouteError::Conflict(name.to_string(), differ.join(", ")));
        }
        Ok((queue, created))
    }

    /// Deletes the queue `name` and its messages; its consumers are told. Returns how many
    /// messages went with it, or None if there is no such queue.
    pub fn delete(&self, name: &str) -> Option<usize> {
        let (_, queue) = self.queues.remove(name)?;
        self.exchanges.unbind_queue(name);
        self.save_definitions();
        let dropped = queue.delete();
        tracing::info!(queue = name, messages = dropped, "queue deleted");
        Some(dropped)
    }

    /// Records that `user` created the queue `name`.
    pub fn note_creator(&self, name: &str, user: &str) {
        self.creators.insert(name.to_owned(), user.to_owned());
    }

    /// Queues `user` created that still exist (forgetting those that do not).
    pub fn created_by(&self, user: &str) -> usize {
        self.creators
            .retain(|name, _| self.queues.contains_key(name));
        self.creators.iter().filter(|e| e.value() == user).count()
    }

    /// The configured per-queue rules.
    pub fn rules(&self) -> &QueueRules {
        &self.rules
    }

    /// The queue named `address`, created with its matching settings when they allow it.
    pub fn queue(&self, address: &str) -> Result<Arc<Queue>, RouteError> {
        if let Some(q) = self.queues.get(address) {
            return Ok(q.clone());
        }
        validate_name(address)?;
        let settings = self.rules.settings_for(address);
        if !settings.auto_create {
            return Err(RouteError::NotFound(address.to_string()));
        }
        match self.queues.entry(address.to_string()) {
            MapEntry::Occupied(q) => Ok(q.get().clone()),
            MapEntry::Vacant(slot) => {
                let queue = self.create(address, settings)?;
                tracing::debug!(queue = address, "queue created on first use");
                Ok(slot.insert(queue).clone())
            }
        }
    }

    /// Creates a temporary queue with a generated name for a dynamic link of `connection`;
    /// [`Router::link_ended`] deletes it when its lifetime policy says so.
    /// `vhost` is the connection's virtual host (`None`: the default one).
    pub fn create_dynamic(
        &self,
        connection: u64,
        lifetime: Lifetime,
        vhost: Option<&str>,
    ) -> Arc<Queue> {
        let name = vhosts::qualify(vhost, &format!("sluice.dynamic.{}", self.next_id()));
        let settings = self.rules.settings_for(&name);
        let temporary = Temporary::new(connection, lifetime);
        let queue = Queue::new_temporary(name.clone(), settings, temporary, self.me.clone());
        self.queues.insert(name, queue.clone());
        queue
    }

    /// A link to `queue` ended (`owner`: the link that created it). A temporary queue whose
    /// lifetime policy ends with it is deleted, its messages with it, and any other consumer
    /// of it is detached; so is an `auto_delete` queue whose last consumer this was.
    pub fn link_ended(&self, queue: &Arc<Queue>, owner: bool) {
        if queue.is_abandoned() {
            // `auto_delete`: its last consumer went.
            if self
                .queues
                .remove_if(queue.name(), |_, q| Arc::ptr_eq(q, queue))
                .is_some()
            {
                self.exchanges.unbind_queue(queue.name());
                let dropped = queue.delete();
                tracing::info!(
                    queue = queue.name(),
                    messages = dropped,
                    "auto-delete queue deleted: its last consumer left"
                );
            }
            return;
        }
        let Some(temporary) = queue.temporary() else {
            return;
        };
        if !temporary.link_ended(owner, queue.stats().ready) {
            return;
        }
        let removed = self
            .queues
            .remove_if(queue.name(), |_, q| Arc::ptr_eq(q, queue))
            .is_some();
        if removed {
            self.exchanges.unbind_queue(queue.name());
            let dropped = queue.delete();
            tracing::debug!(
                queue = queue.name(),
                messages = dropped,
                policy = temporary.lifetime().name(),
                "temporary queue deleted"
            );
        }
    }

    /// The node a producer's `address` names: a queue (found or created), an exchange, or a
    /// topic (a topic exchange, created on first use when the settings for its name allow).
    pub fn target(&self, address: &Address) -> Result<Node, RouteError> {
        let name = address.name.as_str();
        self.check_kind(address)?;
        match address.kind {
            Kind::Queue => Ok(Node::Queue(self.queue_at(address)?)),
            Kind::Exchange => {
                let exchange = self
                    .exchanges
                    .get(name)
                    .ok_or_else(|| RouteError::NoExchange(name.to_owned()))?;
                Ok(Node::Exchange(
                    exchange,
                    address.key.as_deref().map(Arc::from),
                ))
            }
            Kind::Topic => Ok(Node::Exchange(self.topic(name)?, None)),
            Kind::Any => {
                if self.queues.contains_key(name) {
                    // Found, and it must agree with what the address declares.
                    return Ok(Node::Queue(self.queue_at(address)?));
                }
                if let Some(x) = self.exchanges.get(name) {
                    return Ok(Node::Exchange(x, None));
                }
                Ok(Node::Queue(self.queue_at(address)?))
            }
        }
    }

    /// A queue or topic asked for by name must not be the other kind of node: attaching to
    /// `queue://x` when `x` is only an exchange (or a topic when it is only a queue) is a
    /// conflicting redeclare.
    pub fn check_kind(&self, address: &Address) -> Result<(), RouteError> {
        let name = address.name.as_str();
        let (is_queue, is_exchange) = (
            self.queues.contains_key(name),
            self.exchanges.get(name).is_some(),
        );
        let conflict = match address.kind {
            Kind::Queue if is_exchange && !is_queue => "kind (it is an exchange, not a queue)",
            Kind::Topic if is_queue && !is_exchange => "kind (it is a queue, not a topic)",
            _ => return Ok(()),
        };
        Err(RouteError::Conflict(name.to_owned(), conflict.to_owned()))
    }

    /// The queue `address` names, with its parameters (`NAME?key=value`): they configure the
    /// queue when it is created here, and an existing queue must agree with each of them.
    pub fn queue_at(&self, address: &Address) -> Result<Arc<Queue>, RouteError> {
        let name = address.name.as_str();
        if address.params.is_empty() {
            return self.queue(name);
        }
        let settings = self
            .rules
            .settings_with(name, &address.params_as_toml(), "")
            .map_err(|e| {
                // Positions in text the client never wrote would only confuse it.
                let why = match e {
                    ConfigError::Invalid { key, message, .. } => format!("{key}: {message}"),
                    ConfigError::UnknownKey { key, expected, .. } => {
                        format!(
                            "unknown setting '{key}'; expected one of {}",
                            expected.join(", ")
                        )
                    }
                    other => other.to_string(),
                };
                RouteError::Invalid(format!("the settings declared for queue '{name}': {why}"))
            })?;
        if let Some(queue) = self.get(name) {
            let differ: Vec<String> = queue
                .settings()
                .differences(&settings)
                .into_iter()
                .filter(|d| {
                    address
                        .params
                        .iter()
                        .any(|(k, _)| d.starts_with(&format!("{k} (")))
                })
                .collect();
            if !differ.is_empty() {
                return Err(RouteError::Conflict(name.to_owned(), differ.join(", ")));
            }
            return Ok(queue);
        }
        validate_name(name)?;
        if !self.rules.settings_for(name).auto_create {
            return Err(RouteError::NotFound(name.to_owned()));
        }
        match self.queues.entry(name.to_owned()) {
            MapEntry::Occupied(q) => Ok(q.get().clone()),
            MapEntry::Vacant(slot) => {
                let queue = self.create(name, settings)?;
                tracing::info!(queue = name, params = ?address.params, "queue created with address parameters");
                Ok(slot.insert(queue).clone())
            }
        }
    }

    /// The queue named `name`, if it exists.
    pub fn get(&self, name: &str) -> Option<Arc<Queue>> {
        self.queues.get(name).map(|q| q.clone())
    }

    /// Every queue, in no particular order.
    pub fn queues(&self) -> Vec<Arc<Queue>> {
        self.queues.iter().map(|e| e.value().clone()).collect()
    }

    /// Names of all queues, sorted.
    pub fn queue_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.queues.iter().map(|e| e.key().clone()).collect();
        names.sort();
        names
    }

    /// A fresh broker-wide id for a consumer (or anything else that needs one).
    pub fn next_id(&self) -> ConsumerId {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }
}

fn validate_name(name: &str) -> Result<(), RouteError> {
    let bad = |why| Err(RouteError::InvalidName(name.to_string(), why));
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() > 255 {
        return bad("it is longer than 255 bytes");
    }
    if name.chars().any(|c| c.is_control()) {
        return bad("it contains control characters");
    }
    Ok(())
}
