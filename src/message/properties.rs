//! Application properties read on demand, and annotations written into a copy.
//!
//! Message grouping needs one or two application properties (`JMSXGroupID`,
//! `JMSXGroupSeq`) of messages that are otherwise never decoded, so
//! [`Message::application_property`] reads one entry straight from the bytes without
//! allocating. [`Message::with_annotations`] (dead-letter annotations) and
//! [`Message::with_marker`] (group-first flag) share the one place besides the header where
//! the broker re-encodes part of a message: it re-encodes the message-annotations map, and
//! for the marker the application-properties map, and copies every other section as is.

use bytes::{BufMut, BytesMut};

use super::encoding::{boolean, number, uint_encoding, Items};
use super::{identify, Message, APPLICATION_PROPERTIES, MESSAGE_ANNOTATIONS, MESSAGE_LIMITS};
use crate::codec::scan::scan_value;

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

/// A message-annotation value [`Message::with_annotations`] writes, each as its AMQP type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnnotationValue<'a> {
    /// An AMQP boolean.
    Bool(bool),
    /// An AMQP string (UTF-8), for free text such as a description or a queue name.
    Str(&'a str),
    /// An AMQP symbol (ASCII only), for names from a vocabulary, such as a reason or an
    /// error condition.
    Symbol(&'a str),
    /// An AMQP timestamp, in milliseconds since the Unix epoch.
    Timestamp(i64),
    /// An AMQP uint.
    Uint(u32),
    /// A value already encoded (one whole AMQP value, as a peer sent it): the annotations a
    /// consumer's `modified` outcome carries are any AMQP type.
    Encoded(&'a [u8]),
}

impl AnnotationValue<'_> {
    /// Appends the value's encoding; None for a symbol that is not ASCII.
    fn put(self, out: &mut Vec<u8>) -> Option<()> {
        match self {
            AnnotationValue::Bool(b) => out.push(if b { 0x41 } else { 0x42 }),
            AnnotationValue::Str(text) => KeyType::String.put(text, out)?,
            AnnotationValue::Symbol(text) if text.is_ascii() => KeyType::Symbol.put(text, out)?,
            AnnotationValue::Symbol(_) => return None,
            AnnotationValue::Timestamp(ms) => {
                out.push(0x83);
                out.extend(ms.to_be_bytes());
            }
            AnnotationValue::Uint(n) => {
                let (encoding, len) = uint_encoding(n);
                out.extend(encoding.get(..len)?);
            }
            AnnotationValue::Encoded(value) => out.extend(value),
        }
        Some(())
    }
}

/// Every integer format code: ubyte, byte, ushort, short, uint, int, ulong, long, with their
/// compact forms (uint0, smalluint, ulong0, smallulong, smallint, smalllong).
const INTEGER_CODES: [u8; 14] = [
    0x43, 0x44, 0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x60, 0x61, 0x70, 0x71, 0x80, 0x81,
];

/// An empty map8, the starting point for a section that is not there yet.
const EMPTY_MAP: [u8; 3] = [0xc1, 0x01, 0x00];

/// The two text types. Map keys are symbols in message-annotations and strings in
/// application-properties (spec part 3, §3.2.3 and §3.2.5); values may be either.
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

    /// A copy of this message whose message-annotations map has each symbol key of
    /// `entries` set to its value, as when the broker dead-letters a message with
    /// `x-opt-dead-letter-reason` and friends.
    ///
    /// An existing entry with the same key is replaced in place (later repeats of the key
    /// are dropped, so no key appears twice); new keys are appended in the order given; if
    /// `entries` names a key twice, the last value wins. A missing annotations section is
    /// added in its place. Only that map is re-encoded; header, delivery-annotations,
    /// properties, application-properties, body and footer are copied byte for byte, and
    /// the message-format is kept.
    ///
    /// An opaque message, a key or [`AnnotationValue::Symbol`] that is not ASCII (symbols
    /// must be), a result that would not parse (such as `x-opt-delivery-time` set to a
    /// string) or any other surprise yields an unchanged clone, as does an empty `entries`.
    pub fn with_annotations(&self, entries: &[(&str, AnnotationValue<'_>)]) -> Message {
        if entries.is_empty() {
            return self.clone();
        }
        self.rewrite(&[(MESSAGE_ANNOTATIONS, KeyType::Symbol, entries)])
            .unwrap_or_else(|| self.clone())
    }

    /// A copy of this message carrying the flag `key` = true: as a message annotation (symbol
    /// key), which AMQP clients read, and when `as_property` also as an application property
    /// (string key), which JMS clients read (JMS cannot see annotations). Artemis calls this
    /// the group-first-key: it marks the first message of a group that a consumer gets.
    ///
    /// Edits as [`Message::with_annotations`] does (the application-properties map too when
    /// `as_property`), with the same unchanged clone for a `key` that is not ASCII or
    /// anything unexpected: a marker is a hint, never worth failing a delivery for.
    pub fn with_marker(&self, key: &str, as_property: bool) -> Message {
        let marker = [(key, AnnotationValue::Bool(true))];
        let mut edits = vec![(MESSAGE_ANNOTATIONS, KeyType::Symbol, &marker[..])];
        if as_property {
            edits.push((APPLICATION_PROPERTIES, KeyType::String, &marker[..]));
        }
        self.rewrite(&edits).unwrap_or_else(|| self.clone())
    }

    /// The one rewrite path: sets entries in the maps `edits` names (in section order) and
    /// copies every other section. None when it cannot.
    fn rewrite(&self, edits: &[Edit<'_>]) -> Option<Message> {
        if !self.standard {
            return None;
        }
        let edits = edits
            .iter()
            .map(|&(code, key_type, entries)| {
                Some((code, key_type, encode_entries(key_type, entries)?))
            })
            .collect::<Option<Vec<_>>>()?;
        let added: usize = edits
            .iter()
            .flat_map(|(_, _, entries)| entries)
            .map(|entry| entry.encoded.len())
            .sum();
        let mut edits = edits.into_iter().peekable();
        let mut out = BytesMut::with_capacity(self.bytes.len() + added + 32);
        let mut offset = 0;
        while let Some(rest) = self.bytes.get(offset..).filter(|rest| !rest.is_empty()) {
            let len = scan_value(rest, MESSAGE_LIMITS).ok()?;
            let section = rest.get(..len)?;
            let (code, value_start) = identify(section, 0, offset).ok()?;
            // A missing map goes just before the first section that must follow it.
            while let Some((missing, key_type, entries)) =
                edits.next_if(|(target, ..)| *target < code)
            {
                out.put_slice(&[0x00, 0x53, u8::try_from(missing).ok()?]);
                out.put_slice(&edited_map(&EMPTY_MAP, key_type, &entries)?);
            }
            if let Some((_, key_type, entries)) = edits.next_if(|(target, ..)| *target == code) {
                let (descriptor, map) = section.split_at_checked(value_start)?;
                out.put_slice(descriptor);
                out.put_slice(&edited_map(map, key_type, &entries)?);
            } else {
                out.put_slice(section);
            }
            offset += len;
        }
        // Every message ends with a body (or footer), which follows both maps.
        if edits.next().is_some() {
            return None;
        }
        let mut edited = Message::parse(out.freeze()).ok()?;
        edited.message_format = self.message_format;
        Some(edited)
    }
}

/// One map to edit: its section code, the type of its keys, and the entries to set.
type Edit<'a> = (u64, KeyType, &'a [(&'a str, AnnotationValue<'a>)]);

/// One entry to set: its key's characters and the encoding of key and value.
struct Entry {
    key: Vec<u8>,
    encoded: Vec<u8>,
}

/// Encodes `entries` with keys of `key_type`, one per key (the last value given wins).
/// None for a symbol key or value that is not ASCII.
fn encode_entries(
    key_type: KeyType,
    entries: &[(&str, AnnotationValue<'_>)],
) -> Option<Vec<Entry>> {
    let mut encoded: Vec<Entry> = Vec::with_capacity(entries.len());
    for &(key, value) in entries {
        if matches!(key_type, KeyType::Symbol) && !key.is_ascii() {
            return None;
        }
        let mut entry = Vec::with_capacity(key.len() + 16);
        key_type.put(key, &mut entry)?;
        value.put(&mut entry)?;
        match encoded.iter_mut().find(|e| e.key == key.as_bytes()) {
            Some(earlier) => earlier.encoded = entry,
            None => encoded.push(Entry {
                key: key.as_bytes().to_vec(),
                encoded: entry,
            }),
        }
    }
    Some(encoded)
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

/// Re-encodes the map `map` (a null counts as empty) with each of `entries` set: in place of
/// the first entry with its key, or appended; later entries with the key are dropped. Keys
/// match only when encoded as `key_type`. None if `map` is not a well-formed map.
fn edited_map(map: &[u8], key_type: KeyType, entries: &[Entry]) -> Option<Vec<u8>> {
    let mut items = Items::map(map)?;
    let added: usize = entries.iter().map(|e| e.encoded.len()).sum();
    let mut out = Vec::with_capacity(map.len() + added);
    let mut written = vec![false; entries.len()];
    let mut pairs = 0usize;
    while let Some(entry_key) = items.next() {
        let (_, entry_key) = entry_key?;
        let (_, value) = items.next()??;
        let text = key_type.text(entry_key);
        match entries.iter().position(|e| Some(e.key.as_slice()) == text) {
            Some(i) if written.get(i).copied()? => continue,
            Some(i) => {
                out.extend(&entries.get(i)?.encoded);
                *written.get_mut(i)? = true;
            }
            None => {
                out.extend(entry_key);
                out.extend(value);
            }
        }
        pairs += 1;
    }
    for (entry, done) in entries.iter().zip(written) {
        if !done {
            out.extend(&entry.encoded);
            pairs += 1;
        }
    }
    encode_map(pairs, &out)
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
