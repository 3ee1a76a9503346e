//! The per-queue settings of `[queues."pattern"]` tables: the keys, their defaults, how they
//! are read, and how the tables that match a queue merge into its settings.

use super::document::{child, Node, Source, Value};
use super::error::ConfigError;
use super::pattern::Pattern;

/// Declares the per-queue keys once: each line yields a field of [`QueueSettings`]
/// with its default, an optional override read from `[queues."pattern"]` with the
/// named reader (a `Source` method, or one of this file's), and the key-wise merge. Adding a key is adding a line.
macro_rules! queue_settings {
    ($( $(#[$doc:meta])* $key:ident: $ty:ty = $default:expr, read by $read:path; )*) => {
        /// Settings in force for one queue, after merging the `[queues."pattern"]`
        /// tables that match its name (see [`QueueRules::settings_for`]).
        #[derive(Debug, Clone, PartialEq)]
        pub struct QueueSettings {
            $( $(#[$doc])* pub $key: $ty, )*
        }

        impl Default for QueueSettings {
            /// The settings of a queue no pattern matches.
            fn default() -> QueueSettings {
                QueueSettings { $( $key: $default, )* }
            }
        }

        impl QueueSettings {
            /// Every per-queue key, as broker.toml spells it.
            pub const KEYS: &'static [&'static str] = &[$( stringify!($key) ),*];

            /// The settings as broker.toml spells them, key by key (the admin API shows them).
            pub fn to_json(&self) -> serde_json::Value {
                let mut map = serde_json::Map::new();
                $( map.insert(stringify!($key).to_owned(), SettingValue::to_json(&self.$key)); )*
                serde_json::Value::Object(map)
            }

            /// The keys whose values differ between `self` and `other`, each with both values:
            /// `max_message_size (is 1024, asked 2048)`.
            pub fn differences(&self, other: &QueueSettings) -> Vec<String> {
                let mut keys = Vec::new();
                $(
                    if self.$key != other.$key {
                        keys.push(format!(
                            "{} (is {:?}, asked {:?})",
                            stringify!($key),
                            self.$key,
                            other.$key
                        ));
                    }
                )*
                keys
            }
        }

        /// The keys one `[queues."pattern"]` table sets.
        #[derive(Debug, Clone, Default, PartialEq)]
        struct QueueOverrides {
            $( $key: Option<$ty>, )*
        }

        impl QueueOverrides {
            const KEYS: &'static [&'static str] = &[$( stringify!($key) ),*];

            fn read(src: &Source, table: &[(String, Node)], path: &str) -> Result<Self, ConfigError> {
                let mut overrides = QueueOverrides::default();
                for (key, node) in table {
                    match key.as_str() {
                        $( stringify!($key) => overrides.$key = Some($read(src, node, &child(path, key))?), )*
                        _ => {}
                    }
                }
                Ok(overrides)
            }

            /// Keeps the keys `self` sets and takes the rest from `fallback`.
            fn or(self, fallback: &QueueOverrides) -> QueueOverrides {
                QueueOverrides { $( $key: self.$key.or_else(|| fallback.$key.clone()), )* }
            }

            fn resolve(self) -> QueueSettings {
                let defaults = QueueSettings::default();
                QueueSettings { $( $key: self.$key.unwrap_or(defaults.$key), )* }
            }
        }
    };
}

/// Where a queue reads a message's group id from (`group_key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupKey {
    /// The AMQP `properties.group-id` field (`"group-id"`; JMS maps JMSXGroupID to it).
    GroupId,
    /// A string application property of this name, such as `ourGroupID`.
    Property(String),
}

/// When a consumer's hold on a group ends (`group_release`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupRelease {
    /// `"on-ack"`: once the owner holds no unsettled message of the group (Qpid shared groups).
    OnAck,
    /// `"on-close"`: only when the owner detaches (Artemis).
    OnClose,
}

/// How a queue tracks groups (`group_buckets`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBuckets {
    /// `-1`: every group id is its own group.
    Exact,
    /// `0`: grouping is off; every message is ungrouped.
    Off,
    /// `N`: ids are hashed into N groups, so memory stays bounded however many ids there are.
    Hashed(u32),
}

/// A setting's value as broker.toml would write it.
/// Which of a queue's messages it journals (`persist`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persist {
    /// `"as-sent"`: those sent durable, or without a header section.
    AsSent,
    /// `"always"`: every message, whatever its header says.
    Always,
}

