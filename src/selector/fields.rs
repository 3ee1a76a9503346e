//! What a selector's identifiers name, resolved once when it is compiled, and read from a
//! message when it is evaluated.
//!
//! JMS selectors (`Dialect::Jms`): the JMS header names mapped to AMQP fields as WIRE.md §4
//! has them (`JMSType` is the subject, `JMSXDeliveryCount` the delivery-count + 1, ...),
//! `amqp.<field>` for any header or properties field (Qpid), `m.<annotation>` for a message
//! annotation (Artemis); any other name is an application property.
//!
//! AMQP SQL filters (`Dialect::Sql`): `header.`/`h.`, `properties.`/`p.`,
//! `message_annotations.`/`m.` and `application_properties.`/`a.` prefixes; an unprefixed name
//! is an application property.

use super::value::Val;
use crate::message::{FieldValue, Message, PropertyField, Sections};

/// Which naming rules a selector follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// A JMS message selector (`apache.org:selector-filter:string`).
    Jms,
    /// An AMQP SQL filter expression (`amqp:sql-filter`).
    Sql,
}

/// The header fields (spec part 3, §3.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeaderField {
    Durable,
    Priority,
    Ttl,
    FirstAcquirer,
    DeliveryCount,
}

impl HeaderField {
    fn named(name: &str) -> Option<HeaderField> {
        Some(match name.replace('-', "_").as_str() {
            "durable" => HeaderField::Durable,
            "priority" => HeaderField::Priority,
            "ttl" => HeaderField::Ttl,
            "first_acquirer" => HeaderField::FirstAcquirer,
            "delivery_count" => HeaderField::DeliveryCount,
            _ => return None,
        })
    }
}

/// JMS headers whose value is derived rather than a field as is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Derived {
    /// `'PERSISTENT'` or `'NON_PERSISTENT'` from header.durable.
    DeliveryMode,
    /// header.priority, 4 when absent.
    Priority,
    /// absolute-expiry-time, 0 (never) when absent.
    Expiration,
    /// delivery-count + 1.
    DeliveryCount,
    /// delivery-count > 0.
    Redelivered,
    /// group-sequence as JMS's int (0xFFFFFFFF is -1).
    GroupSeq,
}

/// A resolved identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FieldRef {
    Application(Box<str>),
    Annotation(Box<str>),
    Property(PropertyField),
    Header(HeaderField),
    Derived(Derived),
}

const JMS_HEADERS: [(&str, FieldRef); 14] = [
    ("JMSMessageID", FieldRef::Property(PropertyField::MessageId)),
    (
        "JMSCorrelationID",
        FieldRef::Property(PropertyField::CorrelationId),
    ),
    ("JMSType", FieldRef::Property(PropertyField::Subject)),
    (
        "JMSTimestamp",
        FieldRef::Property(PropertyField::CreationTime),
    ),
    ("JMSDestination", FieldRef::Property(PropertyField::To)),
    ("JMSReplyTo", FieldRef::Property(PropertyField::ReplyTo)),
    ("JMSXGroupID", FieldRef::Property(PropertyField::GroupId)),
    ("JMSXUserID", FieldRef::Property(PropertyField::UserId)),
    ("JMSPriority", FieldRef::Derived(Derived::Priority)),
    ("JMSDeliveryMode", FieldRef::Derived(Derived::DeliveryMode)),
    ("JMSExpiration", FieldRef::Derived(Derived::Expiration)),
    (
        "JMSXDeliveryCount",
        FieldRef::Derived(Derived::DeliveryCount),
    ),
    ("JMSRedelivered", FieldRef::Derived(Derived::Redelivered)),
    ("JMSXGroupSeq", FieldRef::Derived(Derived::GroupSeq)),
];

