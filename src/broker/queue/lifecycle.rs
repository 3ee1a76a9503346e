//! What happens to a message between its states (DESIGN.md §3): made ready, settled,
//! returned, expired, dead-lettered, put back by a rewind. These run under the queue's lock,
//! called from the operations in [`super::queue`].

use crate::config::QueueSettings;
use crate::message::Message;

use super::clock::Now;
use super::dead_letter::{self, DeadReason};
use super::groups::closes_group;
use super::{Acquired, DeadLetter, Entry, Outcome, State};
use crate::broker::consumer::ConsumerId;

impl State {
    /// Puts a message that has become ready into its lane: its group's, or the ungrouped one.
    pub(in crate::broker) fn make_ready(&mut self, entry: Entry) {
        self.place(entry, false);
    }

    /// Puts a consumed message back at its original position (a rewind).
    pub(in crate::broker) fn put_back(&mut self, entry: Entry) {
        self.place(entry, true);
    }

    /// Places `entry` at the tail of its lane, or at its original position when `back`.
    fn place(&mut self, mut entry: Entry, back: bool) {
        let seq = entry.seq;
        entry.group = self.groups.group_of(&entry.message);
        let group = entry.group;
        let ungrouped = match (group, back) {
            (Some(g), false) => self.groups.push_new(g, entry),
            (Some(g), true) => self.groups.push_back(g, entry),
            (None, _) => Some(entry),
        };
        let placed_in = match ungrouped {
            Some(entry) if back => {
                self.ready.push_returned(entry);
                None
            }
            Some(entry) => {
                self.ready.push_new(entry);
                None
            }
            None => group,
        };
        self.schedule.moved(seq, placed_in);
    }

    pub(in crate::broker) fn settle_one(
        &mut self,
        consumer: ConsumerId,
        seq: u64,
        outcome: Outcome,
        queue: &str,
        now: &Now,
    ) {
        match self.acquired.get(&seq) {
            Some(a) if a.consumer == consumer => {}
            // Unknown, or not this consumer's to settle (a late outcome after a redelivery).
            _ => return,
        }
        let Some(Acquired {
            ticket,
            visible_until,
            mut entry,
            ..
        }) = self.acquired.remove(&seq)
        else {
            return;
        };
        if visible_until != 0 {
            self.schedule.unwatch_visibility(seq, visible_until);
        }
        let consumed = matches!(outcome, Outcome::Accepted | Outcome::Rejected { .. });
        let closes = consumed && ticket.is_some() && closes_group(&entry.message);
        let back = match outcome {
            Outcome::Accepted => {
                self.stats.acked += 1;
                self.schedule.forget(seq);
                if self.retention.is_on() {
                    if let Some(journal) = &self.journal {
                        journal.consume(&entry);
                    }
                    self.retention.keep(entry, now.get());
                } else {
                    self.gone(&entry);
                }
                None
            }
            Outcome::Rejected {
                condition,
                description,
            } => {
                self.stats.rejected += 1;
                self.schedule.forget(seq);
                let why = DeadReason::Rejected {
                    condition,
                    description,
                };
                self.dead_letter(entry, why, queue, now);
                None
            }
            Outcome::Released => Some(entry),
            Outcome::Modified {
                delivery_failed,
                undeliverable_here,
                // Merged into the message by `Queue::settle`, which has the memory account.
                annotations: _,
            } => {
                if delivery_failed {
                    entry.delivery_count = entry.delivery_count.saturating_add(1);
                    if let Some(journal) = &self.journal {
                        journal.redelivered(&entry);
                    }
                }
                if undeliverable_here && !entry.avoids(consumer) {
                    let mut avoid = entry.avoid.take().unwrap_or_default();
                    avoid.push(consumer);
                    entry.avoid = Some(avoid);
                }
                Some(entry)
            }
        };
        let back = back.and_then(|entry| self.returning(entry, queue, now));
        let back = match ticket {
            Some(ticket) => self.groups.settled(ticket, consumer, back, closes),
            None => back,
        };
        if let Some(entry) = back {
            self.ready.push_returned(entry);
        }
    }

    /// A message coming back from a consumer: to the queue, or, past its delivery attempts or
    /// its expiry, to the dead-letter address.
    fn returning(&mut self, entry: Entry, queue: &str, now: &Now) -> Option<Entry> {
        self.stats.returned += 1;
        if let Some(i) = self.unstored.iter().position(|&s| s == entry.seq) {
            // Its journal write failed and its producer was told so: it goes no further.
            self.unstored.swap_remove(i);
            self.schedule.forget(entry.seq);
            self.stats.unstored += 1;
            return None;
        }
        let max = self.settings.max_delivery_attempts;
        if max > 0 && entry.delivery_count >= max {
            self.schedule.forget(entry.seq);
            self.dead_letter(entry, DeadReason::DeliveryLimit, queue, now);
            return None;
        }
        if self
            .schedule
            .expiry(entry.seq)
            .is_some_and(|at| at <= now.get())
        {
            self.expire(entry, queue, now);
            return None;
        }
        Some(entry)
    }

