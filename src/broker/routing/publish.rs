//! One message into several queues (an exchange's bindings) with one answer for the producer:
//! accepted once every durable copy is on disk, rejected if any queue refused it or any write
//! failed. Copies that did land stay where they are; the producer, told otherwise, sends again,
//! which at-least-once allows.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::broker::consumer::{lock, Unstore};
use crate::broker::queue::{Publish, Queue};
use crate::message::Message;
use crate::store::{Completion, Done};

/// The copies still being written, and the producer's answer once they are.
struct Join {
    /// Writes in flight, plus one while the copies are still being handed out.
    pending: AtomicUsize,
    result: Mutex<Completion>,
    finish: Mutex<Option<Done>>,
}

impl Join {
    fn part_done(&self, result: Completion) {
        if let Err(e) = result {
            let mut first = lock(&self.result);
            if first.is_ok() {
                *first = Err(e);
            }
        }
        if self.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            let result = std::mem::replace(&mut *lock(&self.result), Ok(()));
            if let Some(finish) = lock(&self.finish).take() {
                finish(result);
            }
        }
    }
}

/// Publishes `message` to each of `queues` (one or more). With `finish`, a durable copy is
/// confirmed through it: [`Publish::Confirming`] means `finish` runs once all are written;
/// otherwise it never runs and the answer is the return value.
pub fn publish_all(queues: &[Arc<Queue>], message: Message, finish: Option<Done>) -> Publish {
    if let [queue] = queues {
        // One queue, the common case: no join.
        let Some(finish) = finish else {
            return queue.publish(message, None::<fn(u64) -> Done>);
        };
        let undo: Arc<dyn Unstore> = queue.clone();
        let confirm = |seq: u64| -> Done {
            Box::new(move |result: Completion| {
                if result.is_err() {
                    undo.unstore(seq);
                }
                finish(result);
            })
        };
        return queue.publish(message, Some(confirm));
    }
    let Some(finish) = finish else {
        let mut answer = Publish::Queued;
        for queue in queues {
            match queue.publish(message.clone(), None::<fn(u64) -> Done>) {
                refused @ (Publish::Refused(_) | Publish::Full(_)) => answer = refused,
                Publish::Queued | Publish::Confirming => {}
            }
        }
        return answer;
    };
    let join = Arc::new(Join {
        pending: AtomicUsize::new(1),
        result: Mutex::new(Ok(())),
        finish: Mutex::new(Some(finish)),
    });
    for queue in queues {
        let part = join.clone();
        let undo: Arc<dyn Unstore> = queue.clone();
        let confirm = move |seq: u64| -> Done {
            part.pending.fetch_add(1, Ordering::AcqRel);
            Box::new(move |result: Completion| {
                if result.is_err() {
                    undo.unstore(seq);
                }
                part.part_done(result);
            })
        };
        match queue.publish(message.clone(), Some(confirm)) {
            refused @ (Publish::Refused(_) | Publish::Full(_)) => {
                // Answered now; the writes still in flight answer nobody.
                lock(&join.finish).take();
                join.part_done(Ok(()));
                return refused;
            }
            Publish::Queued | Publish::Confirming => {}
        }
    }
    // Let go of the hand-out hold. If every write has already completed, the answer is now:
    // accepted here when all went well; a failure is reported through `finish`, as it would
    // have been had it come later.
    if join.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
        let finish = lock(&join.finish).take();
        match std::mem::replace(&mut *lock(&join.result), Ok(())) {
            Ok(()) => return Publish::Queued,
            Err(e) => {
                if let Some(finish) = finish {
                    finish(Err(e));
                }
            }
        }
    }
    Publish::Confirming
}
