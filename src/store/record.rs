//! One record of the journal, as bytes on disk.
//!
//! ```text
//! [len: u32 LE][crc32c: u32 LE][kind: u8][payload: len - 1 bytes]
//! ```
//!
//! `len` counts the kind byte and the payload; the CRC32C covers the same bytes (kind and
//! payload). A record therefore takes `8 + len` bytes on disk ([`encoded_len`]).
//!
//! Two rules make the format safe to read after a crash:
//!
//! - **A zero `len` is the end of the written data.** Segments are preallocated, so past the
//!   last record a segment reads as zeros; `len` is never 0 for a real record (the kind byte
//!   is always there), so a zero length cannot be mistaken for one.
//! - **`len` is bounded** by [`MAX_RECORD_LEN`], so a damaged length cannot make a reader
//!   allocate or skip gigabytes: a larger value is reported as corruption.
//!
//! [`decode`] judges one record from the bytes in front of it and nothing else. Whether a bad
//! record is the torn tail of a crash or corruption in the middle of the journal depends on
//! what follows it; that is decided by the segment scan (`segment::scan_records`), which
//! documents the rule.

use bytes::{BufMut, BytesMut};

/// Bytes in front of the kind and payload: the length and the CRC.
pub const RECORD_HEADER_LEN: usize = 8;

/// The largest `len` (kind byte plus payload) a record may have: 256 MiB. Anything larger
/// in a length field is damage, not data. The broker's largest message must stay below it.
pub const MAX_RECORD_LEN: u32 = 256 * 1024 * 1024;

/// The largest payload a record can carry.
pub const MAX_PAYLOAD_LEN: usize = MAX_RECORD_LEN as usize - 1;

/// What a record says happened. The store knows the kinds but not what the payloads mean:
/// those are opaque bytes written and read back by the queue layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RecordKind {
    /// A message entered a queue.
    Enqueue = 1,
    /// A message left its queue (consumed, dropped, or moved to a dead-letter queue).
    Settle = 2,
    /// A delivery failed, or a consumed message was made ready again by a rewind.
    Redelivered = 3,
    /// A delayed message became due.
    Due = 4,
    /// A message was consumed and is kept for rewind.
    Consume = 5,
    /// A durable queue was declared.
    QueueDeclare = 6,
    /// A durable queue was deleted.
    QueueDelete = 7,
    /// A change made by a transaction's commit: applied at recovery only if the
    /// transaction's `TxnCommit` follows.
    TxnPart = 8,
    /// A transaction's commit is complete: its parts apply.
    TxnCommit = 9,
}

impl RecordKind {
    /// Every kind, in the order of their numbers.
    pub const ALL: [RecordKind; 9] = [
        RecordKind::Enqueue,
        RecordKind::Settle,
        RecordKind::Redelivered,
        RecordKind::Due,
        RecordKind::Consume,
        RecordKind::QueueDeclare,
        RecordKind::QueueDelete,
        RecordKind::TxnPart,
        RecordKind::TxnCommit,
    ];

    /// The kind numbered `n`, if there is one.
    pub fn from_u8(n: u8) -> Option<RecordKind> {
        RecordKind::ALL.get(usize::from(n).wrapping_sub(1)).copied()
    }

    /// Its number on disk.
    pub fn as_u8(self) -> u8 {
        self as u8
    }
}

/// A payload too large for one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a journal record of {len} payload bytes is larger than the largest allowed ({MAX_PAYLOAD_LEN})")]
pub struct RecordTooLarge {
    /// The payload length asked for.
    pub len: usize,
}

/// Bytes a record with `payload_len` bytes of payload takes on disk.
pub fn encoded_len(payload_len: usize) -> usize {
    RECORD_HEADER_LEN + 1 + payload_len
}

/// The CRC32C a record stores: over the kind byte, then the payload.
pub fn checksum(kind: u8, payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&[kind]), payload)
}

/// Set in the kind byte of the first record written after a sync: everything before it was
/// on disk when it was written. Recovery uses it to tell crash debris (damage with no batch
/// start after it: the batch in flight) from corruption (damage before a later batch, which
/// could only have been written after the damaged data was synced). The CRC covers it.
pub const BATCH_START: u8 = 0x80;

/// The kind byte (besides [`BATCH_START`]) of a void record: one whose bytes were blanked in
/// place, because the disk was full when its batch was written and its producer was refused
/// (issue 12). Blanking instead of removing keeps every later record where it was appended;
/// readers skip it. It is the store's own: never a [`RecordKind`].
pub const VOID_KIND: u8 = 0x7f;

