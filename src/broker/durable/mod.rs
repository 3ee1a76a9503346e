//! The journal adapter of durable queues: the events a durable queue writes
//! ([`events`]), the queue-side handle that writes them ([`journaled`]), the replay of a
//! journal into queues at start ([`restore`]), opening the store from the configuration
//! ([`storage`]), and writing a transaction's commit all-or-nothing ([`commit`]).

pub mod commit;
pub mod events;
pub mod journaled;
pub mod restore;
pub mod storage;
