//! A delivery to a consumer on its way out: its bytes cut into transfers that fit the peer's
//! frame size and session window, resumed where the window shut when it opens again.

use bytes::Bytes;

use crate::broker::Delivery;
use crate::codec::frame::{delivery_transfer_size, Output};
use crate::codec::transfer::FirstFrame;
use crate::engine::ids::{Channel, DeliveryId, LinkHandle};

use super::window::Window;

/// Room a transfer performative needs at most when it carries only the fields we set (handle,
/// delivery-id, a 4-byte tag, format, settled, more): below this, no size computation is needed.
const TRANSFER_OVERHEAD_BOUND: usize = 8 + 64;

/// A delivery to a consumer whose frames are not all sent yet.
#[derive(Debug)]
pub(super) struct Sending {
    pub delivery_id: DeliveryId,
    pub seq: u64,
    remaining: Remaining,
    message_format: u32,
    first_frame: bool,
    pub presettled: bool,
}

pub(super) fn start_sending(window: &mut Window, d: Delivery, presettled: bool) -> Sending {
    let delivery_id = window.next_delivery_id;
    window.next_delivery_id = delivery_id.next();
    let (head, rest) = d.message.wire_chunks(d.delivery_count);
    let remaining = Remaining {
        head: head.unwrap_or_default(),
        rest,
    };
    Sending {
        delivery_id,
        seq: d.seq,
        remaining,
        message_format: d.message.message_format(),
        first_frame: true,
        presettled,
    }
}

impl Sending {
    /// Sends frames until the delivery is complete (true) or the session window is shut (false).
    pub fn send_frames(
        &mut self,
        channel: Channel,
        handle: LinkHandle,
        window: &mut Window,
        out: &mut Output,
        max_frame: usize,
    ) -> bool {
        loop {
            if window.remote_incoming_window == 0 {
                return false;
            }
            let first = self.first_frame.then_some(FirstFrame {
                delivery_id: self.delivery_id.0,
                message_format: self.message_format,
                settled: self.presettled,
            });
            let remaining = self.remaining.len();
            let room = if remaining + TRANSFER_OVERHEAD_BOUND <= max_frame {
                remaining
            } else {
                let overhead = 8 + delivery_transfer_size(handle.0, first.as_ref());
                max_frame.saturating_sub(overhead).max(1)
            };
            let payload = self.remaining.take(room);
            let more = self.remaining.len() > 0;
            out.push_delivery(channel.0, handle.0, first.as_ref(), more, &payload);
            window.next_outgoing_id = window.next_outgoing_id.next();
            window.remote_incoming_window -= 1;
            self.first_frame = false;
            if !more {
                return true;
            }
        }
    }
}

/// The bytes of a delivery still to send: a rewritten header (often empty) and the rest of
/// the message, both slices of buffers the broker already holds.
#[derive(Debug)]
struct Remaining {
    head: Bytes,
    rest: Bytes,
}

impl Remaining {
    fn len(&self) -> usize {
        self.head.len() + self.rest.len()
    }

    /// Takes up to `room` bytes off the front, as (at most two) slices.
    fn take(&mut self, room: usize) -> [Bytes; 2] {
        let from_head = self.head.split_to(room.min(self.head.len()));
        let room = room - from_head.len();
        let from_rest = self.rest.split_to(room.min(self.rest.len()));
        [from_head, from_rest]
    }
}
