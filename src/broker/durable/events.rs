//! What a durable queue writes to the journal (DESIGN.md §5), as bytes: the store knows
//! records and bytes, this module knows queues.
//!
//! One event per change. Queues are named once (`Declare`) and referred to by a number after,
//! so an enqueue record carries four bytes of queue rather than its name. Integers are
//! little-endian and fixed-width: the journal is read back by this same code, and a fixed
//! layout makes a truncated or damaged payload fail to decode instead of decoding wrong.
//!
//! An enqueue carries the times the queue computed when the message arrived (when it is due,
//! when it expires), not the raw arrival: recovery restores exactly what the queue had, and a
//! compaction can write a message again with the state it has now.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// A queue's number in the journal.
pub type QueueNo = u32;

/// Bytes of an enqueue event before the message.
pub const ENQUEUE_HEADER_LEN: usize = 44;

/// One change to a durable queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Queue `queue` is named `name` from here on.
    Declare {
        /// Its number.
        queue: QueueNo,
        /// Its name.
        name: String,
    },
    /// A message arrived (or, written again by a compaction, is still there).
    Enqueue {
        /// The queue.
        queue: QueueNo,
        /// Its sequence number in the queue.
        seq: u64,
        /// When it became ready (ms since the epoch; its enqueue time for rewind); 0 while it
        /// is delayed.
        ready_ms: i64,
        /// When a delayed message becomes ready (0 when it is ready).
        due_ms: i64,
        /// When it expires (0: never).
        expires_ms: i64,
        /// Failed deliveries so far.
        delivery_count: u32,
        /// The transfer's message-format.
        message_format: u32,
        /// The message as received.
        bytes: Bytes,
    },
    /// The message left the queue: consumed, dropped, or moved to a dead-letter queue (whose
    /// `Enqueue` is written before this, so a crash between the two duplicates, never loses).
    Settle {
        /// The queue.
        queue: QueueNo,
        /// The message.
        seq: u64,
    },
    /// The message is ready again with this delivery-count: a failed delivery, or a consumed
    /// message brought back by a rewind.
    Redelivered {
        /// The queue.
        queue: QueueNo,
        /// The message.
        seq: u64,
        /// Its delivery-count.
        delivery_count: u32,
    },
    /// A delayed message became ready and was numbered anew.
    Due {
        /// The queue.
        queue: QueueNo,
        /// Its number while delayed.
        old_seq: u64,
        /// Its number from now on.
        new_seq: u64,
        /// When (ms since the epoch): its enqueue time for rewind.
        at_ms: i64,
    },
    /// The message was consumed and is kept for rewind.
    Consume {
        /// The queue.
        queue: QueueNo,
        /// The message.
        seq: u64,
    },
    /// The queue was deleted with its messages.
    Delete {
        /// The queue.
        queue: QueueNo,
    },
    /// A change made by the commit of transaction `txn`: it applies only if the transaction's
    /// `TxnCommit` follows, so a commit is all or nothing after a crash.
    TxnPart {
        /// The transaction (unique across restarts).
        txn: u64,
        /// The change (not itself a transaction event).
        event: Box<Event>,
    },
    /// Transaction `txn`'s commit is complete.
    TxnCommit {
        /// The transaction.
        txn: u64,
    },
}

/// Why bytes are not an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// The kind byte names no event.
    #[error("unknown event kind {0}")]
    UnknownKind(u8),
    /// The payload ends before the event does, or goes on after it.
    #[error("event of kind {kind} has {found} bytes, which is not its length")]
    BadLength {
        /// The kind.
        kind: u8,
        /// The payload's length.
        found: usize,
    },
    /// A queue name that is not UTF-8.
    #[error("queue name is not UTF-8")]
    BadName,
}

