//! Connection-scale load for any AMQP 1.0 broker: many idle connections held at once, or a
//! steady churn of short-lived ones.
//!
//! ```text
//! cargo run --release --example connections -- hold  --url amqp://127.0.0.1:5672 --count 10000 --hold 10
//! cargo run --release --example connections -- churn --url amqp://127.0.0.1:5672 --rate 1000 --duration 20
//! ```
//!
//! `hold` opens `--count` connections (SASL, open, begin, one receiving link with a little
//! credit), at most `--parallel` handshakes at a time, and keeps them open, answering the
//! broker's idle timeout with heartbeats. When all have connected or failed it prints an
//! `established` line (scripts wait for it before sampling the broker), holds them for
//! `--hold` seconds, then probes every one of them: it detaches the link and expects the
//! broker's detach. A detach is the probe because every broker must answer one; an echo flow
//! is only a request. Then each connection is closed.
//!
//! `churn` starts `--rate` cycles per second for `--duration` seconds, each a whole connection
//! life: connect, SASL, open, begin, attach a sender and a receiver, detach both, end, close.
//!
//! Both print a human summary and then one JSON line for scripts. The client is loadgen's
//! connection code (`examples/loadgen/conn.rs`); it needs one file descriptor per connection,
//! so raise `ulimit -n` before holding thousands.

#![allow(clippy::unwrap_used, missing_docs)] // a bench or tool: a panic is a failed run, and criterion's macros make undocumented items

#[allow(dead_code)] // loadgen's connection module: this example uses only part of it
#[path = "loadgen/conn.rs"]
mod conn;

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use fe2o3_amqp_types::definitions::{Handle, ReceiverSettleMode, Role, SenderSettleMode};
use fe2o3_amqp_types::messaging::{Source, Target, TargetArchetype};
use fe2o3_amqp_types::performatives::{Attach, Close, Detach, End, Flow, Performative};
use hdrhistogram::Histogram;
use sluice::codec::frame::{decode_amqp, decode_raw, Body};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::{sleep_until, timeout, Instant};

use conn::{Conn, Endpoint, LoadError, OUR_INCOMING_WINDOW, OUR_MAX_FRAME_SIZE};

/// How long the end-of-hold probe (detach, then close) may take per connection.
const PROBE_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a connection waits for the broker's close before dropping the socket.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// After the last churn cycle started, unfinished cycles get this long before they count as
/// timed out.
const CHURN_GRACE: Duration = Duration::from_secs(30);
/// A churn cycle that starts this much after its slot counts as late (the timer alone is
/// about a millisecond off).
const LATE: Duration = Duration::from_millis(10);
/// At most this many distinct error reasons are kept.
const REASONS_MAX: usize = 50;

#[derive(Parser, Debug)]
#[command(about = "Connection scale for AMQP 1.0 brokers: idle connections held, and churn")]
struct Options {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand, Debug)]
enum Mode {
    /// Open N connections, hold them, then check each one is still alive.
    Hold(HoldOptions),
    /// Run R connect/attach/detach/close cycles per second.
    Churn(ChurnOptions),
}

/// What both modes share.
#[derive(Args, Debug)]
struct Common {
    /// Broker URL: amqp://[user:pass@]host[:port]. With user:pass, SASL PLAIN; else ANONYMOUS.
    #[arg(long, default_value = "amqp://127.0.0.1:5672")]
    url: String,
    /// Send the AMQP protocol header directly, without SASL.
    #[arg(long)]
    no_sasl: bool,
    /// Runtime worker threads; 0 runs everything on one thread.
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

#[derive(Args, Debug)]
struct HoldOptions {
    #[command(flatten)]
    common: Common,
    /// Connections to open.
    #[arg(long, default_value_t = 10_000)]
    count: usize,
    /// Seconds to hold them once all have connected (or failed).
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    hold: f64,
    /// Handshakes (and end-of-hold probes) in progress at once.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..))]
    parallel: u32,
    /// Source address of every receiving link.
    #[arg(long, default_value = "hold")]
    queue: String,
    /// Credit each receiving link grants.
    #[arg(long, default_value_t = 10)]
    credit: u32,
}

#[derive(Args, Debug)]
struct ChurnOptions {
    #[command(flatten)]
    common: Common,
    /// Cycles started per second.
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// Seconds to keep starting cycles.
    #[arg(long, value_name = "SECS", default_value_t = 20.0)]
    duration: f64,
    /// Cycles in progress at once; when all are busy, the next start waits (and the achieved
    /// rate shows it).
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u32).range(1..))]
    max_inflight: u32,
    /// Address of the sender's target and the receiver's source.
    #[arg(long, default_value = "churn")]
    queue: String,
}

