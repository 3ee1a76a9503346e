//! A queue: ready messages, the consumers that take them, and what each consumer holds.
//!
//! All of a queue's state sits behind one mutex that is never held across an `.await`; every
//! operation is a short critical section that ends by dispatching whatever it made possible.
//! Dispatch is FIFO (by enqueue sequence) and round-robin among the consumers that have credit.

use std::sync::{Arc, Mutex};

use crate::config::QueueSettings;
use crate::int_map::IntMap;
use crate::message::Message;

use super::consumer::{lock, ConsumerId, Delivery, OutItem, Outbox};
use super::ready::ReadyList;

/// What the consumer decided about a delivery (AMQP 1.0 §3.4 outcomes, in broker terms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Processed: the message is consumed.
    Accepted,
    /// Not processed: back to the queue at its original position, delivery-count unchanged.
    Released,
    /// Not processed, with instructions.
    Modified {
        /// The attempt counts as a failed delivery: delivery-count + 1.
        delivery_failed: bool,
        /// Do not deliver it to this consumer again.
        undeliverable_here: bool,
    },
    /// Invalid: dead-lettered when the queue has a dead-letter address, else dropped and counted.
    Rejected,
}

/// A message in a queue with the state the queue keeps about it.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Enqueue sequence number: the queue's order, and the key a consumer settles by.
    pub seq: u64,
    /// The message as received.
    pub message: Message,
    /// Failed deliveries so far (starts at the header's delivery-count).
    pub delivery_count: u32,
    /// Consumers that said `undeliverable-here` for this message; boxed because almost no
    /// message has any, and every queued message pays for this field.
    avoid: Option<Box<[ConsumerId]>>,
}

impl Entry {
    /// Whether `consumer` refused this message (`undeliverable-here`).
    fn avoids(&self, consumer: ConsumerId) -> bool {
        self.avoid.as_ref().is_some_and(|a| a.contains(&consumer))
    }

    /// A fresh entry for `message` at `seq`.
    pub fn new(seq: u64, message: Message) -> Entry {
        let delivery_count = message.header().delivery_count;
        Entry {
            seq,
            message,
            delivery_count,
            avoid: None,
        }
    }
}

/// Counters and gauges of one queue, as the admin API and tests read them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Messages ready for delivery.
    pub ready: usize,
    /// Messages delivered and not yet settled.
    pub unacked: usize,
    /// Attached consumers.
    pub consumers: usize,
    /// Encoded bytes of the ready messages.
    pub ready_bytes: u64,
    /// Messages ever enqueued.
    pub enqueued: u64,
    /// Deliveries made (redeliveries included).
    pub delivered: u64,
    /// Messages consumed (accepted, or sent pre-settled).
    pub acked: u64,
    /// Deliveries returned to the queue (released, modified, or unsettled at detach).
    pub returned: u64,
    /// Messages rejected by a consumer and dropped.
    pub rejected: u64,
}

#[derive(Debug)]
struct Consumer {
    outbox: Arc<Outbox>,
    /// The delivery-count the consumer's credit reaches (RFC 1982 serial arithmetic, like the
    /// link's own delivery-count): the queue may dispatch while `dispatched` is below it.
    limit: u32,
    dispatched: u32,
    drain: bool,
}

impl Consumer {
    fn credit(&self) -> u32 {
        let c = self.limit.wrapping_sub(self.dispatched) as i32;
        c.max(0) as u32
    }
}

#[derive(Debug, Default)]
struct State {
    next_seq: u64,
    ready: ReadyList,
    acquired: IntMap<u64, (ConsumerId, Entry)>,
    consumers: Vec<Consumer>,
    next_consumer: usize,
    stats: QueueStats,
}

/// One named queue.
#[derive(Debug)]
pub struct Queue {
    name: String,
    settings: QueueSettings,
    dynamic: bool,
    state: Mutex<State>,
}

impl Queue {
    /// An empty queue named `name` with the settings in force for it.
    pub fn new(name: String, settings: QueueSettings, dynamic: bool) -> Arc<Queue> {
        Arc::new(Queue {
            name,
            settings,
            dynamic,
            state: Mutex::new(State {
                next_seq: 1,
                ..State::default()
            }),
        })
    }

    /// The queue's name (its address).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The settings in force.
    pub fn settings(&self) -> &QueueSettings {
        &self.settings
    }

    /// Whether the queue was created for a dynamic link and dies with it.
    pub fn is_dynamic(&self) -> bool {
        self.dynamic
    }

    /// Appends messages and dispatches them to consumers with credit.
    pub fn enqueue(&self, messages: impl IntoIterator<Item = Message>) {
        let mut st = lock(&self.state);
        for message in messages {
            let seq = st.next_seq;
            st.next_seq += 1;
            st.stats.enqueued += 1;
            st.ready.push_new(Entry::new(seq, message));
        }
        st.dispatch();
    }

    /// Registers a consumer with no credit yet.
    pub fn add_consumer(&self, outbox: Arc<Outbox>) {
        let mut st = lock(&self.state);
        st.consumers.push(Consumer {
            outbox,
            limit: 0,
            dispatched: 0,
            drain: false,
        });
    }