/// The kind byte (besides [`BATCH_START`], which it always carries) of a checkpoint: written
/// by the journal alone in a batch, after everything before it was synced, when the writer
/// goes idle and at a clean shutdown (issue 12). Its payload is its own position (segment
/// and offset, u64 LE each): the point up to which the journal was synced when it was
/// written. Being a batch start, it makes damage anywhere before it provably corruption
/// rather than a torn tail; its position, checked when read, catches a segment copied or
/// renamed under another number. It is the store's own: never a [`RecordKind`].
pub const CHECKPOINT_KIND: u8 = 0x7e;

/// Bytes of a checkpoint's payload.
pub const CHECKPOINT_PAYLOAD_LEN: usize = 16;

/// A checkpoint's payload: the position it is written at.
pub fn checkpoint_payload(segment: u64, offset: u64) -> [u8; CHECKPOINT_PAYLOAD_LEN] {
    let mut p = [0u8; CHECKPOINT_PAYLOAD_LEN];
    p[..8].copy_from_slice(&segment.to_le_bytes());
    p[8..].copy_from_slice(&offset.to_le_bytes());
    p
}

/// Turns the record at the front of `buf` (as encoded by [`encode_parts`]) into a void record
/// of the same length: its payload zeroed (a refused message is not kept), its batch mark
/// kept, its CRC recomputed. Does nothing if `buf` does not start with a whole record.
pub fn void_in_place(buf: &mut [u8]) {
    let Some(head) = buf.get(..4) else { return };
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let Some(record) = buf.get_mut(..RECORD_HEADER_LEN + len) else {
        return;
    };
    if len == 0 {
        return;
    }
    let kind = (record[RECORD_HEADER_LEN] & BATCH_START) | VOID_KIND;
    record[RECORD_HEADER_LEN] = kind;
    record[RECORD_HEADER_LEN + 1..].fill(0);
    let crc = checksum(kind, &record[RECORD_HEADER_LEN + 1..]);
    record[4..8].copy_from_slice(&crc.to_le_bytes());
}

/// Appends one record to `buf`; returns the bytes it took ([`encoded_len`]).
#[cfg(test)]
pub fn encode(
    kind: RecordKind,
    payload: &[u8],
    buf: &mut BytesMut,
) -> Result<usize, RecordTooLarge> {
    encode_with(kind, payload, false, buf)
}

/// [`encode`], marking the record as the first of a batch when `batch_start`.
pub fn encode_with(
    kind: RecordKind,
    payload: &[u8],
    batch_start: bool,
    buf: &mut BytesMut,
) -> Result<usize, RecordTooLarge> {
    encode_parts(kind, &[payload], batch_start, buf)
}

/// [`encode_with`] for a payload given in parts (a record header and a message's bytes), so
/// that a message is copied once, into the journal's buffer.
pub fn encode_parts(
    kind: RecordKind,
    parts: &[&[u8]],
    batch_start: bool,
    buf: &mut BytesMut,
) -> Result<usize, RecordTooLarge> {
    encode_raw(kind.as_u8(), parts, batch_start, buf)
}

/// [`encode_parts`] with a raw kind byte (the store's own kinds: [`CHECKPOINT_KIND`]).
pub(crate) fn encode_raw(
    kind: u8,
    parts: &[&[u8]],
    batch_start: bool,
    buf: &mut BytesMut,
) -> Result<usize, RecordTooLarge> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    if len > MAX_PAYLOAD_LEN {
        return Err(RecordTooLarge { len });
    }
    let total = encoded_len(len);
    buf.reserve(total);
    let kind_byte = kind | if batch_start { BATCH_START } else { 0 };
    let crc = parts.iter().fold(crc32c::crc32c(&[kind_byte]), |crc, p| {
        crc32c::crc32c_append(crc, p)
    });
    // Cannot truncate: len < MAX_RECORD_LEN, checked above.
    buf.put_u32_le((len + 1) as u32);
    buf.put_u32_le(crc);
    buf.put_u8(kind_byte);
    for p in parts {
        buf.put_slice(p);
    }
    Ok(total)
}

/// What the bytes at the front of a slice hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A whole record with a good CRC.
    Record {
        /// Its kind.
        kind: RecordKind,
        /// Its payload, borrowed from the input.
        payload: &'a [u8],
        /// Bytes it takes: the next record starts this far on.
        len_on_disk: usize,
        /// It is the first record of a batch ([`BATCH_START`]).
        batch_start: bool,
    },
    /// A void record ([`VOID_KIND`]) with a good CRC: nothing to replay, skip it.
    Void {
        /// Bytes it takes.
        len_on_disk: usize,
        /// It is the first record of a batch ([`BATCH_START`]).
        batch_start: bool,
    },
    /// A checkpoint ([`CHECKPOINT_KIND`]) with a good CRC and the position it says it was
    /// written at, if its payload is one.
    Checkpoint {
        /// Bytes it takes.
        len_on_disk: usize,
        /// Segment and offset from its payload (None: malformed).
        pos: Option<(u64, u64)>,
    },
    /// No record here: the slice is empty or starts with a zero length — the end of the
    /// written data in a preallocated segment. (Kept apart from [`Decoded::Torn`], which the
    /// design first grouped it with, because the normal end of a segment is not damage; the
    /// scan still checks that only zeros follow.)
    End,
    /// The slice ends before the record does: fewer bytes than the header needs, or than its
    /// length says. This is what a write cut short by a crash leaves at the end of a file.
    Torn(Torn),
    /// A record that cannot be right whatever follows it: a length out of bounds, a CRC
    /// mismatch, or a kind this version does not know under a good CRC.
    Corrupt(Corrupt),
}

