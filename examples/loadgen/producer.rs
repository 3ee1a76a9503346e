//! A producer: one connection, one session, one sending link. It sends pre-encoded transfers
//! in bursts while it has link credit and session window (and tokens, under `--rate`), and in
//! at-least-once mode counts the peer's outcomes.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use fe2o3_amqp_types::definitions::{Handle, ReceiverSettleMode, Role, SenderSettleMode};
use fe2o3_amqp_types::messaging::{
    DeliveryState, Source, Target, TargetArchetype, TerminusDurability,
};
use fe2o3_amqp_types::performatives::{Attach, Disposition, Flow, Performative};
use sluice::codec::frame::{decode_amqp, decode_raw, Body};
use tokio::sync::Barrier;
use tokio::time::Instant;

use crate::conn::{now_ns, Conn, LoadError, Wake, OUR_INCOMING_WINDOW, OUR_MAX_FRAME_SIZE};
use crate::stats::{Run, Tally};
use crate::wire::{encode_message, TransferTemplate};
use crate::Settings;

/// How often a producer with nothing to do looks at the run's stop conditions.
const POLL: Duration = Duration::from_millis(100);

/// Link and session state of one producer.
struct Producer {
    settled: bool,
    /// Messages left to send, if the run is counted in messages.
    remaining: Option<u64>,
    credit: u32,
    delivery_count: u32,
    drain: bool,
    next_delivery_id: u32,
    next_outgoing_id: u32,
    remote_incoming_window: u32,
    seq: u64,
    /// Bytes of one encoded message.
    bytes_each: u64,
    /// Unsettled messages sent and not yet given an outcome.
    outstanding: u64,
    tally: Tally,
}

/// Runs one producer to the end of the run. Errors are logged in `run`; the tally is
/// returned either way.
pub async fn produce(
    id: usize,
    settings: Arc<Settings>,
    run: Arc<Run>,
    quota: Option<u64>,
    barrier: Arc<Barrier>,
) -> Tally {
    let mut tally = Tally::new();
    let conn = match attach(id, &settings).await {
        Ok(conn) => Some(conn),
        Err(e) => {
            run.error(1, format!("producer {id}: {e}"), true);
            None
        }
    };
    barrier.wait().await;
    if let Some(conn) = conn {
        let mut p = Producer {
            settled: !settings.at_least_once,
            remaining: quota,
            credit: 0,
            delivery_count: 0,
            drain: false,
            next_delivery_id: 0,
            next_outgoing_id: 0,
            remote_incoming_window: conn.remote_begin.incoming_window,
            seq: 0,
            bytes_each: settings.message_len() as u64,
            outstanding: 0,
            tally: Tally::new(),
        };
        match p.run(conn, &settings, &run).await {
            Ok(()) => {}
            Err(e) => run.error(1, format!("producer {id}: {e}"), true),
        }
        tally = p.tally;
    }
    run.producers_running.fetch_sub(1, Relaxed);
    tally
}

async fn attach(id: usize, settings: &Settings) -> Result<Conn, LoadError> {
    let mut conn = Conn::open(&settings.endpoint, &format!("loadgen-producer-{id}")).await?;
    let target = Target::builder()
        .address(settings.queue.clone())
        .durable(if settings.durable {
            TerminusDurability::UnsettledState
        } else {
            TerminusDurability::None
        })
        .build();
    let reply = conn
        .attach(Attach {
            name: format!("loadgen-sender-{id}"),
            handle: Handle(0),
            role: Role::Sender,
            snd_settle_mode: if settings.at_least_once {
                SenderSettleMode::Unsettled
            } else {
                SenderSettleMode::Settled
            },
            rcv_settle_mode: ReceiverSettleMode::First,
            source: Some(Box::new(Source::builder().build())),
            target: Some(Box::new(TargetArchetype::Target(target))),
            unsettled: None,
            incomplete_unsettled: false,
            initial_delivery_count: Some(0),
            max_message_size: None,
            offered_capabilities: None,
            desired_capabilities: None,
            properties: None,
        })
        .await?;
    if let Some(max) = reply.max_message_size.filter(|&m| m > 0) {
        if settings.message_len() as u64 > max {
            return Err(LoadError::Protocol(format!(
                "peer's max-message-size {max} is below the message size {}",
                settings.message_len()
            )));
        }
    }
    Ok(conn)
}

impl Producer {
    async fn run(
        &mut self,
        mut conn: Conn,
        settings: &Settings,
        run: &Run,
    ) -> Result<(), LoadError> {
        let grouped = settings.groups > 0;
        let (message, stamp_at, group_at) =
            encode_message(settings.size, settings.durable, grouped);
        let template = TransferTemplate::new(
            0,
            0,
            self.settled,
            &message,
            stamp_at,
            group_at.map(|at| (at, settings.groups)),
            conn.remote_max_frame_size,
        );
        let batch_messages = (settings.batch_bytes / template.len()).max(1) as u64;
        let measure_from = run.measure_from();
        loop {
            self.read_frames(&mut conn, run, measure_from)?;
            let now = Instant::now();
            let stop = run.producers_should_stop(now) || self.remaining == Some(0);
            if stop && conn.pending() == 0 && (self.settled || self.outstanding == 0) {
                break;
            }
            if run.aborted() {
                break;
            }
            let mut wake = now + POLL;
            if !stop && conn.pending() == 0 {
                let want = self.sendable(&template).min(batch_messages);
                let n = match &run.bucket {
                    Some(bucket) if want > 0 => {
                        let n = bucket.take(want, now);
                        if n < want {
                            wake = wake.min(bucket.next_at());
                        }
                        n
                    }
                    _ => want,
                };
                self.send_batch(&mut conn, &template, n, run, measure_from);
                if self.drain && self.credit > 0 && n == want && self.remaining == Some(0) {
                    self.drain_credit(&mut conn);
                }
            }
            if let Some(deadline) = run.deadline() {
                if !stop {
                    wake = wake.min(deadline);
                }
            }
            if conn.pump(Some(wake)).await? == Wake::Read {
                self.tally.peer.reads += 1;
            }
        }
        conn.shutdown().await;
        Ok(())
    }

