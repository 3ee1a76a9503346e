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
mod tls;
mod users;
pub mod vhosts;
mod websocket;

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
use tls::TLS_KEYS;
pub use tls::{ClientAuth, TlsConfig};
pub use users::{
    allowed, find_user, has_hashed_passwords, scram_keys_for, scram_offered, user_for_certificate,
    Action, Permission, Permissions, User,
};
pub use vhosts::VirtualHosts;
pub use websocket::WebSocketConfig;
use websocket::WEBSOCKET_KEYS;

/// The whole broker configuration, after validation: every value is in range and
/// every name is well formed, so the broker can use it without further checks.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Addresses to accept AMQP connections on (IP literals, not host names); empty when only
    /// TLS is served.
    pub listen: Vec<SocketAddr>,
    /// TLS (`[tls]`), if configured.
    pub tls: Option<TlsConfig>,
    /// AMQP over WebSocket (`[websocket]`), if configured.
    pub websocket: Option<WebSocketConfig>,
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
    /// Virtual hosts besides the default one (`[vhosts."NAME"]`).
    pub vhosts: VirtualHosts,
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
    /// Serve HTTPS with this certificate chain and key (PEM), rather than plain HTTP:
    /// `[admin] tls = true` takes `[tls]`'s, `cert` and `key` give its own.
    pub https: Option<(PathBuf, PathBuf)>,
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
    /// The `[[users]]` account whose permissions and caps an anonymous peer has (`None`: an
    /// anonymous peer may do everything, as before permissions existed).
    pub anonymous_user: Option<String>,
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

impl Default for Config {
    /// The configuration `sluice` runs with when given no file; equal to parsing an empty file.
    fn default() -> Config {
        Config {
            listen: vec![SocketAddr::from(([0, 0, 0, 0], 5672))],
            tls: None,
            websocket: None,
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
                anonymous_user: None,
            },
            users: Vec::new(),
            vhosts: VirtualHosts::default(),
            queues: QueueRules::default(),
            admin: AdminConfig {
                enabled: true,
                listen: SocketAddr::from(([127, 0, 0, 1], 8672)),
                hosts: Vec::new(),
                https: None,
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
    "tls",
    "roles",
    "websocket",
    "vhosts",
];
const ADMIN_KEYS: &[&str] = &["enabled", "listen", "hosts", "tls", "cert", "key"];
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
const AUTH_KEYS: &[&str] = &[
    "anonymous",
    "plain_without_tls",
    "failure_delay_ms",
    "anonymous_user",
];

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
        let root_node = &root;
        let root = src.table(root_node, "", "the top level", ROOT_KEYS)?;
        if let Some(node) = get(root, "broker") {
            config.read_broker(&src, src.table(node, "broker", "[broker]", BROKER_KEYS)?)?;
        }
        if let Some(node) = get(root, "tls") {
            let table = src.table(node, "tls", "[tls]", TLS_KEYS)?;
            config.tls = Some(TlsConfig::read(&src, node, table)?);
        }
        if let Some(node) = get(root, "websocket") {
            let table = src.table(node, "websocket", "[websocket]", WEBSOCKET_KEYS)?;
            config.websocket = Some(WebSocketConfig::read(&src, table, config.tls.as_ref())?);
        }
        if config.listen.is_empty()
            && config.tls.as_ref().is_none_or(|t| t.listen.is_empty())
            && config
                .websocket
                .as_ref()
                .is_none_or(|w| w.listen.is_empty() && w.tls_listen.is_empty())
        {
            let node = get(root, "broker")
                .and_then(|b| match &b.value {
                    Value::Table(table) => get(table, "listen"),
                    _ => None,
                })
                .unwrap_or(root_node);
            let message =
                "no listener: broker.listen is empty and neither [tls] nor [websocket] listens"
                    .to_owned();
            return Err(src.invalid(node, "broker.listen", message));
        }
        if let Some(node) = get(root, "auth") {
            config
                .auth
                .read(&src, src.table(node, "auth", "[auth]", AUTH_KEYS)?)?;
        }
        if let Some(node) = get(root, "vhosts") {
            config.vhosts = VirtualHosts::read(&src, node)?;
        }
        if let Some(node) = get(root, "users") {
            let roles = match get(root, "roles") {
                Some(node) => users::read_roles(&src, node, &config.vhosts)?,
                None => Default::default(),
            };
            config.users = users::read_users(&src, node, &roles, &config.vhosts)?;
        }
        // With users configured, a login is expected: anonymous access is off unless the file
        // asks for it (issue 16; before, loopback stayed open).
        // Naming the account anonymous peers act as asks for anonymous access too.
        let auth_table = get(root, "auth")
            .and_then(|node| src.table(node, "auth", "[auth]", AUTH_KEYS).ok())
            .unwrap_or_default();
        let anonymous_set =
            get(auth_table, "anonymous").is_some() || get(auth_table, "anonymous_user").is_some();
        if !config.users.is_empty() && !anonymous_set {
            config.auth.anonymous = Exposure::Never;
        }
        if let (Some(name), Some(node)) = (
            &config.auth.anonymous_user,
            get(auth_table, "anonymous_user"),
        ) {
            if !config.users.iter().any(|u| &u.name == name) {
                let message = format!("no [[users]] entry is called \"{name}\"");
                return Err(src.invalid(node, "auth.anonymous_user", message));
            }
        }
        if let Some(node) = get(root, "queues") {
            config.queues = QueueRules::read(&src, node)?;
        }
        if let Some(node) = get(root, "admin") {
            config.admin.read(
                &src,
                src.table(node, "admin", "[admin]", ADMIN_KEYS)?,
                config.tls.as_ref(),
            )?;
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
                "listen" => self.listen = tls::addresses(src, node, path)?,
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
    fn read(
        &mut self,
        src: &Source,
        table: &[(String, Node)],
        tls: Option<&TlsConfig>,
    ) -> Result<(), ConfigError> {
        let mut shared_tls = None;
        for (key, node) in table {
            let path = &child("admin", key);
            match key.as_str() {
                "enabled" => self.enabled = src.boolean(node, path)?,
                "listen" => self.listen = src.one_address(node, path)?,
                "hosts" => self.hosts = src.strings(node, path)?,
                "tls" => shared_tls = Some((src.boolean(node, path)?, node)),
                _ => {}
            }
        }
        let file =
            |node: &Node, key: &str| src.non_empty(node, &child("admin", key)).map(PathBuf::from);
        match (get(table, "cert"), get(table, "key")) {
            (Some(cert), Some(key)) => self.https = Some((file(cert, "cert")?, file(key, "key")?)),
            (None, None) => {}
            (Some(node), None) => {
                let message = "HTTPS needs `key` beside `cert`".to_owned();
                return Err(src.invalid(node, "admin.cert", message));
            }
            (None, Some(node)) => {
                let message = "HTTPS needs `cert` beside `key`".to_owned();
                return Err(src.invalid(node, "admin.key", message));
            }
        }
        if let Some((true, node)) = shared_tls {
            if self.https.is_none() {
                let Some(tls) = tls else {
                    let message = "`tls = true` takes the certificate of [tls], which is not \
                                   configured; configure [tls] or give `cert` and `key` here"
                        .to_owned();
                    return Err(src.invalid(node, "admin.tls", message));
                };
                self.https = Some((tls.cert.clone(), tls.key.clone()));
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
                "anonymous_user" => self.anonymous_user = Some(src.non_empty(node, path)?),
                _ => {}
            }
        }
        Ok(())
    }
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
