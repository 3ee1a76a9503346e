//! The broker's configuration: the `broker.toml` schema, its defaults, and validation
//! that reports every mistake as `file:line:column: key: what is wrong`.
//!
//! The file is first read into a tree of values that remember where they came from
//! (`Node`), then walked table by table. Doing the checks ourselves, rather than in
//! serde derives, is what lets every error name both its position and its full key
//! path, including dynamic parts such as `queues."orders.#"`.

mod document;
mod error;
mod exchanges;
mod limits;
pub mod password;
mod pattern;
mod queues;
mod storage;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use document::{child, get, Node, Source, Value};
pub use error::{ConfigError, Location};
pub use exchanges::{ArgumentValue, BindingDecl, ExchangeDecl};
use limits::LIMITS_KEYS;
pub use limits::{LimitsConfig, Watermark};
pub use queues::{
    Exclusive, GroupBuckets, GroupKey, GroupRelease, Overflow, Persist, QueueRules, QueueSettings,
};
pub use storage::StorageConfig;
use storage::STORAGE_KEYS;

/// The whole broker configuration, after validation: every value is in range and
/// every name is well formed, so the broker can use it without further checks.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Addresses to accept AMQP connections on (IP literals, not host names).
    pub listen: Vec<SocketAddr>,
    /// Directory holding the durable message store.
    pub data_dir: PathBuf,
    /// The container-id the broker announces in its `open` frame.
    pub container_id: String,
    /// Largest frame the broker accepts, announced in `open`; at least 512 (AMQP 2.7.1).
    pub max_frame_size: u32,
    /// Highest channel number a connection may use, announced in `open`.
    pub channel_max: u16,
    /// Highest link handle a session may use, announced in `begin`.
    pub handle_max: u32,
    /// Close a connection on which nothing arrives for this long, in milliseconds (half of
    /// it is announced in `open`, AMQP 2.4.5); 0 means none.
    pub idle_timeout_ms: u32,
    /// A transaction not discharged this long after its declare is rolled back (its
    /// discharge then fails with `amqp:transaction:timeout`); 0: never.
    pub transaction_timeout_ms: u64,
    /// Incoming transfer window granted to each session; at least 1.
    pub session_window: u32,
    /// Credit granted to each producer link; at least 1.
    pub link_credit: u32,
    /// Most connections past the handshake at once; 0 means unlimited. Sockets still in the
    /// handshake do not count (see `max_handshakes`), so silent sockets cannot use them up.
    pub max_connections: u32,
    /// Time from accept to the peer's `open` (protocol header, SASL and `open`), in ms.
    pub handshake_timeout_ms: u32,
    /// Most sockets still in the handshake at once; 0 means unlimited.
    pub max_handshakes: u32,
    /// Most sockets still in the handshake from one source (IPv4 address, IPv6 /64); 0 means
    /// unlimited.
    pub max_handshakes_per_source: u32,
    /// Which SASL mechanisms are offered to which clients.
    pub auth: AuthConfig,
    /// Accounts accepted by SASL PLAIN; names are unique and non-empty.
    pub users: Vec<User>,
    /// Per-queue settings by name pattern.
    pub queues: QueueRules,
    /// The management listener: HTTP API, metrics and console.
    pub admin: AdminConfig,
    /// How the journal of durable queues writes.
    pub storage: StorageConfig,
    /// Memory bounds (`[limits]`).
    pub limits: LimitsConfig,
    /// Exchanges to declare at start (`[exchanges."NAME"]`).
    pub exchanges: Vec<ExchangeDecl>,
    /// Bindings to make at start (`[[bindings]]`).
    pub bindings: Vec<BindingDecl>,
}

/// Where the management API, metrics and console are served (`[admin]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    /// Serve them at all.
    pub enabled: bool,
    /// The address to listen on; loopback by default, so only this machine can reach it.
    pub listen: SocketAddr,
    /// Host names (besides IP addresses and `localhost`) a request's `Host` may give: a page
    /// on a name that merely resolves to the broker (DNS rebinding) is refused.
    pub hosts: Vec<String>,
}

/// Which clients may log in how.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthConfig {
    /// Where SASL ANONYMOUS is accepted.
    pub anonymous: Exposure,
    /// Where SASL PLAIN is accepted over a socket without TLS (the password travels in clear).
    pub plain_without_tls: Exposure,
    /// Delay before answering a failed login, in milliseconds, to slow password guessing.
    pub failure_delay_ms: u64,
}

