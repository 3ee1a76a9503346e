//! Segment files: where records are appended, and how a segment is read back.
//!
//! A journal directory holds `NNNNNNNNNNNNNNNNNNNN.seg` files, the 20 digits being the
//! segment's sequence number (so names sort as numbers do). A segment is
//!
//! ```text
//! [header: 24 bytes][record][record]...[zeros up to the preallocated size]
//! ```
//!
//! The header — magic `SLUICEJL`, format version (u32 LE, 1), flags (u32 LE, 0) and the
//! sequence number (u64 LE) — is not in the design; it is here so that a later format can be
//! told from this one, and so that a file copied or renamed under the wrong number is caught
//! rather than replayed out of order.
//!
//! **Durability order.** A segment is created (`create_new`), preallocated, given its header,
//! synced, and only then is its directory synced: when creation returns, the segment is
//! durable with its header. (If a crash comes first, the file may vanish, or survive empty if
//! the file system persisted the entry on its own; recovery removes such a last segment.) The
//! writer syncs a segment before it creates the next one, so every segment but the last is
//! complete and durable; only the last can end in a record torn by a crash. Deleting a segment
//! syncs the directory too.
//!
//! Reading a segment back, and the rule telling a torn tail from corruption, are in `scan.rs`
//! ([`scan_records`]).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::BytesMut;

use super::fs::{Fs, FsFile};
use super::manifest;
use super::record::{self, RecordKind, RecordTooLarge};

mod scan;

pub(crate) use scan::last_nonzero;
pub use scan::{read_segment, scan_segment, ScanEnd};

/// Segments are preallocated to this size unless configured otherwise: 64 MiB.
pub const DEFAULT_SEGMENT_SIZE: u64 = 64 * 1024 * 1024;
/// The smallest segment size accepted: one page.
pub const MIN_SEGMENT_SIZE: u64 = 4096;
/// The first bytes of every segment.
pub const SEGMENT_MAGIC: [u8; 8] = *b"SLUICEJL";
/// The segment format this code writes and reads.
/// Version 2 (issue 12): checkpoints, void records, and the manifest beside the segments.
pub const SEGMENT_VERSION: u32 = 2;
/// Bytes of the segment header: the first record starts here.
pub const SEGMENT_HEADER_LEN: u64 = 24;

/// Where a record is: its segment's sequence number and its byte offset in that file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordPos {
    /// The segment's sequence number.
    pub segment: u64,
    /// The record's offset in the segment file.
    pub offset: u64,
}

/// What went wrong writing the journal.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file-system call failed.
    #[error("journal: cannot {op} {}: {source}", file.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        file: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// An earlier write or sync failed, so nothing more is written (issue 7: fence, never
    /// retry a sync as if nothing happened).
    #[error("journal fenced after an earlier failure ({cause}): no more durable writes")]
    Fenced {
        /// The first failure.
        cause: String,
    },
    /// The payload cannot fit one record.
    #[error(transparent)]
    TooLarge(#[from] RecordTooLarge),
    /// The journal was closed (the broker is stopping).
    #[error("the journal is closed")]
    Closed,
    /// The file system's free space is below the floor: no new segment is started.
    #[error("journal: the disk holding {} is full (less free space than the floor of {floor} bytes plus one segment, [storage] min_free_bytes, or no space left on it); durable messages are refused until space is freed", dir.display())]
    Full {
        /// The floor.
        floor: u64,
        /// The journal directory.
        dir: PathBuf,
    },
    /// The configured segment size is too small.
    #[error("journal segment size {0} is too small (at least {MIN_SEGMENT_SIZE} bytes)")]
    SegmentSize(u64),
}

fn io_err<'a>(op: &'static str, file: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        op,
        file: file.to_owned(),
        source,
    }
}

/// The file name of segment `seq`.
pub fn segment_file_name(seq: u64) -> String {
    format!("{seq:020}.seg")
}

/// The sequence number in a segment file name, if `name` is one.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The path of segment `seq` in `dir`.
pub fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(segment_file_name(seq))
}

/// The sequence numbers of the segments in `dir`, ascending. Other files are ignored.
pub fn list_segments(fs: &dyn Fs, dir: &Path) -> io::Result<Vec<u64>> {
    let mut seqs: Vec<u64> = fs
        .list(dir)?
        .iter()
        .filter_map(|n| parse_segment_file_name(n))
        .collect();
    seqs.sort_unstable();
    Ok(seqs)
}