    /// Messages the link credit, the peer's session window and the quota allow now.
    fn sendable(&self, template: &TransferTemplate) -> u64 {
        let by_window = u64::from(self.remote_incoming_window / template.frames);
        let mut n = u64::from(self.credit).min(by_window);
        if let Some(left) = self.remaining {
            n = n.min(left);
        }
        n
    }

    fn send_batch(
        &mut self,
        conn: &mut Conn,
        template: &TransferTemplate,
        n: u64,
        run: &Run,
        measure_from: Instant,
    ) {
        if n == 0 {
            return;
        }
        let stamp = now_ns();
        let out = conn.out();
        for _ in 0..n {
            template.write(out, self.next_delivery_id, self.seq, stamp);
            self.next_delivery_id = self.next_delivery_id.wrapping_add(1);
            self.seq += 1;
        }
        let n32 = n as u32;
        self.credit -= n32;
        self.delivery_count = self.delivery_count.wrapping_add(n32);
        self.next_outgoing_id = self.next_outgoing_id.wrapping_add(n32 * template.frames);
        self.remote_incoming_window -= n32 * template.frames;
        if let Some(left) = &mut self.remaining {
            *left -= n;
        }
        run.sent.fetch_add(n, Relaxed);
        if self.settled {
            let now = Instant::now();
            if now >= measure_from {
                self.count(n, self.bytes_each, now);
            }
        } else {
            self.outstanding += n;
        }
    }

    fn count(&mut self, n: u64, bytes_each: u64, now: Instant) {
        self.tally.messages += n;
        self.tally.bytes += n * bytes_each;
        self.tally.last = Some(now);
    }

    /// Answers a drain request we cannot fill: the unused credit is spent (part 2, §2.6.7).
    fn drain_credit(&mut self, conn: &mut Conn) {
        self.delivery_count = self.delivery_count.wrapping_add(self.credit);
        self.credit = 0;
        self.drain = false;
        conn.send(&Performative::Flow(Flow {
            next_incoming_id: None,
            incoming_window: OUR_INCOMING_WINDOW,
            next_outgoing_id: self.next_outgoing_id,
            outgoing_window: u32::MAX,
            handle: Some(Handle(0)),
            delivery_count: Some(self.delivery_count),
            link_credit: Some(0),
            available: None,
            drain: true,
            echo: false,
            properties: None,
        }));
    }

    fn read_frames(
        &mut self,
        conn: &mut Conn,
        run: &Run,
        measure_from: Instant,
    ) -> Result<(), LoadError> {
        while let Some(raw) = decode_raw(&mut conn.rbuf, OUR_MAX_FRAME_SIZE)? {
            match decode_amqp(raw)?.body {
                Body::Performative(Performative::Flow(flow)) => self.on_flow(flow),
                Body::Performative(Performative::Disposition(d)) => {
                    self.on_disposition(conn, d, run, measure_from)
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
        }
        Ok(())
    }

    fn on_flow(&mut self, flow: Flow) {
        self.tally.peer.flows += 1;
        // The peer's window as of its flow, less what we sent since (part 2, §2.5.6).
        self.remote_incoming_window = flow
            .next_incoming_id
            .unwrap_or(0)
            .wrapping_add(flow.incoming_window)
            .wrapping_sub(self.next_outgoing_id);
        if self.remote_incoming_window > i32::MAX as u32 {
            self.remote_incoming_window = 0;
        }
        if flow.handle == Some(Handle(0)) {
            let credit = flow
                .delivery_count
                .unwrap_or(0)
                .wrapping_add(flow.link_credit.unwrap_or(0))
                .wrapping_sub(self.delivery_count);
            self.credit = if credit > i32::MAX as u32 { 0 } else { credit };
            self.drain = flow.drain;
        }
    }

    fn on_disposition(
        &mut self,
        conn: &mut Conn,
        d: Disposition,
        run: &Run,
        measure_from: Instant,
    ) {
        if d.role != Role::Receiver {
            return;
        }
        let last = d.last.unwrap_or(d.first);
        let n = u64::from(last.wrapping_sub(d.first)) + 1;
        self.tally.peer.dispositions += 1;
        self.tally.peer.disposed += n;
        match &d.state {
            Some(DeliveryState::Accepted(_)) => {
                run.accepted.fetch_add(n, Relaxed);
                let now = Instant::now();
                if now >= measure_from {
                    self.count(n, self.bytes_each, now);
                }
            }
            Some(DeliveryState::Rejected(r)) => run.error(
                n,
                format!(
                    "{n} message(s) rejected: {}",
                    r.error
                        .as_ref()
                        .map_or("no error".to_string(), |e| format!("{e:?}"))
                ),
                false,
            ),
            Some(other) => run.error(n, format!("{n} message(s) not accepted: {other:?}"), false),
            None => return,
        }
        self.outstanding = self.outstanding.saturating_sub(n);
        if !d.settled {
            conn.send(&Performative::Disposition(Disposition {
                role: Role::Sender,
                first: d.first,
                last: d.last,
                settled: true,
                state: d.state,
                batchable: false,
            }));
        }
    }
}
