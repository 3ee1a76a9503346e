//! A session's state: its links, its window (window.rs) and the deliveries awaiting outcomes.

use std::collections::BTreeMap;

use crate::engine::ids::{Channel, DeliveryId, LinkHandle};
use crate::int_map::IntMap;

use super::link::Link;
use super::window::Window;

/// One session of a connection.
#[derive(Debug)]
pub(super) struct Session {
    pub channel: Channel,
    pub handle_max: u32,
    /// Transfer numbering and windows.
    pub window: Window,
    /// Links by handle; we use the peer's handle as ours too.
    pub links: IntMap<LinkHandle, Link>,
    /// Our deliveries awaiting the peer's outcome: delivery-id → (handle, queue sequence).
    pub unsettled: BTreeMap<DeliveryId, (LinkHandle, u64)>,
    /// Peer deliveries we have queued and will confirm at the next flush, with whether our
    /// disposition settles them (receiver-settle-mode first) or waits for the peer (second).
    pub accepted: Vec<(DeliveryId, bool)>,
}