/// What a queue at its `max_length`/`max_length_bytes` does with one more message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// `"reject-publish"`: the producer gets `rejected` (`amqp:resource-limit-exceeded`).
    RejectPublish,
    /// `"drop-head"`: the oldest ready messages make room; dead-lettered when the queue has a
    /// `dead_letter_address` (reason `maxlen`), else dropped and counted.
    DropHead,
    /// `"block"`: a producer attached to the queue gets no more link credit until there is
    /// room (Artemis's `BLOCK` for AMQP); one sending through an exchange or the anonymous
    /// relay, which credit cannot hold back per queue, gets `rejected` as with
    /// `"reject-publish"`.
    Block,
}

/// Whether a queue serves one consumer at a time (`exclusive`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exclusive {
    /// `false`: any number of consumers.
    No,
    /// `true`: a second consumer's attach is refused with `amqp:resource-locked`.
    Yes,
    /// `"standby"`: later consumers attach and wait; the earliest attached one gets every
    /// message (RabbitMQ's single active consumer).
    Standby,
}

trait SettingValue {
    fn to_json(&self) -> serde_json::Value;
}

impl SettingValue for bool {
    fn to_json(&self) -> serde_json::Value {
        (*self).into()
    }
}

impl SettingValue for u8 {
    fn to_json(&self) -> serde_json::Value {
        (*self).into()
    }
}

impl SettingValue for u32 {
    fn to_json(&self) -> serde_json::Value {
        (*self).into()
    }
}

impl SettingValue for u64 {
    fn to_json(&self) -> serde_json::Value {
        (*self).into()
    }
}

impl SettingValue for Option<String> {
    fn to_json(&self) -> serde_json::Value {
        self.clone().into()
    }
}

impl SettingValue for Persist {
    fn to_json(&self) -> serde_json::Value {
        match self {
            Persist::AsSent => "as-sent".into(),
            Persist::Always => "always".into(),
        }
    }
}

impl SettingValue for Overflow {
    fn to_json(&self) -> serde_json::Value {
        match self {
            Overflow::RejectPublish => "reject-publish".into(),
            Overflow::DropHead => "drop-head".into(),
            Overflow::Block => "block".into(),
        }
    }
}

impl SettingValue for Exclusive {
    fn to_json(&self) -> serde_json::Value {
        match self {
            Exclusive::No => false.into(),
            Exclusive::Yes => true.into(),
            Exclusive::Standby => "standby".into(),
        }
    }
}

impl SettingValue for GroupKey {
    fn to_json(&self) -> serde_json::Value {
        match self {
            GroupKey::GroupId => "group-id".into(),
            GroupKey::Property(name) => name.as_str().into(),
        }
    }
}

impl SettingValue for GroupRelease {
    fn to_json(&self) -> serde_json::Value {
        match self {
            GroupRelease::OnAck => "on-ack".into(),
            GroupRelease::OnClose => "on-close".into(),
        }
    }
}

impl SettingValue for GroupBuckets {
    fn to_json(&self) -> serde_json::Value {
        match self {
            GroupBuckets::Exact => (-1).into(),
            GroupBuckets::Off => 0.into(),
            GroupBuckets::Hashed(n) => (*n).into(),
        }
    }
}