    /// Sets a consumer's credit: it may receive deliveries until its delivery-count reaches
    /// `limit`. With `drain`, whatever credit is left once the ready messages are dispatched is
    /// used up and the consumer is told so with [`OutItem::DrainDone`].
    pub fn flow(&self, consumer: ConsumerId, limit: u32, drain: bool) {
        let mut st = lock(&self.state);
        if let Some(c) = st.consumer_mut(consumer) {
            c.limit = limit;
            c.drain = drain;
        }
        st.dispatch();
    }

    /// Applies consumer outcomes to acquired messages; unknown or foreign sequence numbers are
    /// ignored, so a late or repeated settlement can never settle a message twice.
    pub fn settle(&self, consumer: ConsumerId, outcomes: impl IntoIterator<Item = (u64, Outcome)>) {
        let mut st = lock(&self.state);
        for (seq, outcome) in outcomes {
            st.settle_one(consumer, seq, outcome);
        }
        st.dispatch();
    }

    /// Removes a consumer. Everything it still holds goes back to the queue in order: messages it
    /// was sent count as a failed delivery (delivery-count + 1), messages still in its outbox
    /// were never sent and do not.
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
        let mut unsent = std::collections::HashSet::new();
        for item in removed.outbox.drain_all() {
            if let OutItem::Deliver(d) = item {
                unsent.insert(d.seq);
            }
        }
        let held: Vec<u64> = st
            .acquired
            .iter()
            .filter(|(_, (owner, _))| *owner == consumer)
            .map(|(seq, _)| *seq)
            .collect();
        for seq in held {
            let outcome = if unsent.contains(&seq) {
                Outcome::Released
            } else {
                Outcome::Modified {
                    delivery_failed: true,
                    undeliverable_here: false,
                }
            };
            st.settle_one(consumer, seq, outcome);
        }
        st.dispatch();
    }

    /// Drops every ready message; returns how many.
    pub fn purge(&self) -> usize {
        lock(&self.state).ready.clear()
    }

    /// A snapshot of the queue's counters.
    pub fn stats(&self) -> QueueStats {
        let st = lock(&self.state);
        QueueStats {
            ready: st.ready.len(),
            unacked: st.acquired.len(),
            consumers: st.consumers.len(),
            ready_bytes: st.ready.bytes(),
            ..st.stats.clone()
        }
    }
}

impl State {
    fn consumer_mut(&mut self, id: ConsumerId) -> Option<&mut Consumer> {
        self.consumers
            .iter_mut()
            .find(|c| c.outbox.consumer() == id)
    }

    fn settle_one(&mut self, consumer: ConsumerId, seq: u64, outcome: Outcome) {
        let Some((owner, mut entry)) = self.acquired.remove(&seq) else {
            return;
        };
        if owner != consumer {
            // Not this consumer's to settle (a late outcome after a redelivery).
            self.acquired.insert(seq, (owner, entry));
            return;
        }
        match outcome {
            Outcome::Accepted => self.stats.acked += 1,
            Outcome::Rejected => self.stats.rejected += 1,
            Outcome::Released => {
                self.stats.returned += 1;
                self.ready.push_returned(entry);
            }
            Outcome::Modified {
                delivery_failed,
                undeliverable_here,
            } => {
                if delivery_failed {
                    entry.delivery_count = entry.delivery_count.saturating_add(1);
                }
                if undeliverable_here && !entry.avoids(consumer) {
                    let mut avoid = entry.avoid.take().map(Vec::from).unwrap_or_default();
                    avoid.push(consumer);
                    entry.avoid = Some(avoid.into_boxed_slice());
                }
                self.stats.returned += 1;
                self.ready.push_returned(entry);
            }
        }
    }

    /// Hands ready messages to consumers with credit, round-robin, then completes drains.
    ///
    /// A message that every consumer with credit has refused (`undeliverable-here`) is set aside
    /// for this round so the messages behind it keep flowing, and returns to its position after.
    fn dispatch(&mut self) {
        let mut set_aside = Vec::new();
        while !self.consumers.is_empty() {
            let Some(head) = self.ready.peek() else { break };
            let n = self.consumers.len();
            let mut any_credit = false;
            let pick = (0..n).map(|i| (self.next_consumer + i) % n).find(|&i| {
                let c = &self.consumers[i];
                any_credit |= c.credit() > 0;
                c.credit() > 0 && !head.avoids(c.outbox.consumer())
            });
            if !any_credit {
                break;
            }
            let Some(entry) = self.ready.pop() else { break };
            let Some(i) = pick else {
                set_aside.push(entry);
                continue;
            };
            self.next_consumer = (i + 1) % n;
            let consumer = &mut self.consumers[i];
            consumer.dispatched = consumer.dispatched.wrapping_add(1);
            let id = consumer.outbox.consumer();
            consumer.outbox.push(OutItem::Deliver(Delivery {
                seq: entry.seq,
                message: entry.message.clone(),
                delivery_count: entry.delivery_count,
            }));
            self.stats.delivered += 1;
            self.acquired.insert(entry.seq, (id, entry));
        }
        for entry in set_aside {
            self.ready.push_returned(entry);
        }
        for c in self.consumers.iter_mut().filter(|c| c.drain) {
            c.drain = false;
            c.dispatched = c.dispatched.wrapping_add(c.credit());
            c.outbox.push(OutItem::DrainDone {
                delivery_count: c.dispatched,
            });
        }
    }
}
