//! What a durable queue writes to the journal (DESIGN.md §5), as bytes: the store knows
//! records and bytes, this module knows queues.
//!
//! One event per change. Queues are named once (`Declare`) and referred to by a number after,
//! so an enqueue record carries four bytes of queue rather than its name. Integers are
//! little-endian and fixed-width: the journal is read back by this same code, and a fixed
//! layout makes a truncated or damaged payload fail to decode instead of decoding wrong.
//!
//! Not wired to the queues yet (issue 7 in progress): this is the format they will write.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// A queue's number in the journal.
pub type QueueNo = u32;

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
    /// A message arrived.
    Enqueue {
        /// The queue.
        queue: QueueNo,
        /// Its sequence number in the queue.
        seq: u64,
        /// When it arrived (ms since the epoch): its ttl and delay count from here.
        arrived_ms: i64,
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
    /// A delivery failed: the message's delivery-count is now `delivery_count`.
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
    /// Messages kept for rewind were made ready again.
    Rewind {
        /// The queue.
        queue: QueueNo,
        /// The rewind's time (ms since the epoch): everything kept from then on came back.
        from_ms: i64,
    },
    /// The queue was deleted with its messages.
    Delete {
        /// The queue.
        queue: QueueNo,
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

impl Event {
    /// The record kind this event is written as.
    pub fn kind(&self) -> u8 {
        match self {
            Event::Enqueue { .. } => 1,
            Event::Settle { .. } => 2,
            Event::Redelivered { .. } => 3,
            Event::Due { .. } => 4,
            Event::Rewind { .. } => 5,
            Event::Declare { .. } => 6,
            Event::Delete { .. } => 7,
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
                arrived_ms,
                delivery_count,
                message_format,
                bytes,
            } => {
                out.put_u32_le(*queue);
                out.put_u64_le(*seq);
                out.put_i64_le(*arrived_ms);
                out.put_u32_le(*delivery_count);
                out.put_u32_le(*message_format);
                out.put_slice(bytes);
            }
            Event::Settle { queue, seq } => {
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
            Event::Rewind { queue, from_ms } => {
                out.put_u32_le(*queue);
                out.put_i64_le(*from_ms);
            }
            Event::Delete { queue } => out.put_u32_le(*queue),
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
                if found < 28 {
                    return Err(bad());
                }
                Event::Enqueue {
                    queue: p.get_u32_le(),
                    seq: p.get_u64_le(),
                    arrived_ms: p.get_i64_le(),
                    delivery_count: p.get_u32_le(),
                    message_format: p.get_u32_le(),
                    bytes: payload.slice(28..),
                }
            }
            2 => {
                exact(12)?;
                Event::Settle {
                    queue: p.get_u32_le(),
                    seq: p.get_u64_le(),
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
            5 => {
                exact(12)?;
                Event::Rewind {
                    queue: p.get_u32_le(),
                    from_ms: p.get_i64_le(),
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
                any::<u32>(),
                any::<u64>(),
                any::<i64>(),
                any::<u32>(),
                any::<u32>(),
                bytes
            )
                .prop_map(
                    |(queue, seq, arrived_ms, delivery_count, message_format, bytes)| {
                        Event::Enqueue {
                            queue,
                            seq,
                            arrived_ms,
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
            (any::<u32>(), any::<i64>())
                .prop_map(|(queue, from_ms)| Event::Rewind { queue, from_ms }),
            any::<u32>().prop_map(|queue| Event::Delete { queue }),
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
            Event::decode(9, Bytes::new()),
            Err(EventError::UnknownKind(9))
        );
    }
}
