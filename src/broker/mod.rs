//! The broker core: named queues, the exchanges that route to them, and the consumers attached
//! to them.
//!
//! Three wings: `queue/` holds everything a queue is made of (its entries, ready list, groups,
//! delays and schedule, rewind, settlement, dispatch, dead letters, stats, timer), `durable/`
//! the journal adapter (the events a durable queue writes, the journaled queue, the replay at
//! start, the storage setup), `routing/` the nodes besides queues (exchanges, topics,
//! addresses, subscriptions' bindings). At the root: the router, the consumer outbox and waker, the
//! memory account. (The registry of open connections is transport's: the broker never knows
//! connection topology.)
//!
//! Nothing here knows frames or performatives. The engine asks the core for a node by address
//! and then speaks to it in messages, consumers, credit and outcomes.

pub mod consumer;
pub mod durable;
pub mod memory;
pub mod queue;
pub mod router;
pub mod routing;
pub mod transaction;

pub use consumer::{ConnWaker, ConsumerId, Delivery, OutItem, Outbox};
pub use queue::entry::{Annotations, Outcome};
pub use queue::groups::GroupInfo;
pub use queue::temporary::Lifetime;
pub use queue::{ConsumerInfo, Publish, Queue, QueueStats};
pub use router::{RouteError, Router};
