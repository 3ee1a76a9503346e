//! What makes a queue temporary: the dynamic node a link asked for (`dynamic = true`), who
//! owns it and when it goes (its lifetime policy, AMQP 1.0 §3.5.10).
//!
//! The queue belongs to the link that created it, and so to that link's connection: others
//! may send to it (a reply-to address is the point of it) but only its own connection may
//! consume from it, and only the end of its owner (or of every link, per the policy) deletes
//! it. A server replying on its own link to a client's temporary queue must not take the
//! queue with it when that link goes: the client's next reply would have nowhere to land.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// When a temporary queue is deleted (`lifetime-policy` in `dynamic-node-properties`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    /// `delete-on-close`: when the link that created it ends (the default).
    Close,
    /// `delete-on-no-links`: when no link is attached to it any more.
    NoLinks,
    /// `delete-on-no-messages`: when it holds no message, looked at whenever a link to it ends.
    NoMessages,
    /// `delete-on-no-links-or-messages`: when either of the two above holds.
    NoLinksOrMessages,
}

impl Lifetime {
    /// The policy's name on the wire (its descriptor's symbol).
    pub fn name(self) -> &'static str {
        match self {
            Lifetime::Close => "delete-on-close",
            Lifetime::NoLinks => "delete-on-no-links",
            Lifetime::NoMessages => "delete-on-no-messages",
            Lifetime::NoLinksOrMessages => "delete-on-no-links-or-messages",
        }
    }
}

/// The owner and the policy of a temporary queue, and the links attached to it.
#[derive(Debug)]
pub struct Temporary {
    /// The connection whose link created it (a broker-wide id).
    connection: u64,
    lifetime: Lifetime,
    /// Links (senders and receivers, the owner included) attached to it now.
    links: AtomicUsize,
    /// Whether the creating link is still attached.
    owner_attached: AtomicBool,
}

impl Temporary {
    /// A queue created by a link of `connection`, which counts as its first attached link.
    pub fn new(connection: u64, lifetime: Lifetime) -> Temporary {
        Temporary {
            connection,
            lifetime,
            links: AtomicUsize::new(1),
            owner_attached: AtomicBool::new(true),
        }
    }

    /// The connection that owns it (0: none, anyone may consume, as a shared subscription).
    pub fn connection(&self) -> u64 {
        self.connection
    }

    /// Whether a link of `connection` may consume from it.
    pub fn may_consume(&self, connection: u64) -> bool {
        self.connection == 0 || self.connection == connection
    }

    /// Its lifetime policy.
    pub fn lifetime(&self) -> Lifetime {
        self.lifetime
    }

    /// Another link attached to it.
    pub fn link_attached(&self) {
        self.links.fetch_add(1, Ordering::Relaxed);
    }

    /// A link attached to it ended (`owner`: the one that created it). Returns whether the
    /// queue must go now, given that it holds `depth` messages.
    pub fn link_ended(&self, owner: bool, depth: usize) -> bool {
        if owner {
            self.owner_attached.store(false, Ordering::Relaxed);
        }
        let links = self.links.fetch_sub(1, Ordering::Relaxed).saturating_sub(1);
        match self.lifetime {
            Lifetime::Close => !self.owner_attached.load(Ordering::Relaxed),
            Lifetime::NoLinks => links == 0,
            Lifetime::NoMessages => depth == 0,
            Lifetime::NoLinksOrMessages => links == 0 || depth == 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_owner_ends_a_delete_on_close_queue() {
        let t = Temporary::new(7, Lifetime::Close);
        t.link_attached(); // a server's sender replying to it
        assert!(!t.link_ended(false, 0), "the server's link going leaves it");
        assert!(
            t.link_ended(true, 3),
            "the owner going takes it, messages and all"
        );
    }

    #[test]
    fn delete_on_no_links_waits_for_the_last_link() {
        let t = Temporary::new(7, Lifetime::NoLinks);
        t.link_attached();
        assert!(!t.link_ended(true, 0));
        assert!(t.link_ended(false, 0));
    }

    #[test]
    fn delete_on_no_messages_looks_at_the_depth() {
        let t = Temporary::new(7, Lifetime::NoMessages);
        t.link_attached();
        assert!(!t.link_ended(false, 2));
        assert!(t.link_ended(true, 0));
        let t = Temporary::new(7, Lifetime::NoLinksOrMessages);
        assert!(t.link_ended(true, 5), "no links left");
    }
}
