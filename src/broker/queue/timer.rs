//! One timer per queue (DESIGN.md §3): a task that sleeps until the queue's next deadline,
//! runs [`Queue::tick`], and sleeps again. An operation that adds an earlier deadline wakes it.
//! No message ever has a task or a sleep of its own.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering::Relaxed};
use std::sync::{Arc, Weak};

use tokio::sync::Notify;

use super::clock::instant_at;
use super::Queue;

/// The timer of one queue.
#[derive(Debug)]
pub struct Timer {
    notify: Notify,
    /// The deadline the task sleeps until (ms since the epoch; `i64::MAX`: none).
    armed: AtomicI64,
    started: AtomicBool,
    stopped: AtomicBool,
    /// The runtime the queue was made in: a deadline may be armed from the journal's thread
    /// (a message made visible once on disk), which has no runtime of its own.
    runtime: Option<tokio::runtime::Handle>,
}

impl Default for Timer {
    fn default() -> Timer {
        Timer {
            notify: Notify::new(),
            armed: AtomicI64::new(i64::MAX),
            started: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            runtime: tokio::runtime::Handle::try_current().ok(),
        }
    }
}

impl Timer {
    /// Makes sure the task wakes by `at`. The task starts with the first deadline, inside the
    /// tokio runtime (the caller's, else the one the queue was made in); without one (a unit
    /// test of the core) the caller drives [`Queue::tick`] itself.
    pub fn arm(self: &Arc<Self>, at: i64, queue: &Weak<Queue>) {
        if at >= self.armed.load(Relaxed) || self.stopped.load(Relaxed) {
            return;
        }
        if !self.started.swap(true, Relaxed) {
            let runtime = tokio::runtime::Handle::try_current()
                .ok()
                .or_else(|| self.runtime.clone());
            match runtime {
                Some(runtime) => {
                    runtime.spawn(run(queue.clone(), self.clone()));
                }
                None => {
                    self.started.store(false, Relaxed);
                    return;
                }
            }
        }
        self.notify.notify_one();
    }

    /// Ends the task (the queue is deleted or dropped).
    pub fn stop(&self) {
        self.stopped.store(true, Relaxed);
        self.notify.notify_one();
    }
}

async fn run(queue: Weak<Queue>, timer: Arc<Timer>) {
    loop {
        if timer.stopped.load(Relaxed) {
            return;
        }
        let Some(q) = queue.upgrade() else { return };
        let next = q.tick();
        timer.armed.store(next.unwrap_or(i64::MAX), Relaxed);
        // Not held while asleep, so a dropped queue is freed and its timer ends.
        drop(q);
        match next {
            Some(at) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(instant_at(at)) => {}
                    _ = timer.notify.notified() => {}
                }
            }
            None => timer.notify.notified().await,
        }
    }
}
