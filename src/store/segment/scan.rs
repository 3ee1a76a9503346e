//! Reading a segment back: every record with its CRC checked, and how the data ends — the
//! rule that tells a torn tail from corruption lives here ([`scan_records`]).

use std::path::Path;

use bytes::Bytes;

use super::{io_err, segment_path, StoreError, SEGMENT_HEADER_LEN, SEGMENT_MAGIC, SEGMENT_VERSION};
use crate::store::fs::Fs;
use crate::store::record::{self, Decoded, RecordKind, RECORD_HEADER_LEN};

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

/// Reads the records of `data` from `start`, passing each (offset, kind, payload) to
/// `visit`, and tells how they end. Payloads are zero-copy slices of `data`.
///
/// The rule telling a torn tail from corruption: a bad record (too short for its header or
/// length, a length out of bounds, a CRC mismatch) is **torn** only if nothing but zeros
/// follows it up to the end of the file — after the end its length claims, when that length
/// is believable (≤ 256 MiB), otherwise after its header. A crash only cuts short the last
/// write; what follows it is preallocated space. If non-zero bytes follow, the bad record is
/// **corrupt**: the data after it may have been synced and acknowledged, and the journal
/// must not silently drop it. A zero length ends the data the same way: only if zeros
/// follow. An unknown kind under a good CRC is always corrupt: a crash cannot write a
/// complete frame with a good checksum.
///
/// A power loss during the fsync of a batch can also leave a hole in one record of the batch
/// and a later record whole (the disk may persist the batch's sectors in any order). That
/// reads as corruption: safe, since none of the batch was acknowledged, but the start stops
/// until `sluice repair`. Telling it apart would need batch boundaries on disk (say a flag on
/// the first record after each sync: damage inside the last batch is then crash debris).
///
/// Known limit: damage to the last records of the last segment that leaves only zeros after
/// it (say a flipped bit in the final record) looks exactly like a torn write and is
/// truncated with a warning; without a sync marker in the format no reader can tell them
/// apart.
pub fn scan_records(
    data: &Bytes,
    start: usize,
    mut visit: impl FnMut(u64, RecordKind, Bytes),
) -> ScanEnd {
    let mut off = start;
    loop {
        let at = off as u64;
        match record::decode(&data[off..]) {
            Decoded::Record {
                kind,
                payload,
                len_on_disk,
            } => {
                visit(at, kind, data.slice_ref(payload));
                off += len_on_disk;
            }
            Decoded::End => {
                return match first_nonzero(&data[off..]) {
                    None => ScanEnd::Clean { offset: at },
                    Some(p) => ScanEnd::Corrupt {
                        offset: at,
                        reason: format!(
                            "a zero record length (the end of the data) followed by more data at \
                             offset {}",
                            off + p
                        ),
                    },
                };
            }
            Decoded::Torn(torn) => {
                return ScanEnd::Torn {
                    offset: at,
                    reason: format!("{torn} at the end of the file"),
                };
            }
            Decoded::Corrupt(bad @ record::Corrupt::Kind { .. }) => {
                return ScanEnd::Corrupt {
                    offset: at,
                    reason: bad.to_string(),
                };
            }
            Decoded::Corrupt(bad) => {
                let claimed = bad.claimed_len().unwrap_or(RECORD_HEADER_LEN);
                let end = (off + claimed).min(data.len());
                return match first_nonzero(&data[end..]) {
                    None => ScanEnd::Torn {
                        offset: at,
                        reason: format!("{bad}, only zeros after it"),
                    },
                    Some(p) => ScanEnd::Corrupt {
                        offset: at,
                        reason: format!("{bad}, followed by more data at offset {}", end + p),
                    },
                };
            }
        }
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
        return corrupt(format!(
            "segment format version {} is not one this sluice reads ({SEGMENT_VERSION})",
            word(8)
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
    scan_records(data, header_len, visit)
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
