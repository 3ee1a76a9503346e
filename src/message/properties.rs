//! Application properties read on demand, and marker entries written into a copy.
//!
//! Message grouping needs one or two application properties (`JMSXGroupID`,
//! `JMSXGroupSeq`) of messages that are otherwise never decoded, so
//! [`Message::application_property`] reads one entry straight from the bytes without
//! allocating. [`Message::with_marker`] is the one place besides the header where the
//! broker re-encodes part of a message: it re-encodes the message-annotations and
//! application-properties maps to add a flag, and copies every other section as is.

use bytes::{BufMut, BytesMut};

use super::encoding::{boolean, number, Items};
use super::{identify, Message, APPLICATION_PROPERTIES, MESSAGE_ANNOTATIONS, MESSAGE_LIMITS};
use crate::transport::scan::scan_value;

/// The value of an application property, as far as the broker interprets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PropertyValue<'a> {
    /// A string or symbol value (group ids may come as either).
    Str(&'a str),
    /// Any integer type whose value fits an i64; JMS sends `JMSXGroupSeq` as an int, other
    /// clients may pick any width or signedness.
    Int(i64),
    /// A boolean value.
    Bool(bool),
    /// Any other value: null, binary, floats, timestamps, uuids, compounds, or an integer
    /// beyond i64 (a ulong above `i64::MAX`), or text that is not valid UTF-8.
    Other,
}

/// Every integer format code: ubyte, byte, ushort, short, uint, int, ulong, long, with their
/// compact forms (uint0, smalluint, ulong0, smallulong, smallint, smalllong).
const INTEGER_CODES: [u8; 14] = [
    0x43, 0x44, 0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x60, 0x61, 0x70, 0x71, 0x80, 0x81,
];

/// An empty map8, the starting point for a section that is not there yet.
const EMPTY_MAP: [u8; 3] = [0xc1, 0x01, 0x00];

/// The two text types. Map keys are symbols in message-annotations and strings in
/// application-properties (spec part 3, §3.2.3 and §3.2.5); property values may be either.
#[derive(Debug, Clone, Copy)]
enum KeyType {
    Symbol,
    String,
}

impl KeyType {
    /// The 8-bit and 32-bit format codes (sym8/sym32 or str8/str32).
    fn codes(self) -> (u8, u8) {
        match self {
            KeyType::Symbol => (0xa3, 0xb3),
            KeyType::String => (0xa1, 0xb1),
        }
    }

    /// The characters of `value` if it is encoded as this type.
    fn text(self, value: &[u8]) -> Option<&[u8]> {
        let (short, long) = self.codes();
        match *value.first()? {
            code if code == short => value.get(2..),
            code if code == long => value.get(5..),
            _ => None,
        }
    }

    fn put(self, text: &str, out: &mut Vec<u8>) -> Option<()> {
        let (short, long) = self.codes();
        match u8::try_from(text.len()) {
            Ok(len) => out.extend([short, len]),
            Err(_) => {
                out.push(long);
                out.extend(u32::try_from(text.len()).ok()?.to_be_bytes());
            }
        }
        out.extend(text.as_bytes());
        Some(())
    }
}

