//! Recovery at start (DESIGN.md §5): the journal's events replayed into the durable queues
//! they describe, which are then rebuilt with their ready, delayed, dead-lettered and
//! rewind-retained messages, in their original order and with their delivery counts.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

use bytes::Bytes;

use crate::message::Message;
use crate::store::{self, Fs, Journal, RecordPos, RecoveryError, SegmentId};

use crate::broker::durable::events::{Event, QueueNo};
use crate::broker::durable::journaled::Times;
use crate::broker::queue::entry::SegmentRef;
use crate::broker::router::Router;

/// Why the journal could not be replayed.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The journal could not be read back.
    #[error(transparent)]
    Recovery(#[from] RecoveryError),
    /// A record whose checksum is right does not hold an event this version writes.
    #[error("journal: {file} at offset {offset}: {reason}", file = file.display())]
    BadEvent {
        /// The segment file.
        file: PathBuf,
        /// The record's offset.
        offset: u64,
        /// What is wrong with it.
        reason: String,
    },
}

/// A journaled message as the journal last described it.
#[derive(Debug)]
pub struct RestoredMessage {
    /// Its sequence number in the queue.
    pub seq: u64,
    /// The message.
    pub message: Message,
    /// Failed deliveries so far.
    pub delivery_count: u32,
    /// When it became ready, is due and expires.
    pub times: Times,
    /// The segment of its enqueue record.
    pub segment: SegmentRef,
    /// Consumed and kept for rewind.
    pub consumed: bool,
}

#[derive(Debug)]
struct Record {
    times: Times,
    delivery_count: u32,
    message_format: u32,
    bytes: Bytes,
    segment: SegmentId,
    consumed: bool,
}

#[derive(Debug)]
struct QueueModel {
    name: String,
    /// The segment of its latest `Declare` (None until one is replayed).
    declared_in: Option<SegmentId>,
    messages: BTreeMap<u64, Record>,
}

/// The journal replayed: every durable queue with its messages.
#[derive(Debug, Default)]
pub struct Replayed {
    queues: BTreeMap<QueueNo, QueueModel>,
    /// The segments recovery read.
    pub segments: Vec<u64>,
    /// Where the writer appends.
    pub tail: Option<RecordPos>,
    /// Records replayed.
    pub records: u64,
    /// Changes of transactions whose `TxnCommit` has not been replayed (yet): applied when it
    /// is, dropped at the end if it never is.
    uncommitted: HashMap<u64, Vec<(Event, SegmentId)>>,
}

impl Replayed {
    /// The first queue number the journal has not used.
    pub fn next_queue_no(&self) -> QueueNo {
        self.queues.keys().next_back().map_or(1, |n| n + 1)
    }
}

/// Reads the journal in `dir` and replays its events.
pub fn replay(fs: &dyn Fs, dir: &Path) -> Result<Replayed, RestoreError> {
    let mut replayed = Replayed::default();
    let mut bad: Option<RestoreError> = None;
    let summary = store::recover_with(fs, dir, |r| {
        if bad.is_some() {
            return;
        }
        replayed.records += 1;
        match Event::decode(r.kind.as_u8(), r.payload) {
            Ok(event) => replayed.apply(event, SegmentId(r.pos.segment)),
            Err(e) => {
                bad = Some(RestoreError::BadEvent {
                    file: store::segment::segment_path(dir, r.pos.segment),
                    offset: r.pos.offset,
                    reason: e.to_string(),
                })
            }
        }
    })?;
    if let Some(e) = bad {
        return Err(e);
    }
    if !replayed.uncommitted.is_empty() {
        // A crash came in the middle of these commits: none of them happened.
        tracing::info!(
            transactions = replayed.uncommitted.len(),
            "journal: transactions whose commit was not complete are ignored"
        );
        replayed.uncommitted.clear();
    }
    replayed.segments = summary.segments;
    replayed.tail = summary.tail;
    Ok(replayed)
}

impl Replayed {
    fn apply(&mut self, event: Event, segment: SegmentId) {
        match event {
            Event::TxnPart { txn, event } => {
                self.uncommitted
                    .entry(txn)
                    .or_default()
                    .push((*event, segment));
            }
            Event::TxnCommit { txn } => {
                for (event, segment) in self.uncommitted.remove(&txn).unwrap_or_default() {
                    self.apply(event, segment);
                }
            }
            Event::Declare { queue, name } => {
                let model = self.queues.entry(queue).or_insert_with(|| QueueModel {
                    name: name.clone(),
                    declared_in: Some(segment),
                    messages: BTreeMap::new(),
                });
                // Written again by a compaction: the latest is the live one.
                model.name = name;
                model.declared_in = Some(segment);
            }
            Event::Delete { queue } => {
                self.queues.remove(&queue);
            }
            Event::Enqueue {
                queue,
                seq,
                ready_ms,
                due_ms,
                expires_ms,
                delivery_count,
                message_format,
                bytes,
            } => {
                // A compaction may have written the queue's `Declare` again after this record
                // (and the original is gone with its segment): the name comes later.
                let model = self.queues.entry(queue).or_insert_with(|| QueueModel {
                    name: String::new(),
                    declared_in: None,
                    messages: BTreeMap::new(),
                });
                // A copy, so that a live message does not keep its whole segment in memory.
                let record = Record {
                    times: Times {
                        ready_ms,
                        due_ms,
                        expires_ms,
                    },
                    delivery_count,
                    message_format,
                    bytes: Bytes::copy_from_slice(&bytes),
                    segment,
                    consumed: false,
                };
                model.messages.insert(seq, record);
            }
            Event::Settle { queue, seq } => {
                if let Some(model) = self.queues.get_mut(&queue) {
                    model.messages.remove(&seq);
                }
            }
            Event::Consume { queue, seq } => {
                if let Some(m) = self.message(queue, seq) {
                    m.consumed = true;
                }
            }
            Event::Redelivered {
                queue,
                seq,
                delivery_count,
            } => {
                if let Some(m) = self.message(queue, seq) {
                    m.delivery_count = delivery_count;
                    m.consumed = false;
                }
            }
            Event::Due {
                queue,
                old_seq,
                new_seq,
                at_ms,
            } => {
                if let Some(model) = self.queues.get_mut(&queue) {
                    if let Some(mut m) = model.messages.remove(&old_seq) {
                        m.times.ready_ms = at_ms;
                        m.times.due_ms = 0;
                        model.messages.insert(new_seq, m);
                    }
                }
            }
        }
    }

