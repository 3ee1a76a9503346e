//! Hand-built AMQP encodings for the per-message hot path.
//!
//! Control frames (open, attach, flow, disposition, ...) go through sluice's codec and serde,
//! but a message transfer is encoded once into a template and only its delivery-id, tag,
//! sequence number and send time are patched per message; an incoming transfer is read by a
//! small scanner that pulls out the six leading fields without building a `Transfer`.

use sluice::codec::scan::{scan_value, Limits};

/// Descriptor code of the transfer performative (part 2, §2.7.5).
const TRANSFER: u8 = 0x14;
/// Descriptor code of the header section (part 3, §3.2.1).
const HEADER: u8 = 0x70;
/// Descriptor code of the properties section (part 3, §3.2.4).
const PROPERTIES: u8 = 0x73;
/// Descriptor code of a data body section (part 3, §3.2.6).
const DATA: u8 = 0x75;

/// Bytes of frame header plus the fixed-width transfer performative we write.
pub const TRANSFER_OVERHEAD: usize = 8 + 3 + 3 + 5 + 5 + 10 + 3;

/// Bytes at the front of every data body: sequence number and send time (ns since the epoch).
pub const STAMP_LEN: usize = 16;

/// Digits of the group id of a grouped message (`properties.group-id`), patched per message.
pub const GROUP_DIGITS: usize = 10;

/// Encodes the message every producer sends: an optional header section (durable), with
/// `grouped` a properties section whose group-id is [`GROUP_DIGITS`] digits, and one data
/// section of `size` bytes. Returns the bytes, the offset of the stamp in them and the offset
/// of the group id's digits.
pub fn encode_message(
    size: usize,
    durable: bool,
    grouped: bool,
) -> (Vec<u8>, usize, Option<usize>) {
    let mut msg = Vec::with_capacity(size + 48);
    if durable {
        // header: described list8 of one field, durable = true.
        msg.extend_from_slice(&[0x00, 0x53, HEADER, 0xc0, 0x02, 0x01, 0x41]);
    }
    let mut group_at = None;
    if grouped {
        // properties: list8 of 11 fields, ten nulls, then group-id as str8.
        let size = 1 + 10 + 2 + GROUP_DIGITS as u8;
        msg.extend_from_slice(&[0x00, 0x53, PROPERTIES, 0xc0, size, 11]);
        msg.extend_from_slice(&[0x40; 10]);
        msg.extend_from_slice(&[0xa1, GROUP_DIGITS as u8]);
        group_at = Some(msg.len());
        msg.extend_from_slice(&[b'0'; GROUP_DIGITS]);
    }
    msg.extend_from_slice(&[0x00, 0x53, DATA, 0xb0]);
    msg.extend_from_slice(&(size as u32).to_be_bytes());
    let stamp_at = msg.len();
    msg.extend((0..size).map(|i| b'a' + (i % 26) as u8));
    (msg, stamp_at, group_at)
}

/// The transfer frames of one message, encoded once.
pub struct TransferTemplate {
    bytes: Vec<u8>,
    /// Where each frame's 4-byte delivery-id is.
    id_at: Vec<usize>,
    /// Where each frame's 8-byte delivery-tag is.
    tag_at: Vec<usize>,
    stamp_at: usize,
    /// Where the group id's digits are, and how many groups messages are spread over.
    group: Option<(usize, u64)>,
    /// How many frames a message takes (each uses one unit of session window).
    pub frames: u32,
}