fn main() -> ExitCode {
    let opts = Options::parse();
    let common = match &opts.mode {
        Mode::Hold(h) => &h.common,
        Mode::Churn(c) => &c.common,
    };
    let endpoint = match Endpoint::parse(&common.url, !common.no_sasl, None) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("connections: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = if common.threads == 0 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(common.threads)
            .enable_all()
            .build()
    };
    let rt = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("connections: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let ok = match opts.mode {
        Mode::Hold(h) => rt.block_on(hold(h, endpoint)),
        Mode::Churn(c) => {
            if !(c.rate > 0.0 && c.duration > 0.0) {
                eprintln!("connections: --rate and --duration must be positive");
                return ExitCode::from(2);
            }
            rt.block_on(churn(c, endpoint))
        }
    };
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

// ----------------------------------------------------------------------------------- hold

/// How one held connection ended.
enum Fate {
    /// Never got as far as an attached link.
    Failed,
    /// Connected, then died before the probe.
    Lost(String),
    /// Connected, but the probe got no answer.
    ProbeFailed(String),
    /// Answered the probe; `closed` if the broker also answered our close.
    Alive { closed: bool },
}

async fn hold(opts: HoldOptions, endpoint: Endpoint) -> bool {
    let endpoint = Arc::new(endpoint);
    let gate = Arc::new(Semaphore::new(opts.parallel as usize));
    let (connected_tx, mut connected_rx) = mpsc::unbounded_channel();
    let (probe_tx, probe_rx) = watch::channel(false);
    let lost = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for id in 0..opts.count {
        let held = Held {
            id,
            endpoint: endpoint.clone(),
            queue: opts.queue.clone(),
            credit: opts.credit,
        };
        let (gate, connected, probe, lost) = (
            gate.clone(),
            connected_tx.clone(),
            probe_rx.clone(),
            lost.clone(),
        );
        tasks.spawn(async move { held.run(gate, connected, probe, lost).await });
    }
    drop(connected_tx);

    // Connect phase: every task reports once, success (with its setup time) or failure.
    let mut setup_us = histogram();
    let mut failures = Reasons::default();
    while let Some(outcome) = connected_rx.recv().await {
        match outcome {
            Ok(us) => record(&mut setup_us, us),
            Err(reason) => failures.add(reason),
        }
    }
    let connect_s = start.elapsed().as_secs_f64();
    let connected = setup_us.len();
    println!(
        "connections: established {connected} of {} (failed {}) in {connect_s:.2} s; holding {} s",
        opts.count,
        failures.total(),
        opts.hold
    );

    tokio::time::sleep(Duration::from_secs_f64(opts.hold.max(0.0))).await;
    let lost_before_probe = lost.load(Relaxed);
    let _ = probe_tx.send(true);
    let mut alive = 0u64;
    let mut closed = 0u64;
    let mut lost_reasons = Reasons::default();
    let mut probe_failures = Reasons::default();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Fate::Alive { closed: c }) => {
                alive += 1;
                closed += u64::from(c);
            }
            Ok(Fate::Lost(reason)) => lost_reasons.add(reason),
            Ok(Fate::ProbeFailed(reason)) => probe_failures.add(reason),
            Ok(Fate::Failed) => {}
            Err(e) => probe_failures.add(format!("task failed: {e}")),
        }
    }
    let total_s = start.elapsed().as_secs_f64();

    println!(
        "connections hold: {} requested, {connected} connected, {} failed, in {connect_s:.2} s \
         ({:.0}/s)",
        opts.count,
        failures.total(),
        per_s(connected, connect_s)
    );
    println!("  setup (connect..attach) ms: {}", ms_summary(&setup_us));
    println!(
        "  after {} s held: {alive} alive (answered the probe), {} lost while held, {} failed \
         the probe; {closed} closed cleanly; {total_s:.2} s in all",
        opts.hold,
        lost_reasons.total(),
        probe_failures.total()
    );
    failures.print("connect failed");
    lost_reasons.print("lost while held");
    probe_failures.print("probe failed");
    println!(
        "{{\"mode\":\"hold\",\"requested\":{},\"connected\":{connected},\"failed\":{},\
         \"connect_seconds\":{connect_s:.3},\"connect_per_s\":{:.0},\"setup_ms\":{},\
         \"hold_seconds\":{},\"lost_before_probe\":{lost_before_probe},\"lost\":{},\
         \"probe_failed\":{},\"alive\":{alive},\"closed\":{closed},\"seconds\":{total_s:.3},\
         \"errors\":{{\"connect\":{},\"lost\":{},\"probe\":{}}}}}",
        opts.count,
        failures.total(),
        per_s(connected, connect_s),
        ms_json(&setup_us),
        opts.hold,
        lost_reasons.total(),
        probe_failures.total(),
        failures.json(),
        lost_reasons.json(),
        probe_failures.json(),
    );
    alive == opts.count as u64
}

