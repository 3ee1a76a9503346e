//! `[websocket]`: AMQP over WebSocket (the OASIS AMQP WebSocket binding), for browser clients
//! and the Azure SDKs' WebSocket transport: the listeners (`ws` and, with `[tls]`'s
//! certificate, `wss`), the path, and which web origins may connect.

use std::net::SocketAddr;

use super::document::{child, get, Node, Source};
use super::error::ConfigError;
use super::tls::{addresses, TlsConfig};

/// The keys of `[websocket]`.
pub(super) const WEBSOCKET_KEYS: &[&str] = &["listen", "tls_listen", "path", "origins"];

/// Where and how AMQP over WebSocket is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSocketConfig {
    /// Addresses for `ws://` (WebSocket over plain TCP).
    pub listen: Vec<SocketAddr>,
    /// Addresses for `wss://` (WebSocket inside TLS, with `[tls]`'s certificate).
    pub tls_listen: Vec<SocketAddr>,
    /// The request path the upgrade must name (`"/"` by default); others get 404.
    pub path: String,
    /// Web origins whose pages may connect (an exact `scheme://host[:port]`, or `"*"` for any).
    /// A request without an `Origin` header (a program, not a browser) is always served; one
    /// with an origin not listed is refused, so a page on another site cannot reach a broker
    /// that lets local processes in anonymously.
    pub origins: Vec<String>,
}

impl WebSocketConfig {
    /// Reads `[websocket]`. Without either listen key it serves `ws` on 0.0.0.0:5673;
    /// `tls_listen` needs `[tls]`.
    pub(super) fn read(
        src: &Source,
        table: &[(String, Node)],
        tls: Option<&TlsConfig>,
    ) -> Result<WebSocketConfig, ConfigError> {
        let listen_node = get(table, "listen");
        let tls_node = get(table, "tls_listen");
        let listen = match listen_node {
            Some(n) => addresses(src, n, "websocket.listen")?,
            None if tls_node.is_some() => Vec::new(),
            None => vec![SocketAddr::from(([0, 0, 0, 0], 5673))],
        };
        let tls_listen = match tls_node {
            Some(n) => addresses(src, n, "websocket.tls_listen")?,
            None => Vec::new(),
        };
        if let (Some(n), None) = (tls_node, tls) {
            if !tls_listen.is_empty() {
                let message =
                    "wss takes the certificate of [tls], which is not configured".to_owned();
                return Err(src.invalid(n, "websocket.tls_listen", message));
            }
        }
        let path = match get(table, "path") {
            None => "/".to_owned(),
            Some(n) => {
                let path = src.non_empty(n, &child("websocket", "path"))?;
                if !path.starts_with('/') || path.contains(['?', '#', ' ']) {
                    let message = format!(
                        "expected a request path such as \"/\" or \"/amqp\", found {path:?}"
                    );
                    return Err(src.invalid(n, "websocket.path", message));
                }
                path
            }
        };
        let origins = match get(table, "origins") {
            None => Vec::new(),
            Some(n) => {
                let origins = src.strings(n, "websocket.origins")?;
                if let Some(bad) = origins
                    .iter()
                    .find(|o| *o != "*" && !(o.starts_with("http://") || o.starts_with("https://")))
                {
                    let message = format!(
                        "expected \"*\" or origins such as \"https://app.example.com\", found {bad:?}"
                    );
                    return Err(src.invalid(n, "websocket.origins", message));
                }
                // Browsers send the origin without a trailing slash.
                origins
                    .into_iter()
                    .map(|o| o.trim_end_matches('/').to_owned())
                    .collect()
            }
        };
        Ok(WebSocketConfig {
            listen,
            tls_listen,
            path,
            origins,
        })
    }

    /// Whether a page from `origin` (the request's `Origin` header) may connect.
    pub fn allows_origin(&self, origin: &str) -> bool {
        self.origins
            .iter()
            .any(|o| o == "*" || o.eq_ignore_ascii_case(origin.trim_end_matches('/')))
    }
}
