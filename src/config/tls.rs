//! `[tls]`: the TLS listener's addresses, certificate and key, and whether clients must show
//! a certificate of their own (for SASL EXTERNAL). The files are read when the broker starts
//! and again on reload; here only their names are checked.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::document::{child, get, Node, Source, Value};
use super::error::ConfigError;

/// The keys of `[tls]`.
pub(super) const TLS_KEYS: &[&str] = &["listen", "cert", "key", "client_ca", "client_auth"];

/// TLS for AMQP (`amqps`), the TLS upgrade on the plain port, and the admin API's HTTPS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// Addresses to accept TLS connections on; may be empty (then TLS is reached only by the
    /// AMQP TLS header on a plain listener).
    pub listen: Vec<SocketAddr>,
    /// The server's certificate chain, PEM (leaf first).
    pub cert: PathBuf,
    /// The server's private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// CA certificates (PEM) that client certificates must chain to.
    pub client_ca: Option<PathBuf>,
    /// Whether a client must show a certificate.
    pub client_auth: ClientAuth,
}

/// Whether clients are asked for a certificate (`[tls] client_auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// Not asked.
    None,
    /// Asked; a client without one still connects (and logs in another way).
    Optional,
    /// A client without a certificate that chains to `client_ca` is refused.
    Required,
}

impl TlsConfig {
    /// Reads `[tls]`: `cert` and `key` are required; `client_ca` defaults `client_auth` to
    /// `"optional"`, and `"optional"`/`"required"` need a `client_ca`.
    pub(super) fn read(
        src: &Source,
        node: &Node,
        table: &[(String, Node)],
    ) -> Result<TlsConfig, ConfigError> {
        let path_of = |key: &str| -> Result<Option<PathBuf>, ConfigError> {
            get(table, key)
                .map(|n| src.non_empty(n, &child("tls", key)).map(PathBuf::from))
                .transpose()
        };
        let missing = |key: &str| src.invalid(node, "tls", format!("missing key `{key}`"));
        let listen = match get(table, "listen") {
            Some(n) => addresses(src, n, "tls.listen")?,
            None => vec![SocketAddr::from(([0, 0, 0, 0], 5671))],
        };
        let cert = path_of("cert")?.ok_or_else(|| missing("cert"))?;
        let key = path_of("key")?.ok_or_else(|| missing("key"))?;
        let client_ca = path_of("client_ca")?;
        let client_auth = match get(table, "client_auth") {
            None if client_ca.is_some() => ClientAuth::Optional,
            None => ClientAuth::None,
            Some(n) => {
                let path = "tls.client_auth";
                let mode = match &n.value {
                    Value::String(s) if s == "none" => ClientAuth::None,
                    Value::String(s) if s == "optional" => ClientAuth::Optional,
                    Value::String(s) if s == "required" => ClientAuth::Required,
                    _ => {
                        let message = format!(
                            r#"expected "none", "optional" or "required", found {}"#,
                            n.describe()
                        );
                        return Err(src.invalid(n, path, message));
                    }
                };
                if mode != ClientAuth::None && client_ca.is_none() {
                    let message = "client certificates need `client_ca`, the CA they must chain to"
                        .to_owned();
                    return Err(src.invalid(n, path, message));
                }
                mode
            }
        };
        Ok(TlsConfig {
            listen,
            cert,
            key,
            client_ca,
            client_auth,
        })
    }
}

/// A list of listen addresses that may be empty (`broker.listen = []` turns the plain
/// listener off; `tls.listen = []` leaves only the upgrade on the plain port).
pub(super) fn addresses(
    src: &Source,
    node: &Node,
    path: &str,
) -> Result<Vec<SocketAddr>, ConfigError> {
    match &node.value {
        Value::Array(items) if items.is_empty() => Ok(Vec::new()),
        _ => src.listen(node, path),
    }
}
