//! The group-commit journal (DESIGN.md §5).
//!
//! Appending is a short critical section on the caller's thread: the record is encoded into
//! the journal's buffer and its position (segment and offset) is decided there and then, so
//! the caller learns at once which segment holds it, and records from every queue are
//! ordered as they were appended. One writer thread takes whatever has accumulated, writes it
//! with one write per segment and one fdatasync, then completes the appends that asked to be
//! told. The next batch starts as soon as the previous sync returns: no fixed timer, so a
//! lone producer waits one sync and a thousand share one.
//!
//! The journal also counts, per segment, the records that still matter ("live": a message
//! not yet consumed). The oldest segments with none left are deleted; an old segment that is
//! mostly dead is offered for compaction (its owners append its live records again, after
//! which it is dead too).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use bytes::BytesMut;

use super::fs::Fs;
use super::record::{self, RecordKind, RecordTooLarge};
use super::segment::{RecordPos, Segment, StoreError, MIN_SEGMENT_SIZE, SEGMENT_HEADER_LEN};
use super::{Done, SegmentId, Store};

/// When the journal calls fdatasync (`[storage] sync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// Once per batch of everything that arrived during the previous sync (the default).
    Batch,
    /// Once per append that waits for it: no sharing, for comparison and for the cautious.
    Always,
    /// Never: records reach the page cache only. Unsafe: a power loss loses acknowledged
    /// messages.
    Never,
}

/// How the journal is laid out and when it syncs.
#[derive(Debug, Clone)]
pub struct JournalOptions {
    /// When to fdatasync.
    pub sync: SyncMode,
    /// Bytes each segment is preallocated to.
    pub segment_size: u64,
    /// No new segment is started for a producer's message (an append that waits for
    /// durability) while the file system has less free space than this plus one segment:
    /// those appends are refused, and [`Store::full`] holds, until space comes back. The
    /// floor is headroom: the records that free space (settles, compaction copies) may still
    /// start segments below it, so that consuming can always empty a full journal.
    pub min_free_bytes: u64,
}

impl Default for JournalOptions {
    fn default() -> JournalOptions {
        JournalOptions {
            sync: SyncMode::Batch,
            segment_size: super::DEFAULT_SEGMENT_SIZE,
            min_free_bytes: 0,
        }
    }
}

/// Fsync latencies are counted in these buckets (upper bounds, microseconds), for the metrics.
pub const SYNC_BUCKETS_US: [u64; 10] = [
    100,
    250,
    500,
    1_000,
    2_500,
    5_000,
    10_000,
    25_000,
    100_000,
    u64::MAX,
];

/// What the writer has done, for metrics.
#[derive(Debug, Default)]
pub struct JournalStats {
    /// Batches written (each one write per segment and, unless `never`, one fdatasync).
    pub batches: AtomicU64,
    /// Appends that waited for durability and got it.
    pub requests: AtomicU64,
    /// Records written.
    pub records: AtomicU64,
    /// Bytes written (records as encoded).
    pub bytes: AtomicU64,
    /// Fsync count per latency bucket of [`SYNC_BUCKETS_US`].
    pub sync_us: [AtomicU64; 10],
    /// Sum of fsync latencies, in microseconds.
    pub sync_us_sum: AtomicU64,
    /// Segments deleted because nothing in them was live.
    pub segments_deleted: AtomicU64,
    /// The store failed and takes no more writes.
    pub fenced: AtomicBool,
    /// Appends refused for the free-space floor or a full disk.
    pub refused_full: AtomicU64,
}

/// An append waiting for its record to be durable.
struct Waiter {
    /// Where the record starts.
    start: RecordPos,
    /// Where it ends: durable once the data up to here is synced.
    end: RecordPos,
    done: Done,
}

/// Bytes of one segment not yet written, from `start`.
#[derive(Debug)]
struct Chunk {
    segment: u64,
    /// The segment's size, for creating it.
    capacity: u64,
    start: u64,
    buf: BytesMut,
    /// Its first record starts a batch because the one before reached [`MAX_BATCH_BYTES`]:
    /// the writer syncs what it wrote before writing this chunk.
    sync_before: bool,
}

