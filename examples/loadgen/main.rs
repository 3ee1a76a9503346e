//! A load generator for any AMQP 1.0 broker.
//!
//! ```text
//! cargo run --release --example loadgen -- --url amqp://127.0.0.1:5672 --queue q \
//!     --messages 200000 --size 1024 --producers 1 --consumers 1 --credit 1000 \
//!     --mode at-least-once
//! ```
//!
//! Each producer and each consumer is its own TCP connection, session and link, driven by one
//! tokio task. Messages are encoded once (sluice's codec for control frames, a patched
//! template for transfers) and written in bursts; the first 16 bytes of each body carry a
//! sequence number and the send time, from which consumers measure end-to-end latency.
//! It prints throughput, latency percentiles and errors, then one JSON line for scripts.

#![allow(clippy::unwrap_used, missing_docs)] // a bench or tool: a panic is a failed run, and criterion's macros make undocumented items

mod conn;
mod consumer;
mod producer;
mod stats;
mod wire;

use std::process::ExitCode;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use tokio::sync::Barrier;
use tokio::task::JoinSet;
use tokio::time::{timeout_at, Instant};

use conn::Endpoint;
use stats::{Run, Tally};

/// Messages moved when neither `--messages` nor `--duration` is given.
const DEFAULT_MESSAGES: u64 = 200_000;
/// A run counted in messages gives up after this long.
const MESSAGES_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Parser, Debug)]
#[command(about = "Load generator for AMQP 1.0 brokers: throughput and end-to-end latency")]
struct Options {
    /// Broker URL: amqp[s]://[user:pass@]host[:port]. With user:pass, SASL PLAIN; else ANONYMOUS.
    #[arg(long, default_value = "amqp://127.0.0.1:5672")]
    url: String,
    /// CA certificate (PEM) to trust for amqps:// URLs.
    #[arg(long, value_name = "FILE")]
    tls_ca: Option<std::path::PathBuf>,
    /// Address of the sender target and the receiver source.
    #[arg(long, default_value = "q")]
    queue: String,
    /// Total messages to send and receive (default 200000).
    #[arg(long, conflicts_with = "duration")]
    messages: Option<u64>,
    /// Run for this many seconds instead of a message count.
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,
    /// Bytes of message body (at least 16: sequence number and send time).
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(16..))]
    size: u64,
    /// Producer connections (0: drain the queue only).
    #[arg(long, default_value_t = 1)]
    producers: usize,
    /// Consumer connections (0: fill the queue only).
    #[arg(long, default_value_t = 1)]
    consumers: usize,
    /// Link credit each consumer grants; topped up when half is used.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    credit: u32,
    /// Settlement: at-most-once sends settled; at-least-once waits for `accepted`.
    #[arg(long, value_enum, default_value_t = Mode::AtLeastOnce)]
    mode: Mode,
    /// Mark messages durable (header section) and ask for a durable target.
    #[arg(long)]
    durable: bool,
    /// Total send rate over all producers, in messages per second (for latency at a fixed load).
    #[arg(long, value_name = "MSG_PER_SEC")]
    rate: Option<f64>,
    /// Seconds at the start whose messages and latencies are not counted.
    #[arg(long, value_name = "SECS", default_value_t = 0.0)]
    warmup: f64,
    /// Send the AMQP protocol header directly, without SASL.
    #[arg(long)]
    no_sasl: bool,
    /// Runtime worker threads; 0 runs every connection on one thread. Two measured faster
    /// than one on a 2-core machine shared with the broker (see the issue note).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Give up after this many seconds (default: 600, or 2 x duration + 30).
    #[arg(long, value_name = "SECS")]
    timeout: Option<f64>,
    /// Give messages a properties.group-id, spread round-robin over this many groups
    /// (0: no group id).
    #[arg(long, default_value_t = 0)]
    groups: u64,
    /// A producer writes at most this many KiB per burst.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..))]
    batch_kib: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    AtMostOnce,
    AtLeastOnce,
}

/// What every connection needs to know about the run.
pub struct Settings {
    pub endpoint: Endpoint,
    pub queue: String,
    pub size: usize,
    pub credit: u32,
    pub at_least_once: bool,
    pub durable: bool,
    pub batch_bytes: usize,
    /// Spread messages over this many groups (properties.group-id); 0 sends no group id.
    pub groups: u64,
}

impl Settings {
    /// Bytes of one encoded message (sections included).
    pub fn message_len(&self) -> usize {
        wire::encode_message(self.size, self.durable, self.groups > 0)
            .0
            .len()
    }
}

