//! An exchange: a node that holds no messages and routes each one to the queues bound to it,
//! by the message's routing key (direct, topic), to all of them (fanout), or by its
//! application properties (headers), as RabbitMQ's exchanges do.

use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::broker::queue::Queue;
use crate::message::{Message, PropertyValue};

use super::topic::{check_pattern, TopicTrie};

/// How an exchange picks queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeKind {
    /// Queues whose binding key equals the routing key.
    Direct,
    /// Every bound queue.
    Fanout,
    /// Queues whose binding pattern matches the routing key (`*` one word, `#` any).
    Topic,
    /// Queues whose binding's headers match the application properties (`x-match` all/any).
    Headers,
}

impl ExchangeKind {
    /// The name used in broker.toml, the admin API and RabbitMQ.
    pub fn name(self) -> &'static str {
        match self {
            ExchangeKind::Direct => "direct",
            ExchangeKind::Fanout => "fanout",
            ExchangeKind::Topic => "topic",
            ExchangeKind::Headers => "headers",
        }
    }

    /// The kind named `name`.
    pub fn parse(name: &str) -> Option<ExchangeKind> {
        match name {
            "direct" => Some(ExchangeKind::Direct),
            "fanout" => Some(ExchangeKind::Fanout),
            "topic" => Some(ExchangeKind::Topic),
            "headers" => Some(ExchangeKind::Headers),
            _ => None,
        }
    }
}

/// What happens to a message no binding matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Unroutable {
    /// The producer gets `released` (RabbitMQ's answer to AMQP 1.0 producers).
    #[default]
    Release,
    /// The producer gets `rejected` with `amqp:not-found`.
    Reject,
    /// Accepted and dropped (classic AMQP 0-9-1 behaviour), and counted.
    Drop,
}

impl Unroutable {
    /// The name used in broker.toml and the admin API.
    pub fn name(self) -> &'static str {
        match self {
            Unroutable::Release => "release",
            Unroutable::Reject => "reject",
            Unroutable::Drop => "drop",
        }
    }

    /// The policy named `name`.
    pub fn parse(name: &str) -> Option<Unroutable> {
        match name {
            "release" => Some(Unroutable::Release),
            "reject" => Some(Unroutable::Reject),
            "drop" => Some(Unroutable::Drop),
            _ => None,
        }
    }
}

/// An exchange's declared properties: what a redeclaration must agree with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangeSpec {
    /// Its name (its address).
    pub name: String,
    /// How it routes.
    pub kind: ExchangeKind,
    /// Whether it (and its bindings) outlive a restart.
    pub durable: bool,
    /// What happens to a message it cannot route.
    pub unroutable: Unroutable,
    /// An exchange that gets the messages this one cannot route, before `unroutable` applies.
    pub alternate_exchange: Option<String>,
}

impl ExchangeSpec {
    /// A durable exchange of `kind` with the default policies.
    pub fn new(name: &str, kind: ExchangeKind) -> ExchangeSpec {
        ExchangeSpec {
            name: name.to_owned(),
            kind,
            durable: true,
            unroutable: Unroutable::Release,
            alternate_exchange: None,
        }
    }

    /// The properties in which `other` differs from this one, by name.
    pub fn differences(&self, other: &ExchangeSpec) -> Vec<String> {
        let mut differ = Vec::new();
        if self.kind != other.kind {
            differ.push(format!(
                "type (it is {}, not {})",
                self.kind.name(),
                other.kind.name()
            ));
        }
        if self.durable != other.durable {
            differ.push(format!("durable (it is {})", self.durable));
        }
        if self.unroutable != other.unroutable {
            differ.push(format!("unroutable (it is {})", self.unroutable.name()));
        }
        if self.alternate_exchange != other.alternate_exchange {
            differ.push("alternate_exchange".to_owned());
        }
        differ
    }
}

/// What a binding matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Matcher {
    /// Every message (a fanout binding, or a subscription without a filter).
    All,
    /// A routing key (direct) or a pattern (topic).
    Key(String),
    /// Application properties (headers exchange).
    Headers(HeadersMatch),
}

impl Matcher {
    /// The binding key as shown and stored: the key, `#` for everything, or "" for headers.
    pub fn key(&self) -> &str {
        match self {
            Matcher::All => "#",
            Matcher::Key(k) => k,
            Matcher::Headers(_) => "",
        }
    }
}

