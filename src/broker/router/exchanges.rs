//! The router's exchange side: topics created on first use, subscriptions (private, named,
//! durable, shared), routing through an exchange and its alternates, declaring and binding,
//! and the definitions kept in the data directory.

use std::path::Path;
use std::sync::Arc;

use dashmap::mapref::entry::Entry as MapEntry;

use crate::broker::queue::temporary::{Lifetime, Temporary};
use crate::broker::queue::Queue;
use crate::broker::routing::exchange::{Exchange, ExchangeKind, ExchangeSpec, Matcher, Unroutable};
use crate::broker::routing::exchanges::ExchangeTable;
use crate::broker::routing::saved::{self, Saved, SavedBinding, SavedExchange, SavedSelector};
use crate::message::Message;
use crate::selector::{Dialect, Filter, Selector};

use super::{validate_name, RouteError, Router};

impl Router {
    /// The exchange a topic address names: any exchange of that name, else a new topic
    /// exchange when the settings for the name allow creating nodes on demand.
    pub fn topic(&self, name: &str) -> Result<Arc<Exchange>, RouteError> {
        if let Some(x) = self.exchanges.get(name) {
            return Ok(x);
        }
        validate_name(name)?;
        let settings = self.rules.settings_for(name);
        if !settings.auto_create {
            return Err(RouteError::NotFound(name.to_string()));
        }
        let mut spec = ExchangeSpec::new(name, ExchangeKind::Topic);
        spec.durable = settings.durable;
        match self.exchanges.declare(spec) {
            Ok((x, _)) => Ok(x),
            // Declared at the same moment by another link, with other settings: use it.
            Err(_) => self
                .exchanges
                .get(name)
                .ok_or_else(|| RouteError::NoExchange(name.to_owned())),
        }
    }

    /// A subscription to `exchange` for a receiver of `connection`: a temporary queue of its
    /// own, bound with `matcher`, deleted per `lifetime` (with its bindings).
    pub fn subscribe(
        &self,
        exchange: &Arc<Exchange>,
        matcher: Matcher,
        connection: u64,
        lifetime: Lifetime,
    ) -> Result<Arc<Queue>, RouteError> {
        exchange.check(&matcher).map_err(RouteError::Invalid)?;
        let name = format!("sluice.subscription.{}", self.next_id());
        let settings = self.rules.settings_for(&name);
        let temporary = Temporary::new(connection, lifetime);
        let queue = Queue::new_temporary(name.clone(), settings, temporary, self.me.clone());
        self.queues.insert(name, queue.clone());
        exchange
            .bind(queue.clone(), matcher)
            .map_err(RouteError::Invalid)?;
        Ok(queue)
    }

    /// The queues `exchange` routes `message` to (by `key` when given, else the message's
    /// own), into `into`. Nothing matched: the exchange's alternate exchange is tried (up to
    /// four hops, so a loop of alternates ends), and if it routes nowhere either, the
    /// first exchange's policy for unroutable messages is returned. Queues whose admission
    /// (a subscription's filter, or no-local against connection `from`) refuses the message
    /// are left out.
    pub fn route(
        &self,
        exchange: &Arc<Exchange>,
        message: &Message,
        key: Option<&str>,
        from: u64,
        into: &mut Vec<Arc<Queue>>,
    ) -> Result<(), Unroutable> {
        let mut at = exchange.clone();
        for _ in 0..4 {
            at.route(message, key, into);
            // Subscriptions store only what their filters pass (and no-local ones nothing
            // from their own connection); filtered out is not unroutable.
            let routed = !into.is_empty();
            into.retain(|q| q.admits(message, from));
            if routed {
                return Ok(());
            }
            match at
                .spec()
                .alternate_exchange
                .as_deref()
                .and_then(|a| self.exchanges.get(a))
            {
                Some(next) => at = next,
                None => break,
            }
        }
        Err(exchange.spec().unroutable)
    }

