//! Dispatch: which consumer gets which ready message (DESIGN.md §3).
//!
//! Each consumer with credit, in round-robin turn, takes the first message it may have: the
//! lowest sequence number among the ungrouped messages, the free groups and the groups it
//! owns. Grouped messages waiting for a busy owner never hold up the rest.
//!
//! A consumer with a filter (a selector) takes the first message it passes instead: the
//! messages it refuses stay where they are for the others, so they never hold up the queue,
//! and it keeps its place in the ready list so it is shown each message once, not once per
//! credit (DESIGN.md §4: no rescan of what a filter already refused).

use crate::config::Exclusive;

use super::clock::now_ms;
use super::entry::Entry;
use super::{Acquired, Lane, State};
use crate::broker::consumer::{Delivery, OutItem};

impl State {
    /// The ready message consumer `i` would take next: the first of the ungrouped messages,
    /// the free groups and the groups it owns (that its filter passes, if it has one).
    fn candidate(&mut self, i: usize) -> Option<Lane> {
        let State {
            consumers,
            ready,
            groups,
            ..
        } = self;
        let c = &mut consumers[i];
        let consumer = c.outbox.consumer();
        let (ungrouped, grouped) = match c.filter.clone() {
            None => (
                ready.peek().map(|e| (e.seq, Lane::Ungrouped)),
                groups.next_for(consumer),
            ),
            Some(filter) => {
                let wanted =
                    |e: &Entry| !e.avoids(consumer) && filter.matches(&e.message, e.delivery_count);
                let found = ready.first_wanted(&mut c.seen, wanted);
                (
                    found.map(|seq| (seq, Lane::At(seq))),
                    groups.next_wanted_for(consumer, wanted),
                )
            }
        };
        match (ungrouped, grouped) {
            (Some((u, _)), Some((g_seq, g))) if g_seq < u => Some(Lane::Group(g)),
            (Some((_, lane)), _) => Some(lane),
            (None, Some((_, g))) => Some(Lane::Group(g)),
            (None, None) => None,
        }
    }

    /// Filtered consumers look again from the lowest message put back since the last round.
    fn rewind_filtered(&mut self) {
        if let Some(low) = self.ready.take_rewound() {
            for c in self.consumers.iter_mut() {
                c.seen.iter_mut().for_each(|s| *s = (*s).min(low));
            }
        }
    }

    /// Whether consumer `i` takes messages: not a browser, and with `exclusive = "standby"`
    /// the earliest attached consumer (the others wait their turn).
    fn is_active(&self, i: usize) -> bool {
        if self.consumers[i].browse.is_some() {
            return false;
        }
        self.settings.exclusive != Exclusive::Standby
            || self.consumers.iter().position(|c| c.browse.is_none()) == Some(i)
    }

    fn head(&self, lane: Lane) -> Option<&Entry> {
        match lane {
            Lane::Ungrouped => self.ready.peek(),
            Lane::At(seq) => self.ready.get(seq),
            Lane::Group(g) => self.groups.head(g),
        }
    }

    /// Whether consumer `i` has credit and may take the first message of `lane`.
    fn may_take(&self, i: usize, lane: Lane) -> bool {
        let c = &self.consumers[i];
        let id = c.outbox.consumer();
        let allowed = match lane {
            Lane::Ungrouped | Lane::At(_) => true,
            Lane::Group(g) => self.groups.may_take(g, id),
        };
        c.credit() > 0
            && self.is_active(i)
            && allowed
            && self.head(lane).is_some_and(|e| !e.avoids(id) && c.wants(e))
            && c.outbox.has_room()
    }