/// Which peers a permission applies to, judged by the peer's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exposure {
    /// No peer.
    Never,
    /// Only peers connecting from a loopback address.
    Loopback,
    /// Any peer.
    Everywhere,
}

/// One SASL PLAIN account. `Debug` hides the password so configs can be logged.
#[derive(Clone, PartialEq)]
pub struct User {
    /// Login name; unique within the configuration and never empty.
    pub name: String,
    /// Password in clear (empty when `password_hash` is set), compared by
    /// [`Config::authenticate`].
    pub password: String,
    /// The password as an Argon2 PHC string (`password_hash` in broker.toml): checked in its
    /// stead when set.
    pub password_hash: Option<String>,
    /// Roles granted to the account, such as `"admin"`; may be empty.
    pub roles: Vec<String>,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("password", &"<hidden>")
            .field("hashed", &self.password_hash.is_some())
            .field("roles", &self.roles)
            .finish()
    }
}

impl Default for Config {
    /// The configuration `sluice` runs with when given no file; equal to parsing an empty file.
    fn default() -> Config {
        Config {
            listen: vec![SocketAddr::from(([0, 0, 0, 0], 5672))],
            data_dir: PathBuf::from("data"),
            container_id: "sluice".to_owned(),
            max_frame_size: 65536,
            channel_max: 255,
            handle_max: 1023,
            idle_timeout_ms: 60_000,
            transaction_timeout_ms: 60_000,
            session_window: 2048,
            link_credit: 1000,
            max_connections: 0,
            handshake_timeout_ms: 10_000,
            max_handshakes: 1024,
            max_handshakes_per_source: 512,
            auth: AuthConfig {
                anonymous: Exposure::Loopback,
                plain_without_tls: Exposure::Loopback,
                failure_delay_ms: 1000,
            },
            users: Vec::new(),
            queues: QueueRules::default(),
            admin: AdminConfig {
                enabled: true,
                listen: SocketAddr::from(([127, 0, 0, 1], 8672)),
                hosts: Vec::new(),
            },
            storage: StorageConfig::default(),
            limits: LimitsConfig::default(),
            exchanges: Vec::new(),
            bindings: Vec::new(),
        }
    }
}

const ROOT_KEYS: &[&str] = &[
    "broker",
    "auth",
    "users",
    "queues",
    "admin",
    "storage",
    "limits",
    "exchanges",
    "bindings",
];
const ADMIN_KEYS: &[&str] = &["enabled", "listen", "hosts"];
const BROKER_KEYS: &[&str] = &[
    "listen",
    "data_dir",
    "container_id",
    "max_frame_size",
    "channel_max",
    "handle_max",
    "idle_timeout_ms",
    "transaction_timeout",
    "session_window",
    "link_credit",
    "max_connections",
    "handshake_timeout_ms",
    "max_handshakes",
    "max_handshakes_per_source",
];
const AUTH_KEYS: &[&str] = &["anonymous", "plain_without_tls", "failure_delay_ms"];
const USER_KEYS: &[&str] = &["name", "password", "password_hash", "roles"];

