//! What an operator's `sluice repair` does to a journal recovery refused: truncate a damaged
//! tail ([`repair`]) or step over damaged records ([`skip_damaged`]), then rewrite the
//! MANIFEST so the mended journal checks clean. Recovery itself never calls these.

use std::path::{Path, PathBuf};

use super::super::fs::Fs;
use super::super::manifest;
use super::super::record::{self, encoded_len, Decoded};
use super::super::segment::{
    last_nonzero, list_segments, parse_segment_file_name, segment_path, SEGMENT_HEADER_LEN,
};
use super::*;

/// What [`repair`] dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repaired {
    /// The segment truncated.
    pub file: PathBuf,
    /// Where it now ends (0: it was removed).
    pub offset: u64,
    /// Non-zero bytes dropped from it.
    pub dropped_bytes: u64,
    /// The later segments deleted.
    pub deleted_segments: Vec<PathBuf>,
    /// Their total size.
    pub deleted_bytes: u64,
}

/// Truncates the journal at `offset` of segment `file` (as named by
/// [`RecoveryError::Corrupt`]; only its file name is used, looked up in `dir`) and deletes
/// every later segment. Offset 0 removes the segment itself; an offset inside the segment
/// header is refused. Every record from there on is lost: this is the operator's decision.
///
/// Crash-safe by order: the later segments are removed and the directory synced before the
/// truncation, so a crash midway leaves the damage in place and the repair can be run again,
/// never a journal whose later segments outlive the cut.
pub fn repair(
    fs: &dyn Fs,
    dir: &Path,
    file: &Path,
    offset: u64,
) -> Result<Repaired, RecoveryError> {
    let invalid = |msg: String| RecoveryError::Io {
        op: "repair",
        file: file.to_owned(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, msg),
    };
    let name = file.file_name().and_then(|n| n.to_str());
    if name == Some(manifest::MANIFEST_FILE) {
        // A missing or spoiled manifest: written again from the segments there are.
        rewrite_manifest(fs, dir)?;
        return Ok(Repaired {
            file: file.to_owned(),
            offset: 0,
            dropped_bytes: 0,
            deleted_segments: Vec::new(),
            deleted_bytes: 0,
        });
    }
    let seq = name
        .and_then(parse_segment_file_name)
        .ok_or_else(|| invalid("not a journal segment file name".into()))?;
    let path = segment_path(dir, seq);
    let existing = list_segments(fs, dir).map_err(io_err("list", dir))?;
    if offset == 0 && !existing.contains(&seq) {
        // Segments found missing: their records are gone already. Recording that in the
        // manifest drops nothing more, except, for a gap, every segment after it (below).
        if existing.first().is_some_and(|&f| seq < f) || existing.last().is_some_and(|&l| seq > l) {
            rewrite_manifest(fs, dir)?;
            return Ok(Repaired {
                file: path,
                offset: 0,
                dropped_bytes: 0,
                deleted_segments: Vec::new(),
                deleted_bytes: 0,
            });
        }
    }
    let data = match fs.read(&path) {
        Ok(data) => data,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && offset == 0 => Vec::new(),
        Err(e) => return Err(io_err("read", &path)(e)),
    };
    if offset > data.len() as u64 {
        return Err(invalid(format!(
            "offset {offset} is past the end ({})",
            data.len()
        )));
    }
    if offset != 0 && offset < SEGMENT_HEADER_LEN {
        return Err(invalid(format!(
            "offset {offset} is inside the segment header; 0 removes the whole segment"
        )));
    }
    let dropped_bytes = last_nonzero(&data[offset as usize..]).map_or(0, |p| p as u64 + 1);
    let later: Vec<u64> = list_segments(fs, dir)
        .map_err(io_err("list", dir))?
        .into_iter()
        .filter(|&s| s > seq)
        .collect();
    let mut deleted_segments = Vec::new();
    let mut deleted_bytes = 0;
    for &s in later.iter().rev() {
        let p = segment_path(dir, s);
        let f = fs.open(&p).map_err(io_err("open", &p))?;
        deleted_bytes += f.len().map_err(io_err("stat", &p))?;
        drop(f);
        fs.remove(&p).map_err(io_err("remove", &p))?;
        deleted_segments.push(p);
    }
    deleted_segments.reverse();
    fs.sync_dir(dir).map_err(io_err("sync directory", dir))?;
    if offset == 0 {
        if existing.contains(&seq) {
            fs.remove(&path).map_err(io_err("remove", &path))?;
        }
        fs.sync_dir(dir).map_err(io_err("sync directory", dir))?;
    } else {
        let f = fs.open(&path).map_err(io_err("open", &path))?;
        f.set_len(offset).map_err(io_err("truncate", &path))?;
        f.sync_data().map_err(io_err("sync", &path))?;
    }
    rewrite_manifest(fs, dir)?;
    tracing::warn!(
        file = %path.display(),
        offset,
        dropped_bytes,
        deleted_segments = deleted_segments.len(),
        deleted_bytes,
        "journal repaired: truncated"
    );
    Ok(Repaired {
        file: path,
        offset,
        dropped_bytes,
        deleted_segments,
        deleted_bytes,
    })
}

