//! A consumer: one connection, one session, one receiving link. It grants `--credit`, tops it
//! up when half is used (one flow), accepts what it read in one disposition per read batch
//! (ranges), and records each message's end-to-end latency from the stamp in its body.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fe2o3_amqp_types::definitions::{Handle, ReceiverSettleMode, Role, SenderSettleMode};
use fe2o3_amqp_types::messaging::{
    Accepted, DeliveryState, Source, Target, TargetArchetype, TerminusDurability,
};
use fe2o3_amqp_types::performatives::{Attach, Disposition, Flow, Performative};
use sluice::codec::frame::{decode_amqp, decode_raw, Body, RawFrame, TYPE_AMQP};
use tokio::sync::Barrier;
use tokio::time::Instant;

use crate::conn::{now_ns, Conn, LoadError, Wake, OUR_INCOMING_WINDOW, OUR_MAX_FRAME_SIZE};
use crate::stats::{Run, Tally};
use crate::wire::{find_stamp, scan_transfer};
use crate::Settings;

/// How often an idle consumer looks at the run's stop conditions.
const POLL: Duration = Duration::from_millis(50);
/// Of a message split over frames, this much of the front is kept to find the stamp.
const KEEP_OF_SPLIT_MESSAGE: usize = 4096;

/// Link and session state of one consumer.
struct Consumer {
    credit_window: u32,
    credit_left: u32,
    delivery_count: u32,
    next_incoming_id: u32,
    /// Deliveries read but not yet accepted: a range first..=last.
    to_accept: Option<(u32, u32)>,
    /// Earlier ranges of this read batch, when delivery-ids were not contiguous.
    pending_ranges: Vec<(u32, u32)>,
    /// The front of a delivery whose later frames are still to come, and its length so far.
    partial: Option<(Vec<u8>, u64)>,
    /// Messages received since the last update of the shared counter.
    unreported: u64,
    tally: Tally,
}

/// Runs one consumer to the end of the run. Errors are logged in `run`; the tally is
/// returned either way.
pub async fn consume(
    id: usize,
    settings: Arc<Settings>,
    run: Arc<Run>,
    barrier: Arc<Barrier>,
) -> Tally {
    let mut tally = Tally::new();
    let attached = match attach(id, &settings).await {
        Ok(x) => Some(x),
        Err(e) => {
            run.error(1, format!("consumer {id}: {e}"), true);
            None
        }
    };
    barrier.wait().await;
    if let Some((conn, delivery_count)) = attached {
        let mut c = Consumer {
            credit_window: settings.credit,
            credit_left: settings.credit,
            delivery_count,
            next_incoming_id: conn.remote_begin.next_outgoing_id,
            to_accept: None,
            pending_ranges: Vec::new(),
            partial: None,
            unreported: 0,
            tally: Tally::new(),
        };
        if let Err(e) = c.run(conn, &run).await {
            run.error(1, format!("consumer {id}: {e}"), true);
        }
        tally = c.tally;
    }
    tally
}

/// Connects, attaches and grants the first credit. Returns the link's delivery-count.
async fn attach(id: usize, settings: &Settings) -> Result<(Conn, u32), LoadError> {
    let mut conn = Conn::open(&settings.endpoint, &format!("loadgen-consumer-{id}")).await?;
    let reply = conn
        .attach(Attach {
            name: format!("loadgen-receiver-{id}"),
            handle: Handle(0),
            role: Role::Receiver,
            snd_settle_mode: if settings.at_least_once {
                SenderSettleMode::Unsettled
            } else {
                SenderSettleMode::Settled
            },
            rcv_settle_mode: ReceiverSettleMode::First,
            source: Some(Box::new(
                Source::builder()
                    .address(settings.queue.clone())
                    // RabbitMQ declares the queue with the first link's durability and
                    // refuses a second link that differs.
                    .durable(if settings.durable {
                        TerminusDurability::UnsettledState
                    } else {
                        TerminusDurability::None
                    })
                    .build(),
            )),
            target: Some(Box::new(TargetArchetype::Target(Target::builder().build()))),
            unsettled: None,
            incomplete_unsettled: false,
            initial_delivery_count: None,
            max_message_size: None,
            offered_capabilities: None,
            desired_capabilities: None,
            properties: None,
        })
        .await?;
    let delivery_count = reply.initial_delivery_count.unwrap_or(0);
    let next_incoming_id = conn.remote_begin.next_outgoing_id;
    conn.send(&flow(next_incoming_id, delivery_count, settings.credit));
    Ok((conn, delivery_count))
}

fn flow(next_incoming_id: u32, delivery_count: u32, credit: u32) -> Performative {
    Performative::Flow(Flow {
        next_incoming_id: Some(next_incoming_id),
        incoming_window: OUR_INCOMING_WINDOW,
        next_outgoing_id: 0,
        outgoing_window: u32::MAX,
        handle: Some(Handle(0)),
        delivery_count: Some(delivery_count),
        link_credit: Some(credit),
        available: None,
        drain: false,
        echo: false,
        properties: None,
    })
}

