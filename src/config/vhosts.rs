//! `[vhosts."NAME"]`: virtual hosts, as RabbitMQ and Azure Service Bus have them. The
//! `hostname` of a client's `open` (`vhost:NAME`, or a host name a virtual host lists) picks
//! an isolated namespace of queues, exchanges and subscriptions; any other hostname, or none,
//! picks the default one (`/`), which is all there is when none is configured.
//!
//! Inside the broker a node of virtual host `NAME` is called `vhost:NAME/<its name>`; the
//! default host's nodes keep their plain names. So one router, one journal and one admin API
//! serve every virtual host, and a client in one cannot name another's nodes: `vhost:` is
//! reserved at the front of a name a client gives.

use super::document::{child, get, Node, Source, Value};
use super::error::ConfigError;

/// What begins an `open` hostname naming a virtual host, and the internal name of each of
/// its nodes.
pub const PREFIX: &str = "vhost:";
/// The default virtual host's name (RabbitMQ's).
pub const DEFAULT: &str = "/";

const VHOST_KEYS: &[&str] = &["hostnames"];

/// One configured virtual host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualHost {
    /// Its name: what `vhost:NAME` names, and what users' `vhosts` and permissions' `vhost`
    /// refer to.
    pub name: String,
    /// Host names (compared without regard to case) whose `open` selects it, as for clients
    /// that send the DNS name they connected to.
    pub hostnames: Vec<String>,
}

/// The configured virtual hosts (none: only the default one).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VirtualHosts {
    hosts: Vec<VirtualHost>,
}

impl VirtualHosts {
    /// The virtual host an `open` with this hostname selects: `None` for the default one.
    /// A `vhost:NAME` that names none is an error, for the peer: it asked for a namespace
    /// that is not here, and must not be given the default one instead.
    pub fn select(&self, hostname: Option<&str>) -> Result<Option<&str>, String> {
        let Some(hostname) = hostname else {
            return Ok(None);
        };
        if let Some(name) = hostname.strip_prefix(PREFIX) {
            if name == DEFAULT {
                return Ok(None);
            }
            return match self.hosts.iter().find(|h| h.name == name) {
                Some(h) => Ok(Some(&h.name)),
                // {:?}: the names are the peer's, and Debug escapes what could forge a log line.
                None => Err(format!(
                    "no virtual host {name:?} (open hostname {hostname:?})"
                )),
            };
        }
        Ok(self
            .hosts
            .iter()
            .find(|h| h.hostnames.iter().any(|n| n.eq_ignore_ascii_case(hostname)))
            .map(|h| h.name.as_str()))
    }

    /// Whether a virtual host of this name is configured (the default one always is).
    pub fn contains(&self, name: &str) -> bool {
        name == DEFAULT || self.hosts.iter().any(|h| h.name == name)
    }

    /// The configured virtual hosts, in the file's order.
    pub fn iter(&self) -> impl Iterator<Item = &VirtualHost> {
        self.hosts.iter()
    }

    /// Reads `[vhosts."NAME"]`.
    pub(super) fn read(src: &Source, node: &Node) -> Result<VirtualHosts, ConfigError> {
        let Value::Table(entries) = &node.value else {
            let message = format!("expected [vhosts.NAME] tables, found {}", node.describe());
            return Err(src.invalid(node, "vhosts", message));
        };
        let mut hosts: Vec<VirtualHost> = Vec::new();
        for (name, entry) in entries {
            let path = child("vhosts", name);
            let table = src.table(entry, &path, &format!("[vhosts.\"{name}\"]"), VHOST_KEYS)?;
            if name.is_empty() || name == DEFAULT || name.contains(['/', ' ']) {
                let message = format!(
                    "a virtual host's name is a non-empty word without '/' or spaces (the \
                     default one, \"/\", needs no table), found {name:?}"
                );
                return Err(src.invalid(entry, &path, message));
            }
            let hostnames = match get(table, "hostnames") {
                Some(n) => {
                    let key = child(&path, "hostnames");
                    let names = src.strings(n, &key)?;
                    if let Some(bad) = names.iter().find(|h| h.is_empty() || h.starts_with(PREFIX))
                    {
                        let message = format!(
                            "expected host names such as \"tenant.example.com\" (vhost:NAME \
                             always selects the host NAME), found {bad:?}"
                        );
                        return Err(src.invalid(n, &key, message));
                    }
                    if let Some((other, same)) = hosts.iter().find_map(|h| {
                        h.hostnames
                            .iter()
                            .find(|o| names.iter().any(|n| n.eq_ignore_ascii_case(o)))
                            .map(|o| (&h.name, o))
                    }) {
                        let message =
                            format!("host name {same:?} already selects virtual host {other:?}");
                        return Err(src.invalid(n, &key, message));
                    }
                    names
                }
                None => Vec::new(),
            };
            hosts.push(VirtualHost {
                name: name.clone(),
                hostnames,
            });
        }
        Ok(VirtualHosts { hosts })
    }
}

/// The broker's name for the node a client of virtual host `vhost` (`None`: the default one)
/// calls `name`.
pub fn qualify(vhost: Option<&str>, name: &str) -> String {
    match vhost {
        Some(vhost) => format!("{PREFIX}{vhost}/{name}"),
        None => name.to_owned(),
    }
}

/// A node's virtual host (`None`: the default one) and its name there.
pub fn split(node: &str) -> (Option<&str>, &str) {
    node.strip_prefix(PREFIX)
        .and_then(|rest| rest.split_once('/'))
        .map_or((None, node), |(vhost, name)| (Some(vhost), name))
}

/// Whether a client may give this name: `vhost:` at its front is the broker's.
pub fn reserved(name: &str) -> bool {
    name.starts_with(PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_qualify_and_split() {
        assert_eq!(qualify(None, "orders"), "orders");
        assert_eq!(qualify(Some("a"), "orders"), "vhost:a/orders");
        assert_eq!(split("vhost:a/orders"), (Some("a"), "orders"));
        assert_eq!(split("vhost:a/x/y"), (Some("a"), "x/y"));
        assert_eq!(split("orders"), (None, "orders"));
        assert_eq!(split("vhost:nothing"), (None, "vhost:nothing"));
        assert!(reserved("vhost:a/orders") && !reserved("orders"));
    }

    #[test]
    fn the_hostname_selects_a_virtual_host() {
        let hosts = VirtualHosts {
            hosts: vec![VirtualHost {
                name: "a".into(),
                hostnames: vec!["A.example.com".into()],
            }],
        };
        assert_eq!(hosts.select(None), Ok(None));
        assert_eq!(hosts.select(Some("localhost")), Ok(None));
        assert_eq!(hosts.select(Some("vhost:/")), Ok(None));
        assert_eq!(hosts.select(Some("vhost:a")), Ok(Some("a")));
        assert_eq!(hosts.select(Some("a.EXAMPLE.com")), Ok(Some("a")));
        let err = hosts.select(Some("vhost:b")).unwrap_err();
        assert!(err.contains("no virtual host \"b\""), "{err}");
        assert!(hosts.contains("/") && hosts.contains("a") && !hosts.contains("b"));
    }
}