/// The fixed part of an enqueue event; the message's bytes follow it.
#[allow(clippy::too_many_arguments)]
pub fn enqueue_header(
    queue: QueueNo,
    seq: u64,
    ready_ms: i64,
    due_ms: i64,
    expires_ms: i64,
    delivery_count: u32,
    message_format: u32,
) -> [u8; ENQUEUE_HEADER_LEN] {
    let mut h = [0u8; ENQUEUE_HEADER_LEN];
    let mut out = &mut h[..];
    out.put_u32_le(queue);
    out.put_u64_le(seq);
    out.put_i64_le(ready_ms);
    out.put_i64_le(due_ms);
    out.put_i64_le(expires_ms);
    out.put_u32_le(delivery_count);
    out.put_u32_le(message_format);
    h
}

impl Event {
    /// The record kind this event is written as.
    pub fn kind(&self) -> u8 {
        match self {
            Event::Enqueue { .. } => 1,
            Event::Settle { .. } => 2,
            Event::Redelivered { .. } => 3,
            Event::Due { .. } => 4,
            Event::Consume { .. } => 5,
            Event::Declare { .. } => 6,
            Event::Delete { .. } => 7,
            Event::TxnPart { .. } => 8,
            Event::TxnCommit { .. } => 9,
        }
    }

