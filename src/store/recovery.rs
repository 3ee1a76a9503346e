//! Reading the journal back at start, and repairing it on request.
//!
//! [`recover`] reads every segment in order, checks every CRC, and yields the records in the
//! order they were written, each with its position (a later compaction refers to records by
//! it). The only damage it mends by itself is the one a crash is expected to leave: a torn
//! record at the end of the last segment, which it truncates with a warning (or, when a crash
//! interrupted the creation of the last segment before its header was synced, the empty
//! segment, which it removes). Anything else stops the start with
//! [`RecoveryError::Corrupt`], naming the file and offset; [`repair`] truncates the journal
//! there when the operator asks for it. The rule for telling the two apart is
//! [`scan_records`](super::segment::scan_records)'s.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::fs::Fs;
use super::manifest::{self, Manifest};
use super::record::{self, encoded_len, Decoded, RecordKind};
use super::segment::{
    last_nonzero, list_segments, scan_segment, segment_path, RecordPos, ScanEnd, SEGMENT_HEADER_LEN,
};

/// How often a long recovery logs its progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// A record read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveredRecord {
    /// Where it is.
    pub pos: RecordPos,
    /// Its kind.
    pub kind: RecordKind,
    /// Its payload: a zero-copy slice of the segment read, which it keeps in memory; copy it
    /// to keep a payload long without keeping its whole segment.
    pub payload: Bytes,
}

/// A torn tail that recovery cut off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TruncatedTail {
    /// The segment file.
    pub file: PathBuf,
    /// Where it now ends (0: the file was removed, as its header never made it to disk).
    pub offset: u64,
    /// Non-zero bytes dropped.
    pub dropped_bytes: u64,
    /// What was wrong with the torn record.
    pub reason: String,
}

/// What recovery found, besides the records.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RecoverySummary {
    /// The segments read, ascending (without one removed as never created).
    pub segments: Vec<u64>,
    /// Where the data ends: the writer appends here. None when there is no segment.
    pub tail: Option<RecordPos>,
    /// The torn tail cut off, if there was one.
    pub truncated: Option<TruncatedTail>,
    /// Records read.
    pub records: u64,
    /// Bytes those records take on disk.
    pub bytes: u64,
    /// How long recovery took.
    pub elapsed: Duration,
}

/// The journal as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// Every record, in the order written.
    pub records: Vec<RecoveredRecord>,
    /// The rest of what recovery found.
    pub summary: RecoverySummary,
}

/// Why the journal could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    /// A file-system call failed.
    #[error("journal: cannot {op} {}: {source}", file.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        file: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// Damage a crash cannot explain.
    #[error(
        "journal corrupt: {file} at offset {offset}: {reason}. sluice will not start, rather than \
         silently drop records that may have been acknowledged. To start anyway, losing every \
         record from this point on (the rest of this segment and all later segments), run \
         `sluice repair`: it truncates the journal at {file} offset {offset}. Copy the data \
         directory first if you may want to look at what is dropped.",
        file = file.display()
    )]
    Corrupt {
        /// The segment file.
        file: PathBuf,
        /// Where the damage starts.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
}

fn io_err<'a>(
    op: &'static str,
    file: &'a Path,
) -> impl FnOnce(std::io::Error) -> RecoveryError + 'a {
    move |source| RecoveryError::Io {
        op,
        file: file.to_owned(),
        source,
    }
}

/// Reads the journal in `dir` back: every record in order, or why not. Truncates a torn tail
/// of the last segment (and logs it); logs the time taken.
pub fn recover(fs: &dyn Fs, dir: &Path) -> Result<Recovered, RecoveryError> {
    let mut records = Vec::new();
    let summary = recover_with(fs, dir, |r| records.push(r))?;
    Ok(Recovered { records, summary })
}

/// As [`recover`], passing each record to `visit` instead of collecting them, so that the
/// caller can rebuild its state without holding every record twice. When it returns an error,
/// the records visited so far must be thrown away.
pub fn recover_with(
    fs: &dyn Fs,
    dir: &Path,
    visit: impl FnMut(RecoveredRecord),
) -> Result<RecoverySummary, RecoveryError> {
    read_journal(fs, dir, true, visit)
}

