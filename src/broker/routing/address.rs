//! What an address names, as the clients users have write them:
//!
//! - `queue://NAME`, `topic://NAME` (Qpid JMS, Artemis prefixes);
//! - RabbitMQ 4's v2 addresses `/queues/NAME`, `/exchanges/NAME`, `/exchanges/NAME/KEY`, with
//!   the name and key percent-encoded;
//! - a plain name, whose kind the terminus capabilities `queue`/`temporary-queue` or
//!   `topic`/`temporary-topic` may state; without one it is whatever exists by that name (a
//!   queue first, then an exchange), else a new queue;
//! - any of these but the v2 ones followed by `?key=value&…` (Artemis's address parameters,
//!   seed `artemis-message-grouping.txt`): per-queue settings for the queue when it is
//!   created, in Artemis's kebab-case or broker.toml's snake_case; an existing queue must
//!   agree with them.

/// The kind of node an address asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Whatever exists by that name, else a queue.
    Any,
    /// A queue.
    Queue,
    /// A topic: a topic exchange, created on first use; a receiver gets a subscription.
    Topic,
    /// An existing exchange.
    Exchange,
}

/// An address read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// The node's name.
    pub name: String,
    /// What kind of node it must be.
    pub kind: Kind,
    /// The routing key an `/exchanges/NAME/KEY` address fixes.
    pub key: Option<String>,
    /// Per-queue settings from `?key=value&…`, keys in broker.toml's spelling.
    pub params: Params,
}

impl Address {
    /// The parameters as the body of a broker.toml `[queues."NAME"]` table, for the
    /// configuration's own reader to check.
    pub fn params_as_toml(&self) -> String {
        let mut text = String::new();
        for (key, value) in &self.params {
            let literal = if value.parse::<i64>().is_ok() || value == "true" || value == "false" {
                value.clone()
            } else {
                format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
            };
            text.push_str(&format!("{key} = {literal}\n"));
        }
        text
    }
}

/// Parameters as (key in snake_case, value).
type Params = Vec<(String, String)>;

/// `NAME?k=v&k2=v2` split into the name and its parameters.
fn split_params(text: &str) -> Result<(&str, Params), String> {
    let Some((name, query)) = text.split_once('?') else {
        return Ok((text, Vec::new()));
    };
    let mut params = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, "true"));
        let key = percent_decode(key)?.replace('-', "_");
        if key.is_empty() {
            return Err(format!("'{text}': a parameter without a name"));
        }
        params.push((key, percent_decode(value)?));
    }
    Ok((name, params))
}

/// Reads `address` in the light of the terminus `capabilities`.
pub fn parse(address: &str, capabilities: &[&str]) -> Result<Address, String> {
    let plain = |name: &str, kind| Address {
        name: name.to_owned(),
        kind,
        key: None,
        params: Vec::new(),
    };
    let with_params = |text: &str, kind| -> Result<Address, String> {
        let (name, params) = split_params(text)?;
        Ok(Address {
            params,
            ..plain(name, kind)
        })
    };
    if let Some(name) = address.strip_prefix("queue://") {
        return with_params(name, Kind::Queue);
    }
    if let Some(name) = address.strip_prefix("topic://") {
        return with_params(name, Kind::Topic);
    }
    if let Some(rest) = address.strip_prefix("/queues/") {
        if rest.contains('/') {
            return Err(format!(
                "'{address}': a queue name in a v2 address is percent-encoded, so it has no '/'"
            ));
        }
        return Ok(plain(&percent_decode(rest)?, Kind::Queue));
    }
    if let Some(rest) = address.strip_prefix("/exchanges/") {
        let (name, key) = match rest.split_once('/') {
            Some((name, key)) => (name, Some(percent_decode(key)?)),
            None => (rest, None),
        };
        let name = percent_decode(name)?;
        if name.is_empty() || name == "amq.default" {
            return Err(format!(
                "'{address}': the default exchange cannot be addressed; use /queues/NAME"
            ));
        }
        return Ok(Address {
            name,
            kind: Kind::Exchange,
            key,
            params: Vec::new(),
        });
    }
    let kind = if capabilities
        .iter()
        .any(|c| matches!(*c, "topic" | "temporary-topic"))
    {
        Kind::Topic
    } else if capabilities
        .iter()
        .any(|c| matches!(*c, "queue" | "temporary-queue"))
    {
        Kind::Queue
    } else {
        Kind::Any
    };
    with_params(address, kind)
}

/// `%XX` escapes decoded; the result must be UTF-8.
fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("'{text}' has a '%' not followed by two hex digits"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("'{text}' decodes to bytes that are not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind_of(address: &str, caps: &[&str]) -> (String, Kind, Option<String>) {
        let a = parse(address, caps).unwrap();
        (a.name, a.kind, a.key)
    }

    #[test]
    fn prefixes_v2_addresses_and_capabilities() {
        assert_eq!(kind_of("orders", &[]), ("orders".into(), Kind::Any, None));
        assert_eq!(kind_of("orders", &["queue"]).1, Kind::Queue);
        assert_eq!(kind_of("news", &["topic"]).1, Kind::Topic);
        assert_eq!(
            kind_of("topic://news", &[]),
            ("news".into(), Kind::Topic, None)
        );
        assert_eq!(
            kind_of("queue://a.b", &["topic"]).1,
            Kind::Queue,
            "the prefix wins"
        );
        assert_eq!(
            kind_of("/queues/a%2Fb", &[]),
            ("a/b".into(), Kind::Queue, None)
        );
        assert_eq!(
            kind_of("/exchanges/amq.topic/log.%23", &[]),
            ("amq.topic".into(), Kind::Exchange, Some("log.#".into()))
        );
        assert_eq!(kind_of("/exchanges/logs", &[]).2, None);
    }

    #[test]
    fn parameters_configure_the_queue_in_either_spelling() {
        let a = parse(
            "my.destination.name?group-first-key=JMSXGroupFirstForConsumer&group-buckets=1024&group_rebalance",
            &[],
        )
        .unwrap();
        assert_eq!(a.name, "my.destination.name");
        assert_eq!(
            a.params_as_toml(),
            "group_first_key = \"JMSXGroupFirstForConsumer\"\ngroup_buckets = 1024\ngroup_rebalance = true\n"
        );
        assert_eq!(
            parse("queue://q?durable=false", &[]).unwrap().params.len(),
            1
        );
        assert!(parse("q?=1", &[]).unwrap_err().contains("without a name"));
    }

    #[test]
    fn bad_v2_addresses_say_why() {
        assert!(parse("/queues/a/b", &[])
            .unwrap_err()
            .contains("percent-encoded"));
        assert!(parse("/queues/a%zz", &[])
            .unwrap_err()
            .contains("two hex digits"));
        assert!(parse("/exchanges/amq.default/q", &[])
            .unwrap_err()
            .contains("default exchange"));
        assert!(parse("/queues/%ff", &[]).unwrap_err().contains("UTF-8"));
    }
}