    fn message(&mut self, queue: QueueNo, seq: u64) -> Option<&mut Record> {
        self.queues.get_mut(&queue)?.messages.get_mut(&seq)
    }
}

/// What [`rebuild`] restored.
#[derive(Debug, Default, Clone, Copy)]
pub struct RestoreSummary {
    /// Durable queues.
    pub queues: usize,
    /// Messages, kept-for-rewind ones included.
    pub messages: u64,
}

/// Counts the replayed live records in `journal` and rebuilds the queues in `router`.
pub fn rebuild(replayed: Replayed, journal: &Journal, router: &Router) -> RestoreSummary {
    let started = Instant::now();
    let mut summary = RestoreSummary::default();
    let mut names: HashMap<String, QueueNo> = HashMap::new();
    for (no, model) in replayed.queues {
        let (Some(declared_in), false) = (model.declared_in, model.name.is_empty()) else {
            tracing::error!(
                queue = no,
                messages = model.messages.len(),
                "journal: messages of a queue that was never declared are dropped"
            );
            continue;
        };
        journal.retain(declared_in);
        if let Some(older) = names.insert(model.name.clone(), no) {
            tracing::warn!(queue = %model.name, older, no, "journal: queue declared twice; the later wins");
        }
        let Some(queue) = router.recovered(&model.name, no, declared_in) else {
            continue;
        };
        let mut messages = Vec::with_capacity(model.messages.len());
        for (seq, r) in model.messages {
            journal.retain(r.segment);
            let bytes = router.memory().track(r.bytes); // counted against the watermark
            let message = if r.message_format == 0 {
                match Message::parse(bytes.clone()) {
                    Ok(m) => m,
                    Err(e) => {
                        // Parsed when it arrived; kept as it is rather than dropped.
                        tracing::warn!(queue = %model.name, seq, error = %e, "journal: message no longer parses; kept opaque");
                        Message::opaque(bytes, 0)
                    }
                }
            } else {
                Message::opaque(bytes, r.message_format)
            };
            messages.push(RestoredMessage {
                seq,
                message,
                delivery_count: r.delivery_count,
                times: r.times,
                segment: SegmentRef::new(r.segment),
                consumed: r.consumed,
            });
        }
        summary.queues += 1;
        summary.messages += messages.len() as u64;
        queue.restore(messages);
    }
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "queues rebuilt"
    );
    summary
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enqueue(seq: u64, body: &'static [u8]) -> Event {
        Event::Enqueue {
            queue: 1,
            seq,
            ready_ms: 1,
            due_ms: 0,
            expires_ms: 0,
            delivery_count: 0,
            message_format: 0,
            bytes: Bytes::from_static(body),
        }
    }

    fn part(txn: u64, event: Event) -> Event {
        Event::TxnPart {
            txn,
            event: Box::new(event),
        }
    }

    #[test]
    fn a_transaction_applies_at_its_commit_record_and_not_without_it() {
        let mut r = Replayed::default();
        let s = SegmentId(1);
        r.apply(
            Event::Declare {
                queue: 1,
                name: "q".into(),
            },
            s,
        );
        r.apply(enqueue(1, b"a"), s);
        r.apply(enqueue(2, b"b"), s);
        // Transaction 5 moves "a" out and "x" in, but its commit never made it to disk.
        r.apply(part(5, Event::Settle { queue: 1, seq: 1 }), s);
        r.apply(part(5, enqueue(3, b"x")), s);
        // Transaction 6 consumes "b" and adds "c"; its commit record follows.
        r.apply(part(6, Event::Settle { queue: 1, seq: 2 }), s);
        r.apply(part(6, enqueue(4, b"c")), s);
        let seqs = |r: &Replayed| -> Vec<u64> { r.queues[&1].messages.keys().copied().collect() };
        assert_eq!(seqs(&r), [1, 2], "nothing of either before a commit record");
        r.apply(Event::TxnCommit { txn: 6 }, s);
        assert_eq!(seqs(&r), [1, 4], "all of transaction 6, none of 5");
        assert_eq!(
            r.uncommitted.len(),
            1,
            "5 waits, and is dropped at the end of the replay"
        );
    }
}
