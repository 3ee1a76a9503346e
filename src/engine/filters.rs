//! A receiver's source filter set (WIRE.md §3), read by symbolic or numeric descriptor under
//! whatever key the client chose: the legacy binding filters (which bind a subscription), JMS
//! selectors and AMQP SQL filters, the AMQP properties and application-properties filters,
//! and no-local. Filters of other types are left out: not applied and not echoed, so the
//! client sees what was and decides. Pure functions of the filter set, tested without a link.

use fe2o3_amqp_types::messaging::FilterSet;
use serde_amqp::descriptor::Descriptor;
use serde_amqp::Value;

use crate::broker::routing::exchange::{HeaderValue, HeadersMatch, Matcher};
use crate::selector::{Dialect, Filter, FilterValue, PropertiesFilter, Selector};

type Kind = (&'static str, u64);

const DIRECT_BINDING: Kind = (
    "apache.org:legacy-amqp-direct-binding:string",
    0x0000_468C_0000_0000,
);
const TOPIC_BINDING: Kind = (
    "apache.org:legacy-amqp-topic-binding:string",
    0x0000_468C_0000_0001,
);
const HEADERS_BINDING: Kind = (
    "apache.org:legacy-amqp-headers-binding:map",
    0x0000_468C_0000_0002,
);
const NO_LOCAL: Kind = ("apache.org:no-local-filter:list", 0x0000_468C_0000_0003);
const SELECTOR: Kind = ("apache.org:selector-filter:string", 0x0000_468C_0000_0004);
const PROPERTIES: Kind = ("amqp:properties-filter", 0x173);
const APPLICATION_PROPERTIES: Kind = ("amqp:application-properties-filter", 0x174);
const SQL: Kind = ("amqp:sql-filter", 0x120);

fn is(descriptor: &Descriptor, (name, code): Kind) -> bool {
    match descriptor {
        Descriptor::Name(n) => n.as_str() == name,
        Descriptor::Code(c) => *c == code,
    }
}

/// What a source's filters ask for.
#[derive(Debug, Default)]
pub(crate) struct SourceFilters {
    /// The binding of a legacy binding filter (for a subscription).
    pub binding: Option<Matcher>,
    /// Selectors and properties filters, all of which a message must pass.
    pub filter: Filter,
    /// No messages published on the subscriber's own connection.
    pub no_local: bool,
    /// The entries applied, as received: what the attach reply echoes.
    pub applied: FilterSet,
}

/// Reads `filters`; an applicable filter that is malformed (a selector that does not parse, a
/// binding key that is not a string) is an error saying which and why.
pub(crate) fn read(filters: Option<&FilterSet>) -> Result<SourceFilters, String> {
    let mut out = SourceFilters::default();
    for (key, value) in filters.into_iter().flatten() {
        let Value::Described(described) = value else {
            // Not a filter at all (a null is how some clients leave one out).
            continue;
        };
        let (descriptor, inner) = (&described.descriptor, &described.value);
        let named = |what: &str| format!("{what} '{}'", key.as_str());
        if is(descriptor, DIRECT_BINDING) || is(descriptor, TOPIC_BINDING) {
            let matcher = match inner {
                Value::String(k) => Matcher::Key(k.clone()),
                Value::Symbol(k) => Matcher::Key(k.as_str().to_owned()),
                _ => return Err(format!("{} must carry a string", named("binding filter"))),
            };
            set_binding(&mut out, matcher)?;
        } else if is(descriptor, HEADERS_BINDING) {
            let matcher = headers_binding(inner)
                .map_err(|why| format!("{}: {why}", named("headers binding filter")))?;
            set_binding(&mut out, matcher)?;
        } else if is(descriptor, SELECTOR) || is(descriptor, SQL) {
            let dialect = if is(descriptor, SQL) {
                Dialect::Sql
            } else {
                Dialect::Jms
            };
            let Some(text) = text_of(inner) else {
                return Err(format!("{} must carry a string", named("selector")));
            };
            let selector = Selector::parse(text, dialect)
                .map_err(|e| format!("{} \"{text}\" is invalid {e}", named("selector")))?;
            out.filter.selectors.push(selector);
        } else if is(descriptor, NO_LOCAL) {
            out.no_local = true;
        } else if is(descriptor, PROPERTIES) || is(descriptor, APPLICATION_PROPERTIES) {
            let fields = filter_map(inner)
                .map_err(|why| format!("{}: {why}", named("properties filter")))?;
            let filter = if is(descriptor, PROPERTIES) {
                PropertiesFilter::properties(fields)
                    .map_err(|why| format!("{}: {why}", named("properties filter")))?
            } else {
                PropertiesFilter::application_properties(fields)
            };
            out.filter.properties.push(filter);
        } else {
            continue;
        }
        out.applied.insert(key.clone(), value.clone());
    }
    Ok(out)
}

/// The keys of `applied` that hold binding or no-local filters.
pub(crate) fn binding_and_no_local_keys(
    applied: &FilterSet,
) -> Vec<fe2o3_amqp_types::primitives::Symbol> {
    applied
        .iter()
        .filter(|(_, v)| match v {
            Value::Described(d) => [DIRECT_BINDING, TOPIC_BINDING, HEADERS_BINDING, NO_LOCAL]
                .into_iter()
                .any(|kind| is(&d.descriptor, kind)),
            _ => false,
        })
        .map(|(k, _)| k.clone())
        .collect()
}

fn set_binding(out: &mut SourceFilters, matcher: Matcher) -> Result<(), String> {
    if out.binding.replace(matcher).is_some() {
        return Err("more than one binding filter on one link".to_owned());
    }
    Ok(())
}

fn text_of(value: &Value) -> Option<&str> {
    match value {
        Value::String(s) => Some(s),
        Value::Symbol(s) => Some(s.as_str()),
        _ => None,
    }
}

/// A properties filter's map: field → value (strings, integers, floats, booleans).
fn filter_map(value: &Value) -> Result<Vec<(String, FilterValue)>, String> {
    let Value::Map(map) = value else {
        return Err("it must carry a map".to_owned());
    };
    map.iter()
        .map(|(k, v)| {
            let name = text_of(k).ok_or("its keys must be strings or symbols")?;
            let value = match v {
                Value::String(s) => FilterValue::Str(s.clone()),
                Value::Symbol(s) => FilterValue::Str(s.as_str().to_owned()),
                Value::Bool(b) => FilterValue::Bool(*b),
                Value::Float(f) => FilterValue::Float(f64::from(f.into_inner())),
                Value::Double(f) => FilterValue::Float(f.into_inner()),
                other => match integer(other) {
                    Some(n) => FilterValue::Int(n),
                    None => {
                        return Err(format!(
                            "the value of '{name}' must be a string, number or boolean"
                        ))
                    }
                },
            };
            Ok((name.to_owned(), value))
        })
        .collect()
}

fn integer(v: &Value) -> Option<i64> {
    Some(match v {
        Value::Byte(n) => i64::from(*n),
        Value::Short(n) => i64::from(*n),
        Value::Int(n) => i64::from(*n),
        Value::Long(n) => *n,
        Value::Ubyte(n) => i64::from(*n),
        Value::Ushort(n) => i64::from(*n),
        Value::Uint(n) => i64::from(*n),
        Value::Ulong(n) => i64::try_from(*n).ok()?,
        Value::Timestamp(t) => t.milliseconds(),
        _ => return None,
    })
}

fn headers_binding(value: &Value) -> Result<Matcher, String> {
    let Value::Map(map) = value else {
        return Err("it must carry a map".to_owned());
    };
    let mut any = false;
    let mut values = Vec::new();
    for (k, v) in map.iter() {
        let name = text_of(k).ok_or("its keys must be strings")?;
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
            other => match integer(other) {
                Some(n) => HeaderValue::Int(n),
                None => {
                    return Err(format!(
                        "the value of '{name}' must be a string, boolean or integer"
                    ))
                }
            },
        };
        values.push((name.to_owned(), value));
    }
    Ok(Matcher::Headers(HeadersMatch { any, values }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use fe2o3_amqp_types::primitives::Symbol;
    use serde_amqp::described::Described;
    use serde_amqp::primitives::OrderedMap;

    fn described(descriptor: Descriptor, value: Value) -> Value {
        Value::Described(Box::new(Described { descriptor, value }))
    }

    fn name(n: &str) -> Descriptor {
        Descriptor::Name(Symbol::from(n))
    }

    fn set(entries: Vec<(&str, Value)>) -> FilterSet {
        let mut f = FilterSet::new();
        for (k, v) in entries {
            f.insert(Symbol::from(k), v);
        }
        f
    }

    #[test]
    fn binding_filters_are_read_by_name_and_code() {
        assert!(read(None).unwrap().binding.is_none());
        let f = set(vec![(
            "subject",
            described(name(TOPIC_BINDING.0), Value::String("log.*".into())),
        )]);
        assert_eq!(
            read(Some(&f)).unwrap().binding,
            Some(Matcher::Key("log.*".into()))
        );
        let f = set(vec![(
            "key",
            described(
                Descriptor::Code(DIRECT_BINDING.1),
                Value::String("red".into()),
            ),
        )]);
        let read_back = read(Some(&f)).unwrap();
        assert_eq!(read_back.binding, Some(Matcher::Key("red".into())));
        assert_eq!(read_back.applied, f, "echoed as received");
        let mut map = OrderedMap::new();
        map.insert(Value::String("x-match".into()), Value::String("any".into()));
        map.insert(
            Value::String("colour".into()),
            Value::String("green".into()),
        );
        map.insert(Value::String("size".into()), Value::Int(3));
        let f = set(vec![(
            "h",
            described(name(HEADERS_BINDING.0), Value::Map(map)),
        )]);
        assert_eq!(
            read(Some(&f)).unwrap().binding,
            Some(Matcher::Headers(HeadersMatch {
                any: true,
                values: vec![
                    ("colour".into(), HeaderValue::Str("green".into())),
                    ("size".into(), HeaderValue::Int(3)),
                ],
            }))
        );
    }

    #[test]
    fn selectors_no_local_and_properties_filters_are_read_and_others_left_out() {
        let mut props = OrderedMap::new();
        props.insert(
            Value::Symbol("subject".into()),
            Value::String("&p:log.".into()),
        );
        let f = set(vec![
            (
                "selector",
                described(name(SELECTOR.0), Value::String("colour = 'green'".into())),
            ),
            (
                "jms-selector",
                described(
                    Descriptor::Code(SELECTOR.1),
                    Value::String("size > 1".into()),
                ),
            ),
            (
                "sql",
                described(
                    Descriptor::Code(SQL.1),
                    Value::String("p.subject = 'x'".into()),
                ),
            ),
            ("no-local", described(name(NO_LOCAL.0), Value::List(vec![]))),
            (
                "props",
                described(Descriptor::Code(PROPERTIES.1), Value::Map(props)),
            ),
            ("other", described(name("com.example:mine"), Value::Null)),
            ("null", Value::Null),
        ]);
        let read_back = read(Some(&f)).unwrap();
        assert_eq!(read_back.filter.selectors.len(), 3);
        assert_eq!(read_back.filter.properties.len(), 1);
        assert!(read_back.no_local);
        assert!(read_back.binding.is_none());
        let echoed: Vec<&str> = read_back.applied.keys().map(|k| k.as_str()).collect();
        assert_eq!(
            echoed,
            ["selector", "jms-selector", "sql", "no-local", "props"]
        );
    }

    #[test]
    fn a_selector_that_does_not_parse_says_where() {
        let f = set(vec![(
            "selector",
            described(name(SELECTOR.0), Value::String("colour = ".into())),
        )]);
        let err = read(Some(&f)).unwrap_err();
        assert_eq!(
            err,
            "selector 'selector' \"colour = \" is invalid at column 10: expected an identifier, a literal or '(', found the end of the selector"
        );
        let f = set(vec![("s", described(name(SELECTOR.0), Value::Int(1)))]);
        assert!(read(Some(&f)).unwrap_err().contains("must carry a string"));
    }
}
