//! A session's transfer numbering and incoming/outgoing windows (§2.5.6), and the flow frame
//! that carries them. Its own file because outgoing deliveries (sending.rs) number themselves
//! from it without needing the session's links.

use fe2o3_amqp_types::performatives::Flow;

use crate::engine::ids::{DeliveryId, Serial};

/// Our first transfer-id in every session.
pub(super) const INITIAL_OUTGOING_ID: u32 = 0;
/// We never limit the transfers we may send beyond what the peer's window allows.
pub(super) const OUTGOING_WINDOW: u32 = u32::MAX;

/// A session's transfer numbering and flow-control windows (§2.5.6), kept apart from its links
/// so both can be borrowed at once.
#[derive(Debug)]
pub(super) struct Window {
    /// The transfer-id we expect next from the peer.
    pub next_incoming_id: Serial,
    /// Transfers the peer may still send before we widen the window.
    pub incoming_window: u32,
    /// The transfer-id of our next transfer frame.
    pub next_outgoing_id: Serial,
    /// Transfers we may still send before the peer widens its window.
    pub remote_incoming_window: u32,
    /// The delivery-id of our next delivery.
    pub next_delivery_id: DeliveryId,
}

/// A flow frame carrying only the session's state.
pub(super) fn session_flow(window: &Window) -> Flow {
    Flow {
        next_incoming_id: Some(window.next_incoming_id.0),
        incoming_window: window.incoming_window,
        next_outgoing_id: window.next_outgoing_id.0,
        outgoing_window: OUTGOING_WINDOW,
        handle: None,
        delivery_count: None,
        link_credit: None,
        available: None,
        drain: false,
        echo: false,
        properties: None,
    }
}
