//! The journal: where durable queues persist their changes (DESIGN.md §5, issue 7).
//!
//! This module knows records and bytes, not AMQP: a record is a kind and an opaque payload,
//! which the queue layer (`broker::durable::events`) encodes and decodes.
//!
//! ```text
//!  record    [len u32][crc32c u32][kind u8][payload]        record.rs
//!     │ appended, many per write, one fdatasync per batch
//!     ▼
//!  segment   00000000000000000001.seg: [header][record]...[zeros]   segment.rs
//!     │ full → synced, next one created, directory synced
//!     ▼
//!  journal   dir/ *.seg in sequence order
//!     │ at start
//!     ▼
//!  recovery  every record in order with its (segment, offset); torn tail of the last
//!            segment truncated; any other damage stops the start (repair on request)
//!                                                                 recovery.rs
//! ```
//!
//! Everything touches the disk through [`fs::Fs`], so that `SimFs` (tests only) can stand in for
//! it in tests and lose power at any point.
//!
//! # What is durable when
//!
//! - A record is durable once a [`SegmentWriter::sync`] that follows its
//!   [`SegmentWriter::append`] has returned Ok (fdatasync of its segment). Before that, a
//!   crash may keep it whole, keep part of it (a torn tail, truncated at recovery), or lose
//!   it; an acceptance must therefore wait for the sync.
//! - A segment's existence is durable once its creation returns: header synced, then the
//!   directory synced. Deleting one syncs the directory.
//! - Every segment but the last was synced before the next one was created, so it is whole;
//!   damage in it is corruption, never a crash.
//! - The first record after each sync is marked as a batch start. Damage in the last segment
//!   with no marked record after it is debris of the batch in flight (never acknowledged) and
//!   is truncated; damage before a marked record had been synced, and stops the start.
//! - A failed sync is never retried (the file is poisoned, see [`fs`]): the writer fences
//!   itself, and what is on disk is found out by the next recovery.

pub mod fs;
pub mod journal;
pub mod lock;
pub mod manifest;
pub mod record;
pub mod recovery;
pub mod segment;

#[cfg(any(test, feature = "testing"))]
pub use fs::{FaultOp, SimFs};
pub use fs::{Fs, OverlayFs, RealFs};
pub use journal::{Journal, JournalOptions, JournalStats, SyncMode, SYNC_BUCKETS_US};
pub use record::RecordKind;
pub use recovery::{
    recover, recover_with, repair, skip_damaged, RecoveryError, RecoverySummary, Skipped,
};
pub use segment::{RecordPos, SegmentWriter, StoreError, DEFAULT_SEGMENT_SIZE};

/// A journal segment, by its sequence number: segments are numbered from 1 in the order they
/// were written, and a record's segment is what its owner gives back to [`Store::release`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SegmentId(pub u64);

impl std::fmt::Display for SegmentId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// What an append's records became.
pub type Completion = Result<(), WriteFailed>;

/// Why an append's records were not stored. One failure is shared by every append of its
/// batch, so the text is shared too.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct WriteFailed {
    /// The disk was full: a state the journal leaves once space is freed, so the producer may
    /// send again (`amqp:resource-limit-exceeded`), unlike a failed write or sync, which
    /// fences the journal (`amqp:internal-error`).
    pub full: bool,
    /// What the journal said.
    pub reason: std::sync::Arc<str>,
}

impl WriteFailed {
    /// A failure of the journal (it is fenced, or was closed).
    pub fn failed(e: &StoreError) -> WriteFailed {
        WriteFailed {
            full: matches!(e, StoreError::Full { .. }),
            reason: e.to_string().into(),
        }
    }

    /// A refusal for lack of space, with `reason`.
    pub fn full(reason: impl Into<std::sync::Arc<str>>) -> WriteFailed {
        WriteFailed {
            full: true,
            reason: reason.into(),
        }
    }
}

/// Called (on the journal's thread) once an append is durable, or has failed.
pub type Done = Box<dyn FnOnce(Completion) + Send>;

/// What the queues need of a store: the local journal implements it, and a replicated store
/// could replace it without the queues noticing.
///
/// Records are appended in one order for the whole store; a record is *live* while what it
/// holds is still needed (a message not yet consumed), and the store keeps every segment
/// that holds a live record.
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Appends one record, after every record appended before it, whose payload is `parts`
    /// joined. Returns the segment it went to (never 0), which the caller gives back to
    /// [`Store::release`] when a live record stops mattering. `done`, if any, runs once the
    /// record is durable or has failed; it is not called when `append` itself fails.
    fn append(
        &self,
        kind: RecordKind,
        parts: &[&[u8]],
        live: bool,
        done: Option<Done>,
    ) -> Result<SegmentId, StoreError>;

    /// A live record in `segment` no longer matters.
    fn release(&self, segment: SegmentId);

    /// Why the store refuses writes, if it does (it failed and will not pretend otherwise).
    fn fenced(&self) -> Option<String>;

    /// An old segment worth compacting: few of its records are live, and once their owners
    /// have appended them again (releasing the old ones) it can be deleted.
    fn compaction_candidate(&self) -> Option<SegmentId>;

    /// Whether the store is refusing new durable messages for lack of space (a state it leaves
    /// once space is freed). The broker withholds producers' credit while it holds.
    fn full(&self) -> bool {
        false
    }
}