/// The header of segment `seq`.
pub fn encode_header(seq: u64) -> [u8; SEGMENT_HEADER_LEN as usize] {
    let mut h = [0u8; SEGMENT_HEADER_LEN as usize];
    h[..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
    // 12..16: flags, none defined.
    h[16..24].copy_from_slice(&seq.to_le_bytes());
    h
}

/// Removes segment `seq` and syncs the directory.
pub fn delete_segment(fs: &dyn Fs, dir: &Path, seq: u64) -> Result<(), StoreError> {
    let path = segment_path(dir, seq);
    // Recorded first: a crash before the removal leaves a segment the manifest says is gone
    // (skipped as dead), never a missing one it says must exist.
    let manifest = manifest::manifest_path(dir);
    manifest::record_deleting(fs, dir, seq).map_err(io_err("update", &manifest))?;
    fs.remove(&path).map_err(io_err("remove", &path))?;
    fs.sync_dir(dir).map_err(io_err("sync directory", dir))
}

/// One segment file open for appending.
#[derive(Debug)]
pub struct Segment {
    seq: u64,
    file: Box<dyn FsFile>,
    write_offset: u64,
    capacity: u64,
}

impl Segment {
    /// Creates segment `seq` preallocated to `capacity` bytes, writes and syncs its header,
    /// then syncs the directory. A failure leaves no segment behind (best effort).
    pub fn create(fs: &dyn Fs, dir: &Path, seq: u64, capacity: u64) -> Result<Segment, StoreError> {
        let path = segment_path(dir, seq);
        let file = fs.create(&path).map_err(io_err("create", &path))?;
        let setup = || -> Result<(), StoreError> {
            file.allocate(capacity)
                .map_err(io_err("preallocate", &path))?;
            file.write_at(0, &encode_header(seq))
                .map_err(io_err("write", &path))?;
            file.sync_data().map_err(io_err("sync", &path))?;
            fs.sync_dir(dir).map_err(io_err("sync directory", dir))?;
            // Only once the segment is durable: the manifest never names one a crash can lose.
            let manifest = manifest::manifest_path(dir);
            manifest::record_created(fs, dir, seq).map_err(io_err("update", &manifest))
        };
        if let Err(e) = setup() {
            let _ = fs.remove(&path);
            return Err(e);
        }
        Ok(Segment {
            seq,
            file,
            write_offset: SEGMENT_HEADER_LEN,
            capacity,
        })
    }

    /// Opens segment `seq` to append at `write_offset` (where recovery found the data to
    /// end), extending it to `capacity` if it is shorter (after a torn tail was truncated).
    pub fn open(
        fs: &dyn Fs,
        dir: &Path,
        seq: u64,
        write_offset: u64,
        capacity: u64,
    ) -> Result<Segment, StoreError> {
        let path = segment_path(dir, seq);
        let file = fs.open(&path).map_err(io_err("open", &path))?;
        let len = file.len().map_err(io_err("stat", &path))?;
        if write_offset < SEGMENT_HEADER_LEN || write_offset > len {
            return Err(StoreError::Io {
                op: "append to",
                file: path,
                source: io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("write offset {write_offset} outside the data (length {len})"),
                ),
            });
        }
        let capacity = capacity.max(len);
        if len < capacity {
            // Not synced here: the new length becomes durable with the next record's sync,
            // and a crash before that leaves a shorter file, which reads the same.
            file.allocate(capacity)
                .map_err(io_err("preallocate", &path))?;
        }
        Ok(Segment {
            seq,
            file,
            write_offset,
            capacity,
        })
    }

    /// Its sequence number.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// Where the next bytes go.
    pub fn write_offset(&self) -> u64 {
        self.write_offset
    }

    /// Its preallocated size.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Bytes left before it is full.
    pub fn remaining(&self) -> u64 {
        self.capacity - self.write_offset
    }

    /// Writes encoded records at the write offset; returns the offset they start at. Not
    /// durable until [`Segment::sync`]. Refuses to go past the capacity.
    pub fn write(&mut self, bytes: &[u8]) -> Result<u64, StoreError> {
        let at = self.write_offset;
        if bytes.len() as u64 > self.remaining() {
            return Err(StoreError::Io {
                op: "write",
                file: self.path().to_owned(),
                source: io::Error::new(io::ErrorKind::InvalidInput, "past the segment's capacity"),
            });
        }
        self.file
            .write_at(at, bytes)
            .map_err(io_err("write", self.file.path()))?;
        self.write_offset += bytes.len() as u64;
        Ok(at)
    }

    /// Forgets what was written from `from` on, never synced: overwrites it up to `to` with
    /// zeros (the blocks are reserved, so this needs no new space) and syncs, so that no page
    /// of it written back before can resurface after a crash; the next write goes to `from`.
    /// Used when a batch could not be completed for lack of space (issue 12).
    pub fn discard_unsynced(&mut self, from: u64, to: u64) -> Result<(), StoreError> {
        let to = to.min(self.capacity);
        if from < SEGMENT_HEADER_LEN || from > to {
            return Ok(());
        }
        let path = self.file.path().to_owned();
        let zeros = vec![0u8; 64 * 1024];
        let mut at = from;
        while at < to {
            let n = (to - at).min(zeros.len() as u64) as usize;
            self.file
                .write_at(at, &zeros[..n])
                .map_err(io_err("write", &path))?;
            at += n as u64;
        }
        self.file.sync_data().map_err(io_err("sync", &path))?;
        self.write_offset = from;
        Ok(())
    }

    /// Makes everything written durable (fdatasync).
    pub fn sync(&self) -> Result<(), StoreError> {
        self.file
            .sync_data()
            .map_err(io_err("sync", self.file.path()))
    }
}