/// A headers binding: `x-match` = `all` or `any` of these property values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadersMatch {
    /// `x-match = any`: one equal value is enough; else all must be equal.
    pub any: bool,
    /// Property names and the values they must have.
    pub values: Vec<(String, HeaderValue)>,
}

/// A value a headers binding compares an application property with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderValue {
    /// A string (or symbol) value.
    Str(String),
    /// An integer of any AMQP width.
    Int(i64),
    /// A boolean.
    Bool(bool),
}

impl HeaderValue {
    fn equals(&self, value: PropertyValue<'_>) -> bool {
        match (self, value) {
            (HeaderValue::Str(a), PropertyValue::Str(b)) => a == b,
            (HeaderValue::Int(a), PropertyValue::Int(b)) => *a == b,
            (HeaderValue::Bool(a), PropertyValue::Bool(b)) => *a == b,
            _ => false,
        }
    }

    /// The value as text, for the admin API.
    pub fn to_text(&self) -> String {
        match self {
            HeaderValue::Str(s) => s.clone(),
            HeaderValue::Int(n) => n.to_string(),
            HeaderValue::Bool(b) => b.to_string(),
        }
    }
}

impl HeadersMatch {
    fn matches(&self, message: &Message) -> bool {
        let equal = |(name, value): &(String, HeaderValue)| {
            message
                .application_property(name)
                .is_some_and(|v| value.equals(v))
        };
        if self.any {
            self.values.iter().any(equal)
        } else {
            self.values.iter().all(equal)
        }
    }
}

/// One binding as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingInfo {
    /// The exchange.
    pub exchange: String,
    /// The bound queue.
    pub queue: String,
    /// What it matches.
    pub matcher: Matcher,
}

#[derive(Debug)]
struct Binding {
    queue: Arc<Queue>,
    matcher: Matcher,
}

#[derive(Debug, Default)]
struct Table {
    next_id: u64,
    bindings: HashMap<u64, Binding>,
    /// Direct bindings by key.
    direct: HashMap<String, Vec<u64>>,
    topic: TopicTrie,
    /// Bindings that match everything (fanout ones, unfiltered subscriptions).
    all: Vec<u64>,
    headers: Vec<u64>,
}

/// A routing node.
#[derive(Debug)]
pub struct Exchange {
    spec: ExchangeSpec,
    table: RwLock<Table>,
}