/// The most bytes of records one batch (one batch mark, one sync) may hold: beyond it the
/// next record starts a new batch, synced before it is written (issue 12 §3). Damage in the
/// last batch of an unclean shutdown is indistinguishable from a torn tail, so this bounds
/// what such damage can drop without a refusal.
pub const MAX_BATCH_BYTES: u64 = 8 << 20;

#[derive(Debug, Default)]
struct Counts {
    /// Live records.
    live: u64,
    /// Live records ever appended to it.
    appended: u64,
}

struct State {
    /// Where the next record goes.
    segment: u64,
    capacity: u64,
    offset: u64,
    pending: Vec<Chunk>,
    /// Appends to complete once the bytes before their `end` are durable.
    waiters: Vec<Waiter>,
    /// A record was appended since the writer last took the buffer.
    in_batch: bool,
    /// Bytes of records in the batch being built, from its batch mark on.
    batch_bytes: u64,
    fenced: Option<String>,
    closed: bool,
    /// Segments on disk or pending, with their live counts.
    segments: BTreeMap<u64, Counts>,
    /// The segment the writer has open: older ones are complete and synced.
    written_segment: u64,
    /// Buffers of written chunks, emptied, for the next chunks (see [`SPARE_BUFFERS`]).
    spare: Vec<BytesMut>,
}

/// Chunk buffers kept for reuse. A batch's buffer grows by doubling while records are
/// appended (under the lock); a fresh one for every batch meant reallocating and copying
/// more bytes than the batch held (issue 17's profile: 2 % of the broker's CPU in that
/// memmove at 350k durable msg/s), where a reused one has the room already.
const SPARE_BUFFERS: usize = 2;

struct Shared {
    state: Mutex<State>,
    work: Condvar,
    stats: Arc<JournalStats>,
    /// Producers' messages are refused for lack of space ([`Store::full`]): set by the append
    /// that finds free space below the floor, or by the writer when the disk is full; cleared
    /// by the writer once space is back. Also what rate-limits the free-space checks.
    full: AtomicBool,
    options: JournalOptions,
    fs: Arc<dyn Fs>,
    dir: PathBuf,
}

/// The journal's writer thread and the way to it.
pub struct Journal {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<bool>>>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("dir", &self.shared.dir)
            .finish()
    }
}