impl Consumer {
    async fn run(&mut self, mut conn: Conn, run: &Run) -> Result<(), LoadError> {
        let measure_from = run.measure_from();
        loop {
            let wake = conn.pump(Some(Instant::now() + POLL)).await?;
            if wake == Wake::Read {
                self.tally.peer.reads += 1;
                let now = Instant::now();
                let now_ns = if now >= measure_from {
                    Some(now_ns())
                } else {
                    None
                };
                while let Some(raw) = decode_raw(&mut conn.rbuf, OUR_MAX_FRAME_SIZE)? {
                    self.on_frame(raw, now, now_ns)?;
                }
                self.settle_and_top_up(&mut conn);
                if self.unreported > 0 {
                    run.received.fetch_add(self.unreported, Relaxed);
                    self.unreported = 0;
                }
            }
            if run.consumers_done(Instant::now()) {
                break;
            }
        }
        conn.shutdown().await;
        Ok(())
    }

    fn on_frame(
        &mut self,
        raw: RawFrame,
        now: Instant,
        now_ns: Option<u64>,
    ) -> Result<(), LoadError> {
        if raw.frame_type == TYPE_AMQP {
            if let Some(head) = scan_transfer(&raw.body) {
                let payload = raw.body.slice(head.payload_at..);
                self.on_transfer(
                    head.delivery_id,
                    head.settled,
                    head.more,
                    payload,
                    now,
                    now_ns,
                );
                return Ok(());
            }
        }
        match decode_amqp(raw)?.body {
            Body::Transfer(t, payload) => {
                self.on_transfer(t.delivery_id, t.settled, t.more, payload, now, now_ns)
            }
            Body::Performative(Performative::Detach(d)) => {
                return Err(LoadError::remote("detach", d.error))
            }
            Body::Performative(Performative::End(e)) => {
                return Err(LoadError::remote("end", e.error))
            }
            Body::Performative(Performative::Close(c)) => {
                return Err(LoadError::remote("close", c.error))
            }
            _ => {}
        }
        Ok(())
    }

    fn on_transfer(
        &mut self,
        delivery_id: Option<u32>,
        settled: Option<bool>,
        more: bool,
        payload: Bytes,
        now: Instant,
        now_ns: Option<u64>,
    ) {
        self.next_incoming_id = self.next_incoming_id.wrapping_add(1);
        self.tally.peer.transfers += 1;
        if let Some((front, len)) = &mut self.partial {
            let room = KEEP_OF_SPLIT_MESSAGE.saturating_sub(front.len());
            front.extend_from_slice(&payload[..payload.len().min(room)]);
            *len += payload.len() as u64;
            if !more {
                let (front, len) = self.partial.take().unwrap_or_default();
                self.finish(&front, len, now, now_ns);
            }
            return;
        }
        // The first frame of a delivery.
        self.credit_left = self.credit_left.saturating_sub(1);
        self.delivery_count = self.delivery_count.wrapping_add(1);
        if settled != Some(true) {
            if let Some(id) = delivery_id {
                self.to_accept = match self.to_accept {
                    Some((first, last)) if id == last.wrapping_add(1) => Some((first, id)),
                    Some(range) => {
                        self.pending_ranges.push(range);
                        Some((id, id))
                    }
                    None => Some((id, id)),
                };
            }
        }
        if more {
            let keep = payload.len().min(KEEP_OF_SPLIT_MESSAGE);
            self.partial = Some((payload[..keep].to_vec(), payload.len() as u64));
        } else {
            self.finish(&payload, payload.len() as u64, now, now_ns);
        }
    }

    /// Counts one whole message and records its latency.
    fn finish(&mut self, front: &[u8], len: u64, now: Instant, now_ns: Option<u64>) {
        self.unreported += 1;
        let Some(now_ns) = now_ns else {
            return; // warm-up
        };
        self.tally.messages += 1;
        self.tally.bytes += len;
        self.tally.last = Some(now);
        if let Some((_seq, sent_ns)) = find_stamp(front) {
            let _ = self
                .tally
                .latency_ns
                .record(now_ns.saturating_sub(sent_ns).max(1));
        }
    }

    /// One disposition per range read in this batch, and one flow if half the credit is used.
    fn settle_and_top_up(&mut self, conn: &mut Conn) {
        for (first, last) in self.pending_ranges.drain(..).chain(self.to_accept.take()) {
            conn.send(&Performative::Disposition(Disposition {
                role: Role::Receiver,
                first,
                last: (last != first).then_some(last),
                settled: true,
                state: Some(DeliveryState::Accepted(Accepted {})),
                batchable: false,
            }));
        }
        if self.credit_left <= self.credit_window / 2 {
            self.credit_left = self.credit_window;
            conn.send(&flow(
                self.next_incoming_id,
                self.delivery_count,
                self.credit_window,
            ));
        }
    }
}