impl Config {
    /// Parses and validates a configuration. `origin` names the text in error messages
    /// (usually the file name). Keys the text leaves out keep their defaults.
    pub fn from_toml(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let src = Source { origin, text };
        let root = Node::parse(text).map_err(|e| ConfigError::Syntax {
            at: src.location(e.span().map_or(0, |s| s.start)),
            message: e.message().trim().replace('\n', ": "),
        })?;
        let mut config = Config::default();
        let root = src.table(&root, "", "the top level", ROOT_KEYS)?;
        if let Some(node) = get(root, "broker") {
            config.read_broker(&src, src.table(node, "broker", "[broker]", BROKER_KEYS)?)?;
        }
        if let Some(node) = get(root, "auth") {
            config
                .auth
                .read(&src, src.table(node, "auth", "[auth]", AUTH_KEYS)?)?;
        }
        if let Some(node) = get(root, "users") {
            config.users = read_users(&src, node)?;
        }
        // With users configured, a login is expected: anonymous access is off unless the file
        // asks for it (issue 16; before, loopback stayed open).
        let anonymous_set = get(root, "auth")
            .and_then(|node| src.table(node, "auth", "[auth]", AUTH_KEYS).ok())
            .is_some_and(|table| get(table, "anonymous").is_some());
        if !config.users.is_empty() && !anonymous_set {
            config.auth.anonymous = Exposure::Never;
        }
        if let Some(node) = get(root, "queues") {
            config.queues = QueueRules::read(&src, node)?;
        }
        if let Some(node) = get(root, "admin") {
            config
                .admin
                .read(&src, src.table(node, "admin", "[admin]", ADMIN_KEYS)?)?;
        }
        if let Some(node) = get(root, "storage") {
            config
                .storage
                .read(&src, src.table(node, "storage", "[storage]", STORAGE_KEYS)?)?;
        }
        if let Some(node) = get(root, "limits") {
            config
                .limits
                .read(&src, src.table(node, "limits", "[limits]", LIMITS_KEYS)?)?;
        }
        if let Some(node) = get(root, "exchanges") {
            config.exchanges = exchanges::read_exchanges(&src, node)?;
        }
        if let Some(node) = get(root, "bindings") {
            config.bindings = exchanges::read_bindings(&src, node, &config.exchanges)?;
        }
        Ok(config)
    }

    /// Reads and validates the file at `path`; errors name the path as given.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_owned(),
            error,
        })?;
        Config::from_toml(&text, &path.display().to_string())
    }

    /// SASL PLAIN check: whether some configured user has this name and password.
    /// Every account is compared in full, so the time taken reveals at most lengths,
    /// not which name exists or how much of a password was right.
    pub fn authenticate(&self, user: &str, password: &str) -> bool {
        self.user_with(user, password).is_some()
    }

    /// The configured user with this name and password, compared as
    /// [`Config::authenticate`] does (every account in full).
    pub fn user_with(&self, user: &str, password: &str) -> Option<&User> {
        find_user(&self.users, user, password)
    }

    fn read_broker(&mut self, src: &Source, table: &[(String, Node)]) -> Result<(), ConfigError> {
        for (key, node) in table {
            let path = &child("broker", key);
            match key.as_str() {
                "listen" => self.listen = src.listen(node, path)?,
                "data_dir" => self.data_dir = PathBuf::from(src.non_empty(node, path)?),
                "container_id" => self.container_id = src.non_empty(node, path)?,
                "max_frame_size" => self.max_frame_size = src.integer(node, path, 512, u32::MAX)?,
                "channel_max" => self.channel_max = src.integer(node, path, 0, u16::MAX)?,
                "handle_max" => self.handle_max = src.integer(node, path, 0, u32::MAX)?,
                "idle_timeout_ms" => self.idle_timeout_ms = src.integer(node, path, 0, u32::MAX)?,
                "transaction_timeout" => {
                    self.transaction_timeout_ms = src.duration_ms(node, path)?
                }
                "session_window" => self.session_window = src.integer(node, path, 1, u32::MAX)?,
                "link_credit" => self.link_credit = src.integer(node, path, 1, u32::MAX)?,
                "max_connections" => self.max_connections = src.integer(node, path, 0, u32::MAX)?,
                "handshake_timeout_ms" => {
                    self.handshake_timeout_ms = src.integer(node, path, 100, u32::MAX)?
                }
                "max_handshakes" => self.max_handshakes = src.integer(node, path, 0, u32::MAX)?,
                "max_handshakes_per_source" => {
                    self.max_handshakes_per_source = src.integer(node, path, 0, u32::MAX)?
                }
                _ => {} // rejected by `Source::table`
            }
        }
        Ok(())
    }
}

impl AdminConfig {
    fn read(&mut self, src: &Source, table: &[(String, Node)]) -> Result<(), ConfigError> {
        for (key, node) in table {
            let path = &child("admin", key);
            match key.as_str() {
                "enabled" => self.enabled = src.boolean(node, path)?,
                "listen" => self.listen = src.one_address(node, path)?,
                "hosts" => self.hosts = src.strings(node, path)?,
                _ => {}
            }
        }
        Ok(())
    }
}

impl AuthConfig {
    fn read(&mut self, src: &Source, table: &[(String, Node)]) -> Result<(), ConfigError> {
        for (key, node) in table {
            let path = &child("auth", key);
            match key.as_str() {
                "anonymous" => self.anonymous = exposure(src, node, path)?,
                "plain_without_tls" => self.plain_without_tls = exposure(src, node, path)?,
                "failure_delay_ms" => {
                    self.failure_delay_ms = src.integer(node, path, 0, u64::MAX)?
                }
                _ => {}
            }
        }
        Ok(())
    }
}

