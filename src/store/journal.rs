//! The group-commit writer (DESIGN.md §5): one thread owns the journal's [`SegmentWriter`];
//! every queue hands it records with a completion, and it writes whatever has accumulated
//! with one write and one fdatasync, then completes them all. The next batch starts as soon
//! as the previous sync returns: no fixed timer, so a lone producer waits one sync and a
//! thousand share one.
//!
//! Not wired to the queues yet (issue 7 in progress).

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use bytes::Bytes;

use super::fs::Fs;
use super::record::{RecordKind, MAX_PAYLOAD_LEN};
use super::segment::{RecordPos, SegmentWriter, StoreError};

/// When the journal calls fdatasync (`[storage] sync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// Once per batch of everything that arrived during the previous sync (the default).
    Batch,
    /// Once per request: no sharing, for comparison and for the cautious.
    Always,
    /// Never: records reach the page cache only. Unsafe: a power loss loses acknowledged
    /// messages.
    Never,
}

/// What a request's records became: the journal's error is shared by every request of the
/// failed batch, so it travels as text.
pub type Completion = Result<(), String>;

/// Called on the writer thread once the records are durable (or have failed).
pub type Done = Box<dyn FnOnce(Completion) + Send>;

struct Request {
    records: Vec<(RecordKind, Bytes)>,
    done: Done,
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
    /// Batches written (each one write and, unless `never`, one fdatasync).
    pub batches: AtomicU64,
    /// Requests completed successfully.
    pub requests: AtomicU64,
    /// Records written.
    pub records: AtomicU64,
    /// Bytes of payload written.
    pub bytes: AtomicU64,
    /// Fsync count per latency bucket of [`SYNC_BUCKETS_US`].
    pub sync_us: [AtomicU64; 10],
    /// Sum of fsync latencies, in microseconds.
    pub sync_us_sum: AtomicU64,
    /// The store failed and takes no more durable writes.
    pub fenced: AtomicBool,
}

/// The journal's writer thread and the way to it.
#[derive(Debug)]
pub struct Journal {
    tx: Option<Sender<Request>>,
    thread: Option<JoinHandle<()>>,
    stats: Arc<JournalStats>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("records", &self.records.len())
            .finish()
    }
}

impl Journal {
    /// Starts the writer on the journal in `dir`, appending at `tail` (from recovery; None
    /// for an empty journal).
    pub fn open(
        fs: Arc<dyn Fs>,
        dir: &Path,
        segment_size: u64,
        tail: Option<RecordPos>,
        mode: SyncMode,
    ) -> Result<Journal, StoreError> {
        let writer = SegmentWriter::open(fs, dir, segment_size, tail)?;
        let stats = Arc::new(JournalStats::default());
        let (tx, rx) = mpsc::channel();
        let thread_stats = stats.clone();
        let thread = std::thread::Builder::new()
            .name("sluice-journal".into())
            .spawn(move || run(writer, rx, mode, &thread_stats))
            .map_err(|source| StoreError::Io {
                op: "start the writer thread for",
                file: dir.to_owned(),
                source,
            })?;
        Ok(Journal {
            tx: Some(tx),
            thread: Some(thread),
            stats,
        })
    }

    /// Appends `records`; `done` runs on the writer thread once they are durable (as the sync
    /// mode defines it) or have failed. A record too large for the journal fails its request
    /// alone.
    pub fn append(&self, records: Vec<(RecordKind, Bytes)>, done: Done) {
        if let Some(too_large) = records.iter().find(|(_, p)| p.len() > MAX_PAYLOAD_LEN) {
            done(Err(format!(
                "a record of {} bytes is larger than the journal's limit of {MAX_PAYLOAD_LEN}",
                too_large.1.len()
            )));
            return;
        }
        let request = Request { records, done };
        let Some(tx) = &self.tx else {
            (request.done)(Err("the journal is closed".into()));
            return;
        };
        if let Err(mpsc::SendError(request)) = tx.send(request) {
            (request.done)(Err("the journal's writer has stopped".into()));
        }
    }

    /// What the writer has done.
    pub fn stats(&self) -> &Arc<JournalStats> {
        &self.stats
    }

    /// Whether the store failed and refuses durable writes.
    pub fn is_fenced(&self) -> bool {
        self.stats.fenced.load(Relaxed)
    }

    /// Completes what was handed in, then stops the writer.
    pub fn close(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.tx = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The writer thread: take one request, then everything queued behind it; write them all;
/// sync once; complete them all.
fn run(mut writer: SegmentWriter, rx: Receiver<Request>, mode: SyncMode, stats: &JournalStats) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        if mode != SyncMode::Always {
            batch.extend(rx.try_iter());
        }
        let result = write_batch(&mut writer, &batch, mode, stats);
        if result.is_err() {
            stats.fenced.store(true, Relaxed);
        } else {
            stats.batches.fetch_add(1, Relaxed);
            stats.requests.fetch_add(batch.len() as u64, Relaxed);
        }
        let completion: Completion = result.map_err(|e| e.to_string());
        for request in batch {
            (request.done)(completion.clone());
        }
    }
}

fn write_batch(
    writer: &mut SegmentWriter,
    batch: &[Request],
    mode: SyncMode,
    stats: &JournalStats,
) -> Result<(), StoreError> {
    let mut records = 0;
    let mut bytes = 0;
    for request in batch {
        for (kind, payload) in &request.records {
            writer.append(*kind, payload)?;
            records += 1;
            bytes += payload.len() as u64;
        }
    }
    match mode {
        SyncMode::Never => writer.flush()?,
        SyncMode::Batch | SyncMode::Always => {
            let started = Instant::now();
            writer.sync()?;
            let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            let bucket = SYNC_BUCKETS_US.iter().position(|&b| us <= b).unwrap_or(9);
            stats.sync_us[bucket].fetch_add(1, Relaxed);
            stats.sync_us_sum.fetch_add(us, Relaxed);
        }
    }
    stats.records.fetch_add(records, Relaxed);
    stats.bytes.fetch_add(bytes, Relaxed);
    Ok(())
}

#[cfg(test)]
mod tests;
