//! The AMQP 1.0 codec: frames (with the vectored output buffer), the hand-coded transfer
//! performative, and the iterative value pre-scan that bounds what serde_amqp is given.
//!
//! It knows bytes and performatives, nothing of connections, sockets or queues: transport
//! reads and writes with it, the engine builds its output with it, and the message view scans
//! sections with it. Nothing here imports another layer of sluice.

pub mod frame;
pub mod scan;
pub mod transfer;