fn read_users(src: &Source, node: &Node) -> Result<Vec<User>, ConfigError> {
    let Value::Array(entries) = &node.value else {
        return Err(src.invalid(
            node,
            "users",
            format!("expected [[users]] tables, found {}", node.describe()),
        ));
    };
    let mut users: Vec<(User, &Node)> = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        let path = format!("users[{index}]");
        let table = src.table(
            entry,
            &path,
            &format!("[[users]] entry {}", index + 1),
            USER_KEYS,
        )?;
        let required = |key: &str| {
            get(table, key).ok_or_else(|| src.invalid(entry, &path, format!("missing key `{key}`")))
        };
        let name_node = required("name")?;
        let name = src.non_empty(name_node, &child(&path, "name"))?;
        let (password, password_hash) = match (get(table, "password"), get(table, "password_hash"))
        {
            (Some(p), None) => (src.string(p, &child(&path, "password"))?.to_owned(), None),
            (None, Some(h)) => {
                let hash_path = child(&path, "password_hash");
                let hash = src.string(h, &hash_path)?;
                password::check_hash(hash).map_err(|why| src.invalid(h, &hash_path, why))?;
                (String::new(), Some(hash.to_owned()))
            }
            (Some(_), Some(h)) => {
                return Err(src.invalid(
                    h,
                    &child(&path, "password_hash"),
                    "give `password` or `password_hash`, not both".to_owned(),
                ))
            }
            (None, None) => {
                return Err(src.invalid(
                    entry,
                    &path,
                    "missing key `password_hash` (or `password`)".to_owned(),
                ))
            }
        };
        let roles = match get(table, "roles") {
            Some(roles) => src.strings(roles, &child(&path, "roles"))?,
            None => Vec::new(),
        };
        if let Some((_, first)) = users.iter().find(|(u, _)| u.name == name) {
            let line = src.location(first.start()).line;
            let message = format!("duplicate user \"{name}\" (first defined on line {line})");
            return Err(src.invalid(name_node, &child(&path, "name"), message));
        }
        users.push((
            User {
                name,
                password,
                password_hash,
                roles,
            },
            name_node,
        ));
    }
    Ok(users.into_iter().map(|(u, _)| u).collect())
}

/// The account in `users` with this name and password. Every account is compared in full,
/// whatever matched, so the time taken does not tell which part was wrong.
pub fn find_user<'u>(users: &'u [User], user: &str, password: &str) -> Option<&'u User> {
    // Every name is compared in full (the time taken does not tell how much of one matched),
    // then the password of the one that matched; a hashed password costs the same whether the
    // name exists or not.
    let named = users.iter().fold(None, |found, u| {
        if bytes_equal(&u.name, user) {
            Some(u)
        } else {
            found
        }
    });
    let hashed = users.iter().any(|u| u.password_hash.is_some());
    match named {
        Some(u) => match &u.password_hash {
            Some(phc) => password::verify(phc, password),
            None => bytes_equal(&u.password, password),
        }
        .then_some(u),
        None => {
            if hashed {
                password::verify_nobody(password);
            }
            None
        }
    }
}

/// Whether checking a login may take long (a hashed password): the caller does it off the
/// async threads.
pub fn has_hashed_passwords(users: &[User]) -> bool {
    users.iter().any(|u| u.password_hash.is_some())
}

/// Compares without stopping at the first difference, so timing does not reveal a
/// matching prefix.
fn bytes_equal(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Which peers a setting applies to: `"never"`, `"loopback"` or `"everywhere"`.
fn exposure(src: &Source, node: &Node, path: &str) -> Result<Exposure, ConfigError> {
    match &node.value {
        Value::String(s) if s == "never" => Ok(Exposure::Never),
        Value::String(s) if s == "loopback" => Ok(Exposure::Loopback),
        Value::String(s) if s == "everywhere" => Ok(Exposure::Everywhere),
        _ => {
            let message = format!(
                r#"expected "never", "loopback" or "everywhere", found {}"#,
                node.describe()
            );
            Err(src.invalid(node, path, message))
        }
    }
}

#[cfg(test)]
mod tests;