/// One held connection.
struct Held {
    id: usize,
    endpoint: Arc<Endpoint>,
    queue: String,
    credit: u32,
}

impl Held {
    async fn run(
        self,
        gate: Arc<Semaphore>,
        connected: mpsc::UnboundedSender<Result<u64, String>>,
        mut probe: watch::Receiver<bool>,
        lost: Arc<AtomicU64>,
    ) -> Fate {
        let opened = {
            let _permit = gate.acquire().await;
            let t0 = Instant::now();
            self.open().await.map(|c| (c, t0.elapsed()))
        };
        let mut conn = match opened {
            Ok((conn, took)) => {
                let _ = connected.send(Ok(took.as_micros() as u64));
                conn
            }
            Err(e) => {
                let _ = connected.send(Err(e.to_string()));
                return Fate::Failed;
            }
        };
        drop(connected);
        if let Err(e) = idle_until_probe(&mut conn, &mut probe).await {
            lost.fetch_add(1, Relaxed);
            return Fate::Lost(e.to_string());
        }
        // The probe is paced like the connects: 10,000 detaches at once measure how the
        // broker copes with a burst, not whether the connections are alive.
        let _permit = gate.acquire().await;
        match timeout(PROBE_TIMEOUT, probe_and_close(conn)).await {
            Ok(Ok(closed)) => Fate::Alive { closed },
            Ok(Err(e)) => Fate::ProbeFailed(e.to_string()),
            Err(_) => Fate::ProbeFailed("no detach within the probe timeout".into()),
        }
    }

    /// Connects and attaches a receiver on handle 0 with a little credit.
    async fn open(&self) -> Result<Conn, LoadError> {
        let mut conn = Conn::open(&self.endpoint, &format!("connections-hold-{}", self.id)).await?;
        let receiver = link(
            format!("hold-receiver-{}", self.id),
            0,
            Role::Receiver,
            &self.queue,
        );
        let reply = attach(&mut conn, receiver).await?;
        conn.send(&Performative::Flow(Flow {
            next_incoming_id: Some(conn.remote_begin.next_outgoing_id),
            incoming_window: OUR_INCOMING_WINDOW,
            next_outgoing_id: 0,
            outgoing_window: u32::MAX,
            handle: Some(Handle(0)),
            delivery_count: Some(reply.initial_delivery_count.unwrap_or(0)),
            link_credit: Some(self.credit),
            available: None,
            drain: false,
            echo: false,
            properties: None,
        }));
        Ok(conn)
    }
}

