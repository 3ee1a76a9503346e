//! A local transaction (AMQP 1.0 §4): the messages its producers sent and the outcomes its
//! consumers gave, held until the coordinator's discharge. Commit applies them all — messages
//! become visible, settled messages leave their queues — after checking that each still can
//! be; rollback applies none, and the messages consumers took under it return to their queues
//! as failed deliveries (delivery-count + 1). Nothing of a transaction is visible before commit:
//! sent messages are not in any queue, and the messages acquired under it stay with their
//! consumer.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::broker::consumer::{lock, ConsumerId};
use crate::broker::durable::commit::CommitScope;
use crate::broker::queue::entry::Outcome;
use crate::broker::queue::{Publish, Queue};
use crate::broker::routing::publish::publish_all;
use crate::message::Message;
use crate::store::{Completion, Done, WriteFailed};

/// An outcome given under a transaction: (queue, consumer, message sequence number, its
/// delivery-count when accepted, outcome).
type Settle = (Arc<Queue>, ConsumerId, u64, Option<u32>, Outcome);

/// One transaction's work.
#[derive(Debug)]
pub struct Transaction {
    /// Messages to publish at commit, each with the queues it was routed to when it arrived.
    publishes: Vec<(Vec<Arc<Queue>>, Message)>,
    /// Outcomes to apply at commit.
    settles: Vec<Settle>,
    /// When it was declared (for `transaction_timeout`).
    pub declared_at: Instant,
}

/// What a commit did.
#[derive(Debug)]
pub enum Committed {
    /// Applied; nothing to wait for.
    Done,
    /// Applied; `finish` runs once every durable message of it is on disk.
    Writing,
}

impl Transaction {
    /// An empty transaction, declared at `now`.
    pub fn new(now: Instant) -> Transaction {
        Transaction {
            publishes: Vec::new(),
            settles: Vec::new(),
            declared_at: now,
        }
    }

    /// A message sent under the transaction, routed to `queues` (at least one).
    pub fn publish(&mut self, queues: Vec<Arc<Queue>>, message: Message) {
        self.publishes.push((queues, message));
    }

    /// An outcome a consumer gave under the transaction for message `seq` of `queue`.
    pub fn settle(&mut self, queue: Arc<Queue>, consumer: ConsumerId, seq: u64, outcome: Outcome) {
        let held = queue.holding(consumer, seq);
        self.settles.push((queue, consumer, seq, held, outcome));
    }

    /// Commits: checks that every outcome can still be applied (the consumer still holds the
    /// message: a visibility timeout, a detach or a dropped connection gives a message back,
    /// and a transaction must not settle what it no longer holds) and that every queue still
    /// takes its messages; then applies all of it. Refused with why (the transaction is then
    /// rolled back, as the discharge's `amqp:transaction:rollback` tells the client).
    /// `finish` answers the discharge once the durable messages are on disk.
    pub fn commit(self, finish: Done) -> Result<Committed, String> {
        if let Err(why) = self.check() {
            self.rollback();
            return Err(why);
        }
        // Everything below is journaled as parts of one commit (durable/commit.rs).
        let scope = CommitScope::enter();
        for (queue, consumer, seq, _, outcome) in &self.settles {
            queue.settle(*consumer, [(*seq, outcome.clone())]);
        }
        let join = Arc::new(Join {
            pending: AtomicUsize::new(2),
            failed: Mutex::new(None),
            finish: Mutex::new(Some(finish)),
        });
        for (queues, message) in self.publishes {
            join.pending.fetch_add(1, Ordering::AcqRel);
            let part = join.clone();
            let done: Done = Box::new(move |result| part.done(result));
            match publish_all(&queues, message, Some(done)) {
                Publish::Confirming => {}
                Publish::Queued => join.done(Ok(())),
                Publish::Refused(e) => join.done(Err(WriteFailed::failed(&e))),
                Publish::Full(why) => {
                    // Checked above; another producer filled the queue since.
                    tracing::warn!("a committed message was refused: {why}");
                    join.done(Ok(()));
                }
            }
        }
        // The commit record: once it is on disk, so is every part before it. Without any
        // journaled part there is none, and nothing to wait for on its account.
        let part = join.clone();
        match scope.finish(Box::new(move |result| part.done(result))) {
            Ok(None) => {}
            Ok(Some(_unused)) => join.done(Ok(())),
            Err(e) => join.done(Err(WriteFailed::failed(&e))),
        }
        // Let go of the hand-out hold: if every write is done, the answer is now.
        if join.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            let failed = lock(&join.failed).take();
            match failed {
                None => return Ok(Committed::Done),
                Some(e) => {
                    if let Some(finish) = lock(&join.finish).take() {
                        finish(Err(e));
                    }
                }
            }
        }
        Ok(Committed::Writing)
    }

    fn check(&self) -> Result<(), String> {
        for (queue, consumer, seq, held, _) in &self.settles {
            if held.is_none() || queue.holding(*consumer, *seq) != *held {
                return Err(format!(
                    "a message of queue '{}' accepted in the transaction is no longer held by its consumer as it was (its visibility timeout gave it back, or the consumer detached)",
                    queue.name()
                ));
            }
        }
        for (queues, message) in &self.publishes {
            for queue in queues {
                if queue.is_deleted() {
                    return Err(format!("queue '{}' was deleted", queue.name()));
                }
                if let Some(why) = queue.refuses(message.len() as u64) {
                    return Err(why);
                }
            }
        }
        Ok(())
    }

    /// Rolls back: the messages sent are dropped, the messages consumed return to their
    /// queues as failed deliveries (delivery-count + 1) for any consumer to take.
    pub fn rollback(self) {
        for (queue, consumer, seq, held, _) in self.settles {
            // Only the delivery the transaction took goes back (a newer one is its holder's).
            if held.is_none() || queue.holding(consumer, seq) != held {
                continue;
            }
            queue.settle(
                consumer,
                [(
                    seq,
                    Outcome::Modified {
                        delivery_failed: true,
                        undeliverable_here: false,
                        annotations: None,
                    },
                )],
            );
        }
    }
}

/// The writes of a commit still in flight, and the discharge's answer once they are done.
struct Join {
    /// Writes in flight, plus one while they are being handed out.
    pending: AtomicUsize,
    failed: Mutex<Option<WriteFailed>>,
    finish: Mutex<Option<Done>>,
}

impl Join {
    fn done(&self, result: Completion) {
        if let Err(e) = result {
            lock(&self.failed).get_or_insert(e);
        }
        if self.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            let result = match lock(&self.failed).take() {
                None => Ok(()),
                Some(e) => Err(e),
            };
            if let Some(finish) = lock(&self.finish).take() {
                finish(result);
            }
        }
    }
}
