//! Consumers' outcomes applied to the messages they hold, in a queue's lock: what each
//! outcome does to a message is `lifecycle.rs`'s; merging a `modified` outcome's annotations,
//! which needs the broker's memory account, is here.

use crate::broker::consumer::{lock, ConsumerId};
use crate::message::{AnnotationValue, Message};

use super::clock::Now;
use super::entry::Outcome;
use super::{Queue, State};

impl Queue {
    /// The delivery-count of message `seq` if `consumer` holds it (acquired, not settled):
    /// a transaction notes it when the consumer accepts, and at commit checks that the
    /// consumer still holds that same delivery (a visibility timeout that gave it back and
    /// delivered it again raised the count).
    pub fn holding(&self, consumer: ConsumerId, seq: u64) -> Option<u32> {
        lock(&self.state)
            .acquired
            .get(&seq)
            .filter(|a| a.consumer == consumer)
            .map(|a| a.entry.delivery_count)
    }

    /// Applies consumer outcomes to acquired messages; unknown or foreign sequence numbers are
    /// ignored, so a late or repeated settlement can never settle a message twice.
    pub fn settle(&self, consumer: ConsumerId, outcomes: impl IntoIterator<Item = (u64, Outcome)>) {
        let mut st = lock(&self.state);
        let now = Now::lazy();
        for (seq, outcome) in outcomes {
            if let Outcome::Modified {
                annotations: Some(annotations),
                ..
            } = &outcome
            {
                self.annotate_acquired(&mut st, consumer, seq, annotations);
            }
            st.settle_one(consumer, seq, outcome, &self.name, &now);
        }
        self.finish(st);
    }

    /// Merges a `modified` outcome's message annotations into the message `consumer` holds as
    /// `seq`, before it goes back (§3.4.5). The copy is new bytes, so it joins the memory
    /// account. In memory only: the journal keeps the message as it was sent, so after a
    /// restart it is delivered without them (its delivery-count is journaled).
    fn annotate_acquired(
        &self,
        st: &mut State,
        consumer: ConsumerId,
        seq: u64,
        annotations: &[(String, Vec<u8>)],
    ) {
        let Some(acquired) = st.acquired.get_mut(&seq).filter(|a| a.consumer == consumer) else {
            return;
        };
        let entries: Vec<(&str, AnnotationValue<'_>)> = annotations
            .iter()
            .map(|(key, value)| (key.as_str(), AnnotationValue::Encoded(value)))
            .collect();
        let edited = acquired.entry.message.with_annotations(&entries);
        let edited = match self.router.upgrade() {
            Some(router) => {
                let tracked = router.memory().track(edited.bytes().clone());
                Message::parse(tracked).unwrap_or(edited)
            }
            None => edited,
        };
        acquired.entry.message = edited;
    }
}
