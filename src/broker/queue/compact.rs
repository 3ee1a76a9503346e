//! Compaction, the queue's part: every message whose enqueue record sits in an old journal
//! segment is written again with the state it has now, so that the segment holds nothing
//! live and can be deleted.

use super::clock::now_ms;
use super::{Queue, State};
use crate::broker::consumer::lock;
use crate::broker::durable::journaled::Times;
use crate::store::SegmentId;

impl Queue {
    /// Writes again the records this queue still needs from journal segment `segment`
    /// (messages ready, delayed, out with a consumer or kept for rewind, and the queue's
    /// declaration). Returns how many messages were written.
    pub fn relocate(&self, segment: SegmentId) -> usize {
        let mut st = lock(&self.state);
        let Some(journal) = st.journal.clone() else {
            return 0;
        };
        journal.redeclare_from(segment, &self.name);
        let now = now_ms();
        let State {
            ready,
            groups,
            schedule,
            retention,
            acquired,
            ..
        } = &mut *st;
        let mut moved = 0;
        // Ready since: the enqueue time rewind knows, else now (only rewind reads it).
        let ready_since = |seq: u64| retention.enqueued_at(seq).unwrap_or(now);
        let expiry = |seq: u64| schedule.expiry(seq).unwrap_or(0);
        let mut rewrite_ready = |e: &mut super::entry::Entry| {
            if e.segment.get() == Some(segment) {
                let times = Times {
                    ready_ms: ready_since(e.seq),
                    due_ms: 0,
                    expires_ms: expiry(e.seq),
                };
                e.segment = journal.rewrite(e, times, false);
                moved += 1;
            }
        };
        ready.for_each_mut(&mut rewrite_ready);
        groups.for_each_mut(&mut rewrite_ready);
        acquired
            .values_mut()
            .for_each(|a| rewrite_ready(&mut a.entry));
        schedule.for_each_delayed_mut(|due, expires, e| {
            if e.segment.get() == Some(segment) {
                let times = Times {
                    ready_ms: 0,
                    due_ms: due,
                    expires_ms: expires.unwrap_or(0),
                };
                e.segment = journal.rewrite(e, times, false);
                moved += 1;
            }
        });
        retention.for_each_mut(|enqueued_at, e| {
            if e.segment.get() == Some(segment) {
                let times = Times {
                    ready_ms: enqueued_at.unwrap_or(now),
                    due_ms: 0,
                    expires_ms: 0,
                };
                e.segment = journal.rewrite(e, times, true);
                moved += 1;
            }
        });
        moved
    }
}
