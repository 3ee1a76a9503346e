//! The journal adapter of durable queues: the events a durable queue writes
//! ([`events`]), the queue-side handle that writes them ([`journaled`]), the replay of a
//! journal into queues at start ([`restore`]), and opening the store from the configuration
//! ([`storage`]).

pub mod events;
pub mod journaled;
pub mod restore;
pub mod storage;