impl Exchange {
    /// An exchange with no bindings.
    pub fn new(spec: ExchangeSpec) -> Exchange {
        let table = Table {
            topic: TopicTrie::new(),
            ..Table::default()
        };
        Exchange {
            spec,
            table: RwLock::new(table),
        }
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// Its declared properties.
    pub fn spec(&self) -> &ExchangeSpec {
        &self.spec
    }

    fn read(&self) -> RwLockReadGuard<'_, Table> {
        self.table.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Table> {
        self.table.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `matcher` makes sense on this exchange: a key on direct and topic (a valid
    /// pattern on topic), headers on headers, and everything matches everything.
    pub fn check(&self, matcher: &Matcher) -> Result<(), String> {
        match (self.spec.kind, matcher) {
            (_, Matcher::All) | (ExchangeKind::Fanout, _) => Ok(()),
            (ExchangeKind::Direct, Matcher::Key(_)) => Ok(()),
            (ExchangeKind::Topic, Matcher::Key(k)) => check_pattern(k),
            (ExchangeKind::Headers, Matcher::Headers(_)) => Ok(()),
            (kind, Matcher::Headers(_)) => Err(format!(
                "a headers binding needs a headers exchange; '{}' is {}",
                self.spec.name,
                kind.name()
            )),
            (ExchangeKind::Headers, Matcher::Key(_)) => Err(format!(
                "'{}' is a headers exchange: bind with header values, not a key",
                self.spec.name
            )),
        }
    }

    /// Binds `queue` with `matcher`; false when that binding exists already.
    pub fn bind(&self, queue: Arc<Queue>, matcher: Matcher) -> Result<bool, String> {
        self.check(&matcher)?;
        let mut t = self.write();
        let exists = t
            .bindings
            .values()
            .any(|b| b.queue.name() == queue.name() && b.matcher == matcher);
        if exists {
            return Ok(false);
        }
        let id = t.next_id;
        t.next_id += 1;
        match (&matcher, self.spec.kind) {
            (Matcher::All, _) | (_, ExchangeKind::Fanout) => t.all.push(id),
            (Matcher::Key(k), ExchangeKind::Direct) => {
                t.direct.entry(k.clone()).or_default().push(id)
            }
            (Matcher::Key(k), _) => t.topic.insert(k, id),
            (Matcher::Headers(_), _) => t.headers.push(id),
        }
        t.bindings.insert(id, Binding { queue, matcher });
        Ok(true)
    }

    /// Removes the bindings of queue `queue` that `keep` rejects; returns how many went.
    fn unbind_where(&self, queue: &str, mut gone: impl FnMut(&Matcher) -> bool) -> usize {
        let mut t = self.write();
        let ids: Vec<u64> = t
            .bindings
            .iter()
            .filter(|(_, b)| b.queue.name() == queue && gone(&b.matcher))
            .map(|(&id, _)| id)
            .collect();
        for &id in &ids {
            let Some(b) = t.bindings.remove(&id) else {
                continue;
            };
            match (&b.matcher, self.spec.kind) {
                (Matcher::All, _) | (_, ExchangeKind::Fanout) => t.all.retain(|&i| i != id),
                (Matcher::Key(k), ExchangeKind::Direct) => {
                    if let Some(ids) = t.direct.get_mut(k) {
                        ids.retain(|&i| i != id);
                        if ids.is_empty() {
                            t.direct.remove(k);
                        }
                    }
                }
                (Matcher::Key(k), _) => t.topic.remove(k, id),
                (Matcher::Headers(_), _) => t.headers.retain(|&i| i != id),
            }
        }
        ids.len()
    }

    /// Removes the binding of `queue` with `matcher`; whether there was one.
    pub fn unbind(&self, queue: &str, matcher: &Matcher) -> bool {
        self.unbind_where(queue, |m| m == matcher) > 0
    }

    /// Removes the bindings of `queue` with routing key or pattern `key` (on a fanout or
    /// headers exchange, where keys mean nothing, every binding of `queue`); how many went.
    pub fn unbind_key(&self, queue: &str, key: &str) -> usize {
        match self.spec.kind {
            ExchangeKind::Fanout | ExchangeKind::Headers => self.unbind_where(queue, |_| true),
            _ => self.unbind_where(queue, |m| m.key() == key),
        }
    }

    /// How many bindings it has.
    pub fn binding_count(&self) -> usize {
        self.read().bindings.len()
    }

    /// Removes every binding of `queue` (it was deleted).
    pub fn unbind_queue(&self, queue: &str) -> usize {
        self.unbind_where(queue, |_| true)
    }

    /// Its bindings, by queue then key.
    pub fn bindings(&self) -> Vec<BindingInfo> {
        let mut all: Vec<BindingInfo> = self
            .read()
            .bindings
            .values()
            .map(|b| BindingInfo {
                exchange: self.spec.name.clone(),
                queue: b.queue.name().to_owned(),
                matcher: b.matcher.clone(),
            })
            .collect();
        all.sort_by(|a, b| (&a.queue, a.matcher.key()).cmp(&(&b.queue, b.matcher.key())));
        all
    }

    /// The queues `message` goes to, each once, in no particular order. `key` overrides the
    /// message's own routing key (an address such as `/exchanges/X/KEY` names one).
    pub fn route(&self, message: &Message, key: Option<&str>, into: &mut Vec<Arc<Queue>>) {
        let t = self.read();
        let start = into.len();
        let mut add = |id: u64| {
            if let Some(b) = t.bindings.get(&id) {
                let queue = &b.queue;
                if !queue.is_deleted() && !into[start..].iter().any(|q| Arc::ptr_eq(q, queue)) {
                    into.push(queue.clone());
                }
            }
        };
        t.all.iter().for_each(|&id| add(id));
        let key = key.or_else(|| message.routing_key()).unwrap_or("");
        match self.spec.kind {
            ExchangeKind::Direct => {
                if let Some(ids) = t.direct.get(key) {
                    ids.iter().for_each(|&id| add(id));
                }
            }
            ExchangeKind::Topic => t.topic.matches(key, &mut add),
            ExchangeKind::Headers => {
                for &id in &t.headers {
                    let matches = t.bindings.get(&id).is_some_and(|b| match &b.matcher {
                        Matcher::Headers(h) => h.matches(message),
                        _ => false,
                    });
                    if matches {
                        add(id);
                    }
                }
            }
            ExchangeKind::Fanout => {}
        }
    }
}
