//! Any field of a message's annotations, properties or application properties, read from the
//! bytes in place, for selectors and filters: one walk finds the sections, then each lookup
//! scans only the map or list it needs. Values come back as the few types a selector
//! compares (booleans, integers, floats, text); strings borrow from the message.

use std::borrow::Cow;
use std::cell::OnceCell;

use super::encoding::{boolean, number, symbol, Items};
use super::{identify, Message, MESSAGE_ANNOTATIONS, PROPERTIES};
use crate::codec::scan::scan_value;

/// A field's value as selectors see it.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue<'a> {
    /// Absent, or null.
    Null,
    /// A boolean.
    Bool(bool),
    /// Any integer type (and a timestamp, in milliseconds) whose value fits an i64.
    Int(i64),
    /// A float or double (and a ulong beyond i64, approximately).
    Float(f64),
    /// A string, symbol or char; a uuid in its hyphenated form.
    Str(Cow<'a, str>),
    /// Present, of a type selectors do not compare (binary, decimal, list, map, array, ...).
    Other,
}

impl<'a> FieldValue<'a> {
    /// Reads one encoded value.
    pub fn decode(value: &'a [u8]) -> FieldValue<'a> {
        let Some(&code) = value.first() else {
            return FieldValue::Null;
        };
        match code {
            0x40 => FieldValue::Null,
            0x41 | 0x42 | 0x56 => boolean(value)
                .flatten()
                .map_or(FieldValue::Other, FieldValue::Bool),
            0x72 => value
                .get(1..5)
                .and_then(|b| b.try_into().ok())
                .map_or(FieldValue::Other, |b| {
                    FieldValue::Float(f64::from(f32::from_be_bytes(b)))
                }),
            0x82 => value
                .get(1..9)
                .and_then(|b| b.try_into().ok())
                .map_or(FieldValue::Other, |b| {
                    FieldValue::Float(f64::from_be_bytes(b))
                }),
            0x80 => match number(value, &[0x80]) {
                Some(Some(n)) => FieldValue::Int(n),
                // A ulong beyond i64::MAX.
                _ => value
                    .get(1..9)
                    .and_then(|b| b.try_into().ok())
                    .map_or(FieldValue::Other, |b| {
                        FieldValue::Float(u64::from_be_bytes(b) as f64)
                    }),
            },
            0x43 | 0x44 | 0x50..=0x55 | 0x60 | 0x61 | 0x70 | 0x71 | 0x81 | 0x83 => {
                match number(value, &[code]) {
                    Some(Some(n)) => FieldValue::Int(n),
                    _ => FieldValue::Other,
                }
            }
            0x73 => value
                .get(1..5)
                .and_then(|b| b.try_into().ok())
                .and_then(|b| char::from_u32(u32::from_be_bytes(b)))
                .map_or(FieldValue::Other, |c| FieldValue::Str(Cow::Owned(c.into()))),
            0xa1 | 0xb1 | 0xa3 | 0xb3 => {
                let skip = if code & 0xf0 == 0xa0 { 2 } else { 5 };
                value
                    .get(skip..)
                    .and_then(|b| std::str::from_utf8(b).ok())
                    .map_or(FieldValue::Other, |s| FieldValue::Str(Cow::Borrowed(s)))
            }
            0x98 => value.get(1..17).map_or(FieldValue::Other, |b| {
                let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
                FieldValue::Str(Cow::Owned(format!(
                    "{}-{}-{}-{}-{}",
                    &hex[0..8],
                    &hex[8..12],
                    &hex[12..16],
                    &hex[16..20],
                    &hex[20..32]
                )))
            }),
            _ => FieldValue::Other,
        }
    }

    /// Binary as UTF-8 text when it is (a user-id is binary on the wire, text to JMS).
    fn text_of_binary(value: &'a [u8]) -> FieldValue<'a> {
        let skip = match value.first() {
            Some(0xa0) => 2,
            Some(0xb0) => 5,
            _ => return FieldValue::decode(value),
        };
        value
            .get(skip..)
            .and_then(|b| std::str::from_utf8(b).ok())
            .map_or(FieldValue::Other, |s| FieldValue::Str(Cow::Borrowed(s)))
    }
}

/// The fields of the properties section, by position (spec part 3, §3.2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PropertyField {
    MessageId = 0,
    UserId = 1,
    To = 2,
    Subject = 3,
    ReplyTo = 4,
    CorrelationId = 5,
    ContentType = 6,
    ContentEncoding = 7,
    AbsoluteExpiryTime = 8,
    CreationTime = 9,
    GroupId = 10,
    GroupSequence = 11,
    ReplyToGroupId = 12,
}

impl PropertyField {
    /// Every field with its name in the spec's spelling (hyphens).
    pub const ALL: [(&'static str, PropertyField); 13] = [
        ("message-id", PropertyField::MessageId),
        ("user-id", PropertyField::UserId),
        ("to", PropertyField::To),
        ("subject", PropertyField::Subject),
        ("reply-to", PropertyField::ReplyTo),
        ("correlation-id", PropertyField::CorrelationId),
        ("content-type", PropertyField::ContentType),
        ("content-encoding", PropertyField::ContentEncoding),
        ("absolute-expiry-time", PropertyField::AbsoluteExpiryTime),
        ("creation-time", PropertyField::CreationTime),
        ("group-id", PropertyField::GroupId),
        ("group-sequence", PropertyField::GroupSequence),
        ("reply-to-group-id", PropertyField::ReplyToGroupId),
    ];

    /// The field named `name`, with hyphens or underscores.
    pub fn named(name: &str) -> Option<PropertyField> {
        let name = name.replace('_', "-");
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
    }
}

/// The message-annotations and properties values of a message, when it has them.
type Walked<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

/// Where a message's annotations, properties and application properties lie: what a selector
/// reads. Each is found on first need (the application properties from the view, the others by
/// one walk over the sections); each lookup scans only its own section.
#[derive(Debug)]
pub struct Sections<'a> {
    message: &'a Message,
    /// The message-annotations and properties values, once walked to.
    walked: OnceCell<Walked<'a>>,
}

impl Message {
    /// The sections selectors read, found lazily (none for an opaque message).
    pub fn sections(&self) -> Sections<'_> {
        Sections {
            message: self,
            walked: OnceCell::new(),
        }
    }

