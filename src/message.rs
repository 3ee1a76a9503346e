//! A message is the bytes it arrived in plus a small parsed view (DESIGN.md §2).
//!
//! The broker routes, orders and expires messages by a handful of fields; it never needs
//! the body. So a message keeps its encoded bytes untouched and records where the
//! sections lie and the few values the broker reads. Only the header is ever re-encoded
//! (delivery-count and first-acquirer change per delivery); everything from the
//! message-annotations on goes to the wire as a slice of the original buffer.

use std::ops::Range;

use bytes::Bytes;

use crate::codec::scan::{scan_value, Limits, ScanError};

mod encoding;
mod fields;
mod properties;

pub use fields::{FieldValue, PropertyField, Sections};
pub use properties::{AnnotationValue, PropertyValue};

use encoding::{
    encode_header, integer, read_header, string, symbol, timestamp, uint, ulong, Items,
};

/// Sections may be deep application data (amqp-value bodies, application properties), so
/// they get more depth than performatives; the scan is linear, so elements are unbounded.
const MESSAGE_LIMITS: Limits = Limits {
    max_depth: 100,
    max_elements: usize::MAX,
};

/// What the broker reads from a message; the bytes are never re-encoded except the header.
/// `Default` is an empty opaque message.
#[derive(Debug, Clone, Default)]
pub struct Message {
    /// The whole encoded message as received (concatenated transfer payloads).
    bytes: Bytes,
    /// False for messages of another message-format, whose bytes are not looked into.
    standard: bool,
    /// The transfer's message-format (0 for standard messages); sent on with the message.
    message_format: u32,
    /// End of the header section (0 when there is none); it always starts at 0.
    header_end: u32,
    /// Start of the message-annotations, or of the bare message when there are none.
    bare_start: u32,
    /// The header fields as the bytes encode them; defaults when there is no header section.
    header: Header,
    to: Option<Span>,
    group_id: Option<Span>,
    /// The fields most messages lack, out of line: a queued message costs its bytes plus a
    /// small fixed part (DESIGN.md §6 bounds memory per queued message).
    extras: Option<Box<Extras>>,
}

/// Fields of the view that most messages do not carry.
#[derive(Debug, Clone, Default)]
struct Extras {
    absolute_expiry_time_ms: Option<i64>,
    creation_time_ms: Option<i64>,
    group_sequence: Option<u32>,
    delivery_time_ms: Option<i64>,
    delivery_delay_ms: Option<i64>,
    scheduled_enqueue_time_ms: Option<i64>,
    subject: Option<Span>,
    /// Message annotation `x-opt-routing-key`: the routing key when there is no subject.
    routing_key: Option<Span>,
    application_properties: Option<Span>,
}

/// Where a field lies in the message's bytes: half the size of a `Range<usize>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: u32,
    end: u32,
}

impl Span {
    /// None for a range beyond 4 GiB (no such message passes max-message-size in practice;
    /// the field is then simply not in the view).
    fn of(range: Range<usize>) -> Option<Span> {
        Some(Span {
            start: u32::try_from(range.start).ok()?,
            end: u32::try_from(range.end).ok()?,
        })
    }

    fn range(self) -> Range<usize> {
        self.start as usize..self.end as usize
    }
}

/// The header section's fields (spec part 3, §3.2.1). `None` means the field was absent
/// or null, so the spec default applies (durable false, priority 4, no ttl,
/// first-acquirer false).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Header {
    /// Whether the message must survive a broker restart.
    pub durable: Option<bool>,
    /// Relative priority, 0 (lowest) to 255; the spec default is 4.
    pub priority: Option<u8>,
    /// How long the message may live after it arrived, in milliseconds.
    pub ttl_ms: Option<u32>,
    /// True if no link has acquired the message before.
    pub first_acquirer: Option<bool>,
    /// How many earlier attempts to deliver the message failed.
    pub delivery_count: u32,
}

