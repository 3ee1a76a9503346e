//! One frame of a producer's delivery, free of the connection: the frame checked against the
//! delivery in progress, credit taken for a new delivery, the size limit and the
//! incomplete-delivery cap enforced, and the payload joined to what came before. The
//! connection (`incoming.rs`) looks the link up before and routes the message after; this
//! step is what the unit tests below drive directly.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use fe2o3_amqp_types::definitions::{AmqpError, ErrorCondition, LinkError};
use fe2o3_amqp_types::messaging::DeliveryState;

use crate::broker::memory::Memory;
use crate::codec::transfer::Transfer;
use crate::engine::ids::DeliveryId;

use super::link::{Held, Incoming, Producer};
use super::AmqpFailure;

/// What one transfer frame did to its link's delivery.
#[derive(Debug)]
pub(super) enum Step {
    /// Nothing to act on: the delivery was aborted.
    Nothing,
    /// More frames follow; `designate`: the delivery just became the connection's one large
    /// incomplete delivery.
    More { designate: bool },
    /// The last frame: the whole delivery.
    Complete(Incoming),
}

/// A frame that breaks a rule: of its link (the link is detached) or of the connection.
#[derive(Debug)]
pub(super) enum StepError {
    Link(AmqpFailure),
    Connection(AmqpFailure),
}

fn link_failure(condition: ErrorCondition, description: String) -> StepError {
    StepError::Link(AmqpFailure::new(condition, description))
}

/// Applies one transfer frame (`payload` its bytes after the performative) to `producer`'s
/// link `link_name`. `hold_ctx` is given for a frame with more to follow.
pub(super) fn step(
    producer: &mut Producer,
    link_name: &str,
    transfer: &Transfer,
    payload: Bytes,
    hold_ctx: Option<&HoldCtx>,
) -> Result<Step, StepError> {
    if transfer.resume {
        return Err(link_failure(
            AmqpError::NotImplemented.into(),
            "resuming a delivery is not supported: the broker keeps no unsettled state across attaches".into(),
        ));
    }
    let mut incoming = match producer.incoming.take() {
        Some(mut inc) => {
            if transfer
                .delivery_id
                .is_some_and(|id| DeliveryId(id) != inc.delivery_id)
            {
                return Err(StepError::Connection(AmqpFailure::new(
                    AmqpError::InvalidField,
                    format!(
                        "transfer for delivery {} while delivery {} on link '{link_name}' is incomplete",
                        transfer.delivery_id.unwrap_or_default(),
                        inc.delivery_id
                    ),
                )));
            }
            inc.settled |= transfer.settled.unwrap_or(false);
            inc
        }
        None => {
            let Some(delivery_id) = transfer.delivery_id else {
                return Err(StepError::Connection(AmqpFailure::new(
                    AmqpError::InvalidField,
                    format!(
                        "first transfer of a delivery on link '{link_name}' has no delivery-id"
                    ),
                )));
            };
            if producer.credit == 0 {
                // Only this link broke the rule: the connection's other links go on.
                return Err(link_failure(
                    LinkError::TransferLimitExceeded.into(),
                    format!("transfer on link '{link_name}', which has no credit"),
                ));
            }
            producer.credit -= 1;
            producer.delivery_count = producer.delivery_count.next();
            Incoming {
                delivery_id: DeliveryId(delivery_id),
                settled: transfer.settled.unwrap_or(false),
                txn: match &transfer.state {
                    Some(DeliveryState::TransactionalState(t)) => Some(t.txn_id.to_vec()),
                    _ => None,
                },
                message_format: transfer.message_format.unwrap_or(0),
                first: Bytes::new(),
                rest: Vec::new(),
                size: 0,
                held: None,
            }
        }
    };
    if transfer.aborted {
        return Ok(Step::Nothing);
    }
    incoming.size += payload.len() as u64;
    let max = producer.max_message_size;
    if max > 0 && incoming.size > max {
        return Err(StepError::Link(AmqpFailure::new(
                LinkError::MessageSizeExceeded,
                format!(
                    "message of at least {} bytes exceeds the max-message-size of {max} bytes on link '{link_name}'",
                    incoming.size
                ),
            )));
    }
    let mut designate = false;
    if let Some(ctx) = hold_ctx {
        designate = hold(ctx, &mut incoming, payload.len() as u64).map_err(|description| {
            link_failure(AmqpError::ResourceLimitExceeded.into(), description)
        })?;
    }
    if incoming.first.is_empty() {
        incoming.first = payload;
    } else if !payload.is_empty() {
        incoming.rest.push(payload);
    }
    if transfer.more {
        producer.incoming = Some(incoming);
        return Ok(Step::More { designate });
    }
    Ok(Step::Complete(incoming))
}

/// What `hold` needs of the connection, taken before the link is borrowed.
pub(super) struct HoldCtx {
    pub(super) memory: Arc<Memory>,
    pub(super) small: Arc<AtomicU64>,
    pub(super) cap: u64,
    pub(super) large_elsewhere: bool,
}

/// Counts `len` more bytes of an unfinished delivery. Beyond `max_incomplete_bytes` on the
/// connection, the delivery becomes the connection's one large message (bounded by
/// max-message-size) if there is none yet; otherwise the link must be detached (the Err is the
/// description). Returns whether this delivery just became the large one.
fn hold(ctx: &HoldCtx, incoming: &mut Incoming, len: u64) -> Result<bool, String> {
    let held = incoming
        .held
        .get_or_insert_with(|| Held::new(&ctx.memory, &ctx.small));
    let mut designated = false;
    if !held.is_large() && ctx.small.load(Ordering::Relaxed) + len > ctx.cap {
        if ctx.large_elsewhere {
            return Err(format!(
                "this connection already holds {} bytes of unfinished multi-frame deliveries (max_incomplete_bytes = {}) besides the large message in progress on another link: finish a delivery before sending more of another",
                ctx.small.load(Ordering::Relaxed),
                ctx.cap
            ));
        }
        held.make_large();
        designated = true;
    }
    held.add(len);
    Ok(designated)
}

#[cfg(test)]
#[path = "reassembly_tests.rs"]
mod tests;
