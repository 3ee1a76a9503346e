//! A message is the bytes it arrived in plus a small parsed view (DESIGN.md §2).
//!
//! The broker routes, orders and expires messages by a handful of fields; it never needs
//! the body. So a message keeps its encoded bytes untouched and records where the
//! sections lie and the few values the broker reads. Only the header is ever re-encoded
//! (delivery-count and first-acquirer change per delivery); everything from the
//! message-annotations on goes to the wire as a slice of the original buffer.

use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};

use crate::transport::scan::{scan_value, Limits, ScanError};

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
    subject: Option<Span>,
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
    /// (milliseconds since the Unix epoch).
    pub fn delivery_time_ms(&self) -> Option<i64> {
        self.extras.as_ref()?.delivery_time_ms
    }

    /// Message annotation `x-opt-delivery-delay`: not to be delivered until this many
    /// milliseconds after it arrived.
    pub fn delivery_delay_ms(&self) -> Option<i64> {
        self.extras.as_ref()?.delivery_delay_ms
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
            MESSAGE_ANNOTATIONS => self.read_annotations(value)?,
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

    /// Picks the scheduling annotations out of the message-annotations map.
    fn read_annotations(&mut self, value: &[u8]) -> Result<(), MessageError> {
        let wrong = |field| invalid("message-annotations", field);
        let mut items = Items::map(value).ok_or(wrong("map"))?;
        while let Some(key) = items.next() {
            let (_, key) = key.ok_or(wrong("key"))?;
            let (_, value) = items.next().flatten().ok_or(wrong("value"))?;
            let time = match symbol(key) {
                Some(b"x-opt-delivery-time") => true,
                Some(b"x-opt-delivery-delay") => false,
                _ => continue,
            };
            let Some(ms) = integer(value).ok_or(wrong("x-opt-delivery-time/-delay"))? else {
                continue;
            };
            let extras = self.extras_mut();
            if time {
                extras.delivery_time_ms = Some(ms);
            } else {
                extras.delivery_delay_ms = Some(ms);
            }
        }
        Ok(())
    }
}

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

fn read_header(value: &[u8]) -> Result<Header, MessageError> {
    let wrong = |field| invalid("header", field);
    let mut fields = Items::list(value).ok_or(wrong("list"))?;
    let mut next = |name| -> Result<&[u8], MessageError> {
        match fields.next() {
            None => Ok(&[0x40]),
            Some(field) => field.map(|(_, field)| field).ok_or(wrong(name)),
        }
    };
    Ok(Header {
        durable: boolean(next("durable")?).ok_or(wrong("durable"))?,
        priority: ubyte(next("priority")?).ok_or(wrong("priority"))?,
        ttl_ms: uint(next("ttl")?).ok_or(wrong("ttl"))?,
        first_acquirer: boolean(next("first-acquirer")?).ok_or(wrong("first-acquirer"))?,
        delivery_count: uint(next("delivery-count")?)
            .ok_or(wrong("delivery-count"))?
            .unwrap_or(0),
    })
}

/// Encodes a header as the shortest list that keeps its fields (trailing nulls omitted).
fn encode_header(header: &Header) -> Bytes {
    let boolean = |b: bool| ([if b { 0x41 } else { 0x42 }, 0, 0, 0, 0], 1);
    let fields = [
        header.durable.map(boolean),
        header.priority.map(|p| ([0x50, p, 0, 0, 0], 2)),
        header.ttl_ms.map(uint_encoding),
        header.first_acquirer.map(boolean),
        (header.delivery_count > 0).then(|| uint_encoding(header.delivery_count)),
    ];
    let count = fields
        .iter()
        .rposition(Option::is_some)
        .map_or(0, |last| last + 1);
    let mut out = BytesMut::with_capacity(32);
    out.put_slice(&[0x00, 0x53, HEADER as u8]);
    if count == 0 {
        out.put_u8(0x45);
        return out.freeze();
    }
    let mut body = BytesMut::with_capacity(16);
    for field in fields.iter().take(count) {
        match field {
            Some((encoding, len)) => body.put_slice(encoding.get(..*len).unwrap_or_default()),
            None => body.put_u8(0x40),
        }
    }
    // At most 1 + 2 + 5 + 1 + 5 bytes of fields, so list8 always fits.
    out.put_slice(&[0xc0, body.len() as u8 + 1, count as u8]);
    out.put_slice(&body);
    out.freeze()
}