queue_settings! {
    /// Create the queue when a link attaches to a name that does not exist yet.
    auto_create: bool = true, read by Source::boolean;
    /// Keep the queue and its messages in the store across restarts.
    durable: bool = true, read by Source::boolean;
    /// Largest message accepted, in bytes; 0 means unlimited.
    max_message_size: u64 = 64 * 1024 * 1024, read by Source::size;
    /// Where the group id is read: `"group-id"` or the name of an application property.
    group_key: GroupKey = GroupKey::GroupId, read by group_key;
    /// When a consumer's ownership of a group ends: `"on-ack"` or `"on-close"`.
    group_release: GroupRelease = GroupRelease::OnAck, read by group_release;
    /// Mark the first message of a group given to a new owner with this key = true.
    group_first_key: Option<String> = None, read by Source::optional_symbol;
    /// Put the first-for-consumer marker in the application properties too (for JMS).
    group_first_as_property: bool = false, read by Source::boolean;
    /// Reset group ownership whenever a consumer attaches, so groups spread out.
    group_rebalance: bool = false, read by Source::boolean;
    /// After such a reset, hold grouped messages until every in-flight one is settled.
    group_rebalance_pause_dispatch: bool = false, read by Source::boolean;
    /// `-1` tracks every group id, `0` turns grouping off, `N` hashes ids into N buckets.
    group_buckets: GroupBuckets = GroupBuckets::Exact, read by group_buckets;
    /// Milliseconds a message without a delivery-time or delay annotation waits before it
    /// becomes ready, so a queue can buffer for producers that cannot annotate; 0 = none.
    default_delay: u64 = 0, read by Source::duration_ms;
    /// Milliseconds a message without a header ttl or absolute-expiry-time may stay, so a
    /// queue nobody drains does not grow forever; 0 = none.
    default_ttl: u64 = 0, read by Source::duration_ms;
    /// Milliseconds a consumer may hold an acquired message unsettled before it is released
    /// to others, so a stuck consumer cannot hide messages; 0 = none.
    visibility_timeout: u64 = 0, read by Source::duration_ms;
    /// Milliseconds a consumer holding unsettled messages may go without settling any before
    /// its link is detached and they return to the queue (RabbitMQ's name); 0 = never.
    consumer_timeout: u64 = 30 * 60 * 1000, read by Source::duration_ms;
    /// The queue that receives rejected, expired and over-delivered messages instead of
    /// losing them; none when absent.
    dead_letter_address: Option<String> = None, read by Source::optional_queue_name;
    /// Dead-letter a message once its delivery-count reaches this, so a poison message
    /// cannot loop forever; 0 = unlimited.
    max_delivery_attempts: u32 = 0, read by Source::count;
    /// Seconds after enqueue that consumed messages stay available for rewind; 0 = off.
    rewind_seconds: u64 = 0, read by Source::seconds;
    /// Bound on the bytes kept for rewind per queue, so retention cannot exhaust memory.
    rewind_max_bytes: u64 = 64 * 1024 * 1024, read by Source::size;
    /// `"as-sent"` journals the messages sent durable; `"always"` every message.
    persist: Persist = Persist::AsSent, read by persist;
    /// Most ready messages; 0 = unlimited.
    max_length: u64 = 0, read by Source::size;
    /// Most bytes of ready messages; 0 = unlimited.
    max_length_bytes: u64 = 0, read by Source::size;
    /// What a full queue does: `"reject-publish"` or `"drop-head"`.
    overflow: Overflow = Overflow::RejectPublish, read by overflow;
    /// `false`, `true` (one consumer; others refused) or `"standby"` (one active, others wait).
    exclusive: Exclusive = Exclusive::No, read by exclusive;
    /// Delete the queue when its last consumer detaches, once it has had one.
    auto_delete: bool = false, read by Source::boolean;
    /// Highest priority level (1..=255); 0 = no priorities, one FIFO.
    max_priority: u8 = 0, read by max_priority;
}

/// The `[queues."pattern"]` tables of a configuration, ready to answer per queue.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueRules {
    rules: Vec<(Pattern, QueueOverrides)>,
}

impl QueueRules {
    /// Settings for the queue named `queue`. Every `[queues."pattern"]` table whose
    /// pattern matches contributes its keys; where several set the same key, the most
    /// specific pattern wins, and keys no matching table sets take their defaults.
    ///
    /// Patterns are words separated by `.`: `*` matches exactly one word, `#` zero or
    /// more (`orders.#` matches `orders` and `orders.eu.x`), anything else itself.
    /// Specificity: a pattern without wildcards beats any with; otherwise compare word
    /// by word from the left, a literal word beating `*` beating `#`; if still tied,
    /// the longer pattern wins. So `orders.eu` > `orders.*` > `orders.#` > `#`.
    pub fn settings_for(&self, queue: &str) -> QueueSettings {
        self.overrides_for(queue).resolve()
    }

    /// Settings for the queue named `queue` when it is declared with the keys of `declared`,
    /// TOML text of one `[queues."name"]` table's body (`key = value` lines): those keys win
    /// over every configured pattern, the rest resolve as [`QueueRules::settings_for`] does.
    /// Errors are checked as in broker.toml and name `origin`.
    pub fn settings_with(
        &self,
        queue: &str,
        declared: &str,
        origin: &str,
    ) -> Result<QueueSettings, ConfigError> {
        let src = Source {
            origin,
            text: declared,
        };
        let root = Node::parse(declared).map_err(|e| ConfigError::Syntax {
            at: src.location(e.span().map_or(0, |s| s.start)),
            message: e.message().trim().replace('\n', ": "),
        })?;
        let table = src.table(&root, "", "the declared settings", QueueOverrides::KEYS)?;
        let overrides = QueueOverrides::read(&src, table, "")?;
        let configured = self.overrides_for(queue);
        Ok(overrides.or(&configured).resolve())
    }