/// As [`recover_with`], but changing nothing: a torn tail is reported in
/// [`RecoverySummary::truncated`] as what recovery *would* cut, and left on disk. This is
/// what `sluice repair` runs without `--yes` (issue 12: it must never change a journal
/// unasked, torn tails included).
pub fn check_with(
    fs: &dyn Fs,
    dir: &Path,
    visit: impl FnMut(RecoveredRecord),
) -> Result<RecoverySummary, RecoveryError> {
    read_journal(fs, dir, false, visit)
}

fn read_journal(
    fs: &dyn Fs,
    dir: &Path,
    mend: bool,
    mut visit: impl FnMut(RecoveredRecord),
) -> Result<RecoverySummary, RecoveryError> {
    let started = Instant::now();
    let fenced_file = manifest::fenced_path(dir);
    let fence = manifest::read_fenced(fs, dir).map_err(io_err("read", &fenced_file))?;
    if let (true, Some(at)) = (mend, fence) {
        drop_after_fence(fs, dir, at)?;
    }
    let seqs = list_segments(fs, dir).map_err(io_err("list", dir))?;
    let manifest_file = manifest::manifest_path(dir);
    let manifest = manifest::read(fs, dir).map_err(io_err("read", &manifest_file))?;
    let (dead, mut seqs) = check_segments(dir, seqs, manifest)?;
    // Checking only (repair without --yes): read as if the fence had been applied.
    if let Some((s, _)) = fence {
        seqs.retain(|&seq| seq <= s);
    }
    let clean = manifest.and_then(|m| m.clean);
    if mend && !dead.is_empty() {
        // Recorded as deleted before a crash cut their removal short: dead, never replayed.
        for &seq in &dead {
            let path = segment_path(dir, seq);
            fs.remove(&path).map_err(io_err("remove", &path))?;
        }
        fs.sync_dir(dir).map_err(io_err("sync directory", dir))?;
    }
    let mut summary = RecoverySummary::default();
    // The segment read last: its file, where its data ends, its file's length.
    let mut previous: Option<(PathBuf, u64, u64)> = None;
    // Long recoveries say how far they are (issue 12 §7): the broker serves nothing meanwhile.
    let mut last_progress = Instant::now();
    // Segments are read ahead on a thread of their own (two at most in memory besides the
    // one being scanned), so that reading the disk overlaps checking and replaying records
    // (issue 12 §7).
    let to_read = &seqs;
    std::thread::scope(|scope| -> Result<(), RecoveryError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(2);
        scope.spawn(move || {
            for &seq in to_read {
                if tx.send(fs.read(&segment_path(dir, seq))).is_err() {
                    break;
                }
            }
        });
        for (i, &seq) in seqs.iter().enumerate() {
            if mend && last_progress.elapsed() >= PROGRESS_EVERY {
                last_progress = Instant::now();
                tracing::info!(
                    dir = %dir.display(),
                    segments_read = i,
                    segments = seqs.len(),
                    records = summary.records,
                    bytes = summary.bytes,
                    elapsed_s = started.elapsed().as_secs_f64(),
                    "journal recovery in progress"
                );
            }
            let last = i + 1 == seqs.len();
            let path = segment_path(dir, seq);
            let read = rx.recv().unwrap_or_else(|_| fs.read(&path));
            let mut data = Bytes::from(read.map_err(io_err("read", &path))?);
            if let Some((s, o)) = fence {
                if s == seq && (o as usize) < data.len() {
                    data.truncate(o as usize);
                }
            }
            // Within a batch, the writer starts a segment only when the next record does not fit
            // in the one before (whose file is preallocated to its capacity): if it would have
            // fitted, records at the end of the previous segment were zeroed or lost.
            if let (Some((prev, end, len)), Some(first)) = (&previous, first_record_len(&data)) {
                if end + first as u64 <= *len {
                    return Err(RecoveryError::Corrupt {
                        file: prev.clone(),
                        offset: *end,
                        reason: format!(
                            "the data of this segment ends here, but the first record of segment \
                             {seq} ({first} bytes) would have fitted after it, so the writer would \
                             not have started a new segment: records at the end of this segment \
                             were zeroed or lost"
                        ),
                    });
                }
            }
            let end = scan_segment(&data, seq, |offset, kind, payload| {
                summary.records += 1;
                summary.bytes += encoded_len(payload.len()) as u64;
                visit(RecoveredRecord {
                    pos: RecordPos {
                        segment: seq,
                        offset,
                    },
                    kind,
                    payload,
                });
            });
            let (offset, reason) = match end {
                ScanEnd::Clean { offset } => {
                    previous = Some((path, offset, data.len() as u64));
                    summary.segments.push(seq);
                    summary.tail = Some(RecordPos {
                        segment: seq,
                        offset,
                    });
                    continue;
                }
                ScanEnd::Torn { offset, reason } if last && clean.is_none() => (offset, reason),
                ScanEnd::Torn { offset, reason } if last => {
                    let (s, o) = clean.unwrap_or_default();
                    return Err(RecoveryError::Corrupt {
                        file: path,
                        offset,
                        reason: format!(
                            "{reason}; but sluice was shut down cleanly with the journal ending at \
                             segment {s} offset {o}, so this is damage, not a crash's torn tail"
                        ),
                    });
                }
                ScanEnd::Torn { offset, reason } => {
                    let reason = format!(
                        "{reason}; this is not the last segment, so it was complete and synced before \
                         the next one was created"
                    );
                    return Err(RecoveryError::Corrupt {
                        file: path,
                        offset,
                        reason,
                    });
                }
                ScanEnd::Corrupt { offset, reason } => {
                    return Err(RecoveryError::Corrupt {
                        file: path,
                        offset,
                        reason,
                    });
                }
            };
            let dropped_bytes = last_nonzero(&data[offset as usize..]).map_or(0, |p| p as u64 + 1);
            if !mend {
                if offset >= SEGMENT_HEADER_LEN {
                    summary.segments.push(seq);
                    summary.tail = Some(RecordPos {
                        segment: seq,
                        offset,
                    });
                }
                summary.truncated = Some(TruncatedTail {
                    file: path,
                    offset,
                    dropped_bytes,
                    reason,
                });
                continue;
            }
            tracing::warn!(
                file = %path.display(),
                offset,
                dropped_bytes,
                %reason,
                "journal: truncating a record torn by a crash at the end of the last segment"
            );
            if offset < SEGMENT_HEADER_LEN {
                fs.remove(&path).map_err(io_err("remove", &path))?;
                fs.sync_dir(dir).map_err(io_err("sync directory", dir))?;
            } else {
                let file = fs.open(&path).map_err(io_err("open", &path))?;
                file.set_len(offset).map_err(io_err("truncate", &path))?;
                file.sync_data().map_err(io_err("sync", &path))?;
                summary.segments.push(seq);
                summary.tail = Some(RecordPos {
                    segment: seq,
                    offset,
                });
            }
            summary.truncated = Some(TruncatedTail {
                file: path,
                offset,
                dropped_bytes,
                reason,
            });
        }
        Ok(())
    })?;
    if let Some((s, o)) = clean {
        let end = summary.tail.map(|t| (t.segment, t.offset));
        if end != Some((s, o)) {
            let (file, offset) = end.map_or((segment_path(dir, s), 0), |(es, eo)| {
                (segment_path(dir, es), eo)
            });
            return Err(RecoveryError::Corrupt {
                file,
                offset,
                reason: format!(
                    "the journal ends here, but sluice was shut down cleanly with it ending at \
                     segment {s} offset {o}: records were cut off or data added since"
                ),
            });
        }
    }
    summary.elapsed = started.elapsed();
    if !mend {
        return Ok(summary);
    }
    tracing::info!(
        dir = %dir.display(),
        segments = summary.segments.len(),
        records = summary.records,
        bytes = summary.bytes,
        elapsed_ms = summary.elapsed.as_secs_f64() * 1e3,
        "journal recovered"
    );
    Ok(summary)
}

