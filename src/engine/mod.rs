//! The AMQP 1.0 engine: connection, session and link state machines, sans-IO.
//!
//! The engine is fed decoded frames, broker deliveries and the current time; it answers with
//! bytes to send (in an [`Output`](crate::codec::frame::Output)) and calls into the broker
//! core. It never touches a socket, a clock or a task, so every protocol state can be driven
//! directly in tests and by the fuzz target.

mod connection;
mod filters;
mod ids;
mod link;
mod reassembly;
mod sending;
mod session;
mod terminus;
mod window;

use fe2o3_amqp_types::definitions::{self, ErrorCondition};

pub use connection::SessionInfo;
pub use connection::{Connection, PeerInfo};

use crate::config::Config;
pub use ids::{Channel, LinkHandle};

/// The limits and identity the engine announces, taken from the broker configuration.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Our container-id in `open`.
    pub container_id: String,
    /// The largest frame we accept.
    pub max_frame_size: u32,
    /// The highest channel number we accept.
    pub channel_max: u16,
    /// The highest link handle we accept per session.
    pub handle_max: u32,
    /// Close a connection that sends nothing for this long (0: never).
    pub idle_timeout_ms: u32,
    /// Transfers a session may send us before we widen its window again.
    pub session_window: u32,
    /// Credit granted to each producer link, replenished as messages are queued.
    pub link_credit: u32,
    /// Bytes of incomplete deliveries a connection may hold besides its one large message.
    pub max_incomplete_bytes: u64,
    /// Roll back a transaction not discharged this long after its declare (0: never).
    pub transaction_timeout_ms: u64,
    /// Sessions per connection (0: no cap beyond channel-max).
    pub max_sessions: u32,
    /// Links per connection, over all its sessions (0: no cap).
    pub max_links: u32,
    /// Unsettled deliveries the broker lets a consumer link hold (0: its credit decides).
    pub max_unsettled: u32,
    /// The virtual hosts an `open`'s hostname may select.
    pub vhosts: std::sync::Arc<crate::config::VirtualHosts>,
}

impl From<&Config> for EngineConfig {
    fn from(c: &Config) -> Self {
        EngineConfig {
            container_id: c.container_id.clone(),
            max_frame_size: c.max_frame_size,
            channel_max: c.channel_max,
            handle_max: c.handle_max,
            idle_timeout_ms: c.idle_timeout_ms,
            session_window: c.session_window.max(1),
            link_credit: c.link_credit.max(1),
            max_incomplete_bytes: c.limits.max_incomplete_bytes,
            transaction_timeout_ms: c.transaction_timeout_ms,
            max_sessions: c.limits.max_sessions_per_connection,
            max_links: c.limits.max_links_per_connection,
            max_unsettled: c.limits.max_unsettled_per_link,
            vhosts: std::sync::Arc::new(c.vhosts.clone()),
        }
    }
}

/// An AMQP error condition with a description a person can act on: what the engine sends in
/// `close`, `end`, `detach` or a `rejected` outcome.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}: {description}", condition_name(condition))]
pub struct AmqpFailure {
    /// The condition (e.g. `amqp:decode-error`).
    pub condition: ErrorCondition,
    /// What happened, for the person reading the client's log.
    pub description: String,
}

impl AmqpFailure {
    /// A failure with `condition` and `description`.
    pub fn new(condition: impl Into<ErrorCondition>, description: impl Into<String>) -> Self {
        AmqpFailure {
            condition: condition.into(),
            description: description.into(),
        }
    }

    /// As the `error` field of a performative.
    pub fn to_error(&self) -> definitions::Error {
        definitions::Error::new(self.condition.clone(), Some(self.description.clone()), None)
    }
}

/// The symbolic name of an error condition, as it appears on the wire.
pub fn condition_name(c: &ErrorCondition) -> String {
    match serde_amqp::to_value(c) {
        Ok(serde_amqp::Value::Symbol(s)) => s.0,
        _ => format!("{c:?}"),
    }
}

/// What went wrong while handling a frame, and how far its effect reaches.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The connection is closed with this error.
    Connection(AmqpFailure),
    /// Only this session is ended with this error; the connection's other sessions go on.
    Session {
        channel: Channel,
        error: AmqpFailure,
    },
    /// Only this link is detached (closed) with this error.
    Link {
        channel: Channel,
        handle: LinkHandle,
        error: AmqpFailure,
    },
}

impl From<AmqpFailure> for Failure {
    fn from(e: AmqpFailure) -> Self {
        Failure::Connection(e)
    }
}

#[cfg(test)]
mod tests;
