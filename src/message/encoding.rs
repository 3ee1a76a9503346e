//! Reading and writing the AMQP primitives inside message sections: the header list, the
//! fields of properties and annotations, and the header the broker re-encodes on redelivery.
//! Only used on sections that already passed the pre-scan, so sizes can be trusted, but
//! every access is still checked.

use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};

use super::{invalid, Header, MessageError, HEADER, MESSAGE_LIMITS};
use crate::codec::scan::scan_value;

pub(super) fn read_header(value: &[u8]) -> Result<Header, MessageError> {
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
pub(super) fn encode_header(header: &Header) -> Bytes {
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
pub(super) fn uint_encoding(n: u32) -> ([u8; 5], usize) {
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
pub(super) struct Items<'a> {
    buf: &'a [u8],
    pos: usize,
    remaining: usize,
}

impl<'a> Items<'a> {
    pub(super) fn list(value: &'a [u8]) -> Option<Items<'a>> {
        Self::compound(value, [0x45, 0xc0, 0xd0])
    }

    /// A null annotations value is taken as an empty map.
    pub(super) fn map(value: &'a [u8]) -> Option<Items<'a>> {
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
        let Some(len) = encoded_len(rest).or_else(|| scan_value(rest, MESSAGE_LIMITS).ok()) else {
            self.remaining = 0;
            return Some(None);
        };
        self.pos = start + len;
        Some(rest.get(..len).map(|value| (start, value)))
    }
}

/// The length of the value at the start of `buf` read from its constructor alone, for every
/// format code but a described value (which needs the scan). The sections were scanned when
/// the message was parsed, so the sizes are trustworthy; the caller still checks the bounds.
fn encoded_len(buf: &[u8]) -> Option<usize> {
    let code = *buf.first()?;
    let width = |n: usize| -> Option<usize> {
        let bytes = buf.get(1..1 + n)?;
        let size = bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        Some(1 + n + size)
    };
    let len = match code {
        0x40..=0x4f => 1,
        0x50..=0x5f => 2,
        0x60..=0x6f => 3,
        0x70..=0x7f => 5,
        0x80..=0x8f => 9,
        0x90..=0x9f => 17,
        0xa0..=0xaf | 0xc0..=0xcf | 0xe0..=0xef => width(1)?,
        0xb0..=0xbf | 0xd0..=0xdf | 0xf0..=0xff => width(4)?,
        _ => return None,
    };
    (len <= buf.len()).then_some(len)
}

// Typed readers for one encoded value: None means the wrong type, Some(None) means null.

pub(super) fn boolean(value: &[u8]) -> Option<Option<bool>> {
    match value {
        [0x40] => Some(None),
        [0x41] | [0x56, 0x01] => Some(Some(true)),
        [0x42] | [0x56, 0x00] => Some(Some(false)),
        _ => None,
    }
}

pub(super) fn ubyte(value: &[u8]) -> Option<Option<u8>> {
    let n = number(value, &[0x50])?;
    n.map(u8::try_from).transpose().ok()
}

pub(super) fn uint(value: &[u8]) -> Option<Option<u32>> {
    let n = number(value, &[0x43, 0x52, 0x70])?;
    n.map(u32::try_from).transpose().ok()
}

pub(super) fn timestamp(value: &[u8]) -> Option<Option<i64>> {
    number(value, &[0x83])
}

/// Any integer or timestamp that fits an i64: annotations are loosely typed in practice.
pub(super) fn integer(value: &[u8]) -> Option<Option<i64>> {
    const INTEGERS: [u8; 15] = [
        0x43, 0x44, 0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x60, 0x61, 0x70, 0x71, 0x80, 0x81, 0x83,
    ];
    number(value, &INTEGERS)
}

/// A null, or an integer-like primitive whose format code is one of `codes`.
pub(super) fn number(value: &[u8], codes: &[u8]) -> Option<Option<i64>> {
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

pub(super) fn ulong(value: &[u8]) -> Option<u64> {
    match value {
        [0x44] => Some(0),
        [0x53, b] => Some(u64::from(*b)),
        [0x80, rest @ ..] => Some(u64::from_be_bytes(rest.try_into().ok()?)),
        _ => None,
    }
}

/// The characters of a sym8/sym32 value.
pub(super) fn symbol(value: &[u8]) -> Option<&[u8]> {
    match value.first()? {
        0xa3 => value.get(2..),
        0xb3 => value.get(5..),
        _ => None,
    }
}

/// The absolute range of a str8/str32 value's characters, if it is valid UTF-8.
pub(super) fn string(value: &[u8], at: usize) -> Option<Option<Range<usize>>> {
    let skip = match value.first()? {
        0x40 => return Some(None),
        0xa1 => 2,
        0xb1 => 5,
        _ => return None,
    };
    std::str::from_utf8(value.get(skip..)?).ok()?;
    Some(Some(at + skip..at + value.len()))
}