impl TransferTemplate {
    /// Splits `message` into transfer frames no larger than `max_frame_size`.
    pub fn new(
        channel: u16,
        handle: u32,
        settled: bool,
        message: &[u8],
        stamp_in_message: usize,
        group: Option<(usize, u64)>,
        max_frame_size: u32,
    ) -> TransferTemplate {
        let room = (max_frame_size as usize)
            .saturating_sub(TRANSFER_OVERHEAD)
            .max(64);
        let chunks: Vec<&[u8]> = message.chunks(room).collect();
        let mut t = TransferTemplate {
            bytes: Vec::with_capacity(message.len() + chunks.len() * TRANSFER_OVERHEAD),
            id_at: Vec::new(),
            tag_at: Vec::new(),
            stamp_at: 0,
            group: None,
            frames: chunks.len() as u32,
        };
        for (i, chunk) in chunks.iter().enumerate() {
            let more = i + 1 < chunks.len();
            let start = t.bytes.len();
            let size = (TRANSFER_OVERHEAD + chunk.len()) as u32;
            let b = &mut t.bytes;
            b.extend_from_slice(&size.to_be_bytes());
            b.extend_from_slice(&[2, 0]);
            b.extend_from_slice(&channel.to_be_bytes());
            // list8: size = count byte + fields, six fields.
            b.extend_from_slice(&[0x00, 0x53, TRANSFER, 0xc0, 24, 6]);
            b.push(0x70);
            b.extend_from_slice(&handle.to_be_bytes());
            b.push(0x70);
            t.id_at.push(b.len());
            b.extend_from_slice(&[0; 4]);
            b.extend_from_slice(&[0xa0, 8]);
            t.tag_at.push(b.len());
            b.extend_from_slice(&[0; 8]);
            b.push(0x43); // message-format 0
            b.push(if settled { 0x41 } else { 0x42 });
            b.push(if more { 0x41 } else { 0x42 });
            debug_assert_eq!(b.len() - start, TRANSFER_OVERHEAD);
            if i == 0 {
                t.stamp_at = b.len() + stamp_in_message;
                // The properties come before the body, so they are in the first frame too.
                t.group = group.map(|(at, groups)| (b.len() + at, groups.max(1)));
            }
            b.extend_from_slice(chunk);
        }
        debug_assert!(t.stamp_at + STAMP_LEN <= t.bytes.len());
        t
    }

    /// Appends one message's frames to `out`, patched for this delivery.
    pub fn write(&self, out: &mut Vec<u8>, delivery_id: u32, seq: u64, now_ns: u64) {
        let base = out.len();
        out.extend_from_slice(&self.bytes);
        let b = &mut out[base..];
        for &at in &self.id_at {
            b[at..at + 4].copy_from_slice(&delivery_id.to_be_bytes());
        }
        for &at in &self.tag_at {
            b[at..at + 8].copy_from_slice(&seq.to_be_bytes());
        }
        b[self.stamp_at..self.stamp_at + 8].copy_from_slice(&seq.to_be_bytes());
        b[self.stamp_at + 8..self.stamp_at + 16].copy_from_slice(&now_ns.to_be_bytes());
        if let Some((at, groups)) = self.group {
            let mut id = seq % groups;
            for digit in b[at..at + GROUP_DIGITS].iter_mut().rev() {
                *digit = b'0' + (id % 10) as u8;
                id /= 10;
            }
        }
    }

    /// Bytes per message on the wire.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }
}

/// The fields of an incoming transfer the consumer needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransferHead {
    pub handle: u32,
    pub delivery_id: Option<u32>,
    pub settled: Option<bool>,
    pub more: bool,
    /// Where the payload starts in the frame body.
    pub payload_at: usize,
}

/// Reads the leading fields of a transfer frame body. `None` means "not a transfer in the
/// shape this scanner knows"; the caller then falls back to the full decoder.
pub fn scan_transfer(body: &[u8]) -> Option<TransferHead> {
    if body.len() < 5 || body[0] != 0x00 || body[1] != 0x53 || body[2] != TRANSFER {
        return None;
    }
    let (count, fields_at, end) = match body[3] {
        0xc0 => {
            let size = *body.get(4)? as usize;
            (*body.get(5)? as usize, 6, 5 + size)
        }
        0xd0 => {
            let size = be32(body.get(4..8)?) as usize;
            (be32(body.get(8..12)?) as usize, 12, 8 + size)
        }
        _ => return None,
    };
    if end > body.len() {
        return None;
    }
    let mut r = Reader {
        buf: &body[..end],
        at: fields_at,
        left: count,
    };
    let handle = r.uint()??;
    let delivery_id = r.uint()?;
    r.skip_binary()?;
    let _format = r.uint()?;
    let settled = r.boolean()?;
    let more = r.boolean()?.unwrap_or(false);
    Some(TransferHead {
        handle,
        delivery_id,
        settled,
        more,
        payload_at: end,
    })
}