/// Appends records to the newest segment, rolling to a new one when it is full.
///
/// [`SegmentWriter::append`] only encodes into a buffer; [`SegmentWriter::sync`] writes the
/// buffer with one call and syncs it, so a batch of records costs one write and one fdatasync
/// (the group-commit writer calls `append` for a batch, then `sync`). A record is durable
/// only once a `sync` after its `append` has returned Ok. After any failed write or sync
/// the writer is fenced: every later call returns [`StoreError::Fenced`].
#[derive(Debug)]
pub struct SegmentWriter {
    fs: Arc<dyn Fs>,
    dir: PathBuf,
    segment_size: u64,
    segment: Segment,
    /// Records encoded but not yet written, starting at the segment's write offset.
    buf: BytesMut,
    /// Whether the segment has writes not yet synced.
    unsynced: bool,
    /// A record was appended since the last sync (the next one does not start a batch).
    in_batch: bool,
    fenced: Option<String>,
}

impl SegmentWriter {
    /// A writer appending at `tail` (where recovery found the data to end), or creating
    /// segment 1 when the journal is empty (`None`).
    pub fn open(
        fs: Arc<dyn Fs>,
        dir: &Path,
        segment_size: u64,
        tail: Option<RecordPos>,
    ) -> Result<SegmentWriter, StoreError> {
        if segment_size < MIN_SEGMENT_SIZE {
            return Err(StoreError::SegmentSize(segment_size));
        }
        let segment = match tail {
            Some(pos) => Segment::open(&*fs, dir, pos.segment, pos.offset, segment_size)?,
            None => Segment::create(&*fs, dir, 1, segment_size)?,
        };
        Ok(SegmentWriter {
            fs,
            dir: dir.to_owned(),
            segment_size,
            segment,
            buf: BytesMut::new(),
            unsynced: false,
            in_batch: false,
            fenced: None,
        })
    }

    /// Where the next record will go, if it fits in the current segment.
    pub fn next_pos(&self) -> RecordPos {
        RecordPos {
            segment: self.segment.seq,
            offset: self.segment.write_offset + self.buf.len() as u64,
        }
    }

    /// The segment being appended to.
    pub fn current_segment(&self) -> u64 {
        self.segment.seq
    }

    /// Why the writer is fenced, if it is.
    pub fn fenced(&self) -> Option<&str> {
        self.fenced.as_deref()
    }

    fn check_fenced(&self) -> Result<(), StoreError> {
        match &self.fenced {
            Some(cause) => Err(StoreError::Fenced {
                cause: cause.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Records the first failure and passes it on.
    fn fence<T>(&mut self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if let Err(e) = &result {
            if self.fenced.is_none() {
                tracing::error!(error = %e, "journal write failed: fencing the store");
                self.fenced = Some(e.to_string());
            }
        }
        result
    }

    /// Encodes a record after the others; returns where it will be. A record that does not
    /// fit the current segment goes to a new one (a record larger than the segment size gets
    /// a segment sized to fit it); the current one is synced and left as it is, even empty.
    pub fn append(&mut self, kind: RecordKind, payload: &[u8]) -> Result<RecordPos, StoreError> {
        self.check_fenced()?;
        if payload.len() > record::MAX_PAYLOAD_LEN {
            return Err(RecordTooLarge { len: payload.len() }.into());
        }
        let need = record::encoded_len(payload.len()) as u64;
        if self.buf.len() as u64 + need > self.segment.remaining() {
            let rolled = self.roll(need);
            self.fence(rolled)?;
        }
        let pos = self.next_pos();
        let batch_start = !std::mem::replace(&mut self.in_batch, true);
        record::encode_with(kind, payload, batch_start, &mut self.buf)?;
        Ok(pos)
    }

    /// Closes the current segment durably and starts the next, with room for `need` bytes.
    fn roll(&mut self, need: u64) -> Result<(), StoreError> {
        self.write_buffer()?;
        if self.unsynced {
            self.segment.sync()?;
            self.unsynced = false;
        }
        let capacity = self.segment_size.max(SEGMENT_HEADER_LEN + need);
        self.segment = Segment::create(&*self.fs, &self.dir, self.segment.seq + 1, capacity)?;
        Ok(())
    }

    fn write_buffer(&mut self) -> Result<(), StoreError> {
        if !self.buf.is_empty() {
            self.segment.write(&self.buf)?;
            self.buf.clear();
            self.unsynced = true;
        }
        Ok(())
    }

    /// Writes the buffered records to the file without syncing (they may reach the disk, or
    /// not, before a crash).
    pub fn flush(&mut self) -> Result<(), StoreError> {
        self.check_fenced()?;
        let written = self.write_buffer();
        self.fence(written)
    }

    /// Writes the buffered records and makes every record appended so far durable.
    pub fn sync(&mut self) -> Result<(), StoreError> {
        self.flush()?;
        if self.unsynced {
            let synced = self.segment.sync();
            self.fence(synced)?;
            self.unsynced = false;
        }
        // Everything appended so far is on disk: the next record starts a batch.
        self.in_batch = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
