//! Reading what a peer asks for in a source or target beyond its address: its capabilities,
//! the lifetime of a dynamic node it wants created, and the queue settings it declares.
//! Pure functions of the terminus, so they are tested without a connection.

use fe2o3_amqp_types::definitions::Fields;
use fe2o3_amqp_types::primitives::{Array, Symbol};
use serde_amqp::descriptor::Descriptor;
use serde_amqp::Value;

use crate::broker::Lifetime;
use crate::config::QueueSettings;

/// The capabilities of a terminus, as strings.
pub(super) fn capabilities(caps: Option<&Array<Symbol>>) -> Vec<&str> {
    caps.map_or_else(Vec::new, |a| a.0.iter().map(|s| s.as_str()).collect())
}

/// The `lifetime-policy` of `dynamic-node-properties` (AMQP 1.0 §3.5.10), by symbolic or
/// numeric descriptor; `delete-on-close` when absent or not one of the four.
pub(super) fn lifetime_policy(properties: Option<&Fields>) -> Lifetime {
    let Some(Value::Described(policy)) = properties.and_then(|p| p.get("lifetime-policy")) else {
        return Lifetime::Close;
    };
    match &policy.descriptor {
        Descriptor::Code(0x2c) => Lifetime::NoLinks,
        Descriptor::Code(0x2d) => Lifetime::NoMessages,
        Descriptor::Code(0x2e) => Lifetime::NoLinksOrMessages,
        Descriptor::Name(name) => match name.as_str() {
            "amqp:delete-on-no-links:list" => Lifetime::NoLinks,
            "amqp:delete-on-no-messages:list" => Lifetime::NoMessages,
            "amqp:delete-on-no-links-or-messages:list" => Lifetime::NoLinksOrMessages,
            _ => Lifetime::Close,
        },
        _ => Lifetime::Close,
    }
}

/// Queue properties as RabbitMQ's and Qpid's clients spell them, and the per-queue key each
/// sets (`x-single-active-consumer` is read apart: it sets `exclusive = "standby"`).
const PROPERTY_KEYS: &[(&str, &str)] = &[
    // Qpid's node properties (its NodeProperties reader) and AMQP 0-9-1's declare flags.
    ("auto-delete", "auto_delete"),
    ("durable", "durable"),
    ("exclusive", "exclusive"),
    ("qpid.max_count", "max_length"),
    ("qpid.max_size", "max_length_bytes"),
    ("qpid.priorities", "max_priority"),
    // RabbitMQ's queue arguments.
    ("x-max-length", "max_length"),
    ("x-max-length-bytes", "max_length_bytes"),
    ("x-overflow", "overflow"),
    ("x-max-priority", "max_priority"),
    // For the messages that carry no ttl of their own.
    ("x-message-ttl", "default_ttl"),
];

