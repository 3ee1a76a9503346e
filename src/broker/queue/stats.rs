//! What a queue reports about itself: counters and gauges, and its consumers.

use crate::broker::consumer::ConsumerId;

/// Counters and gauges of one queue, as the admin API and tests read them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Messages ready for delivery.
    pub ready: usize,
    /// Messages delivered and not yet settled.
    pub unacked: usize,
    /// Attached consumers.
    pub consumers: usize,
    /// Message groups tracked (with an owner, ready messages or unsettled messages).
    pub groups: usize,
    /// Encoded bytes of the ready messages.
    pub ready_bytes: u64,
    /// Messages ever enqueued.
    pub enqueued: u64,
    /// Deliveries made (redeliveries included).
    pub delivered: u64,
    /// Messages consumed (accepted, or sent pre-settled).
    pub acked: u64,
    /// Deliveries returned to the queue (released, modified, or unsettled at detach).
    pub returned: u64,
    /// Messages rejected by a consumer and dropped.
    pub rejected: u64,
    /// Messages scheduled for later delivery.
    pub delayed: usize,
    /// Messages that expired before they were consumed (dead-lettered or dropped).
    pub expired: u64,
    /// Messages handed to the dead-letter address (rejected, expired, over their attempts).
    pub dead_lettered: u64,
    /// Deliveries taken back because the visibility timeout ran out.
    pub timed_out: u64,
    /// Delayed messages cancelled before they were due.
    pub cancelled: u64,
    /// Messages made ready again by a rewind.
    pub rewound: u64,
    /// Consumed messages kept for rewind.
    pub retained: usize,
    /// Messages taken back because the journal failed to store them (their producers were
    /// told `rejected`).
    pub unstored: u64,
    /// Messages refused or dropped because the queue was at its length limit.
    pub overflowed: u64,
}

/// One consumer of a queue, as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConsumerInfo {
    /// The consumer's broker-wide id (group owners are named by it).
    pub id: ConsumerId,
    /// The receiving link's name.
    pub link: String,
    /// The registry id of its connection.
    pub connection: u64,
    /// Deliveries it may still receive.
    pub credit: u32,
    /// Deliveries it holds unsettled.
    pub unacked: usize,
}
