//! Transport: the accept loop, protocol-header negotiation and SASL, the frame codec, and the
//! task that drives one connection's engine from its socket.

pub mod admission;
pub mod connection;
pub mod fd_limit;
pub mod frame;
pub mod handshake;
pub mod listener;
pub mod log_limit;
pub mod refuse;
pub mod registry;
pub mod scan;
pub mod transfer;
