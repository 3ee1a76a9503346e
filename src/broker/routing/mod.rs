//! Routing: the nodes an address can name besides a queue. Exchanges (direct, fanout, topic,
//! headers) hold no messages; they route each one to the queues bound to them. A topic is a
//! topic exchange addressed as a topic (`topic://`, capability `topic`): each receiver gets a
//! subscription queue of its own, bound with its filter's key.
//!
//! `address.rs` reads what an address names, `exchange.rs` holds bindings and routes,
//! `topic.rs` is the trie topic patterns are matched through, `publish.rs` puts one message
//! into several queues with one answer for its producer.

pub mod address;
pub mod definitions;
pub mod exchange;
pub mod exchanges;
pub mod publish;
pub mod saved;
pub mod topic;

use std::sync::Arc;

use crate::broker::queue::Queue;

use self::exchange::Exchange;

/// What a producer's link (or an anonymous-relay message) sends to.
#[derive(Debug, Clone)]
pub enum Node {
    /// A queue.
    Queue(Arc<Queue>),
    /// An exchange; with a key, every message routes by that key instead of its own
    /// (`/exchanges/X/KEY`).
    Exchange(Arc<Exchange>, Option<Arc<str>>),
}

impl Node {
    /// The node's name.
    pub fn name(&self) -> &str {
        match self {
            Node::Queue(q) => q.name(),
            Node::Exchange(x, _) => x.name(),
        }
    }
}