/// Applies the fence marker: the journal was fenced after a write or sync failed at `at`
/// (segment, offset), and nothing from there on was acknowledged (its producers were told
/// `rejected`), though the kernel may have kept and written it. It is dropped: the segment is
/// cut there, later ones deleted, the manifest's high-water mark lowered, the marker removed.
fn drop_after_fence(fs: &dyn Fs, dir: &Path, at: (u64, u64)) -> Result<(), RecoveryError> {
    let (seg, off) = at;
    let mut dropped = 0u64;
    for seq in list_segments(fs, dir).map_err(io_err("list", dir))? {
        let path = segment_path(dir, seq);
        if seq > seg {
            let data = fs.read(&path).map_err(io_err("read", &path))?;
            dropped += last_nonzero(&data).map_or(0, |p| p as u64 + 1);
            fs.remove(&path).map_err(io_err("remove", &path))?;
        } else if seq == seg {
            let data = fs.read(&path).map_err(io_err("read", &path))?;
            if (off as usize) < data.len() {
                dropped += last_nonzero(&data[off as usize..]).map_or(0, |p| p as u64 + 1);
                let f = fs.open(&path).map_err(io_err("open", &path))?;
                f.set_len(off).map_err(io_err("truncate", &path))?;
                f.sync_data().map_err(io_err("sync", &path))?;
            }
        }
    }
    fs.sync_dir(dir).map_err(io_err("sync directory", dir))?;
    let manifest_file = manifest::manifest_path(dir);
    if let Some(m) = manifest::read(fs, dir).map_err(io_err("read", &manifest_file))? {
        if m.high > seg {
            manifest::write(fs, dir, m.low.min(seg), seg)
                .map_err(io_err("write", &manifest_file))?;
        }
    }
    let fenced_file = manifest::fenced_path(dir);
    manifest::clear_fenced(fs, dir).map_err(io_err("remove", &fenced_file))?;
    tracing::warn!(
        segment = seg,
        offset = off,
        dropped_bytes = dropped,
        "journal: it was fenced after a failed write or sync; dropped what was written from \
         there on, which no producer was told is stored"
    );
    Ok(())
}