/// What `name` refers to in `dialect`, or why it refers to nothing.
pub(crate) fn resolve(name: &str, dialect: Dialect) -> Result<FieldRef, String> {
    let header_or_property = |field: &str, prefix: &str| {
        HeaderField::named(field)
            .map(FieldRef::Header)
            .or_else(|| PropertyField::named(field).map(FieldRef::Property))
            .ok_or_else(|| format!("'{prefix}{field}' names no header or properties field"))
    };
    let nonempty = |field: &str, prefix: &str| {
        if field.is_empty() {
            Err(format!("'{prefix}' needs a name after it"))
        } else {
            Ok(field.into())
        }
    };
    match dialect {
        Dialect::Jms => {
            if let Some((_, field)) = JMS_HEADERS.iter().find(|(n, _)| *n == name) {
                return Ok(field.clone());
            }
            if let Some(field) = name.strip_prefix("amqp.") {
                return header_or_property(field, "amqp.");
            }
            if let Some(annotation) = name.strip_prefix("m.") {
                return nonempty(annotation, "m.").map(FieldRef::Annotation);
            }
            Ok(FieldRef::Application(name.into()))
        }
        Dialect::Sql => {
            let Some((prefix, field)) = name.split_once('.') else {
                return Ok(FieldRef::Application(name.into()));
            };
            match prefix {
                "h" | "header" => HeaderField::named(field)
                    .map(FieldRef::Header)
                    .ok_or_else(|| format!("'{name}' names no header field")),
                "p" | "properties" => PropertyField::named(field)
                    .map(FieldRef::Property)
                    .ok_or_else(|| format!("'{name}' names no properties field")),
                "m" | "message_annotations" => {
                    nonempty(field, prefix).map(FieldRef::Annotation)
                }
                "a" | "application_properties" => {
                    nonempty(field, prefix).map(FieldRef::Application)
                }
                "d" | "delivery_annotations" => Err(format!(
                    "'{name}': delivery annotations are for one hop and are not kept with the message"
                )),
                _ => Ok(FieldRef::Application(name.into())),
            }
        }
    }
}

/// A message being evaluated, with its sections found on first need.
pub(crate) struct Input<'a> {
    message: &'a Message,
    delivery_count: u32,
    sections: Sections<'a>,
}

impl<'a> Input<'a> {
    /// `delivery_count`: the queue's count for the message (what redelivery raised).
    pub(crate) fn new(message: &'a Message, delivery_count: u32) -> Input<'a> {
        Input {
            message,
            delivery_count,
            sections: message.sections(),
        }
    }

    fn sections(&self) -> &Sections<'a> {
        &self.sections
    }

    /// The value of `field`.
    pub(crate) fn get(&self, field: &FieldRef) -> Val<'a> {
        let header = self.message.header();
        match field {
            FieldRef::Application(name) => self.sections().application_property(name).into(),
            FieldRef::Annotation(name) => self.sections().annotation(name).into(),
            FieldRef::Property(p) => self.sections().property(*p).into(),
            FieldRef::Header(h) => match h {
                HeaderField::Durable => Val::Bool(header.durable.unwrap_or(false)),
                HeaderField::Priority => Val::Int(header.priority.unwrap_or(4).into()),
                HeaderField::Ttl => header.ttl_ms.map_or(Val::Null, |t| Val::Int(t.into())),
                HeaderField::FirstAcquirer => {
                    Val::Bool(header.first_acquirer.unwrap_or(false) && self.delivery_count == 0)
                }
                HeaderField::DeliveryCount => Val::Int(self.delivery_count.into()),
            },
            FieldRef::Derived(d) => match d {
                Derived::DeliveryMode => Val::Str(
                    if header.durable.unwrap_or(false) {
                        "PERSISTENT"
                    } else {
                        "NON_PERSISTENT"
                    }
                    .into(),
                ),
                Derived::Priority => Val::Int(header.priority.unwrap_or(4).into()),
                Derived::Expiration => {
                    Val::Int(self.message.absolute_expiry_time_ms().unwrap_or(0))
                }
                Derived::DeliveryCount => Val::Int(i64::from(self.delivery_count) + 1),
                Derived::Redelivered => Val::Bool(self.delivery_count > 0),
                Derived::GroupSeq => match self.sections().property(PropertyField::GroupSequence) {
                    FieldValue::Int(n) => Val::Int((n as u32 as i32).into()),
                    other => other.into(),
                },
            },
        }
    }
}
