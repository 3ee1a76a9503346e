//! Reading what a peer asks for in a source or target beyond its address: its capabilities,
//! the properties of a dynamic node it wants created, and the binding its filter asks for.
//! Pure functions of the terminus, so they are tested without a connection.

use fe2o3_amqp_types::definitions::Fields;
use fe2o3_amqp_types::messaging::FilterSet;
use fe2o3_amqp_types::primitives::{Array, Symbol};
use serde_amqp::descriptor::Descriptor;
use serde_amqp::Value;

use crate::broker::routing::exchange::{HeaderValue, HeadersMatch, Matcher};
use crate::broker::Lifetime;
use crate::config::QueueSettings;

/// The capabilities of a terminus, as strings.
pub(super) fn capabilities(caps: Option<&Array<Symbol>>) -> Vec<&str> {
    caps.map_or_else(Vec::new, |a| a.0.iter().map(|s| s.as_str()).collect())
}

/// The legacy binding filters (WIRE.md §3), by symbolic name and numeric code.
const DIRECT_BINDING: (&str, u64) = (
    "apache.org:legacy-amqp-direct-binding:string",
    0x0000_468C_0000_0000,
);
const TOPIC_BINDING: (&str, u64) = (
    "apache.org:legacy-amqp-topic-binding:string",
    0x0000_468C_0000_0001,
);
const HEADERS_BINDING: (&str, u64) = (
    "apache.org:legacy-amqp-headers-binding:map",
    0x0000_468C_0000_0002,
);

fn is(descriptor: &Descriptor, (name, code): (&str, u64)) -> bool {
    match descriptor {
        Descriptor::Name(n) => n.as_str() == name,
        Descriptor::Code(c) => *c == code,
    }
}

/// The binding a receiver's filter set asks for: `Ok(None)` without filters, the key of a
/// legacy direct or topic binding filter, the values of a headers binding filter. A filter of
/// any other kind is not supported yet, and says so (the caller refuses the link).
pub(super) fn binding_filter(filters: Option<&FilterSet>) -> Result<Option<Matcher>, String> {
    let Some(filters) = filters.filter(|f| !f.is_empty()) else {
        return Ok(None);
    };
    let mut found = None;
    for (key, value) in filters.iter() {
        let described = match value {
            Value::Described(d) => d,
            Value::Null => continue,
            _ => {
                return Err(format!(
                    "filter '{}' is not a described value",
                    key.as_str()
                ))
            }
        };
        let matcher = if is(&described.descriptor, DIRECT_BINDING)
            || is(&described.descriptor, TOPIC_BINDING)
        {
            match &described.value {
                Value::String(k) => Matcher::Key(k.clone()),
                Value::Symbol(k) => Matcher::Key(k.as_str().to_owned()),
                _ => {
                    return Err(format!(
                        "binding filter '{}' must carry a string",
                        key.as_str()
                    ))
                }
            }
        } else if is(&described.descriptor, HEADERS_BINDING) {
            headers_binding(&described.value)
                .map_err(|why| format!("headers binding filter '{}': {why}", key.as_str()))?
        } else {
            let name = match &described.descriptor {
                Descriptor::Name(n) => n.as_str().to_owned(),
                Descriptor::Code(c) => format!("0x{c:016x}"),
            };
            return Err(format!(
                "source filter '{}' ({name}) is not supported yet: only the legacy binding filters are",
                key.as_str()
            ));
        };
        if found.replace(matcher).is_some() {
            return Err("more than one binding filter on one link".to_owned());
        }
    }
    Ok(found)
}

fn headers_binding(value: &Value) -> Result<Matcher, String> {
    let Value::Map(map) = value else {
        return Err("it must carry a map".to_owned());
    };
    let mut any = false;
    let mut values = Vec::new();
    for (k, v) in map.iter() {
        let name = match k {
            Value::String(s) => s.as_str(),
            Value::Symbol(s) => s.as_str(),
            _ => return Err("its keys must be strings".to_owned()),
        };
        if name == "x-match" {
            any = match v {
                Value::String(s) if s == "any" => true,
                Value::String(s) if s == "all" => false,
                _ => return Err("x-match must be \"all\" or \"any\"".to_owned()),
            };
            continue;
        }
        let value = match v {
            Value::String(s) => HeaderValue::Str(s.clone()),
            Value::Symbol(s) => HeaderValue::Str(s.as_str().to_owned()),
            Value::Bool(b) => HeaderValue::Bool(*b),
            Value::Byte(n) => HeaderValue::Int(i64::from(*n)),
            Value::Short(n) => HeaderValue::Int(i64::from(*n)),
            Value::Int(n) => HeaderValue::Int(i64::from(*n)),
            Value::Long(n) => HeaderValue::Int(*n),
            Value::Ubyte(n) => HeaderValue::Int(i64::from(*n)),
            Value::Ushort(n) => HeaderValue::Int(i64::from(*n)),
            Value::Uint(n) => HeaderValue::Int(i64::from(*n)),
            _ => {
                return Err(format!(
                    "the value of '{name}' must be a string, boolean or integer"
                ))
            }
        };
        values.push((name.to_owned(), value));
    }
    Ok(Matcher::Headers(HeadersMatch { any, values }))
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

    fn described(name: &str, value: Value) -> Value {
        Value::Described(Box::new(Described {
            descriptor: Descriptor::Name(Symbol::from(name)),
            value,
        }))
    }

    #[test]
    fn binding_filters_are_read_by_name_and_code_and_others_refused() {
        assert_eq!(binding_filter(None), Ok(None));
        let mut f = FilterSet::new();
        f.insert(
            Symbol::from("subject"),
            described(TOPIC_BINDING.0, Value::String("log.*".into())),
        );
        assert_eq!(
            binding_filter(Some(&f)),
            Ok(Some(Matcher::Key("log.*".into())))
        );
        let mut f = FilterSet::new();
        f.insert(
            Symbol::from("key"),
            Value::Described(Box::new(Described {
                descriptor: Descriptor::Code(DIRECT_BINDING.1),
                value: Value::String("red".into()),
            })),
        );
        assert_eq!(
            binding_filter(Some(&f)),
            Ok(Some(Matcher::Key("red".into())))
        );
        let mut map = serde_amqp::primitives::OrderedMap::new();
        map.insert(Value::String("x-match".into()), Value::String("any".into()));
        map.insert(
            Value::String("colour".into()),
            Value::String("green".into()),
        );
        map.insert(Value::String("size".into()), Value::Int(3));
        let mut f = FilterSet::new();
        f.insert(
            Symbol::from("h"),
            described(HEADERS_BINDING.0, Value::Map(map)),
        );
        assert_eq!(
            binding_filter(Some(&f)),
            Ok(Some(Matcher::Headers(HeadersMatch {
                any: true,
                values: vec![
                    ("colour".into(), HeaderValue::Str("green".into())),
                    ("size".into(), HeaderValue::Int(3)),
                ],
            })))
        );
        let mut f = FilterSet::new();
        f.insert(
            Symbol::from("selector"),
            described(
                "apache.org:selector-filter:string",
                Value::String("a = 1".into()),
            ),
        );
        let err = binding_filter(Some(&f)).unwrap_err();
        assert!(err.contains("not supported yet"), "{err}");
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