impl Message {
    /// The application property `name` (compared byte for byte with the string keys), or
    /// None when the message has no application-properties section or no such key. Reads
    /// the encoded section in place, without allocating (for values nested at most 4 deep,
    /// as the scan that skips them allocates beyond that), so the broker can key message
    /// groups on properties such as `JMSXGroupID` for every message it routes. If a
    /// (non-conforming) map repeats the key, the first entry counts.
    pub fn application_property(&self, name: &str) -> Option<PropertyValue<'_>> {
        let span = self.extras.as_ref()?.application_properties?;
        lookup(self.bytes.get(span.range())?, name)
    }

    /// A copy of this message carrying the flag `key` = true: as a message annotation (symbol
    /// key), which AMQP clients read, and when `as_property` also as an application property
    /// (string key), which JMS clients read (JMS cannot see annotations). Artemis calls this
    /// the group-first-key: it marks the first message of a group that a consumer gets.
    ///
    /// An entry with the same key is replaced, never duplicated; a missing section is added
    /// in its place. Only the edited maps are re-encoded; header, delivery-annotations,
    /// properties, body and footer are copied byte for byte. Rarely used, so it favours
    /// clarity over speed. An opaque message, a `key` that is not ASCII (a symbol must be)
    /// or anything unexpected yields an unchanged clone: a marker is a hint, never worth
    /// failing a delivery for.
    pub fn with_marker(&self, key: &str, as_property: bool) -> Message {
        self.try_with_marker(key, as_property)
            .unwrap_or_else(|| self.clone())
    }

    fn try_with_marker(&self, key: &str, as_property: bool) -> Option<Message> {
        if !self.standard || !key.is_ascii() {
            return None;
        }
        // The maps to edit, in section order.
        let mut edits = vec![(MESSAGE_ANNOTATIONS, KeyType::Symbol)];
        if as_property {
            edits.push((APPLICATION_PROPERTIES, KeyType::String));
        }
        let mut edits = edits.into_iter().peekable();
        let mut out = BytesMut::with_capacity(self.bytes.len() + 2 * (key.len() + 16));
        let mut offset = 0;
        while let Some(rest) = self.bytes.get(offset..).filter(|rest| !rest.is_empty()) {
            let len = scan_value(rest, MESSAGE_LIMITS).ok()?;
            let section = rest.get(..len)?;
            let (code, value_start) = identify(section, 0, offset).ok()?;
            // A missing map goes just before the first section that must follow it.
            while let Some((missing, key_type)) = edits.next_if(|&(target, _)| target < code) {
                out.put_slice(&[0x00, 0x53, missing as u8]);
                out.put_slice(&marked_map(&EMPTY_MAP, key, key_type)?);
            }
            if let Some((_, key_type)) = edits.next_if(|&(target, _)| target == code) {
                let (descriptor, map) = section.split_at_checked(value_start)?;
                out.put_slice(descriptor);
                out.put_slice(&marked_map(map, key, key_type)?);
            } else {
                out.put_slice(section);
            }
            offset += len;
        }
        // Every message ends with a body (or footer), which follows both maps.
        if edits.next().is_some() {
            return None;
        }
        let mut marked = Message::parse(out.freeze()).ok()?;
        marked.message_format = self.message_format;
        Some(marked)
    }
}

/// Looks `name` up in an encoded application-properties section (descriptor included).
/// Works on any bytes, scanned or not.
fn lookup<'a>(section: &'a [u8], name: &str) -> Option<PropertyValue<'a>> {
    let (_, value_start) = identify(section, 0, 0).ok()?;
    let mut items = Items::map(section.get(value_start..)?)?;
    while let Some(key) = items.next() {
        let (_, key) = key?;
        let (_, value) = items.next()??;
        if KeyType::String.text(key) == Some(name.as_bytes()) {
            return Some(property_value(value));
        }
    }
    None
}

fn property_value(value: &[u8]) -> PropertyValue<'_> {
    let text = KeyType::String
        .text(value)
        .or_else(|| KeyType::Symbol.text(value));
    if let Some(text) = text {
        return std::str::from_utf8(text).map_or(PropertyValue::Other, PropertyValue::Str);
    }
    if let Some(Some(b)) = boolean(value) {
        return PropertyValue::Bool(b);
    }
    match number(value, &INTEGER_CODES) {
        Some(Some(n)) => PropertyValue::Int(n),
        _ => PropertyValue::Other,
    }
}

/// Re-encodes the map `map` (a null counts as empty) with `key` → true: in place of the
/// first entry with that key, or appended; later entries with the key are dropped. None if
/// `map` is not a well-formed map.
fn marked_map(map: &[u8], key: &str, key_type: KeyType) -> Option<Vec<u8>> {
    let mut items = Items::map(map)?;
    let mut entries = Vec::with_capacity(map.len() + key.len() + 6);
    let mut marker = Vec::with_capacity(key.len() + 6);
    key_type.put(key, &mut marker)?;
    marker.push(0x41);
    let mut pairs = 0usize;
    let mut marked = false;
    while let Some(entry_key) = items.next() {
        let (_, entry_key) = entry_key?;
        let (_, value) = items.next()??;
        if key_type.text(entry_key) == Some(key.as_bytes()) {
            if marked {
                continue;
            }
            entries.extend(&marker);
            marked = true;
        } else {
            entries.extend(entry_key);
            entries.extend(value);
        }
        pairs += 1;
    }
    if !marked {
        entries.extend(&marker);
        pairs += 1;
    }
    encode_map(pairs, &entries)
}

/// A map of `pairs` key/value pairs whose encodings are `entries`: map8 when it fits,
/// else map32. The size counts the count field too.
fn encode_map(pairs: usize, entries: &[u8]) -> Option<Vec<u8>> {
    let count = pairs.checked_mul(2)?;
    let mut out = Vec::with_capacity(entries.len() + 9);
    match (u8::try_from(entries.len() + 1), u8::try_from(count)) {
        (Ok(size), Ok(count)) => out.extend([0xc1, size, count]),
        _ => {
            out.push(0xd1);
            out.extend(u32::try_from(entries.len() + 4).ok()?.to_be_bytes());
            out.extend(u32::try_from(count).ok()?.to_be_bytes());
        }
    }
    out.extend(entries);
    Some(out)
}

#[cfg(test)]
mod tests;