/// Why bytes are not a well-formed format-0 message. All map to `amqp:decode-error`.
/// Sections are numbered from 1 in the order they appear.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
// The variants' fields are what their #[error] text says; documenting each again adds nothing.
#[allow(missing_docs)]
pub enum MessageError {
    /// A transfer with no payload carries no message.
    #[error("message is empty: a message needs at least a body section")]
    Empty,
    /// The section's encoding is broken or exceeds the scan limits.
    #[error("message section {index} (at byte {offset}) is malformed: {source}")]
    Malformed {
        index: usize,
        offset: usize,
        source: ScanError,
    },
    /// Every section is a described value, which starts with 0x00.
    #[error("message section {index} (at byte {offset}) starts with 0x{byte:02x}, not 0x00 (a described section)")]
    NotDescribed {
        index: usize,
        offset: usize,
        byte: u8,
    },
    /// The descriptor names no message section.
    #[error("message section {index} (at byte {offset}) has descriptor {descriptor}, not a message section")]
    NotASection {
        index: usize,
        offset: usize,
        descriptor: String,
    },
    /// Sections must follow the order of spec part 3, §3.2.
    #[error("message section {index} ({section}) may not follow {after}; sections go header, delivery-annotations, message-annotations, properties, application-properties, body, footer")]
    OutOfOrder {
        index: usize,
        section: &'static str,
        after: &'static str,
    },
    /// There must be one or more data, one or more amqp-sequence, or one amqp-value section.
    #[error("message has no body section (data, amqp-sequence or amqp-value)")]
    MissingBody,
    /// A field the broker reads has a type the spec does not allow for it.
    #[error("message {section} field {field} has an invalid type or value")]
    InvalidField {
        section: &'static str,
        field: &'static str,
    },
}

/// Descriptor codes of the sections (spec part 3, §3.2); the order sections must appear in
/// follows the codes, except that the three body kinds (data, amqp-sequence, amqp-value)
/// share one place.
const HEADER: u64 = 0x70;
const DELIVERY_ANNOTATIONS: u64 = 0x71;
const MESSAGE_ANNOTATIONS: u64 = 0x72;
const PROPERTIES: u64 = 0x73;
const APPLICATION_PROPERTIES: u64 = 0x74;
const BODY: std::ops::RangeInclusive<u64> = 0x75..=0x77;

/// The symbolic descriptors of sections 0x70..=0x78, in code order.
const SECTION_NAMES: [&str; 9] = [
    "amqp:header:list",
    "amqp:delivery-annotations:map",
    "amqp:message-annotations:map",
    "amqp:properties:list",
    "amqp:application-properties:map",
    "amqp:data:binary",
    "amqp:amqp-sequence:list",
    "amqp:value:*",
    "amqp:footer:map",
];

fn section_name(code: u64) -> &'static str {
    let index = code.wrapping_sub(HEADER);
    let name = usize::try_from(index)
        .ok()
        .and_then(|i| SECTION_NAMES.get(i));
    name.copied().unwrap_or("none")
}

/// Whether section `code` may come after section `previous` (spec part 3, §3.2).
fn may_follow(code: u64, previous: Option<u64>) -> bool {
    let rank = |code| if BODY.contains(&code) { 0x75 } else { code };
    match previous {
        None => true,
        // Data and amqp-sequence sections may repeat; amqp-value may not.
        Some(previous) if previous == code => code == 0x75 || code == 0x76,
        Some(previous) => rank(code) > rank(previous),
    }
}

impl Message {
    /// Parse the section layout of a standard (message-format 0) message.
    ///
    /// Sections must appear in spec order: header?, delivery-annotations?,
    /// message-annotations?, properties?, application-properties?, body (data+ |
    /// amqp-sequence+ | amqp-value), footer?, and fill the bytes exactly. Descriptors may be
    /// the ulong codes 0x70..0x78 or the symbolic names. Every section is walked with
    /// [`scan_value`], so a message that parses is safe to hand to serde_amqp. Only the
    /// header and the fields of the view are decoded.
    pub fn parse(bytes: Bytes) -> Result<Message, MessageError> {
        if bytes.is_empty() {
            return Err(MessageError::Empty);
        }
        let mut message = Message::opaque(bytes.clone(), 0);
        message.standard = true;
        let mut previous = None;
        let mut has_body = false;
        let mut offset = 0;
        let mut index = 0;
        while let Some(rest) = bytes.get(offset..).filter(|rest| !rest.is_empty()) {
            index += 1;
            let malformed = |source| MessageError::Malformed {
                index,
                offset,
                source,
            };
            let len = scan_value(rest, MESSAGE_LIMITS).map_err(malformed)?;
            let whole = rest.get(..len).unwrap_or_default();
            let (section, value_start) = identify(whole, index, offset)?;
            if !may_follow(section, previous) {
                return Err(MessageError::OutOfOrder {
                    index,
                    section: section_name(section),
                    after: previous.map_or("", section_name),
                });
            }
            let value = whole.get(value_start..).unwrap_or_default();
            has_body |= BODY.contains(&section);
            let end = offset + len;
            message.read_section(section, value, offset + value_start, offset..end)?;
            previous = Some(section);
            offset = end;
        }
        if !has_body {
            return Err(MessageError::MissingBody);
        }
        Ok(message)
    }