/// The shortest uint encoding (uint0, smalluint or uint) and its length.
fn uint_encoding(n: u32) -> ([u8; 5], usize) {
    let [a, b, c, d] = n.to_be_bytes();
    match n {
        0 => ([0x43, 0, 0, 0, 0], 1),
        1..=255 => ([0x52, d, 0, 0, 0], 2),
        _ => ([0x70, a, b, c, d], 5),
    }
}

/// The values of a list or map body, each as (offset within the compound, encoding).
/// Only used on sections that already passed [`scan_value`], so sizes are trustworthy,
/// but every access is still checked.
struct Items<'a> {
    buf: &'a [u8],
    pos: usize,
    remaining: usize,
}

impl<'a> Items<'a> {
    fn list(value: &'a [u8]) -> Option<Items<'a>> {
        Self::compound(value, [0x45, 0xc0, 0xd0])
    }

    /// A null annotations value is taken as an empty map.
    fn map(value: &'a [u8]) -> Option<Items<'a>> {
        Self::compound(value, [0x40, 0xc1, 0xd1])
    }

    /// `codes` are the empty, 8-bit and 32-bit forms; the empty form has no body.
    fn compound(value: &'a [u8], [empty, short, long]: [u8; 3]) -> Option<Items<'a>> {
        let (count, pos) = match *value.first()? {
            code if code == empty => (0, 1),
            code if code == short => (usize::from(*value.get(2)?), 3),
            code if code == long => {
                let count = value.get(5..9)?.try_into().ok().map(u32::from_be_bytes)?;
                (usize::try_from(count).ok()?, 9)
            }
            _ => return None,
        };
        Some(Items {
            buf: value,
            pos,
            remaining: count,
        })
    }
}

impl<'a> Iterator for Items<'a> {
    /// None inside: the value is malformed.
    type Item = Option<(usize, &'a [u8])>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 || self.pos >= self.buf.len() {
            return None;
        }
        self.remaining -= 1;
        let start = self.pos;
        let rest = self.buf.get(start..)?;
        let Ok(len) = scan_value(rest, MESSAGE_LIMITS) else {
            self.remaining = 0;
            return Some(None);
        };
        self.pos = start + len;
        Some(rest.get(..len).map(|value| (start, value)))
    }
}

// Typed readers for one encoded value: None means the wrong type, Some(None) means null.

fn boolean(value: &[u8]) -> Option<Option<bool>> {
    match value {
        [0x40] => Some(None),
        [0x41] | [0x56, 0x01] => Some(Some(true)),
        [0x42] | [0x56, 0x00] => Some(Some(false)),
        _ => None,
    }
}

fn ubyte(value: &[u8]) -> Option<Option<u8>> {
    let n = number(value, &[0x50])?;
    n.map(u8::try_from).transpose().ok()
}

fn uint(value: &[u8]) -> Option<Option<u32>> {
    let n = number(value, &[0x43, 0x52, 0x70])?;
    n.map(u32::try_from).transpose().ok()
}

fn timestamp(value: &[u8]) -> Option<Option<i64>> {
    number(value, &[0x83])
}

/// Any integer or timestamp that fits an i64: annotations are loosely typed in practice.
fn integer(value: &[u8]) -> Option<Option<i64>> {
    const INTEGERS: [u8; 15] = [
        0x43, 0x44, 0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x60, 0x61, 0x70, 0x71, 0x80, 0x81, 0x83,
    ];
    number(value, &INTEGERS)
}

/// A null, or an integer-like primitive whose format code is one of `codes`.
fn number(value: &[u8], codes: &[u8]) -> Option<Option<i64>> {
    let (&code, rest) = value.split_first()?;
    if code == 0x40 {
        return Some(None);
    }
    if !codes.contains(&code) || rest.len() > 8 {
        return None;
    }
    let raw = rest.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
    let signed = matches!(code, 0x51 | 0x54 | 0x55 | 0x61 | 0x71 | 0x81 | 0x83);
    if !signed {
        return i64::try_from(raw).ok().map(Some);
    }
    // Sign-extend from the value's width.
    let shift = 64u32.checked_sub(8 * rest.len() as u32)?;
    let extended = (raw.checked_shl(shift)? as i64).checked_shr(shift)?;
    Some(Some(extended))
}

fn ulong(value: &[u8]) -> Option<u64> {
    match value {
        [0x44] => Some(0),
        [0x53, b] => Some(u64::from(*b)),
        [0x80, rest @ ..] => Some(u64::from_be_bytes(rest.try_into().ok()?)),
        _ => None,
    }
}

/// The characters of a sym8/sym32 value.
fn symbol(value: &[u8]) -> Option<&[u8]> {
    match value.first()? {
        0xa3 => value.get(2..),
        0xb3 => value.get(5..),
        _ => None,
    }
}

/// The absolute range of a str8/str32 value's characters, if it is valid UTF-8.
fn string(value: &[u8], at: usize) -> Option<Option<Range<usize>>> {
    let skip = match value.first()? {
        0x40 => return Some(None),
        0xa1 => 2,
        0xb1 => 5,
        _ => return None,
    };
    std::str::from_utf8(value.get(skip..)?).ok()?;
    Some(Some(at + skip..at + value.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use fe2o3_amqp_types::messaging::message::__private::{Deserializable, Serializable};
    use fe2o3_amqp_types::messaging::{
        AmqpValue, ApplicationProperties, Body, Data, DeliveryAnnotations, Footer,
        Header as AmqpHeader, Message as AmqpMessage, MessageAnnotations, Properties,
    };
    use fe2o3_amqp_types::primitives::{Symbol, Timestamp, Value};
    use proptest::prelude::*;

    type Decoded = AmqpMessage<Body<Value>>;

    fn encode(message: &Decoded) -> Bytes {
        Bytes::from(serde_amqp::to_vec(&Serializable(message)).expect("encode message"))
    }

    fn decode(bytes: &[u8]) -> Decoded {
        let decoded: Deserializable<Decoded> = serde_amqp::from_slice(bytes).expect("decode");
        decoded.0
    }

    fn wire(message: &Message, delivery_count: u32) -> Vec<u8> {
        let (header, rest) = message.wire_chunks(delivery_count);
        [header.unwrap_or_default(), rest].concat()
    }

    fn full_message() -> Decoded {
        AmqpMessage::builder()
            .header(AmqpHeader {
                durable: true,
                priority: 7.into(),
                ttl: Some(5_000),
                first_acquirer: false,
                delivery_count: 2,
            })
            .delivery_annotations(
                DeliveryAnnotations::builder().insert(Symbol::from("x-hop"), Value::Uint(1)),
            )
            .message_annotations(
                MessageAnnotations::builder()
                    .insert(
                        Symbol::from("x-opt-delivery-time"),
                        Value::Timestamp(Timestamp::from_milliseconds(1_700_000_000_000)),
                    )
                    .insert(Symbol::from("x-opt-delivery-delay"), Value::Long(250))
                    .insert(7u64, Value::Null),
            )
            .properties(
                Properties::builder()
                    .message_id(String::from("m-1"))
                    .to("orders")
                    .subject("created")
                    .absolute_expiry_time(Timestamp::from_milliseconds(2_000))
                    .creation_time(Timestamp::from_milliseconds(1_000))
                    .group_id(String::from("customer-9"))
                    .group_sequence(3)
                    .build(),
            )
            .application_properties(ApplicationProperties::builder().insert("region", "eu"))
            .footer(Footer::builder().insert(Symbol::from("x-sum"), Value::Uint(9)))
            .body(Body::Value(AmqpValue(Value::String("hello".into()))))
            .build()
    }

    #[test]
    fn a_full_message_yields_its_view() {
        let message = Message::parse(encode(&full_message())).expect("parse");
        let expected = Header {
            durable: Some(true),
            priority: Some(7),
            ttl_ms: Some(5_000),
            // fe2o3 writes a default field as null.
            first_acquirer: None,
            delivery_count: 2,
        };
        assert_eq!(message.header, expected);
        assert_eq!(message.to(), Some("orders"));
        assert_eq!(message.subject(), Some("created"));
        assert_eq!(message.group_id(), Some("customer-9"));
        assert_eq!(message.group_sequence(), Some(3));
        assert_eq!(message.creation_time_ms(), Some(1_000));
        assert_eq!(message.absolute_expiry_time_ms(), Some(2_000));
        assert_eq!(message.delivery_time_ms(), Some(1_700_000_000_000));
        assert_eq!(message.delivery_delay_ms(), Some(250));
        let encoded = message
            .application_properties()
            .expect("application properties");
        let properties: ApplicationProperties = serde_amqp::from_slice(&encoded).expect("decode");
        assert_eq!(
            properties,
            full_message().application_properties.expect("set")
        );
    }

    fn same_bytes(a: &Bytes, b: &[u8]) -> bool {
        (a.as_ptr(), a.len()) == (b.as_ptr(), b.len())
    }

    #[test]
    fn an_unchanged_header_and_no_delivery_annotations_go_out_zero_copy() {
        let mut sent = full_message();
        sent.delivery_annotations = None;
        let headerless = AmqpMessage::builder()
            .body(Body::Data(vec![Data(vec![1u8, 2, 3].into())].into()))
            .build();
        for (sent, delivery_count) in [(sent, 2), (headerless, 0)] {
            let bytes = encode(&sent);
            let message = Message::parse(bytes.clone()).expect("parse");
            let (header, rest) = message.wire_chunks(delivery_count);
            assert!(header.is_none() && same_bytes(&rest, &bytes));
        }
    }

    #[test]
    fn delivery_annotations_are_dropped_and_the_rest_is_sliced_not_copied() {
        let bytes = encode(&full_message());
        let message = Message::parse(bytes.clone()).expect("parse");
        let (header, rest) = message.wire_chunks(2);
        assert!(same_bytes(
            &header.expect("header"),
            &bytes[..message.header_end as usize]
        ));
        assert!(same_bytes(&rest, &bytes[message.bare_start as usize..]));
        let mut expected = full_message();
        expected.delivery_annotations = None;
        assert_eq!(decode(&wire(&message, 2)), expected);
    }

    #[test]
    fn a_new_delivery_count_re_encodes_only_the_header() {
        let bytes = encode(&full_message());
        let message = Message::parse(bytes.clone()).expect("parse");
        let (_, rest) = message.wire_chunks(3);
        assert!(same_bytes(&rest, &bytes[message.bare_start as usize..]));
        let mut expected = full_message();
        expected.delivery_annotations = None;
        if let Some(header) = expected.header.as_mut() {
            header.delivery_count = 3;
        }
        assert_eq!(decode(&wire(&message, 3)), expected);
    }

    /// Every field in a different legal encoding, under the symbolic descriptor.
    #[test]
    fn any_legal_header_encoding_is_read() {
        let mut bytes = vec![0x00, 0xa3, 16];
        bytes.extend(b"amqp:header:list");
        bytes.extend([
            0xd0, 0, 0, 0, 11, 0, 0, 0, 5, 0x56, 1, 0x40, 0x43, 0x42, 0x52, 9,
        ]);
        bytes.extend([0x00, 0x53, 0x77, 0x40]);
        let message = Message::parse(Bytes::from(bytes)).expect("parse");
        let expected = Header {
            durable: Some(true),
            priority: None,
            ttl_ms: Some(0),
            first_acquirer: Some(false),
            delivery_count: 9,
        };
        assert_eq!(message.header, expected);
        // A short list leaves the rest at their defaults.
        let bytes = [0x00, 0x53, 0x70, 0xc0, 2, 1, 0x41, 0x00, 0x53, 0x77, 0x40];
        let message = Message::parse(Bytes::copy_from_slice(&bytes)).expect("parse");
        assert_eq!(message.header.durable, Some(true));
        assert_eq!(message.header.delivery_count, 0);
    }

    #[test]
    fn bodies_of_several_data_or_sequence_sections_are_accepted() {
        let data = AmqpMessage::builder()
            .data_batch([vec![1u8], vec![2u8]])
            .build();
        assert!(Message::parse(Bytes::from(
            serde_amqp::to_vec(&Serializable(data)).expect("encode")
        ))
        .is_ok());
        let value = |b: u8| [0x00, 0x53, 0x76, 0xc0, 3, 1, 0x50, b];
        let bytes = [value(1), value(2)].concat();
        assert!(Message::parse(Bytes::from(bytes)).is_ok());
    }

    fn parse_err(bytes: &[u8]) -> MessageError {
        Message::parse(Bytes::copy_from_slice(bytes)).expect_err("must be rejected")
    }

    #[test]
    fn malformed_layouts_are_rejected_with_a_reason() {
        let value = [0x00, 0x53, 0x77, 0x40];
        let header = [0x00, 0x53, 0x70, 0x45];
        assert_eq!(parse_err(&[]), MessageError::Empty);
        assert_eq!(parse_err(&header), MessageError::MissingBody);
        assert!(matches!(
            parse_err(&[&value[..], &header].concat()),
            MessageError::OutOfOrder { index: 2, .. }
        ));
        assert!(matches!(
            parse_err(&[value, value].concat()),
            MessageError::OutOfOrder { .. }
        ));
        let err = parse_err(&[0x00, 0x53, 0x79, 0x40]);
        assert_eq!(
            err.to_string(),
            "message section 1 (at byte 0) has descriptor 0x79, not a message section"
        );
        assert!(matches!(
            parse_err(&[0x40]),
            MessageError::NotDescribed { byte: 0x40, .. }
        ));
        assert!(matches!(
            parse_err(&[0x00, 0x53, 0x77, 0xa1, 5]),
            MessageError::Malformed { .. }
        ));
        let bad_ttl = [
            0x00, 0x53, 0x70, 0xc0, 4, 3, 0x40, 0x40, 0x41, 0x00, 0x53, 0x77, 0x40,
        ];
        assert_eq!(
            parse_err(&bad_ttl),
            MessageError::InvalidField {
                section: "header",
                field: "ttl"
            }
        );
        let mut bad_to = vec![0x00, 0x53, 0x73, 0xc0, 6, 3, 0x40, 0x40, 0xa1, 1, 0xff];
        bad_to.extend(value);
        assert!(matches!(
            parse_err(&bad_to),
            MessageError::InvalidField { field: "to", .. }
        ));
    }

    #[test]
    fn opaque_messages_go_out_as_received() {
        let message = Message::opaque(Bytes::from_static(b"\x01\x02"), 0x8001_3700);
        assert!(message.is_opaque());
        assert_eq!(
            message.wire_chunks(5),
            (None, Bytes::from_static(b"\x01\x02"))
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(message) = Message::parse(Bytes::from(bytes)) {
                let _ = (message.to(), message.wire_chunks(1));
            }
        }

        #[test]
        fn any_header_round_trips_through_a_redelivery(
            durable in any::<bool>(),
            priority in any::<u8>(),
            ttl in proptest::option::of(any::<u32>()),
            first_acquirer in any::<bool>(),
            count in any::<u32>(),
            new_count in any::<u32>(),
        ) {
            let header = AmqpHeader { durable, priority: priority.into(), ttl, first_acquirer, delivery_count: count };
            let mut expected = AmqpMessage::builder()
                .header(header)
                .body(Body::Value(AmqpValue(Value::Uint(1))))
                .build();
            let message = Message::parse(encode(&expected)).expect("parse");
            prop_assert_eq!(message.header.delivery_count, count);
            if let Some(header) = expected.header.as_mut() {
                header.delivery_count = new_count;
                header.first_acquirer &= new_count == 0;
            }
            prop_assert_eq!(decode(&wire(&message, new_count)), expected);
        }
    }
}

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
