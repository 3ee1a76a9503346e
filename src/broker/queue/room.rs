//! `overflow = "block"`: a full queue holds its producers back through link credit instead of
//! refusing their messages. The connection asks [`Queue::room`] before topping a producer up;
//! when there is none it leaves its waker here, and the queue wakes it once messages have left
//! and there is room again (so its next `flush` grants the credit).

use std::sync::{Arc, Weak};

use crate::broker::consumer::{lock, ConnWaker};
use crate::config::Overflow;

use super::{Queue, State};

impl Queue {
    /// How many more messages a producer attached to this queue may be given credit for:
    /// `None` when the queue does not block (`overflow` other than `"block"`, or no limit),
    /// else the messages left before `max_length` (`u32::MAX` when only `max_length_bytes`
    /// limits it), 0 when full. At 0, `waker` is woken once there is room.
    pub fn room(&self, waker: &Arc<ConnWaker>) -> Option<u32> {
        let s = &self.settings;
        if s.overflow != Overflow::Block || (s.max_length == 0 && s.max_length_bytes == 0) {
            return None;
        }
        let mut st = lock(&self.state);
        let room = st.room();
        if room == 0
            && !st
                .room_waiters
                .iter()
                .any(|w| w.as_ptr() == Arc::as_ptr(waker))
        {
            st.room_waiters.push(Arc::downgrade(waker));
        }
        Some(room)
    }

    /// Whether a message of `len` bytes would take a blocking queue past its limits: what
    /// refuses (and counts as overflowed) a message from a producer the queue's credit cannot
    /// hold back (an exchange's or the anonymous relay's).
    pub fn blocks(&self, len: u64) -> bool {
        if self.settings.overflow != Overflow::Block {
            return false;
        }
        let mut st = lock(&self.state);
        let full = st.over_limit(Some(len));
        st.stats.overflowed += u64::from(full);
        full
    }
}

impl State {
    /// Messages that fit before the limits: see [`Queue::room`].
    fn room(&self) -> u32 {
        let (max, max_bytes) = (self.settings.max_length, self.settings.max_length_bytes);
        let count = (self.ready.len() + self.groups.ready_len()) as u64;
        let bytes = self.ready.bytes() + self.groups.ready_bytes();
        if max_bytes > 0 && bytes >= max_bytes {
            return 0;
        }
        match max {
            0 => u32::MAX,
            max => u32::try_from(max.saturating_sub(count)).unwrap_or(u32::MAX),
        }
    }

    /// The producers to wake now that messages have left, if there is room again (called
    /// with the lock held; the caller wakes them once it is released).
    pub(super) fn take_room_waiters(&mut self) -> Vec<Weak<ConnWaker>> {
        if self.room_waiters.is_empty() || self.room() == 0 {
            return Vec::new();
        }
        std::mem::take(&mut self.room_waiters)
    }
}

impl Queue {
    /// Why a message of `len` bytes would be refused now for the queue's length limits
    /// (`overflow` other than `"drop-head"`), if it would: a transaction checks before it
    /// commits.
    pub fn refuses(&self, len: u64) -> Option<String> {
        if self.settings.overflow == Overflow::DropHead {
            return None;
        }
        lock(&self.state).over_limit(Some(len)).then(|| {
            format!(
                "queue '{}' is full (max_length {}, max_length_bytes {})",
                self.name, self.settings.max_length, self.settings.max_length_bytes
            )
        })
    }
}