    /// A message of another message-format: kept as opaque bytes, no view (header default).
    /// Its bytes always go to the wire unchanged, with the same message-format.
    pub fn opaque(bytes: Bytes, message_format: u32) -> Message {
        Message {
            bytes,
            message_format,
            ..Message::default()
        }
    }

    /// The header fields (spec defaults where the message has no header section).
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Whether a durable queue persists the message: unless its header says otherwise. With
    /// no header section it is durable (as RabbitMQ 4 has it: most clients send none); a
    /// header whose durable field is absent says false, as the spec defines the field.
    pub fn is_durable(&self) -> bool {
        self.header_end == 0 || self.header.durable == Some(true)
    }

    /// The message-format the message arrived with (and leaves with).
    pub fn message_format(&self) -> u32 {
        self.message_format
    }

    /// The whole encoded message, exactly as received.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// Size of the encoded message in bytes, as received.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// True only for an opaque message with no bytes; a parsed message is never empty.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// True for a message of a format other than 0, which has no parsed view.
    pub fn is_opaque(&self) -> bool {
        !self.standard
    }

    /// properties.to: the address the sender meant the message for.
    pub fn to(&self) -> Option<&str> {
        self.str_at(self.to)
    }

    /// properties.subject.
    pub fn subject(&self) -> Option<&str> {
        self.str_at(self.extras.as_ref()?.subject)
    }

    /// The key an exchange routes the message by: its subject (as RabbitMQ and Qpid use it),
    /// else the `x-opt-routing-key` message annotation.
    pub fn routing_key(&self) -> Option<&str> {
        let extras = self.extras.as_ref()?;
        self.str_at(extras.subject)
            .or_else(|| self.str_at(extras.routing_key))
    }

    /// properties.group-id: the group whose members one consumer receives in order.
    pub fn group_id(&self) -> Option<&str> {
        self.str_at(self.group_id)
    }

    /// properties.group-sequence: the message's position within its group.
    pub fn group_sequence(&self) -> Option<u32> {
        self.extras.as_ref()?.group_sequence
    }

    /// properties.absolute-expiry-time, in milliseconds since the Unix epoch.
    pub fn absolute_expiry_time_ms(&self) -> Option<i64> {
        self.extras.as_ref()?.absolute_expiry_time_ms
    }

    /// properties.creation-time, in milliseconds since the Unix epoch.
    pub fn creation_time_ms(&self) -> Option<i64> {
        self.extras.as_ref()?.creation_time_ms
    }

    /// Message annotation `x-opt-delivery-time`: not to be delivered before this time
    /// (milliseconds since the Unix epoch; sent as a timestamp or any integer).
    pub fn delivery_time_ms(&self) -> Option<i64> {
        self.extras.as_ref()?.delivery_time_ms
    }

    /// Message annotation `x-opt-delivery-delay`: not to be delivered until this many
    /// milliseconds after it arrived.
    pub fn delivery_delay_ms(&self) -> Option<i64> {
        self.extras.as_ref()?.delivery_delay_ms
    }

    /// Message annotation `x-opt-scheduled-enqueue-time` (Azure Service Bus's name for a
    /// delivery time): not to be delivered before this time (milliseconds since the Unix
    /// epoch; sent as a timestamp or any integer).
    pub fn scheduled_enqueue_time_ms(&self) -> Option<i64> {
        self.extras.as_ref()?.scheduled_enqueue_time_ms
    }