/// Finds the stamp (sequence number, send time in ns) at the front of a message's data body,
/// skipping any sections a broker put before it. `None` if the message is not ours.
pub fn find_stamp(message: &[u8]) -> Option<(u64, u64)> {
    let limits = Limits {
        max_depth: 32,
        max_elements: 1 << 20,
    };
    let mut at = 0;
    while at + 3 <= message.len() {
        if message[at] != 0x00 || message[at + 1] != 0x53 {
            return None;
        }
        let code = message[at + 2];
        at += 3;
        if code == DATA {
            let start = match *message.get(at)? {
                0xa0 => at + 2,
                0xb0 => at + 5,
                _ => return None,
            };
            let stamp = message.get(start..start + STAMP_LEN)?;
            return Some((be64(&stamp[..8]), be64(&stamp[8..])));
        }
        at += scan_value(&message[at..], limits).ok()?;
    }
    None
}

/// Sequential reader of list fields; a field past the list's count reads as null.
struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
    left: usize,
}

impl Reader<'_> {
    fn code(&mut self) -> Option<Option<u8>> {
        if self.left == 0 {
            return Some(None);
        }
        self.left -= 1;
        let c = *self.buf.get(self.at)?;
        self.at += 1;
        Some(if c == 0x40 { None } else { Some(c) })
    }

    fn uint(&mut self) -> Option<Option<u32>> {
        let v = match self.code()? {
            None => return Some(None),
            Some(0x43) => 0,
            Some(0x52) => {
                self.at += 1;
                u32::from(*self.buf.get(self.at - 1)?)
            }
            Some(0x70) => {
                self.at += 4;
                be32(self.buf.get(self.at - 4..self.at)?)
            }
            Some(_) => return None,
        };
        Some(Some(v))
    }

    fn boolean(&mut self) -> Option<Option<bool>> {
        let v = match self.code()? {
            None => return Some(None),
            Some(0x41) => true,
            Some(0x42) => false,
            Some(0x56) => {
                self.at += 1;
                *self.buf.get(self.at - 1)? != 0
            }
            Some(_) => return None,
        };
        Some(Some(v))
    }

    fn skip_binary(&mut self) -> Option<()> {
        match self.code()? {
            None => {}
            Some(0xa0) => self.at += 1 + *self.buf.get(self.at)? as usize,
            Some(0xb0) => self.at += 4 + be32(self.buf.get(self.at..self.at + 4)?) as usize,
            Some(_) => return None,
        }
        Some(())
    }
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn be64(b: &[u8]) -> u64 {
    let mut a = [0; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use sluice::codec::frame::{decode_amqp, decode_raw, Body};

    #[test]
    fn a_template_decodes_with_sluices_codec_and_with_the_scanner() {
        let (msg, stamp, group) = encode_message(2800, true, true);
        let t = TransferTemplate::new(3, 7, false, &msg, stamp, group.map(|at| (at, 1000)), 1024);
        assert_eq!(t.frames, 3);
        let mut out = Vec::new();
        t.write(&mut out, 42, 9, 12345);
        let mut buf = BytesMut::from(&out[..]);
        let mut payload = Vec::new();
        for i in 0..3 {
            let raw = decode_raw(&mut buf, 1024).unwrap().unwrap();
            let head = scan_transfer(&raw.body).unwrap();
            assert_eq!(head.handle, 7);
            assert_eq!(head.delivery_id, Some(42));
            assert_eq!(head.more, i < 2);
            payload.extend_from_slice(&raw.body[head.payload_at..]);
            match decode_amqp(raw).unwrap().body {
                Body::Transfer(tr, _) => assert_eq!(tr.settled, Some(false)),
                other => panic!("not a transfer: {other:?}"),
            }
        }
        assert_eq!(payload, {
            let mut m = msg.clone();
            m[stamp..stamp + 8].copy_from_slice(&9u64.to_be_bytes());
            m[stamp + 8..stamp + 16].copy_from_slice(&12345u64.to_be_bytes());
            let at = group.unwrap();
            m[at..at + GROUP_DIGITS].copy_from_slice(b"0000000009");
            m
        });
        assert_eq!(find_stamp(&payload), Some((9, 12345)));
        let parsed = sluice::Message::parse(bytes::Bytes::from(payload)).unwrap();
        assert_eq!(parsed.group_id(), Some("0000000009"));
    }
}