/// Keeps the connection going (heartbeats out, anything in is read and dropped) until the
/// probe signal. A close, end or detach from the broker, or a dead socket, is an error.
async fn idle_until_probe(
    conn: &mut Conn,
    probe: &mut watch::Receiver<bool>,
) -> Result<(), LoadError> {
    loop {
        while let Some(raw) = decode_raw(&mut conn.rbuf, OUR_MAX_FRAME_SIZE)? {
            match decode_amqp(raw)?.body {
                Body::Performative(Performative::Close(c)) => {
                    return Err(LoadError::remote("close", c.error))
                }
                Body::Performative(Performative::End(e)) => {
                    return Err(LoadError::remote("end", e.error))
                }
                Body::Performative(Performative::Detach(d)) => {
                    return Err(LoadError::remote("detach", d.error))
                }
                _ => {}
            }
        }
        tokio::select! {
            pumped = conn.pump(None) => { pumped?; }
            _ = probe.wait_for(|&now| now) => return Ok(()),
        }
    }
}

/// Detaches the held link and waits for the broker's detach (the liveness probe), then ends
/// and closes. Returns whether the broker's close arrived.
async fn probe_and_close(mut conn: Conn) -> Result<bool, LoadError> {
    conn.send(&detach(0));
    wait_for(&mut conn, "probe detach", |p| {
        matches!(p, Performative::Detach(_))
    })
    .await?;
    conn.send(&Performative::End(End { error: None }));
    conn.send(&Performative::Close(Close { error: None }));
    let closed = timeout(
        CLOSE_TIMEOUT,
        wait_for(&mut conn, "close", |p| matches!(p, Performative::Close(_))),
    )
    .await;
    Ok(matches!(closed, Ok(Ok(_))))
}

// ---------------------------------------------------------------------------------- churn

/// What the churn cycles report, shared by all of them.
struct ChurnTally {
    cycle_us: Histogram<u64>,
    errors: Reasons,
    last_done: Option<Instant>,
}

async fn churn(opts: ChurnOptions, endpoint: Endpoint) -> bool {
    let endpoint = Arc::new(endpoint);
    let inflight = Arc::new(Semaphore::new(opts.max_inflight as usize));
    let tally = Arc::new(Mutex::new(ChurnTally {
        cycle_us: histogram(),
        errors: Reasons::default(),
        last_done: None,
    }));
    let interval = Duration::from_secs_f64(1.0 / opts.rate);
    let duration = Duration::from_secs_f64(opts.duration);
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    let mut started = 0u64;
    let mut late_starts = 0u64;
    loop {
        let due = start + interval.mul_f64(started as f64);
        if due >= start + duration {
            break;
        }
        sleep_until(due).await;
        let Ok(permit) = inflight.clone().acquire_owned().await else {
            break;
        };
        if Instant::now() > due + LATE {
            late_starts += 1;
        }
        let (endpoint, tally, queue) = (endpoint.clone(), tally.clone(), opts.queue.clone());
        let id = started;
        tasks.spawn(async move {
            let t0 = Instant::now();
            let result = cycle(&endpoint, id, &queue).await;
            let done = Instant::now();
            drop(permit);
            let mut t = tally.lock().unwrap_or_else(|e| e.into_inner());
            match result {
                Ok(()) => record(&mut t.cycle_us, (done - t0).as_micros() as u64),
                Err(e) => t.errors.add(e.to_string()),
            }
            t.last_done = Some(done);
        });
        started += 1;
        // Reap finished tasks as we go, so the set stays as small as what is in flight.
        while tasks.try_join_next().is_some() {}
    }
    let starting_s = start.elapsed().as_secs_f64();
    let give_up_at = Instant::now() + CHURN_GRACE;
    let mut timed_out = 0u64;
    loop {
        match tokio::time::timeout_at(give_up_at, tasks.join_next()).await {
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(_) => {
                timed_out = tasks.len() as u64;
                tasks.abort_all();
                break;
            }
        }
    }

    let t = tally.lock().unwrap_or_else(|e| e.into_inner());
    let ok = t.cycle_us.len();
    let failed = t.errors.total() + timed_out;
    let span_s = t
        .last_done
        .map_or(0.0, |d| d.saturating_duration_since(start).as_secs_f64());
    let achieved = per_s(ok, span_s);
    println!(
        "connections churn: offered {:.0}/s for {} s: {started} cycles started ({late_starts} \
         more than 10 ms late), {ok} completed, {failed} failed{}; {achieved:.0} cycles/s over {span_s:.2} s \
         (starting took {starting_s:.2} s)",
        opts.rate,
        opts.duration,
        if timed_out > 0 {
            format!(" ({timed_out} timed out)")
        } else {
            String::new()
        }
    );
    println!("  cycle ms: {}", ms_summary(&t.cycle_us));
    t.errors.print("cycle failed");
    println!(
        "{{\"mode\":\"churn\",\"offered_per_s\":{},\"duration\":{},\"started\":{started},\
         \"late_starts\":{late_starts},\"completed\":{ok},\"failed\":{failed},\
         \"timed_out\":{timed_out},\"seconds\":{span_s:.3},\"cycles_per_s\":{achieved:.1},\
         \"cycle_ms\":{},\"errors\":{}}}",
        opts.rate,
        opts.duration,
        ms_json(&t.cycle_us),
        t.errors.json()
    );
    failed == 0
}

