//! A durable queue's way to the store: each change to a journaled message becomes one event
//! (see [`super::events`]) appended through the [`Store`] trait, which is all the queue
//! knows of the journal.
//!
//! Only an enqueue may wait for the disk (the producer's `accepted` does). Everything else is
//! appended without waiting and reaches the disk with the next batch: after a power loss a
//! message consumed just before may be delivered again, never lost (DESIGN.md §5). When the
//! store refuses such a lazy append (it is fenced), the change stays in memory only, with
//! the same consequence.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use bytes::BytesMut;

use crate::store::{Done, RecordKind, SegmentId, Store, StoreError};

use crate::broker::durable::events::{enqueue_header, Event, QueueNo};
use crate::broker::queue::entry::{Entry, SegmentRef};

/// A durable queue's journal.
#[derive(Debug)]
pub struct Journaled {
    store: Arc<dyn Store>,
    queue: QueueNo,
    /// The segment holding the queue's `Declare`, live while the queue exists.
    declared_in: AtomicU64,
    /// `[storage] deliver_after_sync`: a message is hidden from consumers until its enqueue
    /// record is on disk.
    deliver_after_sync: bool,
}

/// When an enqueue record becomes ready, due and expires (ms since the epoch; 0: not so).
#[derive(Debug, Clone, Copy, Default)]
pub struct Times {
    /// When the message became ready (its enqueue time for rewind); 0 while delayed.
    pub ready_ms: i64,
    /// When a delayed message becomes ready.
    pub due_ms: i64,
    /// When it expires.
    pub expires_ms: i64,
}

impl Journaled {
    /// Names queue `queue` `name` in the journal.
    pub fn declare(
        store: Arc<dyn Store>,
        queue: QueueNo,
        name: &str,
        deliver_after_sync: bool,
    ) -> Result<Journaled, StoreError> {
        let journaled = Journaled {
            store,
            queue,
            declared_in: AtomicU64::new(0),
            deliver_after_sync,
        };
        journaled.write_declare(name)?;
        Ok(journaled)
    }

    /// A queue recovered from the journal, declared in `segment`.
    pub fn recovered(
        store: Arc<dyn Store>,
        queue: QueueNo,
        segment: SegmentId,
        deliver_after_sync: bool,
    ) -> Journaled {
        Journaled {
            store,
            queue,
            declared_in: AtomicU64::new(segment.0),
            deliver_after_sync,
        }
    }

    /// Whether a message waits for its record to be on disk before a consumer may see it.
    pub fn deliver_after_sync(&self) -> bool {
        self.deliver_after_sync
    }

    fn write_declare(&self, name: &str) -> Result<(), StoreError> {
        let mut payload = BytesMut::new();
        Event::Declare {
            queue: self.queue,
            name: name.to_owned(),
        }
        .encode(&mut payload);
        let segment = self
            .store
            .append(RecordKind::QueueDeclare, &[&payload], true, None)?;
        let old = self.declared_in.swap(segment.0, Relaxed);
        if old != 0 {
            self.store.release(SegmentId(old));
        }
        Ok(())
    }

    /// The queue's number in the journal.
    pub fn queue_no(&self) -> QueueNo {
        self.queue
    }

    /// Why the store refuses writes, if it does.
    pub fn fenced(&self) -> Option<String> {
        self.store.fenced()
    }

    /// Appends the enqueue of `entry`; `done` runs once it is durable. Returns the segment
    /// (for `Entry::segment`).
    pub fn enqueue(
        &self,
        entry: &Entry,
        times: Times,
        done: Option<Done>,
    ) -> Result<SegmentRef, StoreError> {
        let header = enqueue_header(
            self.queue,
            entry.seq,
            times.ready_ms,
            times.due_ms,
            times.expires_ms,
            entry.delivery_count,
            entry.message.message_format(),
        );
        let segment = self.append(
            RecordKind::Enqueue,
            &[&header, entry.message.bytes()],
            true,
            done,
        )?;
        Ok(SegmentRef::new(segment))
    }

