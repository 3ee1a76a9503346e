//! What the transport needs of the configuration, and nothing more: its identity for refusals,
//! the handshake's caps and timeout, and who may log in how. The broker's queue rules, storage
//! and limits never reach the socket layer.

use std::time::Duration;

use crate::config::{find_user, Config, Exposure, User, WebSocketConfig};

/// The transport's settings, taken from the broker configuration.
#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// Our container-id, for the `open`/`close` of a refused connection.
    pub container_id: String,
    /// How long a socket has from accept to the peer's `open`.
    pub handshake_timeout: Duration,
    /// Connections past SASL at once (0: no cap).
    pub max_connections: u32,
    /// Sockets in the handshake at once (0: no cap).
    pub max_handshakes: u32,
    /// Sockets in the handshake at once from one source (0: no cap).
    pub max_handshakes_per_source: u32,
    /// Who may use SASL ANONYMOUS.
    pub anonymous: Exposure,
    /// Who may use SASL PLAIN over plain TCP.
    pub plain_without_tls: Exposure,
    /// How long a failed login waits before it is answered.
    pub failure_delay: Duration,
    /// The account an anonymous peer acts as (`auth.anonymous_user`), if any.
    pub anonymous_user: Option<String>,
    /// The accounts PLAIN logs in to.
    pub users: Vec<User>,
    /// Failed logins per source and per user name, shared with the admin API.
    pub throttle: std::sync::Arc<super::login_throttle::LoginThrottle>,
    /// AMQP over WebSocket: its path and the web origins let in.
    pub websocket: Option<WebSocketConfig>,
    /// The largest frame the broker accepts, which bounds a WebSocket message too.
    pub max_frame_size: u32,
}

impl From<&Config> for TransportConfig {
    fn from(c: &Config) -> Self {
        TransportConfig {
            container_id: c.container_id.clone(),
            handshake_timeout: Duration::from_millis(u64::from(c.handshake_timeout_ms)),
            max_connections: c.max_connections,
            max_handshakes: c.max_handshakes,
            max_handshakes_per_source: c.max_handshakes_per_source,
            anonymous: c.auth.anonymous,
            plain_without_tls: c.auth.plain_without_tls,
            failure_delay: Duration::from_millis(c.auth.failure_delay_ms),
            users: c.users.clone(),
            anonymous_user: c.auth.anonymous_user.clone(),
            throttle: std::sync::Arc::default(),
            websocket: c.websocket.clone(),
            max_frame_size: c.max_frame_size,
        }
    }
}

impl TransportConfig {
    /// Whether `user` and `password` name a configured account (compared in constant time
    /// over every account, as [`Config::authenticate`] does).
    pub fn authenticate(&self, user: &str, password: &str) -> bool {
        find_user(&self.users, user, password).is_some()
    }
}
