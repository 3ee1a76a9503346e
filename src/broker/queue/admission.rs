//! What a subscription queue lets in: its subscriber's selectors and filters (a filtered
//! subscription stores only the messages that match), and no-local (none published on the
//! subscriber's own connection). Set when the subscriber attaches, asked by the router for
//! each message an exchange routes to the queue.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::broker::consumer::lock;
use crate::message::Message;
use crate::selector::{Dialect, Filter};

use super::Queue;

/// A subscription queue's conditions on what it stores.
#[derive(Debug)]
pub(in crate::broker) struct Admission {
    filter: Option<Arc<Filter>>,
    /// The subscriber's connection, whose own messages are not stored (no-local).
    no_local: Option<u64>,
}

impl Queue {
    /// Sets (or, for a durable subscription attached again, replaces) what the queue stores:
    /// messages that pass `filter`, and with `no_local` none sent on that connection.
    pub fn set_admission(&self, filter: Option<Arc<Filter>>, no_local: Option<u64>) {
        let on = filter.is_some() || no_local.is_some();
        *lock(&self.admission) = on.then(|| Arc::new(Admission { filter, no_local }));
        self.admits_all.store(!on, Ordering::Release);
    }

    /// The selectors of the queue's admission, as written: what a durable subscription keeps
    /// across a restart (definitions.json).
    pub fn admission_selectors(&self) -> Vec<(Dialect, String)> {
        lock(&self.admission)
            .as_ref()
            .and_then(|a| a.filter.as_ref())
            .map(|f| {
                f.selectors
                    .iter()
                    .map(|s| (s.dialect(), s.text().to_owned()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether the queue stores `message`, sent on connection `from`.
    pub fn admits(&self, message: &Message, from: u64) -> bool {
        if self.admits_all.load(Ordering::Acquire) {
            return true;
        }
        let Some(admission) = lock(&self.admission).clone() else {
            return true;
        };
        admission.no_local != Some(from)
            && admission
                .filter
                .as_ref()
                .is_none_or(|f| f.matches(message, 0))
    }
}