    /// Declares the exchanges and makes the bindings saved at `path` (those whose queue no
    /// longer exists are dropped, with a warning), then keeps the file up to date from now on.
    pub fn keep_definitions(&self, path: &Path) -> Result<(), String> {
        let saved = saved::load(path)?;
        for x in &saved.exchanges {
            match x.spec() {
                Some(spec) => {
                    if let Err(e) = self.exchanges.declare(spec) {
                        tracing::warn!(file = %path.display(), "saved exchange not declared: {e}");
                    }
                }
                None => {
                    tracing::warn!(file = %path.display(), exchange = ?x, "saved exchange not understood")
                }
            }
        }
        for b in &saved.bindings {
            let found = (
                self.exchanges.get(&b.exchange),
                self.get(&b.queue),
                b.matcher(),
            );
            match found {
                (Some(x), Some(q), Some(m)) => {
                    let _ = x.bind(q, m);
                }
                _ => tracing::warn!(
                    file = %path.display(),
                    exchange = %b.exchange,
                    queue = %b.queue,
                    "saved binding dropped: its exchange or queue is gone"
                ),
            }
        }
        // A durable subscription stores only what its selectors pass, from the start on, not
        // from its subscriber's next attach.
        let mut selectors: std::collections::BTreeMap<&str, Vec<Selector>> = Default::default();
        for s in &saved.selectors {
            let dialect = if s.dialect == "sql" {
                Dialect::Sql
            } else {
                Dialect::Jms
            };
            match Selector::parse(&s.text, dialect) {
                Ok(selector) => selectors.entry(&s.queue).or_default().push(selector),
                Err(e) => tracing::warn!(
                    file = %path.display(),
                    queue = %s.queue,
                    "saved selector dropped: {e}"
                ),
            }
        }
        for (queue, selectors) in selectors {
            if let Some(q) = self.get(queue) {
                let filter = Filter {
                    selectors,
                    properties: Vec::new(),
                };
                q.set_admission(Some(Arc::new(filter)), None);
            }
        }
        let _ = self.saved_at.set(path.to_owned());
        self.save_definitions();
        Ok(())
    }

    /// Rewrites the saved definitions (when they are kept): durable exchanges but `amq.*`,
    /// the bindings of durable, non-temporary queues to durable exchanges, and the selectors
    /// of durable subscriptions.
    pub fn save_definitions(&self) {
        let Some(path) = self.saved_at.get() else {
            return;
        };
        let mut saved = Saved::default();
        for x in self.exchanges.all() {
            let spec = x.spec();
            if !spec.durable {
                continue;
            }
            if !crate::broker::routing::exchanges::reserved(&spec.name) {
                saved.exchanges.push(SavedExchange::of(spec));
            }
            for b in x.bindings() {
                let durable_queue = self
                    .get(&b.queue)
                    .is_some_and(|q| q.settings().durable && !q.is_dynamic());
                if durable_queue {
                    saved
                        .bindings
                        .push(SavedBinding::of(&b.exchange, &b.queue, &b.matcher));
                }
            }
        }
        for q in self.queues() {
            if !q.settings().durable || q.is_dynamic() {
                continue;
            }
            for (dialect, text) in q.admission_selectors() {
                let dialect = match dialect {
                    Dialect::Jms => "jms",
                    Dialect::Sql => "sql",
                };
                saved.selectors.push(SavedSelector {
                    queue: q.name().to_owned(),
                    dialect: dialect.to_owned(),
                    text,
                });
            }
        }
        if let Err(e) = saved::store(path, &saved) {
            tracing::error!(file = %path.display(), "cannot save the exchanges and bindings: {e}");
        }
    }