    /// Appends the event's payload (without its kind) to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            Event::Declare { queue, name } => {
                out.put_u32_le(*queue);
                out.put_slice(name.as_bytes());
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
                out.put_slice(&enqueue_header(
                    *queue,
                    *seq,
                    *ready_ms,
                    *due_ms,
                    *expires_ms,
                    *delivery_count,
                    *message_format,
                ));
                out.put_slice(bytes);
            }
            Event::Settle { queue, seq } | Event::Consume { queue, seq } => {
                out.put_u32_le(*queue);
                out.put_u64_le(*seq);
            }
            Event::Redelivered {
                queue,
                seq,
                delivery_count,
            } => {
                out.put_u32_le(*queue);
                out.put_u64_le(*seq);
                out.put_u32_le(*delivery_count);
            }
            Event::Due {
                queue,
                old_seq,
                new_seq,
                at_ms,
            } => {
                out.put_u32_le(*queue);
                out.put_u64_le(*old_seq);
                out.put_u64_le(*new_seq);
                out.put_i64_le(*at_ms);
            }
            Event::Delete { queue } => out.put_u32_le(*queue),
            Event::TxnPart { txn, event } => {
                out.put_u64_le(*txn);
                out.put_u8(event.kind());
                event.encode(out);
            }
            Event::TxnCommit { txn } => out.put_u64_le(*txn),
        }
    }

    /// Reads an event of record kind `kind` from `payload`; the message bytes of an enqueue
    /// are a zero-copy slice of it.
    pub fn decode(kind: u8, payload: Bytes) -> Result<Event, EventError> {
        let found = payload.len();
        let bad = || EventError::BadLength { kind, found };
        let exact = |len: usize| if found == len { Ok(()) } else { Err(bad()) };
        let mut p = payload.clone();
        Ok(match kind {
            1 => {
                if found < ENQUEUE_HEADER_LEN {
                    return Err(bad());
                }
                Event::Enqueue {
                    queue: p.get_u32_le(),
                    seq: p.get_u64_le(),
                    ready_ms: p.get_i64_le(),
                    due_ms: p.get_i64_le(),
                    expires_ms: p.get_i64_le(),
                    delivery_count: p.get_u32_le(),
                    message_format: p.get_u32_le(),
                    bytes: payload.slice(ENQUEUE_HEADER_LEN..),
                }
            }
            2 | 5 => {
                exact(12)?;
                let (queue, seq) = (p.get_u32_le(), p.get_u64_le());
                if kind == 2 {
                    Event::Settle { queue, seq }
                } else {
                    Event::Consume { queue, seq }
                }
            }
            3 => {
                exact(16)?;
                Event::Redelivered {
                    queue: p.get_u32_le(),
                    seq: p.get_u64_le(),
                    delivery_count: p.get_u32_le(),
                }
            }
            4 => {
                exact(28)?;
                Event::Due {
                    queue: p.get_u32_le(),
                    old_seq: p.get_u64_le(),
                    new_seq: p.get_u64_le(),
                    at_ms: p.get_i64_le(),
                }
            }
            6 => {
                if found < 4 {
                    return Err(bad());
                }
                let queue = p.get_u32_le();
                let name = String::from_utf8(p.to_vec()).map_err(|_| EventError::BadName)?;
                Event::Declare { queue, name }
            }
            7 => {
                exact(4)?;
                Event::Delete {
                    queue: p.get_u32_le(),
                }
            }
            8 => {
                if found < 9 {
                    return Err(bad());
                }
                let txn = p.get_u64_le();
                let inner = p.get_u8();
                if matches!(inner, 8 | 9) {
                    return Err(EventError::UnknownKind(inner));
                }
                Event::TxnPart {
                    txn,
                    event: Box::new(Event::decode(inner, payload.slice(9..))?),
                }
            }
            9 => {
                exact(8)?;
                Event::TxnCommit {
                    txn: p.get_u64_le(),
                }
            }
            other => return Err(EventError::UnknownKind(other)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn event() -> impl Strategy<Value = Event> {
        let bytes = proptest::collection::vec(any::<u8>(), 0..300).prop_map(Bytes::from);
        prop_oneof![
            (any::<u32>(), ".{0,40}").prop_map(|(queue, name)| Event::Declare { queue, name }),
            (
                (
                    any::<u32>(),
                    any::<u64>(),
                    any::<i64>(),
                    any::<i64>(),
                    any::<i64>()
                ),
                any::<u32>(),
                any::<u32>(),
                bytes
            )
                .prop_map(
                    |(
                        (queue, seq, ready_ms, due_ms, expires_ms),
                        delivery_count,
                        message_format,
                        bytes,
                    )| {
                        Event::Enqueue {
                            queue,
                            seq,
                            ready_ms,
                            due_ms,
                            expires_ms,
                            delivery_count,
                            message_format,
                            bytes,
                        }
                    }
                ),
            (any::<u32>(), any::<u64>()).prop_map(|(queue, seq)| Event::Settle { queue, seq }),
            (any::<u32>(), any::<u64>(), any::<u32>()).prop_map(|(queue, seq, delivery_count)| {
                Event::Redelivered {
                    queue,
                    seq,
                    delivery_count,
                }
            }),
            (any::<u32>(), any::<u64>(), any::<u64>(), any::<i64>()).prop_map(
                |(queue, old_seq, new_seq, at_ms)| Event::Due {
                    queue,
                    old_seq,
                    new_seq,
                    at_ms,
                }
            ),
            (any::<u32>(), any::<u64>()).prop_map(|(queue, seq)| Event::Consume { queue, seq }),
            any::<u32>().prop_map(|queue| Event::Delete { queue }),
            any::<u64>().prop_map(|txn| Event::TxnCommit { txn }),
            (any::<u64>(), any::<u32>(), any::<u64>()).prop_map(|(txn, queue, seq)| {
                Event::TxnPart {
                    txn,
                    event: Box::new(Event::Settle { queue, seq }),
                }
            }),
        ]
    }

    proptest! {
        #[test]
        fn every_event_reads_back_as_written(e in event()) {
            let mut out = BytesMut::new();
            e.encode(&mut out);
            prop_assert_eq!(Event::decode(e.kind(), out.freeze()), Ok(e));
        }

        #[test]
        fn damaged_payloads_are_errors_not_panics(
            kind in 0u8..10,
            bytes in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let _ = Event::decode(kind, Bytes::from(bytes));
        }
    }

    #[test]
    fn a_truncated_fixed_event_is_refused() {
        let mut out = BytesMut::new();
        Event::Settle { queue: 1, seq: 2 }.encode(&mut out);
        let short = out.freeze().slice(..11);
        assert_eq!(
            Event::decode(2, short),
            Err(EventError::BadLength { kind: 2, found: 11 })
        );
        assert_eq!(
            Event::decode(10, Bytes::new()),
            Err(EventError::UnknownKind(10))
        );
        // A transaction part holds a plain change, never another transaction event.
        let mut nested = BytesMut::new();
        Event::TxnPart {
            txn: 1,
            event: Box::new(Event::TxnCommit { txn: 2 }),
        }
        .encode(&mut nested);
        assert_eq!(
            Event::decode(8, nested.freeze()),
            Err(EventError::UnknownKind(9))
        );
    }
}