/// One connection's whole life: open (with SASL and begin), attach a sender and a receiver,
/// detach both, end, close. Every step waits for the broker's answer.
async fn cycle(endpoint: &Endpoint, id: u64, queue: &str) -> Result<(), LoadError> {
    let mut conn = Conn::open(endpoint, &format!("connections-churn-{id}")).await?;
    let sender = link(format!("churn-sender-{id}"), 0, Role::Sender, queue);
    attach(&mut conn, sender).await?;
    let receiver = link(format!("churn-receiver-{id}"), 1, Role::Receiver, queue);
    attach(&mut conn, receiver).await?;
    conn.send(&detach(0));
    conn.send(&detach(1));
    for _ in 0..2 {
        let reply = wait_for(&mut conn, "detach", |p| {
            matches!(p, Performative::Detach(_))
        })
        .await?;
        if let Performative::Detach(Detach { error: Some(e), .. }) = reply {
            return Err(LoadError::remote("detach", Some(e)));
        }
    }
    conn.send(&Performative::End(End { error: None }));
    wait_for(&mut conn, "end", |p| matches!(p, Performative::End(_))).await?;
    conn.send(&Performative::Close(Close { error: None }));
    wait_for(&mut conn, "close", |p| matches!(p, Performative::Close(_))).await?;
    Ok(())
}

// --------------------------------------------------------------------------------- shared

/// Attaches a link and waits for the broker's attach, skipping flows (a broker may grant a
/// sender credit before the next attach is answered). A refused link (null source or target,
/// then a detach) is an error carrying the detach's condition.
async fn attach(conn: &mut Conn, attach: Attach) -> Result<Attach, LoadError> {
    let ours_is_sender = attach.role == Role::Sender;
    let handle = attach.handle.clone();
    conn.send(&Performative::Attach(attach));
    let is_reply = |p: &Performative| match p {
        Performative::Attach(a) => a.handle == handle,
        Performative::Detach(d) => d.handle == handle,
        _ => false,
    };
    let reply = match wait_for(conn, "attach", is_reply).await? {
        Performative::Attach(a) => a,
        Performative::Detach(d) => return Err(LoadError::remote("detach", d.error)),
        other => {
            return Err(LoadError::Protocol(format!(
                "expected attach, got {other:?}"
            )))
        }
    };
    let refused = if ours_is_sender {
        reply.target.is_none()
    } else {
        reply.source.is_none()
    };
    if refused {
        let is_detach = |p: &Performative| matches!(p, Performative::Detach(_));
        if let Performative::Detach(d) = wait_for(conn, "detach", is_detach).await? {
            return Err(LoadError::remote("detach", d.error));
        }
    }
    Ok(reply)
}