/// Bytes taken by the first record of a segment, if one is there whole and continues the
/// batch of the segment before. (A batch start proves nothing here: after a restart the
/// writer goes on in the segment recovery left last, even a nearly empty one.)
fn first_record_len(data: &[u8]) -> Option<usize> {
    match record::decode(data.get(SEGMENT_HEADER_LEN as usize..)?) {
        Decoded::Record {
            len_on_disk,
            batch_start: false,
            ..
        }
        | Decoded::Void {
            len_on_disk,
            batch_start: false,
        } => Some(len_on_disk),
        _ => None,
    }
}

/// Checks the segments on disk against the manifest: every one from its `low` to its `high`
/// must be there (one more past `high` is a creation the manifest had not recorded yet).
/// Returns the segments below `low` (dead: their deletion was cut short) and the ones to read.
fn check_segments(
    dir: &Path,
    seqs: Vec<u64>,
    manifest: Option<Manifest>,
) -> Result<(Vec<u64>, Vec<u64>), RecoveryError> {
    let corrupt = |file: PathBuf, reason: String| RecoveryError::Corrupt {
        file,
        offset: 0,
        reason,
    };
    let Some(m) = manifest else {
        // A new journal whose first segment a crash left before the manifest was written.
        if seqs.len() <= 1 {
            return Ok((Vec::new(), seqs));
        }
        return Err(corrupt(
            manifest::manifest_path(dir),
            format!(
                "the manifest is missing but there are {} segments, so a missing segment could \
                 not be noticed",
                seqs.len()
            ),
        ));
    };
    let (dead, live): (Vec<u64>, Vec<u64>) = seqs.into_iter().partition(|&s| s < m.low);
    let Some((&first, &last)) = live.first().zip(live.last()) else {
        return Err(corrupt(
            segment_path(dir, m.low),
            format!(
                "segments {}..={} are all missing (the manifest says they exist): every record \
                 in them is gone",
                m.low, m.high
            ),
        ));
    };
    if first > m.low {
        return Err(corrupt(
            segment_path(dir, m.low),
            format!(
                "segments {}..={} are missing (the manifest says segments from {} on exist): \
                 deleted or lost, with every record in them",
                m.low,
                first - 1,
                m.low
            ),
        ));
    }
    if let Some(w) = live.windows(2).find(|w| w[1] != w[0] + 1) {
        return Err(corrupt(
            segment_path(dir, w[1]),
            format!(
                "segments {}..={} are missing between {} and {}: deleted or lost, with every \
                 record in them",
                w[0] + 1,
                w[1] - 1,
                w[0],
                w[1]
            ),
        ));
    }
    if last < m.high {
        return Err(corrupt(
            segment_path(dir, last + 1),
            format!(
                "segments {}..={} are missing (the manifest's high-water mark is {}): the newest \
                 records are gone",
                last + 1,
                m.high,
                m.high
            ),
        ));
    }
    if last > m.high + 1 {
        return Err(corrupt(
            segment_path(dir, last),
            format!(
                "segment {last} is beyond the high-water mark {}: not written by this journal \
                 (copied in?)",
                m.high
            ),
        ));
    }
    Ok((dead, live))
}

pub use mend::{repair, skip_damaged, Skipped};

mod mend;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod corruption_tests;
