//! `GET /metrics`: Prometheus text exposition, built at scrape time from the broker's own
//! counters (the queues keep plain integers; nothing on the message path touches a metrics
//! library).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use prometheus::core::Collector;
use prometheus::{Encoder, IntCounterVec, IntGaugeVec, Opts, TextEncoder};

use super::{AdminState, ApiError};
use crate::broker::QueueStats;
use crate::store::{Journal, JournalStats, SYNC_BUCKETS_US};

/// A per-queue metric: its name, help, whether it is a counter, and how to read it.
type QueueMetric = (&'static str, &'static str, bool, fn(&QueueStats) -> u64);

/// Per-queue gauges and counters, each with the statistic it reports.
const QUEUE_METRICS: [QueueMetric; 18] = [
    (
        "sluice_queue_messages_ready",
        "Messages ready for delivery.",
        false,
        |s| s.ready as u64,
    ),
    (
        "sluice_queue_messages_unacked",
        "Messages delivered and not yet settled.",
        false,
        |s| s.unacked as u64,
    ),
    (
        "sluice_queue_messages_delayed",
        "Messages scheduled for later delivery.",
        false,
        |s| s.delayed as u64,
    ),
    (
        "sluice_queue_consumers",
        "Attached consumers.",
        false,
        |s| s.consumers as u64,
    ),
    (
        "sluice_queue_groups",
        "Message groups tracked.",
        false,
        |s| s.groups as u64,
    ),
    (
        "sluice_queue_bytes_ready",
        "Encoded bytes of the ready messages.",
        false,
        |s| s.ready_bytes,
    ),
    (
        "sluice_queue_enqueued_total",
        "Messages enqueued.",
        true,
        |s| s.enqueued,
    ),
    (
        "sluice_queue_delivered_total",
        "Deliveries made, redeliveries included.",
        true,
        |s| s.delivered,
    ),
    (
        "sluice_queue_acked_total",
        "Messages consumed.",
        true,
        |s| s.acked,
    ),
    (
        "sluice_queue_redelivered_total",
        "Deliveries returned to the queue.",
        true,
        |s| s.returned,
    ),
    (
        "sluice_queue_rejected_total",
        "Messages rejected by a consumer.",
        true,
        |s| s.rejected,
    ),
    (
        "sluice_queue_expired_total",
        "Messages that expired.",
        true,
        |s| s.expired,
    ),
    (
        "sluice_queue_dead_lettered_total",
        "Messages moved to a dead-letter address.",
        true,
        |s| s.dead_lettered,
    ),
    (
        "sluice_queue_overflowed_total",
        "Messages refused or dropped at the queue's length limit (max_length, max_length_bytes).",
        true,
        |s| s.overflowed,
    ),
    (
        "sluice_queue_timed_out_total",
        "Deliveries taken back when the visibility timeout ran out.",
        true,
        |s| s.timed_out,
    ),
    (
        "sluice_queue_cancelled_total",
        "Delayed messages cancelled before they were due.",
        true,
        |s| s.cancelled,
    ),
    (
        "sluice_queue_rewound_total",
        "Messages made ready again by a rewind.",
        true,
        |s| s.rewound,
    ),
    (
        "sluice_queue_messages_retained",
        "Consumed messages kept for rewind.",
        false,
        |s| s.retained as u64,
    ),
];

/// `GET /metrics`
pub async fn metrics(State(state): State<Arc<AdminState>>) -> Response {
    match render(&state) {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                TextEncoder::new().format_type().to_owned(),
            )],
            text,
        )
            .into_response(),
        Err(e) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode metrics: {e}"),
        )
        .into_response(),
    }
}

enum Family {
    Gauge(IntGaugeVec),
    Counter(IntCounterVec),
}