    /// Removes queue `queue`'s bindings to `exchange` with `key` (see
    /// [`Exchange::unbind_key`]); how many went.
    pub fn unbind(&self, exchange: &str, queue: &str, key: &str) -> Result<usize, RouteError> {
        let x = self
            .exchanges
            .get(exchange)
            .ok_or_else(|| RouteError::NoExchange(exchange.to_owned()))?;
        let n = x.unbind_key(queue, key);
        if n > 0 {
            self.save_definitions();
        }
        Ok(n)
    }

    /// Deletes exchange `name` with its bindings; whether it existed.
    pub fn delete_exchange(&self, name: &str) -> Result<bool, RouteError> {
        let deleted = self.exchanges.delete(name)?;
        if deleted {
            self.save_definitions();
        }
        Ok(deleted)
    }

    /// A named subscription to `exchange`, shared by every receiver that names it: `durable`,
    /// a durable queue kept across detaches and restarts until unsubscribed (a new filter
    /// replaces the old binding, as JMS asks); else a queue deleted when its last link goes.
    /// Returns the queue and whether this call created it.
    pub fn subscribe_named(
        &self,
        exchange: &Arc<Exchange>,
        matcher: Matcher,
        name: &str,
        durable: bool,
    ) -> Result<(Arc<Queue>, bool), RouteError> {
        exchange.check(&matcher).map_err(RouteError::Invalid)?;
        validate_name(name)?;
        let mut settings = self.rules.settings_for(name);
        settings.durable = durable;
        let (queue, created) = match self.queues.entry(name.to_owned()) {
            MapEntry::Occupied(q) => (q.get().clone(), false),
            MapEntry::Vacant(slot) => {
                let queue = if durable {
                    self.create(name, settings)?
                } else {
                    // Anyone may consume (connection 0); gone with its last link.
                    let temporary = Temporary::new(0, Lifetime::NoLinks);
                    Queue::new_temporary(name.to_owned(), settings, temporary, self.me.clone())
                };
                tracing::info!(
                    subscription = name,
                    durable,
                    exchange = exchange.name(),
                    "subscription created"
                );
                (slot.insert(queue).clone(), true)
            }
        };
        if !created {
            if let Some(temporary) = queue.temporary() {
                temporary.link_attached();
            }
        }
        let bound = exchange
            .bindings()
            .into_iter()
            .any(|b| b.queue == name && b.matcher == matcher);
        if !bound {
            exchange.unbind_queue(name);
            exchange
                .bind(queue.clone(), matcher)
                .map_err(RouteError::Invalid)?;
            self.save_definitions();
        }
        Ok((queue, created))
    }

    /// The exchange a subscription queue is bound to, if any.
    pub fn subscribed_to(&self, queue: &str) -> Option<Arc<Exchange>> {
        self.exchanges
            .all()
            .into_iter()
            .find(|x| x.bindings().iter().any(|b| b.queue == queue))
    }

    /// The broker's exchanges.
    pub fn exchanges(&self) -> &ExchangeTable {
        &self.exchanges
    }

    /// Declares an exchange (see [`ExchangeTable::declare`]); the name must be a valid node name.
    pub fn declare_exchange(
        &self,
        spec: ExchangeSpec,
    ) -> Result<(Arc<Exchange>, bool), RouteError> {
        validate_name(&spec.name)?;
        let declared = self.exchanges.declare(spec)?;
        if declared.1 {
            self.save_definitions();
        }
        Ok(declared)
    }

    /// Binds queue `queue` to exchange `exchange` with `matcher`; whether the binding is new.
    pub fn bind(&self, exchange: &str, queue: &str, matcher: Matcher) -> Result<bool, RouteError> {
        let x = self
            .exchanges
            .get(exchange)
            .ok_or_else(|| RouteError::NoExchange(exchange.to_owned()))?;
        let q = self
            .get(queue)
            .ok_or_else(|| RouteError::NotFound(queue.to_owned()))?;
        let created = x.bind(q, matcher).map_err(RouteError::Invalid)?;
        if created {
            self.save_definitions();
        }
        Ok(created)
    }
}