impl Journal {
    /// Starts the journal in `dir`, appending at `tail` (from recovery; None for an empty
    /// journal). `segments` are the segments recovery read; their live records are counted
    /// with [`Journal::retain`] before anything is released.
    pub fn open(
        fs: Arc<dyn Fs>,
        dir: &Path,
        segments: &[u64],
        tail: Option<RecordPos>,
        options: JournalOptions,
    ) -> Result<Journal, StoreError> {
        if options.segment_size < MIN_SEGMENT_SIZE {
            return Err(StoreError::SegmentSize(options.segment_size));
        }
        let file = match tail {
            Some(pos) => Segment::open(&*fs, dir, pos.segment, pos.offset, options.segment_size)?,
            None => Segment::create(&*fs, dir, 1, options.segment_size)?,
        };
        // From now on the journal's end is not known until the next clean shutdown.
        let manifest = super::manifest::manifest_path(dir);
        super::manifest::record_open(&*fs, dir).map_err(|source| StoreError::Io {
            op: "update",
            file: manifest,
            source,
        })?;
        let mut counts: BTreeMap<u64, Counts> =
            segments.iter().map(|&s| (s, Counts::default())).collect();
        counts.entry(file.seq()).or_default();
        let stats = Arc::new(JournalStats::default());
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                segment: file.seq(),
                capacity: file.capacity(),
                offset: file.write_offset(),
                pending: Vec::new(),
                waiters: Vec::new(),
                in_batch: false,
                batch_bytes: 0,
                fenced: None,
                closed: false,
                segments: counts,
                written_segment: file.seq(),
                spare: Vec::new(),
            }),
            work: Condvar::new(),
            stats,
            full: AtomicBool::new(false),
            options,
            fs,
            dir: dir.to_owned(),
        });
        let writer = shared.clone();
        let thread = std::thread::Builder::new()
            .name("sluice-journal".into())
            .spawn(move || writer::run(&writer, file))
            .map_err(|source| StoreError::Io {
                op: "start the writer thread for",
                file: dir.to_owned(),
                source,
            })?;
        Ok(Journal {
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Counts a live record found by recovery in `segment`.
    pub fn retain(&self, segment: SegmentId) {
        let mut st = self.shared.lock();
        let counts = st.segments.entry(segment.0).or_default();
        counts.live += 1;
        counts.appended += 1;
    }

    /// What the writer has done.
    pub fn stats(&self) -> &Arc<JournalStats> {
        &self.shared.stats
    }

    /// Live records per segment, oldest first (for tests and the admin view).
    pub fn live_counts(&self) -> Vec<(u64, u64)> {
        self.shared
            .lock()
            .segments
            .iter()
            .map(|(&s, c)| (s, c.live))
            .collect()
    }

    /// Writes and syncs what was appended, then stops the writer; later appends fail.
    pub fn close(&self) {
        self.shared.lock().closed = true;
        self.shared.work.notify_one();
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        let Some(thread) = thread else { return };
        if thread.join().unwrap_or(false) {
            let shared = &*self.shared;
            let end = {
                let st = shared.lock();
                (st.segment, st.offset)
            };
            if let Err(e) = super::manifest::record_clean(&*shared.fs, &shared.dir, end) {
                tracing::warn!(error = %e, "journal: cannot record the clean shutdown in the manifest");
            }
        }
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.close();
    }
}

impl Store for Journal {
    fn append(
        &self,
        kind: RecordKind,
        parts: &[&[u8]],
        live: bool,
        done: Option<Done>,
    ) -> Result<SegmentId, StoreError> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if len > record::MAX_PAYLOAD_LEN {
            return Err(RecordTooLarge { len }.into());
        }
        let need = record::encoded_len(len) as u64;
        let shared = &*self.shared;
        let mut st = shared.lock();
        if let Some(cause) = &st.fenced {
            return Err(StoreError::Fenced {
                cause: cause.clone(),
            });
        }
        if st.closed {
            return Err(StoreError::Closed);
        }
        // Only a producer's message (it waits to be told) is refused for space: lazy records
        // (settles, compaction copies) free space, and refusing them would make a full
        // journal permanent and bring consumed messages back after a restart (issue 12).
        let refusable = done.is_some();
        if refusable && shared.full.load(Relaxed) {
            shared.stats.refused_full.fetch_add(1, Relaxed);
            return Err(shared.full_error());
        }
        if st.offset + need > st.capacity {
            if refusable {
                shared.check_free_space()?;
            }
            st.segment += 1;
            st.capacity = shared.options.segment_size.max(SEGMENT_HEADER_LEN + need);
            st.offset = SEGMENT_HEADER_LEN;
            let segment = st.segment;
            st.segments.entry(segment).or_default();
        }
        let (segment, offset, capacity) = (st.segment, st.offset, st.capacity);
        let start = RecordPos { segment, offset };
        // A batch that reached its bound ends here: this record starts the next one.
        let split = st.in_batch && st.batch_bytes > 0 && st.batch_bytes + need > MAX_BATCH_BYTES;
        if split {
            st.in_batch = false;
        }
        let batch_start = !std::mem::replace(&mut st.in_batch, true);
        if batch_start {
            st.batch_bytes = 0;
        }
        st.batch_bytes += need;
        let was_empty = st.pending.is_empty();
        let chunk = match st.pending.last_mut() {
            Some(c) if c.segment == segment && !split => c,
            _ => {
                let buf = st
                    .spare
                    .pop()
                    .unwrap_or_else(|| BytesMut::with_capacity(64 * 1024));
                st.pending.push(Chunk {
                    segment,
                    capacity,
                    start: offset,
                    buf,
                    sync_before: split,
                });
                st.pending.last_mut().expect("just pushed")
            }
        };
        record::encode_parts(kind, parts, batch_start, &mut chunk.buf)?;
        st.offset += need;
        if live {
            let counts = st.segments.entry(segment).or_default();
            counts.live += 1;
            counts.appended += 1;
        }
        if let Some(done) = done {
            let end = RecordPos {
                segment,
                offset: st.offset,
            };
            st.waiters.push(Waiter { start, end, done });
            if shared.options.sync == SyncMode::Always {
                // The next record is written after this one's sync: it starts a batch.
                st.in_batch = false;
            }
        }
        drop(st);
        shared.stats.records.fetch_add(1, Relaxed);
        if was_empty {
            shared.work.notify_one();
        }
        Ok(SegmentId(segment))
    }

    fn release(&self, segment: SegmentId) {
        let mut st = self.shared.lock();
        if let Some(counts) = st.segments.get_mut(&segment.0) {
            counts.live = counts.live.saturating_sub(1);
        }
    }

    fn fenced(&self) -> Option<String> {
        self.shared.lock().fenced.clone()
    }

    fn full(&self) -> bool {
        self.shared.full.load(Relaxed)
    }

    fn compaction_candidate(&self) -> Option<SegmentId> {
        let st = self.shared.lock();
        // Only worth it once the journal is several segments long, and only for the oldest
        // segment (deletion goes oldest first): when less than a tenth of what was written
        // there is still live, copying those few forward frees the whole segment.
        if st.segments.len() < 4 {
            return None;
        }
        let (&oldest, counts) = st.segments.iter().next()?;
        (oldest < st.written_segment && counts.live > 0 && counts.live * 10 <= counts.appended)
            .then_some(SegmentId(oldest))
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a checkpoint for the writer, if the journal is quiet: nothing pending (so the
    /// previous batch is synced and the checkpoint starts a batch of its own, which its batch
    /// mark asserts) and not fenced. Returns whether it did.
    fn push_checkpoint(&self) -> bool {
        let need = record::encoded_len(record::CHECKPOINT_PAYLOAD_LEN) as u64;
        let mut st = self.lock();
        if !st.pending.is_empty() || st.fenced.is_some() {
            return false;
        }
        if st.offset + need > st.capacity {
            st.segment += 1;
            st.capacity = self.options.segment_size;
            st.offset = SEGMENT_HEADER_LEN;
            let segment = st.segment;
            st.segments.entry(segment).or_default();
        }
        let (segment, offset, capacity) = (st.segment, st.offset, st.capacity);
        let mut buf = BytesMut::with_capacity(need as usize);
        let payload = record::checkpoint_payload(segment, offset);
        if record::encode_raw(record::CHECKPOINT_KIND, &[&payload], true, &mut buf).is_err() {
            return false;
        }
        st.pending.push(Chunk {
            segment,
            capacity,
            start: offset,
            buf,
            sync_before: false,
        });
        st.in_batch = true;
        st.batch_bytes = need;
        st.offset += need;
        true
    }

    fn full_error(&self) -> StoreError {
        StoreError::Full {
            floor: self.options.min_free_bytes,
            dir: self.dir.clone(),
        }
    }

    /// Whether the file system has room for a new segment above the floor (always, with no
    /// floor).
    fn above_floor(&self) -> Result<bool, StoreError> {
        let floor = self.options.min_free_bytes;
        if floor == 0 {
            return Ok(true);
        }
        let available = self
            .fs
            .available_space(&self.dir)
            .map_err(|source| StoreError::Io {
                op: "read the free space of",
                file: self.dir.clone(),
                source,
            })?;
        Ok(available >= floor.saturating_add(self.options.segment_size))
    }

    /// Refuses a new segment for a producer's message while free space is below the floor,
    /// and enters the full state (left by the writer, which checks again every tick).
    fn check_free_space(&self) -> Result<(), StoreError> {
        if self.above_floor()? {
            return Ok(());
        }
        self.enter_full("free space below the floor ([storage] min_free_bytes)");
        self.stats.refused_full.fetch_add(1, Relaxed);
        Err(self.full_error())
    }

    fn enter_full(&self, why: &str) {
        if !self.full.swap(true, Relaxed) {
            tracing::error!(
                dir = %self.dir.display(),
                floor = self.options.min_free_bytes,
                "journal full: {why}; producers get no credit and durable messages are refused \
                 until space is freed (consumers keep being served, and what they consume frees it)"
            );
        }
    }

    fn fence(&self, error: &StoreError) {
        let mut st = self.lock();
        if st.fenced.is_none() {
            tracing::error!(
                error = %error,
                "JOURNAL FAILED: the store is fenced; durable messages are refused until sluice is restarted and recovers"
            );
            st.fenced = Some(error.to_string());
        }
        self.stats.fenced.store(true, Relaxed);
    }
}

mod writer;

#[cfg(test)]
mod tests;