impl Family {
    fn new(name: &str, help: &str, counter: bool, labels: &[&str]) -> prometheus::Result<Family> {
        let opts = Opts::new(name, help);
        Ok(if counter {
            Family::Counter(IntCounterVec::new(opts, labels)?)
        } else {
            Family::Gauge(IntGaugeVec::new(opts, labels)?)
        })
    }

    fn set(&self, labels: &[&str], value: u64) -> prometheus::Result<()> {
        match self {
            Family::Gauge(g) => g
                .get_metric_with_label_values(labels)?
                .set(i64::try_from(value).unwrap_or(i64::MAX)),
            Family::Counter(c) => c.get_metric_with_label_values(labels)?.inc_by(value),
        }
        Ok(())
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        match self {
            Family::Gauge(g) => g.collect(),
            Family::Counter(c) => c.collect(),
        }
    }
}

fn render(state: &AdminState) -> prometheus::Result<String> {
    let queue_families = QUEUE_METRICS
        .iter()
        .map(|(name, help, counter, _)| Family::new(name, help, *counter, &["queue"]))
        .collect::<prometheus::Result<Vec<_>>>()?;
    for queue in state.router.queues() {
        let s = queue.stats();
        for (family, (.., read)) in queue_families.iter().zip(&QUEUE_METRICS) {
            family.set(&[queue.name()], read(&s))?;
        }
    }
    let connections = state.registry.all();
    let (sessions, links) = connections.iter().fold((0, 0), |(s, l), c| {
        let (cs, cl) = c.counts();
        (s + cs, l + cl)
    });
    let (bytes_in, bytes_out) = state.registry.total_bytes();
    let mut broker: Vec<(&str, &str, bool, u64)> = vec![
        (
            "sluice_connections",
            "Open AMQP connections.",
            false,
            connections.len() as u64,
        ),
        ("sluice_sessions", "Open sessions.", false, sessions as u64),
        ("sluice_links", "Attached links.", false, links as u64),
        (
            "sluice_bytes_received_total",
            "Bytes read from AMQP sockets.",
            true,
            bytes_in,
        ),
        (
            "sluice_bytes_sent_total",
            "Bytes written to AMQP sockets.",
            true,
            bytes_out,
        ),
        (
            "sluice_login_failures_total",
            "Failed logins, over AMQP and the admin API.",
            true,
            state.throttle.failures(),
        ),
        (
            "sluice_logins_throttled_total",
            "Logins refused unchecked: their source or user name had failed too often.",
            true,
            state.throttle.throttled(),
        ),
        (
            "sluice_tls_handshakes_total",
            "TLS handshakes completed, AMQP and admin listeners.",
            true,
            state.tls.iter().map(|t| t.handshakes()).sum(),
        ),
        (
            "sluice_tls_handshake_failures_total",
            "TLS handshakes that failed: untrusted or missing client certificates, plain AMQP \
             on a TLS port, timeouts.",
            true,
            state.tls.iter().map(|t| t.failures()).sum(),
        ),
        (
            "sluice_uptime_seconds",
            "Seconds since the broker started.",
            false,
            state.started.elapsed().as_secs(),
        ),
    ];
    broker.extend(memory_metrics(state));
    if let Some(journal) = &state.journal {
        broker.extend(journal_metrics(journal));
    }
    let mut families = Vec::new();
    for family in &queue_families {
        // With no queues a family has no samples, which the encoder refuses; leave it out.
        families.extend(
            family
                .collect()
                .into_iter()
                .filter(|f| !f.get_metric().is_empty()),
        );
    }
    for (name, help, counter, value) in broker {
        let family = Family::new(name, help, counter, &[])?;
        family.set(&[], value)?;
        families.extend(family.collect());
    }
    let mut text = TextEncoder::new().encode_to_string(&families)?;
    if let Some(journal) = &state.journal {
        fsync_histogram(journal.stats(), &mut text);
    }
    Ok(text)
}

