//! A durable queue rebuilt from the journal at start.

use super::clock::{now_ms, Now};
use super::entry::Entry;
use super::Queue;
use crate::broker::consumer::lock;
use crate::broker::durable::restore::RestoredMessage;

impl Queue {
    /// Puts back the messages the journal holds for this queue, in sequence order: kept for
    /// rewind, delayed, or ready. One that expired while the broker was down is dead-lettered
    /// or dropped; a delayed one that fell due meanwhile becomes ready after the others, in
    /// due order, numbered anew as if its timer had fired.
    pub fn restore(&self, messages: Vec<RestoredMessage>) {
        let mut st = lock(&self.state);
        let now = now_ms();
        let at = Now::at(now);
        let mut fell_due = Vec::new();
        for m in messages {
            let mut entry = Entry::new(m.seq, m.message);
            entry.delivery_count = m.delivery_count;
            entry.segment = m.segment;
            st.next_seq = st.next_seq.max(m.seq + 1);
            if m.consumed {
                if st.retention.is_on() {
                    st.retention.enqueued(m.seq, m.times.ready_ms);
                    st.retention.keep(entry, now);
                } else {
                    st.gone(&entry);
                }
                continue;
            }
            let expires = m.times.expires_ms;
            if expires != 0 && expires <= now {
                st.expire(entry, &self.name, &at);
                continue;
            }
            if expires != 0 {
                st.schedule.expire_at(m.seq, expires, None);
            }
            if m.times.ready_ms == 0 {
                if m.times.due_ms > now {
                    st.schedule.delay(m.times.due_ms, entry);
                } else {
                    fell_due.push((m.times.due_ms, entry));
                }
                continue;
            }
            st.retention.enqueued(m.seq, m.times.ready_ms);
            st.make_ready(entry);
        }
        fell_due.sort_by_key(|(due, e)| (*due, e.seq));
        for (_, mut entry) in fell_due {
            let seq = st.next_seq;
            st.next_seq += 1;
            st.schedule.renumber(entry.seq, seq);
            let old_seq = std::mem::replace(&mut entry.seq, seq);
            if let Some(journal) = &st.journal {
                journal.due(old_seq, &entry, now);
            }
            st.retention.enqueued(seq, now);
            st.make_ready(entry);
        }
        self.finish(st);
    }
}