/// The per-queue settings a source's or target's node properties (its
/// `dynamic-node-properties`, which proton and Qpid clients fill in for a node they want
/// created, dynamic or not) declare, as `(key, value)` in broker.toml's spelling: the
/// properties above, and any per-queue key in broker.toml's snake_case or Artemis's
/// kebab-case. Other properties (`lifetime-policy`, `supported-dist-modes`, unknown ones) are
/// not settings and are passed over; a setting whose value is not a boolean, number or
/// string is an error naming it.
pub(super) fn node_properties(
    properties: Option<&Fields>,
) -> Result<Vec<(String, String)>, String> {
    let mut settings = Vec::new();
    for (name, value) in properties.into_iter().flatten() {
        let name = name.as_str();
        let snake = name.replace('-', "_");
        let key = match PROPERTY_KEYS.iter().find(|(n, _)| *n == name) {
            Some((_, key)) => *key,
            None if name == "x-single-active-consumer" => "exclusive",
            None => match QueueSettings::KEYS.iter().find(|k| **k == snake) {
                Some(key) => *key,
                None => continue,
            },
        };
        let text = match value {
            Value::Bool(true) if name == "x-single-active-consumer" => "standby".to_owned(),
            Value::Bool(b) => b.to_string(),
            Value::Ubyte(n) => n.to_string(),
            Value::Ushort(n) => n.to_string(),
            Value::Uint(n) => n.to_string(),
            Value::Ulong(n) => n.to_string(),
            Value::Byte(n) => n.to_string(),
            Value::Short(n) => n.to_string(),
            Value::Int(n) => n.to_string(),
            Value::Long(n) => n.to_string(),
            Value::String(s) => s.clone(),
            Value::Symbol(s) => s.as_str().to_owned(),
            other => {
                return Err(format!(
                    "node property '{name}': expected a boolean, an integer or a string, found {other:?}"
                ))
            }
        };
        if settings.iter().any(|(k, _)| k == key) {
            return Err(format!(
                "node property '{name}' sets '{key}', which another property already sets"
            ));
        }
        settings.push((key.to_owned(), text));
    }
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fe2o3_amqp_types::messaging::{
        DeleteOnClose, DeleteOnNoLinks, DeleteOnNoLinksOrMessages, LifetimePolicy,
    };
    use fe2o3_amqp_types::primitives::Symbol;
    use serde_amqp::described::Described;

    fn props(policy: impl Into<LifetimePolicy>) -> Fields {
        let mut f = Fields::new();
        f.insert(Symbol::from("lifetime-policy"), Value::from(policy.into()));
        f
    }

    #[test]
    fn every_policy_is_read_by_code_and_by_name() {
        assert_eq!(lifetime_policy(None), Lifetime::Close);
        assert_eq!(
            lifetime_policy(Some(&props(DeleteOnClose {}))),
            Lifetime::Close
        );
        assert_eq!(
            lifetime_policy(Some(&props(DeleteOnNoLinks {}))),
            Lifetime::NoLinks
        );
        assert_eq!(
            lifetime_policy(Some(&props(DeleteOnNoLinksOrMessages {}))),
            Lifetime::NoLinksOrMessages
        );
        let mut by_name = Fields::new();
        by_name.insert(
            Symbol::from("lifetime-policy"),
            Value::Described(Box::new(Described {
                descriptor: Descriptor::Name(Symbol::from("amqp:delete-on-no-messages:list")),
                value: Value::List(vec![]),
            })),
        );
        assert_eq!(lifetime_policy(Some(&by_name)), Lifetime::NoMessages);
    }

    fn fields(pairs: Vec<(&str, Value)>) -> Fields {
        let mut f = Fields::new();
        for (k, v) in pairs {
            f.insert(Symbol::from(k), v);
        }
        f
    }

    #[test]
    fn node_properties_map_to_queue_settings() {
        assert_eq!(node_properties(None), Ok(vec![]));
        let declared = node_properties(Some(&fields(vec![
            ("exclusive", Value::Bool(true)),
            ("auto-delete", Value::Bool(false)),
            ("x-max-length", Value::Long(10)),
            ("qpid.max_size", Value::Uint(4096)),
            ("x-overflow", Value::String("drop-head".into())),
            ("group-buckets", Value::Int(16)),
            ("max_priority", Value::Ubyte(5)),
            // Not settings: passed over.
            (
                "lifetime-policy",
                Value::from(LifetimePolicy::from(DeleteOnClose {})),
            ),
            ("supported-dist-modes", Value::Symbol("move".into())),
            ("x-something-else", Value::Bool(true)),
        ])))
        .unwrap();
        let expected = [
            ("exclusive", "true"),
            ("auto_delete", "false"),
            ("max_length", "10"),
            ("max_length_bytes", "4096"),
            ("overflow", "drop-head"),
            ("group_buckets", "16"),
            ("max_priority", "5"),
        ];
        assert_eq!(
            declared,
            expected
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>()
        );
        let sac = node_properties(Some(&fields(vec![(
            "x-single-active-consumer",
            Value::Bool(true),
        )])));
        assert_eq!(sac, Ok(vec![("exclusive".into(), "standby".into())]));
    }

    #[test]
    fn node_properties_that_cannot_be_settings_are_errors() {
        let err = node_properties(Some(&fields(vec![(
            "x-max-length",
            Value::Double(1.5.into()),
        )])))
        .unwrap_err();
        assert!(err.contains("'x-max-length'"), "{err}");
        let err = node_properties(Some(&fields(vec![
            ("x-max-length", Value::Long(1)),
            ("qpid.max_count", Value::Long(2)),
        ])))
        .unwrap_err();
        assert!(err.contains("max_length"), "{err}");
    }
}