/// The memory account and the producer gate (a watermark that is off reads 0).
fn memory_metrics(state: &AdminState) -> Vec<(&'static str, &'static str, bool, u64)> {
    let m = state.router.memory().status();
    let off_as_zero = |w: u64| if w == u64::MAX { 0 } else { w };
    vec![
        (
            "sluice_memory_used_bytes",
            "Bytes of queued, unsettled and incomplete messages and output buffers.",
            false,
            m.used,
        ),
        (
            "sluice_memory_high_watermark_bytes",
            "Above this, producers get no more link credit (0: off).",
            false,
            off_as_zero(m.high_watermark),
        ),
        (
            "sluice_memory_low_watermark_bytes",
            "Below this, producers get credit again (0: off).",
            false,
            off_as_zero(m.low_watermark),
        ),
        (
            "sluice_memory_alarm",
            "1 while memory is above the high watermark (and not yet below the low one).",
            false,
            u64::from(m.alarm),
        ),
        (
            "sluice_memory_alarms_total",
            "Times memory crossed the high watermark.",
            true,
            m.alarms,
        ),
        (
            "sluice_producers_blocked",
            "1 while producers get no credit (memory alarm or store full).",
            false,
            u64::from(m.producers_blocked),
        ),
    ]
}

fn journal_metrics(journal: &Journal) -> Vec<(&'static str, &'static str, bool, u64)> {
    let s = journal.stats();
    let live = journal.live_counts();
    vec![
        (
            "sluice_journal_batches_total",
            "Batches the journal wrote, each with one fdatasync (group commit).",
            true,
            s.batches.load(Relaxed),
        ),
        (
            "sluice_journal_confirmed_total",
            "Durable messages confirmed on disk; divided by batches, the mean batch size.",
            true,
            s.requests.load(Relaxed),
        ),
        (
            "sluice_journal_records_total",
            "Records appended to the journal.",
            true,
            s.records.load(Relaxed),
        ),
        (
            "sluice_journal_bytes_total",
            "Bytes written to the journal.",
            true,
            s.bytes.load(Relaxed),
        ),
        (
            "sluice_journal_segments",
            "Journal segment files.",
            false,
            live.len() as u64,
        ),
        (
            "sluice_journal_live_records",
            "Journal records still needed (messages not consumed, or kept for rewind).",
            false,
            live.iter().map(|(_, n)| n).sum(),
        ),
        (
            "sluice_journal_segments_deleted_total",
            "Journal segments deleted once nothing in them was live.",
            true,
            s.segments_deleted.load(Relaxed),
        ),
        (
            "sluice_journal_refused_full_total",
            "Durable messages refused for the free-space floor.",
            true,
            s.refused_full.load(Relaxed),
        ),
        (
            "sluice_journal_fenced",
            "1 once a failed write or fsync has fenced the journal: durable messages are refused.",
            false,
            u64::from(s.fenced.load(Relaxed)),
        ),
    ]
}

/// The fsync latency histogram, in the text format (the buckets are counted by the journal
/// itself, so the histogram is written out rather than observed again).
fn fsync_histogram(s: &JournalStats, text: &mut String) {
    use std::fmt::Write;
    let name = "sluice_journal_fsync_seconds";
    let _ = writeln!(
        text,
        "# HELP {name} Latency of the journal's fdatasync calls."
    );
    let _ = writeln!(text, "# TYPE {name} histogram");
    let mut cumulative = 0;
    for (bound, count) in SYNC_BUCKETS_US.iter().zip(&s.sync_us) {
        cumulative += count.load(Relaxed);
        let le = if *bound == u64::MAX {
            "+Inf".to_owned()
        } else {
            (*bound as f64 / 1e6).to_string()
        };
        let _ = writeln!(text, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
    }
    let sum = s.sync_us_sum.load(Relaxed) as f64 / 1e6;
    let _ = writeln!(text, "{name}_sum {sum}");
    let _ = writeln!(text, "{name}_count {cumulative}");
}
