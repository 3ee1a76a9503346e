//! Reading a segment back: every record with its CRC checked, and how the data ends — the
//! rule that tells a torn tail from corruption lives here ([`scan_records`]).

use std::path::Path;

use bytes::Bytes;

use super::{io_err, segment_path, StoreError, SEGMENT_HEADER_LEN, SEGMENT_MAGIC, SEGMENT_VERSION};
use crate::store::fs::Fs;
use crate::store::record::{self, Decoded, RecordKind, BATCH_START, RECORD_HEADER_LEN};

/// How the records of a segment end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanEnd {
    /// At `offset` the data ends: end of file, or zeros up to it.
    Clean {
        /// Where the next record would go.
        offset: u64,
    },
    /// The record at `offset` is incomplete or damaged and only zeros (or the end of the
    /// file) follow it: what a crash leaves when it cuts the last write short.
    Torn {
        /// Where the bad record starts.
        offset: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// Damage that a crash cannot explain: a bad record with more data after it, a zero
    /// length with data after it, an unknown kind under a good CRC, or a bad header.
    Corrupt {
        /// Where the bad data starts.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
}

/// The index of the first non-zero byte of `data`.
pub(crate) fn first_nonzero(data: &[u8]) -> Option<usize> {
    let mut base = 0;
    for chunk in data.chunks(4096) {
        // OR-folding a whole chunk vectorizes; the preallocated zeros are most of a segment.
        if chunk.iter().fold(0u8, |acc, &b| acc | b) != 0 {
            return chunk.iter().position(|&b| b != 0).map(|p| base + p);
        }
        base += chunk.len();
    }
    None
}

/// The index of the last non-zero byte of `data`.
pub(crate) fn last_nonzero(data: &[u8]) -> Option<usize> {
    let mut end = data.len();
    for chunk in data.rchunks(4096) {
        end -= chunk.len();
        if chunk.iter().fold(0u8, |acc, &b| acc | b) != 0 {
            return chunk.iter().rposition(|&b| b != 0).map(|p| end + p);
        }
    }
    None
}

/// The offset in `data` of a whole, CRC-checked record marked as the start of a batch, if
/// one lies anywhere in it (every offset is tried; the zeros after the data are not).
fn later_batch_start(data: &[u8]) -> Option<usize> {
    // Records start before the last non-zero byte, but may end after it (a checkpoint's
    // payload ends in the zero high bytes of its offset), so they are decoded from `data`.
    let end = last_nonzero(data)? + 1;
    (0..end.min(data.len().saturating_sub(RECORD_HEADER_LEN))).find(|&off| {
        // The flag in the kind byte is the cheap filter; the CRC decides.
        data[off + RECORD_HEADER_LEN] & BATCH_START != 0
            && matches!(
                record::decode(&data[off..]),
                Decoded::Record {
                    batch_start: true,
                    ..
                } | Decoded::Void {
                    batch_start: true,
                    ..
                } | Decoded::Checkpoint { .. }
            )
    })
}

/// Reads the records of `data` from `start`, passing each (offset, kind, payload) to
/// `visit`, and tells how they end. Payloads are zero-copy slices of `data`.
///
/// The rule telling a torn tail from corruption uses the batch marks ([`BATCH_START`]): the
/// first record written after each sync carries one, so every byte before a marked record was
/// on disk when that record was written. Damage (a record too short for its header or
/// length, a length out of bounds, a CRC mismatch, or a zero length with data after it) is
/// therefore **torn** — debris of the batch in flight when the power went, which nobody was
/// told is durable — when no whole marked record follows it anywhere; and **corrupt** when
/// one does, since then the damaged bytes had been synced and may have been acknowledged.
/// A power cut can persist the sectors of the last batch in any order, so a hole with whole
/// records of the same batch after it is crash debris too, and is truncated. An unknown kind
/// under a good CRC is always corrupt: a crash cannot write a complete frame with a good
/// checksum.
///
/// A false "corrupt" (message bytes that happen to form a marked record after a torn tail)
/// stops the start until `sluice repair`, which loses nothing; a false "torn" would need
/// synced data damaged with no later batch written, which a crash cannot do (the known limit:
/// media damage to the last synced batch, with nothing written after it, reads as torn).
pub fn scan_records(
    data: &Bytes,
    seq: u64,
    start: usize,
    mut visit: impl FnMut(u64, RecordKind, Bytes),
) -> ScanEnd {
    let mut off = start;
    loop {
        let at = off as u64;
        let damage = match record::decode(&data[off..]) {
            Decoded::Record {
                kind,
                payload,
                len_on_disk,
                ..
            } => {
                visit(at, kind, data.slice_ref(payload));
                off += len_on_disk;
                continue;
            }
            Decoded::Void { len_on_disk, .. } => {
                off += len_on_disk;
                continue;
            }
            Decoded::Checkpoint { len_on_disk, pos } => {
                if pos != Some((seq, at)) {
                    return ScanEnd::Corrupt {
                        offset: at,
                        reason: format!(
                            "a checkpoint written at {} found at segment {seq} offset {at}: a \
                             segment copied or renamed under another number, or data moved",
                            pos.map_or("an unreadable position".to_owned(), |(s, o)| format!(
                                "segment {s} offset {o}"
                            ))
                        ),
                    };
                }
                off += len_on_disk;
                continue;
            }
            Decoded::End => {
                if first_nonzero(&data[off..]).is_none() {
                    return ScanEnd::Clean { offset: at };
                }
                "a zero record length (the end of the data) followed by more data".to_owned()
            }
            Decoded::Torn(torn) => format!("{torn} at the end of the file"),
            Decoded::Corrupt(bad @ record::Corrupt::Kind { .. }) => {
                return ScanEnd::Corrupt {
                    offset: at,
                    reason: bad.to_string(),
                };
            }
            Decoded::Corrupt(bad) => bad.to_string(),
        };
        return match later_batch_start(&data[off + 1..]) {
            None => ScanEnd::Torn {
                offset: at,
                reason: format!("{damage}, with no later batch after it"),
            },
            Some(p) => ScanEnd::Corrupt {
                offset: at,
                reason: format!(
                    "{damage}, before a batch written later (at offset {})",
                    off + 1 + p
                ),
            },
        };
    }
}

/// Reads segment `seq` from `data` (its whole file): checks the header, then
/// [`scan_records`]. A file that is empty or all zeros — a segment whose creation a crash
/// interrupted before its header was synced — ends `Torn` at offset 0.
pub fn scan_segment(data: &Bytes, seq: u64, visit: impl FnMut(u64, RecordKind, Bytes)) -> ScanEnd {
    let header_len = SEGMENT_HEADER_LEN as usize;
    let corrupt = |reason: String| ScanEnd::Corrupt { offset: 0, reason };
    if data.len() < header_len || first_nonzero(&data[..header_len]).is_none() {
        return match first_nonzero(data) {
            None => ScanEnd::Torn {
                offset: 0,
                reason: "no segment header (a crash interrupted its creation)".into(),
            },
            Some(_) => corrupt("missing or incomplete segment header".into()),
        };
    }
    if data[..8] != SEGMENT_MAGIC {
        return corrupt("not a sluice journal segment (bad magic)".into());
    }
    let word = |at: usize| u32::from_le_bytes(data[at..at + 4].try_into().expect("4 bytes"));
    if word(8) != SEGMENT_VERSION {
        let version = word(8);
        let why = if version < SEGMENT_VERSION {
            "written by an older sluice, whose journals this one does not read (move the \
             journal directory away to start empty, or run the older sluice to drain it)"
        } else {
            "written by a newer sluice"
        };
        return corrupt(format!(
            "segment format version {version} is not the one this sluice reads \
             ({SEGMENT_VERSION}): {why}"
        ));
    }
    if word(12) != 0 {
        return corrupt(format!("unknown segment flags {:#x}", word(12)));
    }
    let named = u64::from_le_bytes(data[16..24].try_into().expect("8 bytes"));
    if named != seq {
        return corrupt(format!(
            "the header says segment {named} but the file name says {seq}"
        ));
    }
    scan_records(data, seq, header_len, visit)
}

/// A record read back from a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentRecord {
    /// Its offset in the file.
    pub offset: u64,
    /// Its kind.
    pub kind: RecordKind,
    /// Its payload.
    pub payload: Bytes,
}

/// Every record of segment `seq` in `dir`, CRC-checked, and how they end.
pub fn read_segment(
    fs: &dyn Fs,
    dir: &Path,
    seq: u64,
) -> Result<(Vec<SegmentRecord>, ScanEnd), StoreError> {
    let path = segment_path(dir, seq);
    let data = Bytes::from(fs.read(&path).map_err(io_err("read", &path))?);
    let mut records = Vec::new();
    let end = scan_segment(&data, seq, |offset, kind, payload| {
        records.push(SegmentRecord {
            offset,
            kind,
            payload,
        })
    });
    Ok((records, end))
}