    /// Hands ready messages to consumers with credit, round-robin, then completes drains.
    ///
    /// Each consumer in turn takes the first message it may have, so grouped messages waiting
    /// for a busy owner never hold up the rest. A message that every consumer that could take
    /// it has refused (`undeliverable-here`) is set aside for this round, with the rest of its
    /// group, so the messages behind it keep flowing; it returns to its position after.
    pub(in crate::broker) fn dispatch(&mut self) {
        let mut set_aside = Vec::new();
        let mut set_aside_groups = Vec::new();
        let mut idle = 0;
        self.rewind_filtered();
        while idle < self.consumers.len() {
            if self.ready.is_empty() && self.groups.ready_len() == 0 {
                break;
            }
            let n = self.consumers.len();
            let i = self.next_consumer % n;
            // A consumer whose outbox or connection output is full is passed over (and marked
            // starved, so it is dispatched to again once it has room): a peer that does not
            // read cannot take messages the others could have.
            let has_credit = self.consumers[i].credit() > 0
                && self.consumers[i].outbox.has_room()
                && self.is_active(i);
            let lane = match has_credit.then(|| self.candidate(i)).flatten() {
                Some(lane) => lane,
                None => {
                    self.next_consumer = i + 1;
                    idle += 1;
                    continue;
                }
            };
            if self.may_take(i, lane) {
                self.deliver(i, lane);
                self.next_consumer = i + 1;
                idle = 0;
                continue;
            }
            // This consumer refused the message; another may take it, else it waits.
            if let Some(j) = (1..n)
                .map(|k| (i + k) % n)
                .find(|&j| self.may_take(j, lane))
            {
                self.deliver(j, lane);
                idle = 0;
                continue;
            }
            match lane {
                Lane::Ungrouped => set_aside.extend(self.ready.pop()),
                Lane::At(seq) => set_aside.extend(self.ready.remove(seq)),
                Lane::Group(g) => {
                    self.groups.set_aside(g);
                    set_aside_groups.push(g);
                }
            }
        }
        for entry in set_aside {
            self.ready.push_returned(entry);
        }
        for g in set_aside_groups {
            self.groups.restore(g);
        }
        self.browse();
        let nothing_ready = self.ready.is_empty() && self.groups.ready_len() == 0;
        // A drain completes once the consumer has had what it can take; one without room while
        // messages wait finishes when it is dispatched to again.
        for c in self
            .consumers
            .iter_mut()
            .filter(|c| c.drain && c.browse.is_none() && (nothing_ready || c.outbox.has_room()))
        {
            c.drain = false;
            c.dispatched = c.dispatched.wrapping_add(c.credit());
            c.outbox.push(OutItem::DrainDone {
                delivery_count: c.dispatched,
            });
        }
    }

    /// Sends the first message of `lane` to consumer `i`, which [`State::may_take`] it.
    fn deliver(&mut self, i: usize, lane: Lane) {
        let id = self.consumers[i].outbox.consumer();
        let (entry, ticket, first) = match lane {
            Lane::Ungrouped => match self.ready.pop() {
                Some(entry) => (entry, None, false),
                None => return,
            },
            Lane::At(seq) => match self.ready.remove(seq) {
                Some(entry) => (entry, None, false),
                None => return,
            },
            Lane::Group(g) => match self.groups.take(g, id) {
                Some(t) => (t.entry, Some(t.ticket), t.first),
                None => return,
            },
        };
        let message = match (&self.settings.group_first_key, first) {
            (Some(key), true) => entry
                .message
                .with_marker(key, self.settings.group_first_as_property),
            _ => entry.message.clone(),
        };
        // The visibility timeout runs from the moment the message is handed over.
        let visible_until = match self.settings.visibility_timeout {
            0 => 0,
            timeout => {
                let deadline = now_ms().saturating_add(i64::try_from(timeout).unwrap_or(i64::MAX));
                self.schedule.watch_visibility(entry.seq, deadline);
                deadline
            }
        };
        let consumer = &mut self.consumers[i];
        consumer.dispatched = consumer.dispatched.wrapping_add(1);
        consumer.outbox.push(OutItem::Deliver(Delivery {
            seq: entry.seq,
            message,
            delivery_count: entry.delivery_count,
        }));
        self.stats.delivered += 1;
        self.acquired.insert(
            entry.seq,
            Acquired {
                consumer: id,
                ticket,
                visible_until,
                entry,
            },
        );
    }
}
