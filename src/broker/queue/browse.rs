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

impl Queue {
    /// Registers a browser with no credit yet; it reads from the first ready message.
    pub fn add_browser(&self, outbox: Arc<Outbox>, link_name: &str) {
        let mut st = lock(&self.state);
        st.consumers.push(Consumer::new(outbox, link_name, Some(0)));
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
            let mut copies = ready.from(cursor, credit);
            let grouped = groups.ready_from(cursor, credit);
            if !grouped.is_empty() {
                copies.extend(grouped);
                copies.sort_unstable_by_key(|e| e.seq);
                copies.truncate(credit);
            }
            let reached_end = copies.len() < credit;
            let mut next = cursor;
            for entry in copies {
                c.dispatched = c.dispatched.wrapping_add(1);
                next = entry.seq + 1;
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
