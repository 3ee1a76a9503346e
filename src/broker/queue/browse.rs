//! Browsers: consumers that read a queue without taking from it (`distribution-mode = copy`,
//! the Proton queue-browser example). Each keeps a cursor, the sequence number it reads from
//! next, and is sent copies of the ready messages from there on; the messages stay for the
//! others, and a browser's outcomes settle nothing (it holds nothing).
//!
//! A browser that has seen every ready message and still has credit is treated as drained:
//! its credit is used up and it is told so (a flow with the advanced delivery-count), which
//! is how a browsing client learns it has reached the end (proton's `receiver.drained`).
//! Granting credit again reads on from where it stopped. Grouped messages are shown too, in
//! sequence order with the others, whoever owns their group.

use std::sync::Arc;

use super::{Consumer, Queue};
use crate::broker::consumer::{lock, Delivery, OutItem, Outbox};
use crate::broker::queue::State;
use crate::selector::Filter;

impl Queue {
    /// Registers a browser with no credit yet; it reads from the first ready message, and
    /// with `filter` is shown only the messages that pass.
    pub fn add_browser(&self, outbox: Arc<Outbox>, link_name: &str, filter: Option<Arc<Filter>>) {
        let mut st = lock(&self.state);
        st.consumers
            .push(Consumer::new(outbox, link_name, Some(0), filter, 1));
    }
}

impl State {
    /// Sends each browser with credit copies of the ready messages past its cursor.
    pub(in crate::broker) fn browse(&mut self) {
        let State {
            consumers,
            ready,
            groups,
            ..
        } = self;
        for c in consumers.iter_mut() {
            let Some(cursor) = c.browse else {
                continue;
            };
            let credit = c.credit() as usize;
            if credit == 0 || !c.outbox.has_room() {
                continue;
            }
            // A filtered browser reads on past what its filter refuses: up to the end, a
            // screenful at a time.
            let mut copies = Vec::new();
            let mut next = cursor;
            let mut reached_end = false;
            while copies.len() < credit && !reached_end {
                let mut batch = ready.from(next, credit);
                batch.extend(groups.ready_from(next, credit));
                batch.sort_unstable_by_key(|e| e.seq);
                batch.truncate(credit);
                reached_end = batch.len() < credit;
                if let Some(last) = batch.last() {
                    next = last.seq + 1;
                }
                copies.extend(batch.into_iter().filter(|e| c.wants(e)));
            }
            copies.truncate(credit);
            if let Some(last) = copies.last() {
                // What was filtered out past the last copy is looked at again next time.
                if copies.len() == credit {
                    next = last.seq + 1;
                }
            }
            let reached_end = reached_end && copies.len() < credit;
            for entry in copies {
                c.dispatched = c.dispatched.wrapping_add(1);
                c.outbox.push(OutItem::Deliver(Delivery {
                    seq: entry.seq,
                    message: entry.message.clone(),
                    delivery_count: entry.delivery_count,
                }));
            }
            c.browse = Some(next);
            if reached_end {
                c.drain = false;
                c.dispatched = c.dispatched.wrapping_add(c.credit());
                c.outbox.push(OutItem::DrainDone {
                    delivery_count: c.dispatched,
                });
            }
        }
    }
}
