//! The AMQP Filter Expressions' properties and application-properties filters (OASIS filtex,
//! §4.2.4–4.2.5, as RabbitMQ 4.1 implements them): a map of field → value that a message
//! matches when every field equals its value; a string value `&p:abc` matches a field that
//! starts with `abc`, `&s:abc` one that ends with it, and `&&` at the start stands for `&`.
//! A [`Filter`] is every filter a source carries, all of which a message must pass.

use super::expression::Selector;
use super::fields::{resolve, Dialect, FieldRef, Input};
use super::value::{compare, Val};
use crate::message::{Message, PropertyField};
use std::borrow::Cow;

/// What one field of a properties filter must be.
#[derive(Debug, Clone, PartialEq)]
pub enum Expected {
    /// Equal to this value (numbers of any width compare by value).
    Is(Val<'static>),
    /// A string starting with this (`&p:`).
    Prefix(String),
    /// A string ending with this (`&s:`).
    Suffix(String),
}

/// A properties or application-properties filter, compiled.
#[derive(Debug, Clone, PartialEq)]
pub struct PropertiesFilter {
    fields: Vec<(FieldRef, Expected)>,
}

/// A filter value as the terminus carries it, converted by the caller from AMQP types.
#[derive(Debug, Clone, PartialEq)]
pub enum FilterValue {
    /// A string or symbol.
    Str(String),
    /// An integer of any type.
    Int(i64),
    /// A float or double.
    Float(f64),
    /// A boolean.
    Bool(bool),
}

impl PropertiesFilter {
    /// A filter on the properties section: `fields` by their spec names (`subject`,
    /// `message-id`, ...; underscores accepted).
    pub fn properties(fields: Vec<(String, FilterValue)>) -> Result<PropertiesFilter, String> {
        let fields = fields
            .into_iter()
            .map(|(name, value)| {
                let field = PropertyField::named(&name)
                    .ok_or_else(|| format!("'{name}' is not a field of the properties section"))?;
                Ok((FieldRef::Property(field), expected(value)))
            })
            .collect::<Result<_, String>>()?;
        Ok(PropertiesFilter { fields })
    }

    /// A filter on the application properties: `fields` by key.
    pub fn application_properties(fields: Vec<(String, FilterValue)>) -> PropertiesFilter {
        let fields = fields
            .into_iter()
            .map(|(name, value)| {
                let field = resolve(&format!("a.{name}"), Dialect::Sql)
                    .unwrap_or(FieldRef::Application(name.into()));
                (field, expected(value))
            })
            .collect();
        PropertiesFilter { fields }
    }

    fn matches(&self, input: &Input<'_>) -> bool {
        self.fields.iter().all(|(field, expected)| {
            let value = input.get(field);
            match (expected, &value) {
                (Expected::Is(want), got) => {
                    compare(super::parser::CmpOp::Eq, got, want) == super::value::Tri::True
                }
                (Expected::Prefix(p), Val::Str(s)) => s.starts_with(p.as_str()),
                (Expected::Suffix(p), Val::Str(s)) => s.ends_with(p.as_str()),
                _ => false,
            }
        })
    }
}

fn expected(value: FilterValue) -> Expected {
    match value {
        FilterValue::Str(s) => {
            if let Some(rest) = s.strip_prefix("&p:") {
                Expected::Prefix(rest.to_owned())
            } else if let Some(rest) = s.strip_prefix("&s:") {
                Expected::Suffix(rest.to_owned())
            } else if let Some(rest) = s.strip_prefix("&&") {
                Expected::Is(Val::Str(Cow::Owned(format!("&{rest}"))))
            } else {
                Expected::Is(Val::Str(Cow::Owned(s)))
            }
        }
        FilterValue::Int(n) => Expected::Is(Val::Int(n)),
        FilterValue::Float(f) => Expected::Is(Val::Float(f)),
        FilterValue::Bool(b) => Expected::Is(Val::Bool(b)),
    }
}

/// Every filter of one source: a message passes when it passes each.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Filter {
    /// JMS selectors and SQL filter expressions.
    pub selectors: Vec<Selector>,
    /// Properties and application-properties filters.
    pub properties: Vec<PropertiesFilter>,
}

impl Filter {
    /// Whether there is nothing to filter on.
    pub fn is_empty(&self) -> bool {
        self.selectors.is_empty() && self.properties.is_empty()
    }

    /// Whether `message`, delivered `delivery_count` times before, passes every filter.
    pub fn matches(&self, message: &Message, delivery_count: u32) -> bool {
        let input = Input::new(message, delivery_count);
        self.selectors.iter().all(|s| s.matches_input(&input))
            && self.properties.iter().all(|p| p.matches(&input))
    }
}
