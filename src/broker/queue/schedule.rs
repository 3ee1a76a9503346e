//! What a queue must do at a given time (DESIGN.md §3): delayed messages becoming ready,
//! messages expiring, and acquired messages whose visibility timeout runs out.
//!
//! Delayed messages wait in [`Delayed`], built so that a million cost each what a thousand
//! do. Expiry and visibility deadlines are ordered sets keyed by (time, sequence number):
//! O(log n) per message. The queue's one timer only ever sleeps until [`Schedule::next`];
//! nothing here runs on its own.

use std::collections::BTreeSet;

use crate::int_map::IntMap;

use super::delayed::Delayed;
use super::entry::GroupId;
use super::Entry;

/// Something that fell due.
#[derive(Debug)]
pub enum Due {
    /// A delayed message whose time has come.
    Delayed(Entry),
    /// The message with this sequence number expired (wherever it is now).
    Expired(u64),
    /// The delivery of this message, acquired with this deadline, ran out of time.
    Invisible(u64, i64),
}

/// One scheduled message, as the admin API lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ScheduledInfo {
    /// Its id for cancelling (the queue's sequence number until it becomes ready).
    pub id: u64,
    /// When it becomes ready, in ms since the Unix epoch.
    pub due_ms: i64,
    /// Its encoded size.
    pub bytes: usize,
}

/// Where an expiring message waits, so that it can be found when it expires.
#[derive(Debug, Clone, Copy)]
struct Expiry {
    at: i64,
    group: Option<GroupId>,
    /// Its due time while it is delayed.
    due: Option<i64>,
}

/// A queue's deadlines.
#[derive(Debug, Default)]
pub struct Schedule {
    delayed: Delayed,
    expiries: BTreeSet<(i64, u64)>,
    expiry_of: IntMap<u64, Expiry>,
    visibility: BTreeSet<(i64, u64)>,
}

impl Schedule {
    /// Holds `entry` back until `due`.
    pub fn delay(&mut self, due: i64, entry: Entry) {
        if let Some(e) = self.expiry_of.get_mut(&entry.seq) {
            e.due = Some(due);
        }
        self.delayed.push(due, entry);
    }

    /// Takes a delayed message out of the schedule (cancelled, or expired before it was due).
    pub fn cancel(&mut self, seq: u64) -> Option<Entry> {
        let due = self.expiry_of.get(&seq).and_then(|e| e.due);
        self.delayed.remove(seq, due)
    }

    /// Delayed messages.
    pub fn delayed_len(&self) -> usize {
        self.delayed.len()
    }

    /// The first `limit` delayed messages, earliest due first.
    pub fn scheduled(&self, limit: usize) -> Vec<ScheduledInfo> {
        self.delayed.list(limit)
    }

    /// Drops every delayed message, showing each to `gone`; returns how many.
    pub fn clear_delayed(&mut self, mut gone: impl FnMut(&Entry)) -> usize {
        let entries = self.delayed.clear();
        for entry in &entries {
            self.forget(entry.seq);
            gone(entry);
        }
        entries.len()
    }

    /// Calls `f` on every delayed message with its due time and expiry.
    pub fn for_each_delayed_mut(&mut self, mut f: impl FnMut(i64, Option<i64>, &mut Entry)) {
        let expiry_of = &self.expiry_of;
        self.delayed
            .for_each_mut(|due, entry| f(due, expiry_of.get(&entry.seq).map(|e| e.at), entry));
    }

    /// Message `seq` expires at `at`; it waits in `group`'s lane (or the ungrouped one).
    pub fn expire_at(&mut self, seq: u64, at: i64, group: Option<GroupId>) {
        let expiry = Expiry {
            at,
            group,
            due: None,
        };
        if let Some(old) = self.expiry_of.insert(seq, expiry) {
            self.expiries.remove(&(old.at, seq));
        }
        self.expiries.insert((at, seq));
    }

    /// When message `seq` expires, if it does.
    pub fn expiry(&self, seq: u64) -> Option<i64> {
        if self.expiry_of.is_empty() {
            return None;
        }
        self.expiry_of.get(&seq).map(|e| e.at)
    }

    /// The lane message `seq` waits in, as recorded with its expiry.
    pub fn expiry_group(&self, seq: u64) -> Option<GroupId> {
        self.expiry_of.get(&seq).and_then(|e| e.group)
    }

    /// Message `seq`, which expires, now waits in `group`'s lane.
    pub fn moved(&mut self, seq: u64, group: Option<GroupId>) {
        // Most queues expire nothing: skip even the hash of the lookup.
        if self.expiry_of.is_empty() {
            return;
        }
        if let Some(e) = self.expiry_of.get_mut(&seq) {
            e.group = group;
            e.due = None;
        }
    }

    /// Message `old` became ready as `new` (a delayed message is numbered anew when due, so it
    /// takes its place among the ready ones by due time).
    pub fn renumber(&mut self, old: u64, new: u64) {
        if let Some(e) = self.expiry_of.remove(&old) {
            self.expiries.remove(&(e.at, old));
            self.expiries.insert((e.at, new));
            self.expiry_of.insert(new, e);
        }
    }

    /// Message `seq` is gone (consumed, dead-lettered, dropped): forget its expiry.
    pub fn forget(&mut self, seq: u64) {
        if self.expiry_of.is_empty() {
            return;
        }
        if let Some(e) = self.expiry_of.remove(&seq) {
            self.expiries.remove(&(e.at, seq));
        }
    }

    /// The delivery of `seq` must be settled by `deadline`.
    pub fn watch_visibility(&mut self, seq: u64, deadline: i64) {
        self.visibility.insert((deadline, seq));
    }

    /// The delivery of `seq` with `deadline` was settled in time.
    pub fn unwatch_visibility(&mut self, seq: u64, deadline: i64) {
        self.visibility.remove(&(deadline, seq));
    }

    /// The earliest deadline of any kind.
    pub fn next(&self) -> Option<i64> {
        let delayed = self.delayed.next_due();
        let expiry = self.expiries.first().map(|&(t, _)| t);
        let visibility = self.visibility.first().map(|&(t, _)| t);
        [delayed, expiry, visibility].into_iter().flatten().min()
    }

    /// The earliest thing due at `now`, if any. Expiries come first at equal times, so a
    /// message due and expired at once is never made ready.
    pub fn pop_due(&mut self, now: i64) -> Option<Due> {
        if let Some(&(at, seq)) = self.expiries.first().filter(|&&(at, _)| at <= now) {
            self.expiries.remove(&(at, seq));
            return Some(Due::Expired(seq));
        }
        if let Some(entry) = self.delayed.pop_due(now) {
            return Some(Due::Delayed(entry));
        }
        if let Some(&(deadline, seq)) = self.visibility.first().filter(|&&(t, _)| t <= now) {
            self.visibility.remove(&(deadline, seq));
            return Some(Due::Invisible(seq, deadline));
        }
        None
    }
}