/// How a record is cut short.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Torn {
    /// Fewer than [`RECORD_HEADER_LEN`] bytes, not all zero.
    #[error("incomplete record header ({available} of {RECORD_HEADER_LEN} bytes)")]
    Header {
        /// Bytes present.
        available: usize,
    },
    /// The header says more bytes than there are.
    #[error("incomplete record ({available} of {needed} bytes)")]
    Frame {
        /// Bytes the record takes, header included.
        needed: usize,
        /// Bytes present.
        available: usize,
    },
}

/// Why a complete-looking record is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Corrupt {
    /// The length field is larger than [`MAX_RECORD_LEN`].
    #[error("impossible record length {len} (the largest is {MAX_RECORD_LEN})")]
    Length {
        /// The length read.
        len: u32,
    },
    /// The CRC stored does not match the bytes.
    #[error("CRC mismatch (stored {stored:#010x}, computed {computed:#010x}) over a record of length {len}")]
    Crc {
        /// The record's length field.
        len: u32,
        /// The CRC in the header.
        stored: u32,
        /// The CRC of the kind and payload read.
        computed: u32,
    },
    /// The CRC is good but the kind is unknown: written by a newer sluice, or a bug.
    #[error("unknown record kind {kind} under a good CRC (written by a newer version of sluice?)")]
    Kind {
        /// The kind byte.
        kind: u8,
    },
}

impl Corrupt {
    /// Bytes the damaged record claims, header included, when its length is believable.
    #[cfg(test)]
    pub fn claimed_len(&self) -> Option<usize> {
        match *self {
            Corrupt::Length { .. } => None,
            Corrupt::Crc { len, .. } => Some(RECORD_HEADER_LEN + len as usize),
            Corrupt::Kind { .. } => None,
        }
    }
}

/// Reads the record at the front of `buf`. Never reads past `buf`, never allocates.
pub fn decode(buf: &[u8]) -> Decoded<'_> {
    if buf.len() < 4 {
        return if buf.iter().all(|&b| b == 0) {
            Decoded::End
        } else {
            Decoded::Torn(Torn::Header {
                available: buf.len(),
            })
        };
    }
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if len == 0 {
        return Decoded::End;
    }
    if len > MAX_RECORD_LEN {
        return Decoded::Corrupt(Corrupt::Length { len });
    }
    if buf.len() < RECORD_HEADER_LEN {
        return Decoded::Torn(Torn::Header {
            available: buf.len(),
        });
    }
    let needed = RECORD_HEADER_LEN + len as usize;
    if buf.len() < needed {
        return Decoded::Torn(Torn::Frame {
            needed,
            available: buf.len(),
        });
    }
    let stored = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    let kind = buf[RECORD_HEADER_LEN];
    let payload = &buf[RECORD_HEADER_LEN + 1..needed];
    let computed = checksum(kind, payload);
    if computed != stored {
        return Decoded::Corrupt(Corrupt::Crc {
            len,
            stored,
            computed,
        });
    }
    if kind == CHECKPOINT_KIND | BATCH_START {
        let pos = (payload.len() == CHECKPOINT_PAYLOAD_LEN).then(|| {
            let word = |at: usize| {
                let mut w = [0u8; 8];
                w.copy_from_slice(&payload[at..at + 8]);
                u64::from_le_bytes(w)
            };
            (word(0), word(8))
        });
        return Decoded::Checkpoint {
            len_on_disk: needed,
            pos,
        };
    }
    if kind & !BATCH_START == VOID_KIND {
        return Decoded::Void {
            len_on_disk: needed,
            batch_start: kind & BATCH_START != 0,
        };
    }
    match RecordKind::from_u8(kind & !BATCH_START) {
        Some(k) => Decoded::Record {
            kind: k,
            payload,
            len_on_disk: needed,
            batch_start: kind & BATCH_START != 0,
        },
        None => Decoded::Corrupt(Corrupt::Kind { kind }),
    }
}

#[cfg(test)]
mod tests;