    fn extras_mut(&mut self) -> &mut Extras {
        self.extras.get_or_insert_with(Box::default)
    }

    /// The encoded application-properties section (descriptor included, so it decodes as
    /// `fe2o3_amqp_types::messaging::ApplicationProperties`), for selectors and group keys
    /// to decode on demand. Already scanned, so safe to decode.
    pub fn application_properties(&self) -> Option<Bytes> {
        let span = self.extras.as_ref()?.application_properties?;
        Some(self.bytes.slice(span.range()))
    }

    /// The bytes to put on the wire for a delivery with this delivery count: if
    /// `delivery_count` and the header fields equal what the bytes already say (and there
    /// are no delivery-annotations to strip), the original bytes (one Bytes clone, zero
    /// copy). Otherwise a freshly encoded header (delivery-count set, first-acquirer false
    /// when `delivery_count > 0`, other fields from [`Message::header`]) followed by a slice
    /// from message-annotations on; delivery-annotations are dropped because they are for
    /// one hop only. The first chunk, if any, goes before the second. Opaque messages are
    /// always sent as received.
    pub fn wire_chunks(&self, delivery_count: u32) -> (Option<Bytes>, Bytes) {
        if !self.standard {
            return (None, self.bytes.clone());
        }
        let mut header = self.header;
        header.delivery_count = delivery_count;
        if delivery_count > 0 && header.first_acquirer == Some(true) {
            header.first_acquirer = Some(false);
        }
        let rest = self.bytes.slice(self.bare_start as usize..);
        if header != self.header {
            return (Some(encode_header(&header)), rest);
        }
        if self.bare_start == self.header_end {
            return (None, self.bytes.clone());
        }
        let original_header =
            (self.header_end > 0).then(|| self.bytes.slice(..self.header_end as usize));
        (original_header, rest)
    }

    fn str_at(&self, span: Option<Span>) -> Option<&str> {
        let bytes = self.bytes.get(span?.range())?;
        std::str::from_utf8(bytes).ok()
    }

    /// Records one section; `value` is its value's encoding, which starts at `value_at`.
    fn read_section(
        &mut self,
        section: u64,
        value: &[u8],
        value_at: usize,
        whole: Range<usize>,
    ) -> Result<(), MessageError> {
        match section {
            HEADER => {
                self.header = read_header(value)?;
                self.header_end = offset_u32(whole.end, "header")?;
                self.bare_start = self.header_end;
            }
            DELIVERY_ANNOTATIONS => {
                self.bare_start = offset_u32(whole.end, "delivery-annotations")?
            }
            MESSAGE_ANNOTATIONS => self.read_annotations(value, value_at)?,
            PROPERTIES => self.read_properties(value, value_at)?,
            APPLICATION_PROPERTIES => self.extras_mut().application_properties = Span::of(whole),
            _ => {}
        }
        Ok(())
    }

