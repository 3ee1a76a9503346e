//! What a queue needs of the broker around it, as a trait the router implements: so the
//! queue never names the router, which names queues (tests/cycles.rs).

use std::sync::Arc;

use crate::broker::memory::Memory;

use super::Queue;

/// What a queue needs of the broker around it: the queue its dead letters go to, and the
/// memory account the copies it rewrites are charged to. The router is the one
/// implementation; a trait, so the queue never names the router (which names queues).
pub trait Nodes: Send + Sync + std::fmt::Debug {
    /// The queue named `name`, created as the configuration allows.
    fn queue_named(&self, name: &str) -> Result<Arc<Queue>, String>;
    /// The broker's memory account.
    fn memory(&self) -> &Arc<Memory>;
}

/// No broker around: what [`Queue::alone`] points at (never reached: its `Weak` is empty).
#[derive(Debug)]
pub(super) struct NoNodes;

impl Nodes for NoNodes {
    fn queue_named(&self, name: &str) -> Result<Arc<Queue>, String> {
        Err(format!("no broker to find '{name}' in"))
    }

    fn memory(&self) -> &Arc<Memory> {
        static ALONE: std::sync::OnceLock<Arc<Memory>> = std::sync::OnceLock::new();
        ALONE.get_or_init(Memory::new)
    }
}