fn main() -> ExitCode {
    let opts = Options::parse();
    if opts.producers == 0 && opts.consumers == 0 {
        eprintln!("loadgen: nothing to do with 0 producers and 0 consumers");
        return ExitCode::from(2);
    }
    if opts.rate.is_some_and(|r| r <= 0.0) || opts.duration.is_some_and(|d| d <= 0.0) {
        eprintln!("loadgen: --rate and --duration must be positive");
        return ExitCode::from(2);
    }
    let tls = match opts.tls_ca.as_deref().map(conn::Tls::trusting).transpose() {
        Ok(tls) => tls,
        Err(e) => {
            eprintln!("loadgen: --tls-ca {e}");
            return ExitCode::from(2);
        }
    };
    let endpoint = match Endpoint::parse(&opts.url, !opts.no_sasl, tls) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = if opts.threads == 0 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(opts.threads)
            .enable_all()
            .build()
    };
    match runtime {
        Ok(rt) => rt.block_on(load(opts, endpoint)),
        Err(e) => {
            eprintln!("loadgen: cannot start the runtime: {e}");
            ExitCode::from(2)
        }
    }
}

async fn load(opts: Options, endpoint: Endpoint) -> ExitCode {
    let settings = Arc::new(Settings {
        endpoint,
        queue: opts.queue.clone(),
        size: opts.size as usize,
        credit: opts.credit,
        at_least_once: opts.mode == Mode::AtLeastOnce,
        durable: opts.durable,
        batch_bytes: (opts.batch_kib * 1024) as usize,
        groups: opts.groups,
    });
    let duration = opts.duration.map(Duration::from_secs_f64);
    let target = match duration {
        Some(_) => None,
        None => Some(opts.messages.unwrap_or(DEFAULT_MESSAGES)),
    };
    let run = Arc::new(Run::new(
        target,
        duration,
        Duration::from_secs_f64(opts.warmup.max(0.0)),
        opts.producers,
        settings.at_least_once,
        opts.rate,
    ));
    let time_limit = match (opts.timeout, duration) {
        (Some(t), _) => Duration::from_secs_f64(t),
        (None, Some(d)) => d * 2 + Duration::from_secs(30),
        (None, None) => MESSAGES_TIMEOUT,
    };
    let give_up_at = Instant::now() + time_limit;

    let barrier = Arc::new(Barrier::new(opts.producers + opts.consumers + 1));
    let mut tasks = JoinSet::new();
    // Consumers first, so they are attached when the first message arrives.
    for id in 0..opts.consumers {
        let task = consumer::consume(id, settings.clone(), run.clone(), barrier.clone());
        tasks.spawn(async move { (false, task.await) });
    }
    for id in 0..opts.producers {
        let quota = target.map(|n| {
            let p = opts.producers as u64;
            n / p + u64::from((id as u64) < n % p)
        });
        let task = producer::produce(id, settings.clone(), run.clone(), quota, barrier.clone());
        tasks.spawn(async move { (true, task.await) });
    }
    barrier.wait().await;
    let start = run.start();
    let progress = tokio::spawn(progress(run.clone(), opts.consumers > 0));

    let mut producers = Tally::new();
    let mut consumers = Tally::new();
    let mut timed_out = false;
    loop {
        let limit = if timed_out {
            Instant::now() + Duration::from_secs(3)
        } else {
            give_up_at
        };
        match timeout_at(limit, tasks.join_next()).await {
            Ok(None) => break,
            Ok(Some(Ok((true, t)))) => producers.merge(&t),
            Ok(Some(Ok((false, t)))) => consumers.merge(&t),
            Ok(Some(Err(e))) => run.error(1, format!("a task failed: {e}"), true),
            Err(_) if timed_out => {
                tasks.abort_all();
                break;
            }
            Err(_) => {
                timed_out = true;
                run.error(
                    1,
                    format!("run timed out after {:.0} s", time_limit.as_secs_f64()),
                    true,
                );
            }
        }
    }
    progress.abort();
    print_peer_frames(&producers, &consumers);
    let tally = if opts.consumers > 0 {
        consumers
    } else {
        producers
    };
    report(&opts, &run, &tally, start, timed_out);
    if timed_out {
        ExitCode::from(2)
    } else if run.errors.load(Relaxed) > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// Prints a progress line to stderr once a second, from the second second on.
async fn progress(run: Arc<Run>, by_received: bool) {
    let start = run.start();
    let mut tick = tokio::time::interval_at(start + Duration::from_secs(1), Duration::from_secs(1));
    let mut before = 0;
    loop {
        let now = tick.tick().await;
        let done = if by_received {
            run.received.load(Relaxed)
        } else if run.at_least_once {
            run.accepted.load(Relaxed)
        } else {
            run.sent.load(Relaxed)
        };
        let secs = now.duration_since(start).as_secs();
        if secs >= 2 {
            eprintln!(
                "loadgen: {secs:>4} s  sent {}  accepted {}  received {}  errors {}  {} msg/s",
                run.sent.load(Relaxed),
                run.accepted.load(Relaxed),
                run.received.load(Relaxed),
                run.errors.load(Relaxed),
                done - before
            );
        }
        before = done;
    }
}

/// How chatty the peer was: frames per message in each direction.
fn print_peer_frames(producers: &Tally, consumers: &Tally) {
    let (p, c) = (&producers.peer, &consumers.peer);
    let per = |a: u64, b: u64| if b > 0 { a as f64 / b as f64 } else { 0.0 };
    if p.reads > 0 {
        println!(
            "  to producers: {} reads, {} flows, {} dispositions ({:.1} deliveries each)",
            p.reads,
            p.flows,
            p.dispositions,
            per(p.disposed, p.dispositions)
        );
    }
    if c.reads > 0 {
        println!(
            "  to consumers: {} reads, {} transfers ({:.1} per read), {} flows, {} dispositions",
            c.reads,
            c.transfers,
            per(c.transfers, c.reads),
            c.flows,
            c.dispositions
        );
    }
}

fn report(opts: &Options, run: &Run, tally: &Tally, start: Instant, timed_out: bool) {
    let from = run.measure_from();
    let seconds = tally.last.map_or(0.0, |last| {
        last.saturating_duration_since(from).as_secs_f64()
    });
    let per_s = |x: f64| if seconds > 0.0 { x / seconds } else { 0.0 };
    let msg_per_s = per_s(tally.messages as f64);
    let mb_per_s = per_s(tally.bytes as f64) / 1e6;
    let errors = run.errors.load(Relaxed);
    let mode = match opts.mode {
        Mode::AtMostOnce => "at-most-once",
        Mode::AtLeastOnce => "at-least-once",
    };
    println!(
        "loadgen: {} producer(s), {} consumer(s), {} B bodies, {mode}{}, credit {}, {:.2} s wall",
        opts.producers,
        opts.consumers,
        opts.size,
        if opts.durable { ", durable" } else { "" },
        opts.credit,
        start.elapsed().as_secs_f64()
    );
    println!(
        "  sent {}  accepted {}  received {}  errors {errors}{}",
        run.sent.load(Relaxed),
        run.accepted.load(Relaxed),
        run.received.load(Relaxed),
        if timed_out { "  TIMED OUT" } else { "" }
    );
    println!(
        "  throughput: {msg_per_s:.0} msg/s, {mb_per_s:.1} MB/s ({} messages in {seconds:.3} s)",
        tally.messages
    );
    let h = &tally.latency_ns;
    let latency = if h.is_empty() {
        "null".to_string()
    } else {
        let us = |ns: u64| ns as f64 / 1000.0;
        println!(
            "  latency (us): p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}",
            us(h.value_at_quantile(0.5)),
            us(h.value_at_quantile(0.9)),
            us(h.value_at_quantile(0.99)),
            us(h.value_at_quantile(0.999)),
            us(h.max())
        );
        format!(
            "{{\"p50\":{:.1},\"p90\":{:.1},\"p99\":{:.1},\"p999\":{:.1},\"max\":{:.1}}}",
            us(h.value_at_quantile(0.5)),
            us(h.value_at_quantile(0.9)),
            us(h.value_at_quantile(0.99)),
            us(h.value_at_quantile(0.999)),
            us(h.max())
        )
    };
    for e in run.error_log() {
        println!("  error: {e}");
    }
    println!(
        "{{\"messages\":{},\"seconds\":{seconds:.3},\"msg_per_s\":{msg_per_s:.0},\"mb_per_s\":{mb_per_s:.2},\
         \"latency_us\":{latency},\"errors\":{errors},\"sent\":{},\"accepted\":{},\"received\":{},\
         \"size\":{},\"producers\":{},\"consumers\":{},\"mode\":\"{mode}\",\"durable\":{},\
         \"timed_out\":{timed_out}}}",
        tally.messages,
        run.sent.load(Relaxed),
        run.accepted.load(Relaxed),
        run.received.load(Relaxed),
        opts.size,
        opts.producers,
        opts.consumers,
        opts.durable,
    );
}
