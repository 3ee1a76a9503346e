//! What the admin API may see of a connection: its sessions and links, and how many there are.
//! The types are the engine's: a connection's topology is something only it knows.

use fe2o3_amqp_types::definitions::ConnectionError;

use serde::Serialize;

use super::Connection;
use crate::engine::link::LinkKind;
use crate::engine::AmqpFailure;

/// One link of a connection, as the peer uses it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LinkInfo {
    /// The link handle on its session.
    pub handle: u32,
    /// The link's name.
    pub name: String,
    /// What the peer does on it: `producer` (sends to the broker), `consumer` (receives), or
    /// `refused` (an attach the broker refused, waiting for the peer's detach).
    pub role: &'static str,
    /// The queue it sends to or receives from; none for an anonymous-relay producer.
    pub address: Option<String>,
    /// Transfers the peer may still send (producer) or receive (consumer).
    pub credit: u32,
    /// Deliveries on the link not yet settled by the peer.
    pub unsettled: usize,
    /// The link's delivery-count.
    pub delivery_count: u32,
}

/// One session of a connection.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SessionInfo {
    /// The channel it is on.
    pub channel: u16,
    /// Its links, by handle.
    pub links: Vec<LinkInfo>,
}

impl Connection {
    /// Every session and its links, by channel and handle.
    pub fn describe(&self) -> Vec<SessionInfo> {
        let mut sessions: Vec<SessionInfo> = self
            .sessions
            .values()
            .map(|session| {
                let mut links: Vec<LinkInfo> = session
                    .links
                    .iter()
                    .map(|(&handle, link)| {
                        let unsettled = session
                            .unsettled
                            .values()
                            .filter(|(h, _)| *h == handle)
                            .count();
                        let (role, address, credit, delivery_count) = match &link.kind {
                            LinkKind::Producer(p) => (
                                "producer",
                                p.target.as_ref().map(|q| q.name().to_owned()),
                                p.credit,
                                p.delivery_count.0,
                            ),
                            LinkKind::Consumer(c) => (
                                "consumer",
                                Some(c.queue.name().to_owned()),
                                c.delivery_count.credit_until(c.credit_limit),
                                c.delivery_count.0,
                            ),
                            LinkKind::Refused => ("refused", None, 0, 0),
                        };
                        LinkInfo {
                            handle: handle.0,
                            name: link.name.clone(),
                            role,
                            address,
                            credit,
                            unsettled,
                            delivery_count,
                        }
                    })
                    .collect();
                links.sort_by_key(|l| l.handle);
                SessionInfo {
                    channel: session.channel.0,
                    links,
                }
            })
            .collect();
        sessions.sort_by_key(|s| s.channel);
        sessions
    }

    /// Open sessions and attached links (refused ones included until the peer detaches them).
    pub fn counts(&self) -> (usize, usize) {
        let links = self.sessions.values().map(|s| s.links.len()).sum();
        (self.sessions.len(), links)
    }

    /// Whether sessions or links came or went since the last call.
    pub fn take_topology_changed(&mut self) -> bool {
        std::mem::take(&mut self.topology_changed)
    }

    /// Closes the connection on an administrator's request, with `amqp:connection:forced`.
    pub fn close_by_admin(&mut self) {
        if !self.is_closing() {
            self.close_with(Some(AmqpFailure::new(
                ConnectionError::ConnectionForced,
                "closed by an administrator",
            )));
        }
    }
}
