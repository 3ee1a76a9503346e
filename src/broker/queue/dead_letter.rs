//! Dead letters: a message the queue cannot deliver (rejected, expired, past its delivery
//! attempts) goes to the queue's `dead_letter_address`, annotated with why, where and when.

use crate::message::{AnnotationValue, Message};

use super::entry::Entry;

/// Why a message is dead-lettered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeadReason {
    /// A consumer rejected it, with this error.
    Rejected {
        /// The error condition, e.g. `amqp:not-allowed`.
        condition: Option<String>,
        /// Its description.
        description: Option<String>,
    },
    /// It expired before it was consumed.
    Expired,
    /// It failed `max_delivery_attempts` deliveries.
    DeliveryLimit,
    /// It was the oldest of a queue past its length limit (`overflow = "drop-head"`).
    MaxLength,
}

impl DeadReason {
    /// The value of `x-opt-dead-letter-reason`.
    pub fn name(&self) -> &'static str {
        match self {
            DeadReason::Rejected { .. } => "rejected",
            DeadReason::Expired => "expired",
            DeadReason::DeliveryLimit => "delivery-limit",
            DeadReason::MaxLength => "maxlen",
        }
    }
}

/// A copy of `entry`'s message with the dead-letter annotations: `x-opt-dead-letter-reason`,
/// `x-opt-dead-letter-condition` and `-description` (for a rejection), `x-opt-original-queue`
/// and `x-opt-dead-letter-time`. Everything else is the message as it arrived.
pub fn annotate(entry: &Entry, why: &DeadReason, queue: &str, now: i64) -> Message {
    let mut annotations = vec![
        (
            "x-opt-dead-letter-reason",
            AnnotationValue::Symbol(why.name()),
        ),
        ("x-opt-original-queue", AnnotationValue::Str(queue)),
        ("x-opt-dead-letter-time", AnnotationValue::Timestamp(now)),
    ];
    if let DeadReason::Rejected {
        condition,
        description,
    } = why
    {
        if let Some(c) = condition {
            // A symbol must be ASCII; a peer's odd condition still travels, as a string.
            let value = if c.is_ascii() {
                AnnotationValue::Symbol(c)
            } else {
                AnnotationValue::Str(c)
            };
            annotations.push(("x-opt-dead-letter-condition", value));
        }
        if let Some(d) = description {
            annotations.push(("x-opt-dead-letter-description", AnnotationValue::Str(d)));
        }
    }
    entry.message.with_annotations(&annotations)
}
