//! Messages entering a queue: from producers (journaled first when durable, confirmed once on
//! disk) and from other queues' dead letters.

use crate::config::{Overflow, Persist};
use crate::message::Message;
use crate::store::{Done, StoreError};

use super::clock::Now;
use super::entry::Entry;
use super::lifecycle::{default_expiry, due_of, expiry_of};
use super::{Queue, State};
use crate::broker::consumer::{lock, Unstore};
use crate::broker::durable::journaled::Times;

/// What became of a published message.
#[derive(Debug)]
pub enum Publish {
    /// Queued; nothing to wait for (a non-durable message or queue).
    Queued,
    /// Queued and being journaled: the confirmation runs once it is on disk.
    Confirming,
    /// Not queued: the store refuses durable messages.
    Refused(StoreError),
    /// Not queued: the queue is at its length limit (`overflow = "reject-publish"`); why.
    Full(String),
}

impl Queue {
    /// Appends messages: each becomes ready now, or when its delivery time comes
    /// (`x-opt-delivery-time`, `x-opt-delivery-delay`, `x-opt-scheduled-enqueue-time`, or the
    /// queue's `default_delay`). One that has already expired is never made ready.
    pub fn enqueue(&self, messages: impl IntoIterator<Item = Message>) {
        self.enqueue_as(messages, false);
    }

    /// Appends messages dead-lettered by another queue. Their own delivery times and expiry
    /// were spent where they came from: here they are ready at once and expire only by this
    /// queue's `default_ttl` (as RabbitMQ drops the per-message TTL of a dead letter).
    pub fn enqueue_dead_letters(&self, messages: impl IntoIterator<Item = Message>) {
        self.enqueue_as(messages, true);
    }

    fn enqueue_as(&self, messages: impl IntoIterator<Item = Message>, dead_letters: bool) {
        let mut st = lock(&self.state);
        let now = Now::lazy();
        for message in messages {
            let no_confirm = None::<fn(u64) -> Done>;
            if let Publish::Refused(e) =
                self.admit(&mut st, &now, message, dead_letters, no_confirm)
            {
                tracing::error!(queue = %self.name, error = %e, "message dropped: the journal refused it");
            }
        }
        self.finish(st);
    }

    /// Appends a message from a producer. A durable message in a durable queue is journaled
    /// first; with `confirm` (a producer waiting for the outcome), it is asked for the
    /// completion of the message's sequence number, to run once the record is on disk, and
    /// the result is [`Publish::Confirming`]. When the store refuses, the message is not
    /// queued.
    pub fn publish(&self, message: Message, confirm: Option<impl FnOnce(u64) -> Done>) -> Publish {
        let mut st = lock(&self.state);
        let now = Now::lazy();
        let published = self.admit(&mut st, &now, message, false, confirm);
        self.finish(st);
        published
    }

    fn admit(
        &self,
        st: &mut State,
        now: &Now,
        message: Message,
        dead_letter: bool,
        confirm: Option<impl FnOnce(u64) -> Done>,
    ) -> Publish {
        if self.settings.overflow == Overflow::RejectPublish
            && st.over_limit(Some(message.len() as u64))
        {
            st.stats.overflowed += 1;
            return Publish::Full(format!(
                "queue '{}' is full (max_length {}, max_length_bytes {}; overflow = \"reject-publish\")",
                self.name, self.settings.max_length, self.settings.max_length_bytes
            ));
        }
        let seq = st.next_seq;
        let mut entry = Entry::new(seq, message);
        let expires = if dead_letter {
            default_expiry(now, &self.settings)
        } else {
            expiry_of(&entry.message, now, &self.settings)
        };
        if expires.is_some_and(|at| at <= now.get()) {
            // Expired on arrival: never stored, so never journaled.
            st.next_seq += 1;
            st.stats.enqueued += 1;
            st.expire(entry, &self.name, now);
            return Publish::Queued;
        }
        let due = (!dead_letter)
            .then(|| due_of(&entry.message, now, &self.settings))
            .flatten()
            .filter(|&due| due > now.get());
        let mut published = Publish::Queued;
        let persist = self.settings.persist == Persist::Always || entry.message.is_durable();
        if let Some(journal) = st.journal.as_ref().filter(|_| persist) {
            let times = Times {
                ready_ms: if due.is_some() { 0 } else { now.get() },
                due_ms: due.unwrap_or(0),
                expires_ms: expires.unwrap_or(0),
            };
            let done = confirm.map(|c| c(seq));
            let confirming = done.is_some();
            let after_sync = journal.deliver_after_sync();
            let done = match after_sync {
                true => Some(self.when_synced(seq, done)),
                false => done,
            };
            match journal.enqueue(&entry, times, done) {
                Ok(segment) => entry.segment = segment,
                Err(e) => return Publish::Refused(e),
            }
            if confirming {
                published = Publish::Confirming;
            }
            if after_sync {
                st.next_seq += 1;
                st.stats.enqueued += 1;
                if let Some(at) = expires {
                    st.schedule.expire_at(seq, at, None);
                }
                if due.is_none() && st.retention.is_on() {
                    st.retention.enqueued(seq, now.get());
                }
                // Out of every consumer's sight until the record is on disk: see `synced`.
                st.syncing.insert(seq, (entry, due));
                return published;
            }
        }
        st.next_seq += 1;
        st.stats.enqueued += 1;
        if let Some(at) = expires {
            st.schedule.expire_at(seq, at, None);
        }
        match due {
            Some(due) => st.schedule.delay(due, entry),
            None => {
                if st.retention.is_on() {
                    st.retention.enqueued(seq, now.get());
                }
                st.make_ready(entry);
            }
        }
        if self.settings.overflow == Overflow::DropHead {
            st.drop_head(&self.name, now);
        }
        published
    }
}

impl Queue {
    /// The journal's completion for message `seq` under `deliver_after_sync`: the queue first
    /// makes the message visible (or, if the write failed, drops it), then `done` answers the
    /// producer. Runs on the journal's thread.
    fn when_synced(&self, seq: u64, done: Option<Done>) -> Done {
        let me = self.me.clone();
        Box::new(move |result| {
            if let Some(queue) = me.upgrade() {
                queue.synced(seq, result.is_ok());
            }
            if let Some(done) = done {
                done(result);
            }
        })
    }

    /// Message `seq` waited for its record to reach the disk, and it did (`stored`) or not.
    fn synced(&self, seq: u64, stored: bool) {
        let mut st = lock(&self.state);
        let Some((entry, due)) = st.syncing.remove(&seq) else {
            return; // expired or purged meanwhile
        };
        if !stored {
            st.schedule.forget(seq);
            st.stats.unstored += 1;
            return;
        }
        match due {
            Some(due) => st.schedule.delay(due, entry),
            None => st.make_ready(entry),
        }
        self.finish(st);
    }

    /// The message `seq` could not be stored (its producer hears `rejected`): see
    /// [`Unstore`].
    fn take_back(&self, seq: u64) {
        let mut st = lock(&self.state);
        if st.acquired.contains_key(&seq) {
            // A consumer has it: dropped when it comes back, whatever it says.
            st.unstored.push(seq);
            return;
        }
        if st.syncing.remove(&seq).is_some() || st.remove_waiting(seq).is_some() {
            st.stats.unstored += 1;
        }
        st.schedule.forget(seq);
        self.finish(st);
    }
}

impl Unstore for Queue {
    fn unstore(&self, seq: u64) {
        self.take_back(seq);
    }
}