/// What [`skip_damaged`] blanked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The segment.
    pub file: PathBuf,
    /// Where the blanked bytes start.
    pub offset: u64,
    /// How many bytes were turned into a void record (the damaged record, and any bytes up
    /// to the next whole record with a good CRC).
    pub len: u64,
    /// Where reading resumes: the next whole record (None: nothing more in this segment).
    pub resumed_at: Option<u64>,
}

/// The offset, from `from`, of the next whole record with a good CRC in `data` (records
/// resynchronise on length + CRC), if there is one before the zeros after the data.
fn resync(data: &[u8], from: usize) -> Option<usize> {
    let end = last_nonzero(data.get(from..)?)? + from + 1;
    (from..end).find(|&off| {
        matches!(
            record::decode(&data[off..]),
            Decoded::Record { .. } | Decoded::Void { .. } | Decoded::Checkpoint { .. }
        )
    })
}

/// `sluice repair --skip-damaged`: instead of truncating at damage (`offset` in segment
/// `file`, as named by [`RecoveryError::Corrupt`]), turns the damaged bytes, up to the next
/// whole record with a good CRC (or the end of the data), into one void record, which readers
/// skip, and keeps everything after it. Every later record keeps its position. Damage in a
/// segment header (offset below the header's end), a missing segment or the manifest is
/// handled as [`repair`] does; so is damage shorter than a void record (9 bytes) with data
/// after it, which cannot be blanked in place (`None` then: use [`repair`]).
pub fn skip_damaged(
    fs: &dyn Fs,
    dir: &Path,
    file: &Path,
    offset: u64,
) -> Result<Option<Skipped>, RecoveryError> {
    let Some(seq) = file
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(parse_segment_file_name)
    else {
        return Ok(None);
    };
    let path = segment_path(dir, seq);
    if offset < SEGMENT_HEADER_LEN {
        return Ok(None);
    }
    let data = match fs.read(&path) {
        Ok(data) => data,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("read", &path)(e)),
    };
    let at = offset as usize;
    if at >= data.len() {
        return Ok(None);
    }
    let next = resync(&data, at + 1);
    let end = match next {
        Some(n) => n,
        None => last_nonzero(&data[at..]).map_or(at, |p| at + p + 1),
    };
    let span = end - at;
    let blank = if span == 0 {
        Vec::new()
    } else if span >= encoded_len(0) {
        let mut buf = bytes::BytesMut::new();
        let zeros = vec![0u8; span - encoded_len(0)];
        record::encode_raw(record::VOID_KIND, &[&zeros], false, &mut buf).map_err(|e| {
            io_err("blank", &path)(std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
        })?;
        buf.to_vec()
    } else if next.is_none() {
        // Debris shorter than a record at the end of the data: zeros end the segment.
        vec![0u8; span]
    } else {
        return Ok(None);
    };
    let f = fs.open(&path).map_err(io_err("open", &path))?;
    f.write_at(offset, &blank).map_err(io_err("write", &path))?;
    f.sync_data().map_err(io_err("sync", &path))?;
    // The journal no longer ends where a clean shutdown left it, if it did.
    rewrite_manifest(fs, dir)?;
    tracing::warn!(
        file = %path.display(),
        offset,
        len = span,
        "journal repaired: a damaged record skipped (blanked), the records after it kept"
    );
    Ok(Some(Skipped {
        file: path,
        offset,
        len: span as u64,
        resumed_at: next.map(|n| n as u64),
    }))
}

/// Writes the manifest from the segments there are (none: no manifest, a new journal).
fn rewrite_manifest(fs: &dyn Fs, dir: &Path) -> Result<(), RecoveryError> {
    let path = manifest::manifest_path(dir);
    let existing = list_segments(fs, dir).map_err(io_err("list", dir))?;
    match existing.first().zip(existing.last()) {
        Some((&low, &high)) => manifest::write(fs, dir, low, high).map_err(io_err("write", &path)),
        None => match fs.remove(&path) {
            Ok(()) => fs.sync_dir(dir).map_err(io_err("sync directory", dir)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("remove", &path)(e)),
        },
    }
}
