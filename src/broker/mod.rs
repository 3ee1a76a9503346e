//! The broker core: named queues and the consumers attached to them.
//!
//! Nothing here knows frames or performatives. The engine asks the core for a node by address
//! and then speaks to it in messages, consumers, credit and outcomes.

pub mod clock;
pub mod consumer;
pub mod dead_letter;
pub mod delayed;
mod dispatch;
pub mod entry;
pub mod groups;
pub mod journaled;
mod lifecycle;
pub mod memory;
pub mod persist;
pub mod queue;
pub mod ready;
pub mod registry;
pub mod restore;
pub mod rewind;
pub mod router;
pub mod schedule;
pub mod stats;
pub mod storage;
pub mod timer;

pub use consumer::{Confirmed, ConnWaker, ConsumerId, Delivery, OutItem, Outbox, Unstore};
pub use entry::{Annotations, Outcome};
pub use groups::GroupInfo;
pub use queue::{ConsumerInfo, Publish, Queue, QueueStats};
pub use registry::{ConnectionEntry, ConnectionId, LinkInfo, Registry, SessionInfo};
pub use router::{RouteError, Router};

#[cfg(test)]
mod time_tests;