    /// Appends to the store: as a part of the transaction commit in progress on this thread,
    /// if there is one (commit.rs).
    fn append(
        &self,
        kind: RecordKind,
        parts: &[&[u8]],
        live: bool,
        done: Option<Done>,
    ) -> Result<SegmentId, StoreError> {
        super::commit::append(&self.store, kind, parts, live, done)
    }

    fn lazy(&self, kind: RecordKind, event: Event) {
        let mut payload = BytesMut::with_capacity(32);
        event.encode(&mut payload);
        if let Err(e) = self.append(kind, &[&payload], false, None) {
            tracing::debug!(queue = self.queue, error = %e, "journal: change kept in memory only");
        }
    }

    /// The message `seq`, journaled in `segment`, left the queue.
    pub fn settle(&self, seq: u64, segment: SegmentRef) {
        let Some(segment) = segment.get() else {
            return;
        };
        self.lazy(
            RecordKind::Settle,
            Event::Settle {
                queue: self.queue,
                seq,
            },
        );
        super::commit::release(&self.store, segment);
    }

    /// The message `seq` was consumed and is kept for rewind.
    pub fn consume(&self, entry: &Entry) {
        if entry.segment != SegmentRef::NONE {
            let (queue, seq) = (self.queue, entry.seq);
            self.lazy(RecordKind::Consume, Event::Consume { queue, seq });
        }
    }

    /// The message is ready again with its delivery-count.
    pub fn redelivered(&self, entry: &Entry) {
        if entry.segment != SegmentRef::NONE {
            self.lazy(
                RecordKind::Redelivered,
                Event::Redelivered {
                    queue: self.queue,
                    seq: entry.seq,
                    delivery_count: entry.delivery_count,
                },
            );
        }
    }

    /// The delayed message `old_seq` became ready as `entry` at `at_ms`.
    pub fn due(&self, old_seq: u64, entry: &Entry, at_ms: i64) {
        if entry.segment != SegmentRef::NONE {
            self.lazy(
                RecordKind::Due,
                Event::Due {
                    queue: self.queue,
                    old_seq,
                    new_seq: entry.seq,
                    at_ms,
                },
            );
        }
    }

    /// A journaled record in `segment` no longer matters (a kept message aged out).
    pub fn release(&self, segment: SegmentRef) {
        if let Some(segment) = segment.get() {
            super::commit::release(&self.store, segment);
        }
    }

    /// The queue was deleted: its records, the `Declare` included, are dead.
    pub fn delete(&self, segments: impl IntoIterator<Item = SegmentRef>) {
        self.lazy(RecordKind::QueueDelete, Event::Delete { queue: self.queue });
        for segment in segments {
            self.release(segment);
        }
        let declared_in = self.declared_in.swap(0, Relaxed);
        if declared_in != 0 {
            self.store.release(SegmentId(declared_in));
        }
    }

    /// Writes `entry` again (compaction) with `times`; releases its old record. Returns the
    /// new segment, or the old one if the store refused (the old record stays live).
    pub fn rewrite(&self, entry: &Entry, times: Times, consumed: bool) -> SegmentRef {
        match self.enqueue(entry, times, None) {
            Ok(segment) => {
                if consumed {
                    self.lazy(
                        RecordKind::Consume,
                        Event::Consume {
                            queue: self.queue,
                            seq: entry.seq,
                        },
                    );
                }
                self.release(entry.segment);
                segment
            }
            Err(_) => entry.segment,
        }
    }

    /// Writes the queue's `Declare` again if it is in `segment` (compaction).
    pub fn redeclare_from(&self, segment: SegmentId, name: &str) {
        if self.declared_in.load(Relaxed) == segment.0 {
            let _ = self.write_declare(name);
        }
    }
}