    fn overrides_for(&self, queue: &str) -> QueueOverrides {
        // A virtual host's queue is configured by its name there: the same patterns serve
        // every host.
        let queue = super::vhosts::split(queue).1;
        let mut matching: Vec<_> = self
            .rules
            .iter()
            .filter(|(p, _)| p.matches(queue))
            .collect();
        matching.sort_by(|(a, _), (b, _)| b.cmp_specificity(a));
        matching
            .into_iter()
            .fold(QueueOverrides::default(), |merged, (_, overrides)| {
                merged.or(overrides)
            })
    }

    pub(super) fn read(src: &Source, node: &Node) -> Result<QueueRules, ConfigError> {
        let Value::Table(tables) = &node.value else {
            return Err(src.invalid(
                node,
                "queues",
                format!("expected a table, found {}", node.describe()),
            ));
        };
        let mut rules = Vec::new();
        for (text, table) in tables {
            let path = child("queues", text);
            let pattern =
                Pattern::parse(text).map_err(|message| src.invalid(table, &path, message))?;
            let label = format!("[{path}]");
            let overrides = QueueOverrides::read(
                src,
                src.table(table, &path, &label, QueueOverrides::KEYS)?,
                &path,
            )?;
            rules.push((pattern, overrides));
        }
        Ok(QueueRules { rules })
    }
}

/// `group_key`: `"group-id"` or an application property's name.
fn group_key(src: &Source, node: &Node, path: &str) -> Result<GroupKey, ConfigError> {
    Ok(match src.non_empty(node, path)?.as_str() {
        "group-id" => GroupKey::GroupId,
        name => GroupKey::Property(name.to_owned()),
    })
}

/// `group_release`: `"on-ack"` or `"on-close"`.
fn group_release(src: &Source, node: &Node, path: &str) -> Result<GroupRelease, ConfigError> {
    match &node.value {
        Value::String(s) if s == "on-ack" => Ok(GroupRelease::OnAck),
        Value::String(s) if s == "on-close" => Ok(GroupRelease::OnClose),
        _ => {
            let message = format!(
                r#"expected "on-ack" or "on-close", found {}"#,
                node.describe()
            );
            Err(src.invalid(node, path, message))
        }
    }
}

/// `group_buckets`: -1 (exact), 0 (off) or a bucket count.
fn group_buckets(src: &Source, node: &Node, path: &str) -> Result<GroupBuckets, ConfigError> {
    Ok(match src.integer(node, path, -1i64, i64::from(u32::MAX))? {
        -1 => GroupBuckets::Exact,
        0 => GroupBuckets::Off,
        n => GroupBuckets::Hashed(n as u32),
    })
}

/// `persist`: `"as-sent"` or `"always"`.
fn persist(src: &Source, node: &Node, path: &str) -> Result<Persist, ConfigError> {
    match &node.value {
        Value::String(s) if s == "as-sent" => Ok(Persist::AsSent),
        Value::String(s) if s == "always" => Ok(Persist::Always),
        _ => {
            let message = format!(
                r#"expected "as-sent" or "always", found {}"#,
                node.describe()
            );
            Err(src.invalid(node, path, message))
        }
    }
}

/// `overflow`: `"reject-publish"`, `"drop-head"` or `"block"`.
fn overflow(src: &Source, node: &Node, path: &str) -> Result<Overflow, ConfigError> {
    match &node.value {
        Value::String(s) if s == "reject-publish" => Ok(Overflow::RejectPublish),
        Value::String(s) if s == "drop-head" => Ok(Overflow::DropHead),
        Value::String(s) if s == "block" => Ok(Overflow::Block),
        _ => {
            let message = format!(
                r#"expected "reject-publish", "drop-head" or "block", found {}"#,
                node.describe()
            );
            Err(src.invalid(node, path, message))
        }
    }
}

/// `exclusive`: `false`, `true` or `"standby"`.
fn exclusive(src: &Source, node: &Node, path: &str) -> Result<Exclusive, ConfigError> {
    match &node.value {
        Value::Boolean(false) => Ok(Exclusive::No),
        Value::Boolean(true) => Ok(Exclusive::Yes),
        Value::String(s) if s == "standby" => Ok(Exclusive::Standby),
        _ => {
            let message = format!(
                r#"expected true, false or "standby", found {}"#,
                node.describe()
            );
            Err(src.invalid(node, path, message))
        }
    }
}

/// `max_priority`: 0 to 255.
fn max_priority(src: &Source, node: &Node, path: &str) -> Result<u8, ConfigError> {
    src.integer(node, path, 0u8, u8::MAX)
}
