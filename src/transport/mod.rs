//! Transport: the accept loop, admission and fd limits, protocol-header negotiation and SASL,
//! the registry of open connections, and the task that drives one connection's engine from its
//! socket with the codec.

pub mod admission;
pub mod connection;
pub mod fd_limit;
pub mod handshake;
pub mod listener;
pub mod log_limit;
pub mod login_summary;
pub mod login_throttle;
pub mod prefixed;
pub mod refuse;
pub mod registry;
pub mod scram;
pub mod settings;
pub mod shutdown;
pub mod tls;
pub mod websocket;