    /// The message-annotations and properties values, found by walking the sections after the
    /// header and delivery annotations (the body ends the walk).
    fn walk(&self) -> Walked<'_> {
        let (mut annotations, mut properties) = (None, None);
        if !self.standard {
            return (None, None);
        }
        let mut offset = self.bare_start as usize;
        while let Some(rest) = self.bytes.get(offset..).filter(|r| !r.is_empty()) {
            let Ok(len) = scan_value(rest, super::MESSAGE_LIMITS) else {
                break;
            };
            let whole = rest.get(..len).unwrap_or_default();
            let Ok((section, value_start)) = identify(whole, 0, offset) else {
                break;
            };
            let value = whole.get(value_start..);
            match section {
                MESSAGE_ANNOTATIONS => annotations = value,
                PROPERTIES => {
                    properties = value;
                    break;
                }
                _ => break,
            }
            offset += len;
        }
        (annotations, properties)
    }

    /// The application-properties map (its value, without the descriptor), from the view.
    fn application_properties_value(&self) -> Option<&[u8]> {
        let span = self.extras.as_ref()?.application_properties?;
        let section = self.bytes.get(span.range())?;
        let (_, value_start) = identify(section, 0, 0).ok()?;
        section.get(value_start..)
    }
}

impl<'a> Sections<'a> {
    /// The application property `name` (string keys).
    pub fn application_property(&self, name: &str) -> FieldValue<'a> {
        map_entry(self.message.application_properties_value(), name)
            .map_or(FieldValue::Null, FieldValue::decode)
    }

    fn walked(&self) -> Walked<'a> {
        *self.walked.get_or_init(|| self.message.walk())
    }

    /// The message annotation `name` (symbol keys, or string keys from lax clients).
    pub fn annotation(&self, name: &str) -> FieldValue<'a> {
        map_entry(self.walked().0, name).map_or(FieldValue::Null, FieldValue::decode)
    }

    /// A field of the properties section; a user-id that is UTF-8 reads as text.
    pub fn property(&self, field: PropertyField) -> FieldValue<'a> {
        let Some(mut items) = self.walked().1.and_then(Items::list) else {
            return FieldValue::Null;
        };
        match items.nth(field as usize).flatten() {
            Some((_, value)) if field == PropertyField::UserId => FieldValue::text_of_binary(value),
            Some((_, value)) => FieldValue::decode(value),
            None => FieldValue::Null,
        }
    }
}

/// The value of the entry keyed `name` (as a string or a symbol) in the encoded map `map`.
fn map_entry<'a>(map: Option<&'a [u8]>, name: &str) -> Option<&'a [u8]> {
    let mut items = Items::map(map?)?;
    while let Some(key) = items.next() {
        let (_, key) = key?;
        let (_, value) = items.next()??;
        let text = match key.first()? {
            0xa1 => key.get(2..),
            0xb1 => key.get(5..),
            _ => symbol(key),
        };
        if text == Some(name.as_bytes()) {
            return Some(value);
        }
    }
    None
}