/// An attach for a link on `queue`: a receiver's source or a sender's target.
fn link(name: String, handle: u32, role: Role, queue: &str) -> Attach {
    let is_sender = role == Role::Sender;
    let (source, target) = match role {
        Role::Receiver => (
            Source::builder().address(queue.to_string()).build(),
            Target::builder().build(),
        ),
        Role::Sender => (
            Source::builder().build(),
            Target::builder().address(queue.to_string()).build(),
        ),
    };
    Attach {
        name,
        handle: Handle(handle),
        role,
        snd_settle_mode: SenderSettleMode::Unsettled,
        rcv_settle_mode: ReceiverSettleMode::First,
        source: Some(Box::new(source)),
        target: Some(Box::new(TargetArchetype::Target(target))),
        unsettled: None,
        incomplete_unsettled: false,
        initial_delivery_count: is_sender.then_some(0),
        max_message_size: None,
        offered_capabilities: None,
        desired_capabilities: None,
        properties: None,
    }
}

fn detach(handle: u32) -> Performative {
    Performative::Detach(Detach {
        handle: Handle(handle),
        closed: true,
        error: None,
    })
}

/// Reads frames until a performative `want` accepts, skipping flows, dispositions, transfers,
/// heartbeats and (when a close is awaited) the answer to our end. A close, or an end with an
/// error, from the broker is an error.
async fn wait_for(
    conn: &mut Conn,
    during: &'static str,
    want: impl Fn(&Performative) -> bool,
) -> Result<Performative, LoadError> {
    loop {
        let Body::Performative(p) = conn.next_frame(during).await?.body else {
            continue;
        };
        if want(&p) {
            return Ok(p);
        }
        match p {
            Performative::Close(c) => return Err(LoadError::remote("close", c.error)),
            Performative::End(End { error: Some(e) }) => {
                return Err(LoadError::remote("end", Some(e)))
            }
            _ => {}
        }
    }
}

/// Error descriptions and how often each happened.
#[derive(Default)]
struct Reasons {
    counts: BTreeMap<String, u64>,
    other: u64,
}

impl Reasons {
    fn add(&mut self, reason: String) {
        if let Some(n) = self.counts.get_mut(&reason) {
            *n += 1;
        } else if self.counts.len() < REASONS_MAX {
            self.counts.insert(reason, 1);
        } else {
            self.other += 1;
        }
    }

    fn total(&self) -> u64 {
        self.counts.values().sum::<u64>() + self.other
    }

    fn print(&self, what: &str) {
        for (reason, n) in &self.counts {
            println!("  {what} x{n}: {reason}");
        }
        if self.other > 0 {
            println!("  {what} x{}: (other reasons)", self.other);
        }
    }

    /// `{"reason": count, ...}`.
    fn json(&self) -> String {
        let mut items: Vec<String> = self
            .counts
            .iter()
            .map(|(reason, n)| format!("{}:{n}", json_string(reason)))
            .collect();
        if self.other > 0 {
            items.push(format!("\"(other reasons)\":{}", self.other));
        }
        format!("{{{}}}", items.join(","))
    }
}

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Microseconds, up to an hour, 3 significant digits.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("constant histogram bounds are valid")
}

fn record(h: &mut Histogram<u64>, us: u64) {
    h.saturating_record(us.max(1));
}

fn per_s(n: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        n as f64 / seconds
    } else {
        0.0
    }
}

fn ms_summary(h: &Histogram<u64>) -> String {
    if h.is_empty() {
        return "none".into();
    }
    let ms = |us: u64| us as f64 / 1000.0;
    format!(
        "p50 {:.2}  p99 {:.2}  max {:.2}",
        ms(h.value_at_quantile(0.5)),
        ms(h.value_at_quantile(0.99)),
        ms(h.max())
    )
}

fn ms_json(h: &Histogram<u64>) -> String {
    if h.is_empty() {
        return "null".into();
    }
    let ms = |us: u64| us as f64 / 1000.0;
    format!(
        "{{\"p50\":{:.3},\"p99\":{:.3},\"max\":{:.3}}}",
        ms(h.value_at_quantile(0.5)),
        ms(h.value_at_quantile(0.99)),
        ms(h.max())
    )
}