    /// The message `seq` expired: wherever it waits, it leaves the queue. One out with a
    /// consumer is dealt with when it comes back (it may yet be accepted).
    pub(in crate::broker) fn expire_seq(&mut self, seq: u64, queue: &str, now: &Now) {
        if self.acquired.contains_key(&seq) {
            return;
        }
        let entry = match self.syncing.remove(&seq) {
            Some((entry, _)) => Some(entry),
            None => self.remove_waiting(seq),
        };
        self.schedule.forget(seq);
        if let Some(entry) = entry {
            self.expire(entry, queue, now);
        }
    }

    /// Takes the message `seq` from wherever it waits: delayed, ready, or ready in its group.
    pub(in crate::broker) fn remove_waiting(&mut self, seq: u64) -> Option<Entry> {
        if let Some(entry) = self.schedule.cancel(seq) {
            return Some(entry);
        }
        if let Some(g) = self.schedule.expiry_group(seq) {
            return self.groups.remove(g, seq);
        }
        if let Some(entry) = self.ready.remove(seq) {
            return Some(entry);
        }
        // A grouped message with no deadline: the schedule does not know its group, so it is
        // looked for. Only a failed journal write comes here.
        let mut group = None;
        self.groups.for_each_mut(|e| {
            if e.seq == seq {
                group = e.group;
            }
        });
        group.and_then(|g| self.groups.remove(g, seq))
    }

    /// An expired message: dead-lettered when the queue has an address for it, else dropped;
    /// counted either way.
    pub(in crate::broker) fn expire(&mut self, entry: Entry, queue: &str, now: &Now) {
        self.stats.expired += 1;
        self.schedule.forget(entry.seq);
        self.dead_letter(entry, DeadReason::Expired, queue, now);
    }

    /// Whether the ready messages, with `adding` more bytes in one more message (0: none),
    /// exceed `max_length` or `max_length_bytes`.
    pub(in crate::broker) fn over_limit(&self, adding: Option<u64>) -> bool {
        let (max, max_bytes) = (self.settings.max_length, self.settings.max_length_bytes);
        if max == 0 && max_bytes == 0 {
            return false;
        }
        let count =
            (self.ready.len() + self.groups.ready_len()) as u64 + u64::from(adding.is_some());
        let bytes = self.ready.bytes() + self.groups.ready_bytes() + adding.unwrap_or(0);
        (max > 0 && count > max) || (max_bytes > 0 && bytes > max_bytes)
    }

    /// Makes room in a queue past its length limits (`overflow = "drop-head"`): its oldest
    /// ungrouped ready messages go, dead-lettered with reason `maxlen` when it has a
    /// dead-letter address, else dropped; each is counted as overflowed.
    pub(in crate::broker) fn drop_head(&mut self, queue: &str, now: &Now) {
        while self.over_limit(None) {
            let Some(entry) = self.ready.pop() else {
                break;
            };
            self.stats.overflowed += 1;
            self.schedule.forget(entry.seq);
            self.dead_letter(entry, DeadReason::MaxLength, queue, now);
        }
    }

    /// Queues `entry` for the dead-letter address, annotated with why; without an address the
    /// message is dropped (the caller counted it).
    fn dead_letter(&mut self, entry: Entry, why: DeadReason, queue: &str, now: &Now) {
        if self.settings.dead_letter_address.is_none() {
            self.gone(&entry);
            return;
        }
        self.stats.dead_lettered += 1;
        let message = dead_letter::annotate(&entry, &why, queue, now.get());
        // A rewritten copy is new bytes, which the memory account has not seen yet.
        let rewritten = message.bytes().as_ptr() != entry.message.bytes().as_ptr();
        self.dead.push(DeadLetter {
            message,
            rewritten,
            seq: entry.seq,
            segment: entry.segment,
        });
    }
}

/// When `message` becomes ready: its delivery time, its delay after `now`, or the queue's
/// default delay; None for at once.
pub(in crate::broker) fn due_of(
    message: &Message,
    now: &Now,
    settings: &QueueSettings,
) -> Option<i64> {
    if let Some(t) = message.delivery_time_ms() {
        return Some(t);
    }
    if let Some(t) = message.scheduled_enqueue_time_ms() {
        return Some(t);
    }
    if let Some(delay) = message.delivery_delay_ms() {
        return Some(now.get().saturating_add(delay.max(0)));
    }
    let default = i64::try_from(settings.default_delay).unwrap_or(i64::MAX);
    (default > 0).then(|| now.get().saturating_add(default))
}

/// When `message`, which arrived at `arrived`, expires: the earlier of its header ttl and its
/// absolute-expiry-time, else the queue's default ttl; None for never.
pub(in crate::broker) fn expiry_of(
    message: &Message,
    arrived: &Now,
    settings: &QueueSettings,
) -> Option<i64> {
    let ttl = message
        .header()
        .ttl_ms
        .map(|ttl| arrived.get().saturating_add(i64::from(ttl)));
    let absolute = message.absolute_expiry_time_ms().filter(|&t| t > 0);
    match (ttl, absolute) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b).or_else(|| default_expiry(arrived, settings)),
    }
}

/// When a message that arrived at `arrived` expires by the queue's `default_ttl` alone.
pub(in crate::broker) fn default_expiry(arrived: &Now, settings: &QueueSettings) -> Option<i64> {
    let default = i64::try_from(settings.default_ttl).unwrap_or(i64::MAX);
    (default > 0).then(|| arrived.get().saturating_add(default))
}
