//! Consumers coming and going: the exclusive setting (one consumer, or one active and the
//! rest on standby), what a leaving consumer gives back, and whether an auto-delete queue has
//! lost its last one.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::broker::consumer::{lock, ConsumerId, OutItem, Outbox};
use crate::config::Exclusive;
use crate::selector::Filter;

use super::clock::Now;
use super::entry::Entry;
use super::entry::Outcome;
use super::Queue;

impl Queue {
    /// Registers a consumer with no credit yet. With `group_rebalance`, every group is freed
    /// so the groups spread over the consumers, the new one included.
    ///
    /// With `filter`, it takes only the messages that pass (the others stay for other
    /// consumers). Returns false, adding nothing, when the queue is `exclusive = true` and
    /// has a consumer.
    pub fn add_consumer(
        &self,
        outbox: Arc<Outbox>,
        link_name: &str,
        filter: Option<Arc<Filter>>,
    ) -> bool {
        let mut st = lock(&self.state);
        let taken = st.consumers.iter().any(|c| c.browse.is_none());
        if self.settings.exclusive == Exclusive::Yes && taken {
            return false;
        }
        self.had_consumer.store(true, Ordering::Relaxed);
        let lists = st.ready.lists();
        st.consumers
            .push(Consumer::new(outbox, link_name, None, filter, lists));
        if self.settings.group_rebalance {
            st.groups
                .reset(self.settings.group_rebalance_pause_dispatch);
            st.dispatch();
        }
        true
    }

    /// Removes a consumer. Everything it still holds goes back to the queue in order: messages it
    /// was sent count as a failed delivery (delivery-count + 1), messages still in its outbox
    /// were never sent and do not. Its groups are free for the next consumer that asks.
    pub fn detach_consumer(&self, consumer: ConsumerId) {
        let mut st = lock(&self.state);
        let Some(pos) = st
            .consumers
            .iter()
            .position(|c| c.outbox.consumer() == consumer)
        else {
            return;
        };
        let removed = st.consumers.remove(pos);
        if st.next_consumer > pos {
            st.next_consumer -= 1;
        }
        let mut unsent = HashSet::new();
        for item in removed.outbox.drain_all() {
            if let OutItem::Deliver(d) = item {
                unsent.insert(d.seq);
            }
        }
        let mut held: Vec<u64> = st
            .acquired
            .iter()
            .filter(|(_, a)| a.consumer == consumer)
            .map(|(seq, _)| *seq)
            .collect();
        held.sort_unstable();
        let now = Now::lazy();
        for seq in held {
            let outcome = if unsent.contains(&seq) {
                Outcome::Released
            } else {
                Outcome::Modified {
                    delivery_failed: true,
                    undeliverable_here: false,
                    annotations: None,
                }
            };
            st.settle_one(consumer, seq, outcome, &self.name, &now);
        }
        st.groups.release_consumer(consumer);
        self.finish(st);
    }

    /// Whether an `auto_delete` queue has had a consumer and has none left (browsers aside).
    pub fn is_abandoned(&self) -> bool {
        self.settings.auto_delete
            && self.had_consumer.load(Ordering::Relaxed)
            && !lock(&self.state)
                .consumers
                .iter()
                .any(|c| c.browse.is_none())
    }
}

/// A consumer (or browser) attached to a queue: its outbox, its credit, and what it takes.
#[derive(Debug)]
pub(in crate::broker) struct Consumer {
    pub outbox: Arc<Outbox>,
    /// The link's name, to show who owns a group.
    pub name: Box<str>,
    /// The delivery-count the consumer's credit reaches (RFC 1982 serial arithmetic, like the
    /// link's own delivery-count): the queue may dispatch while `dispatched` is below it.
    pub limit: u32,
    pub dispatched: u32,
    pub drain: bool,
    /// A browser (`distribution-mode = copy`): the sequence number it reads from next. It
    /// gets copies and takes nothing (browse.rs); the dispatch to acquiring consumers passes
    /// it over.
    pub browse: Option<u64>,
    /// The consumer's selectors and filters: it takes (or is shown) only the messages that
    /// pass them; the others stay for other consumers.
    pub filter: Option<Arc<Filter>>,
    /// For a filtered consumer, per ready list (one per priority level): the sequence number
    /// below which every ready message was shown to the filter and refused, so dispatch never
    /// shows it those again (unless one is put back).
    pub seen: Vec<u64>,
}

impl Consumer {
    /// A consumer (a browser reading from `browse`) with no credit yet, taking what `filter`
    /// passes from a queue with `lists` ready lists.
    pub(in crate::broker) fn new(
        outbox: Arc<Outbox>,
        name: &str,
        browse: Option<u64>,
        filter: Option<Arc<Filter>>,
        lists: usize,
    ) -> Consumer {
        let seen = if filter.is_some() {
            vec![0; lists]
        } else {
            Vec::new()
        };
        Consumer {
            outbox,
            name: name.into(),
            limit: 0,
            dispatched: 0,
            drain: false,
            browse,
            filter,
            seen,
        }
    }

    /// Whether the consumer's filter (if any) passes `entry`.
    pub(in crate::broker) fn wants(&self, entry: &Entry) -> bool {
        self.filter
            .as_ref()
            .is_none_or(|f| f.matches(&entry.message, entry.delivery_count))
    }

    pub(in crate::broker) fn credit(&self) -> u32 {
        let c = self.limit.wrapping_sub(self.dispatched) as i32;
        c.max(0) as u32
    }
}