    fn read_properties(&mut self, value: &[u8], value_at: usize) -> Result<(), MessageError> {
        let fields = Items::list(value).ok_or(invalid("properties", "list"))?;
        for (position, field) in fields.enumerate() {
            let (start, field) = field.ok_or(invalid("properties", "list"))?;
            let at = value_at + start;
            let wrong = |field| move || invalid("properties", field);
            match position {
                2 => {
                    self.to = string(field, at)
                        .ok_or_else(wrong("to"))?
                        .and_then(Span::of)
                }
                3 => {
                    if let Some(r) = string(field, at).ok_or_else(wrong("subject"))? {
                        self.extras_mut().subject = Span::of(r);
                    }
                }
                8 => {
                    if let Some(t) = timestamp(field).ok_or_else(wrong("absolute-expiry-time"))? {
                        self.extras_mut().absolute_expiry_time_ms = Some(t);
                    }
                }
                9 => {
                    if let Some(t) = timestamp(field).ok_or_else(wrong("creation-time"))? {
                        self.extras_mut().creation_time_ms = Some(t);
                    }
                }
                10 => {
                    self.group_id = string(field, at)
                        .ok_or_else(wrong("group-id"))?
                        .and_then(Span::of)
                }
                11 => {
                    if let Some(n) = uint(field).ok_or_else(wrong("group-sequence"))? {
                        self.extras_mut().group_sequence = Some(n);
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Picks the scheduling annotations and the routing key out of the message-annotations
    /// map, whose value starts at `value_at`.
    fn read_annotations(&mut self, value: &[u8], value_at: usize) -> Result<(), MessageError> {
        let wrong = |field| invalid("message-annotations", field);
        let mut items = Items::map(value).ok_or(wrong("map"))?;
        while let Some(key) = items.next() {
            let (_, key) = key.ok_or(wrong("key"))?;
            let (start, value) = items.next().flatten().ok_or(wrong("value"))?;
            if symbol(key) == Some(b"x-opt-routing-key".as_slice()) {
                // A routing key of another type routes as if there were none.
                if let Some(Some(range)) = string(value, value_at + start) {
                    self.extras_mut().routing_key = Span::of(range);
                }
                continue;
            }
            let known = symbol(key)
                .and_then(|key| SCHEDULING.iter().find(|(name, _)| name.as_bytes() == key));
            let Some(&(field, slot)) = known else {
                continue;
            };
            // Integers and timestamps alike: clients differ in which they send.
            if let Some(ms) = integer(value).ok_or(wrong(field))? {
                *slot(self.extras_mut()) = Some(ms);
            }
        }
        Ok(())
    }
}

/// The scheduling annotations the view reads, each with the field of [`Extras`] it fills.
type Slot = fn(&mut Extras) -> &mut Option<i64>;
const SCHEDULING: [(&str, Slot); 3] = [
    ("x-opt-delivery-time", |e| &mut e.delivery_time_ms),
    ("x-opt-delivery-delay", |e| &mut e.delivery_delay_ms),
    ("x-opt-scheduled-enqueue-time", |e| {
        &mut e.scheduled_enqueue_time_ms
    }),
];

/// The sections before the bare message end within the first 4 GiB of any real message.
fn offset_u32(end: usize, section: &'static str) -> Result<u32, MessageError> {
    u32::try_from(end).map_err(|_| invalid(section, "end beyond 4 GiB"))
}

fn invalid(section: &'static str, field: &'static str) -> MessageError {
    MessageError::InvalidField { section, field }
}

/// Reads a section's descriptor; returns its code and where the section's value starts.
fn identify(section: &[u8], index: usize, offset: usize) -> Result<(u64, usize), MessageError> {
    let descriptor = match section.split_first() {
        Some((0x00, rest)) => rest,
        _ => {
            let byte = section.first().copied().unwrap_or_default();
            return Err(MessageError::NotDescribed {
                index,
                offset,
                byte,
            });
        }
    };
    // The whole section was scanned, so its descriptor scans too.
    let len = scan_value(descriptor, MESSAGE_LIMITS).unwrap_or_default();
    let descriptor = descriptor.get(..len).unwrap_or_default();
    let code = match (ulong(descriptor), symbol(descriptor)) {
        (Some(code), _) => Some(code),
        (None, Some(name)) => (0x70..=0x78).find(|&c| section_name(c).as_bytes() == name),
        (None, None) => None,
    };
    match code {
        Some(code @ 0x70..=0x78) => Ok((code, 1 + len)),
        Some(code) => Err(not_a_section(index, offset, format!("0x{code:x}"))),
        None => {
            let name = symbol(descriptor).map(String::from_utf8_lossy);
            let shown = name.map_or_else(|| "of another type".into(), |n| format!("{n:?}"));
            Err(not_a_section(index, offset, shown))
        }
    }
}

fn not_a_section(index: usize, offset: usize, descriptor: String) -> MessageError {
    MessageError::NotASection {
        index,
        offset,
        descriptor,
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod size {
    #[test]
    fn a_message_view_stays_small() {
        // Every queued message pays this on top of its bytes (DESIGN.md §6: < 1.2 KiB per
        // queued 1 KiB message in all).
        let size = std::mem::size_of::<super::Message>();
        assert!(size <= 96, "Message is {size} bytes");
    }
}
