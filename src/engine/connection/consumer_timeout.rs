//! `consumer_timeout` (issue 12 §1): a consumer that holds unsettled deliveries and settles
//! none for its queue's `consumer_timeout` is detached, so what it holds returns to the queue
//! (delivery-count + 1, as on any detach) for the other consumers.

use std::time::{Duration, Instant};

use fe2o3_amqp_types::definitions::LinkError;

use super::Connection;
use crate::engine::link::LinkKind;
use crate::engine::AmqpFailure;

/// How often to look for silent consumers, given the shortest timeout of those holding
/// deliveries: often enough to act within a quarter of it, at most once a second.
pub(super) fn check_interval(timeout_ms: u64) -> Duration {
    Duration::from_millis((timeout_ms / 4).clamp(10, 1000))
}

impl Connection {
    /// Detaches the consumers past their queue's `consumer_timeout`; returns when to look
    /// again (None while no consumer holds unsettled deliveries).
    pub(super) fn check_consumer_timeouts(&mut self, now: Instant) -> Option<Instant> {
        let due = self.consumer_check?;
        if now < due {
            return Some(due);
        }
        let mut shortest: Option<u64> = None;
        let mut silent = Vec::new();
        for &(channel, handle) in self.consumers.values() {
            let link = self
                .sessions
                .get(&channel)
                .and_then(|s| s.links.get(&handle));
            let Some(link) = link.filter(|l| !l.detach_sent) else {
                continue;
            };
            let LinkKind::Consumer(c) = &link.kind else {
                continue;
            };
            let timeout = c.queue.settings().consumer_timeout;
            if c.unsettled == 0 || timeout == 0 {
                continue;
            }
            shortest = Some(shortest.map_or(timeout, |s| s.min(timeout)));
            if now.duration_since(c.active_at) >= Duration::from_millis(timeout) {
                let description = format!(
                    "consumer_timeout: link '{}' held {} unsettled deliveries and settled none for {} ms; they return to queue '{}' for other consumers (settle deliveries sooner, or raise the queue's consumer_timeout)",
                    link.name,
                    c.unsettled,
                    timeout,
                    c.queue.name()
                );
                silent.push((channel, handle, description));
            }
        }
        for (channel, handle, description) in silent {
            let error = AmqpFailure::new(LinkError::DetachForced, description);
            self.detach_with_error(channel, handle, error);
        }
        self.consumer_check = shortest.map(|t| now + check_interval(t));
        self.consumer_check
    }
}
