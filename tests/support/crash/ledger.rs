//! The crash test's verdict: what was accepted against what was received.
//!
//! - **Lost**: accepted (its producer got `accepted`) and never delivered.
//! - **Duplicated**: deliveries beyond the first of a message. At-least-once allows them
//!   where a crash explains them — a delivery whose acceptance was not yet journaled comes
//!   again, and a message whose `accepted` never reached its producer is sent again — and
//!   nowhere else: between two crashes, a message is delivered at most as many times as its
//!   producer had sent it by then. The clean restart is not a crash (the consumers detached
//!   before it, so the broker had every acceptance, and a clean stop syncs the journal); a
//!   duplicate across it is reported on its own, as it points at the shutdown path.
//! - **Out of order**: a message seen for the first time with a lower `n` than a message of
//!   the same producer seen before it. Exact because each queue has one consumer at a time
//!   and the journal keeps the order of a link's transfers: after a crash a producer resends
//!   from its first unaccepted message, which may repeat messages but never skips ahead.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering::SeqCst;

use super::clients::{Received, SendRun, Shared};

/// How many instances of each problem a failure message lists.
const SHOWN: usize = 20;

/// What the crash test found.
#[derive(Debug, Default)]
pub struct Verdict {
    /// Distinct messages accepted.
    pub accepted: u64,
    /// (producer, n) accepted and never received.
    pub lost: Vec<(u32, u64)>,
    /// Deliveries beyond the first of their message.
    pub duplicated: u64,
    /// Messages delivered more than once.
    pub duplicated_messages: u64,
    /// Duplicates no restart or resend explains.
    pub duplicated_without_restart: Vec<String>,
    /// Messages accepted before the clean restart and delivered again after it.
    pub duplicated_across_clean_restart: Vec<String>,
    /// First deliveries that came after a higher `n` of their producer.
    pub out_of_order: Vec<String>,
    /// Deliveries of messages no producer sent.
    pub unknown: Vec<String>,
    received: u64,
    sent: u64,
    runs: usize,
    /// Deliveries whose header said an earlier delivery had failed.
    counted_redeliveries: u64,
    reconnects: u64,
}

impl Verdict {
    /// Checks everything the clients recorded.
    pub fn of(shared: &Shared) -> Verdict {
        let received = shared.received.lock().expect("lock");
        let runs = shared.runs.lock().expect("lock");
        let after_kill = shared.after_kill.lock().expect("lock");
        let after_clean = shared.after_clean_stop.lock().expect("lock");
        let per = shared.per_producer;
        let mut verdict = Verdict {
            received: received.len() as u64,
            sent: runs.iter().map(|r| r.end - r.first).sum(),
            runs: runs.len(),
            reconnects: shared.reconnects.load(SeqCst),
            ..Verdict::default()
        };
        let mut times = vec![vec![0u32; per as usize]; shared.acked.len()];
        let mut highest: Vec<Option<u64>> = vec![None; shared.acked.len()];
        for r in received.iter() {
            let Some(count) = times
                .get_mut(r.producer as usize)
                .and_then(|t| t.get_mut(r.n as usize))
            else {
                verdict
                    .unknown
                    .push(format!("producer {} n={}", r.producer, r.n));
                continue;
            };
            let high = &mut highest[r.producer as usize];
            if *count == 0 {
                match *high {
                    Some(h) if r.n < h => verdict.out_of_order.push(format!(
                        "producer {}: n={} first received after n={h}",
                        r.producer, r.n
                    )),
                    _ => *high = Some(r.n),
                }
            }
            *count += 1;
            verdict.counted_redeliveries += u64::from(r.delivery_count > 0);
        }
        for (producer, acked) in shared.acked.iter().enumerate() {
            let acked = acked.load(SeqCst);
            verdict.accepted += acked;
            let never = (0..acked).filter(|&n| times[producer][n as usize] == 0);
            verdict.lost.extend(never.map(|n| (producer as u32, n)));
        }
        for count in times.iter().flatten().filter(|&&c| c > 1) {
            verdict.duplicated += u64::from(count - 1);
            verdict.duplicated_messages += 1;
        }
        let any_restart: Vec<u32> = after_kill
            .iter()
            .chain(after_clean.iter())
            .copied()
            .collect();
        let without_restart = unexplained_duplicates(&received, &times, &runs, &any_restart);
        let without_crash = unexplained_duplicates(&received, &times, &runs, &after_kill);
        let no_restart: HashSet<(u32, u64)> = without_restart.iter().map(|(k, _)| *k).collect();
        verdict.duplicated_across_clean_restart = without_crash
            .into_iter()
            .filter(|(key, _)| !no_restart.contains(key))
            .map(|(_, why)| why)
            .collect();
        verdict.duplicated_without_restart =
            without_restart.into_iter().map(|(_, why)| why).collect();
        verdict
    }

    /// The counts beside lost and duplicated, for the report line.
    pub fn details(&self) -> String {
        format!(
            "received={}, sent={} in {} runs, {} messages duplicated, {} deliveries flagged \
             redelivered, {} reconnects",
            self.received,
            self.sent,
            self.runs,
            self.duplicated_messages,
            self.counted_redeliveries,
            self.reconnects
        )
    }

    /// Each kind of problem found, with up to [`SHOWN`] instances; empty when all is well.
    pub fn problems(&self) -> Vec<String> {
        let lost = ranges(&self.lost);
        let lost_label = format!(
            "runs of consecutive accepted messages lost, {} messages in all",
            self.lost.len()
        );
        [
            (lost_label.as_str(), &lost),
            (
                "duplicates with no restart (nor resend) in between",
                &self.duplicated_without_restart,
            ),
            (
                "messages accepted before the clean restart and delivered again after it",
                &self.duplicated_across_clean_restart,
            ),
            ("messages out of their producer's order", &self.out_of_order),
            ("deliveries of messages never sent", &self.unknown),
        ]
        .into_iter()
        .filter(|(_, list)| !list.is_empty())
        .map(|(what, list)| {
            let shown = list.len().min(SHOWN);
            format!(
                "{} {what} (first {shown}): {}",
                list.len(),
                list[..shown].join(", ")
            )
        })
        .collect()
    }
}

/// `(producer, n)` pairs, sorted, as runs of consecutive `n`: "producer 0 n=146..=310 (165)".
fn ranges(pairs: &[(u32, u64)]) -> Vec<String> {
    let mut runs: Vec<(u32, u64, u64)> = Vec::new();
    for &(producer, n) in pairs {
        match runs.last_mut() {
            Some((p, _, last)) if *p == producer && *last + 1 == n => *last = n,
            _ => runs.push((producer, n, n)),
        }
    }
    runs.into_iter()
        .map(|(p, first, last)| match last - first {
            0 => format!("producer {p} n={first}"),
            d => format!("producer {p} n={first}..={last} ({})", d + 1),
        })
        .collect()
}

/// Duplicates that neither a restart in `boundaries` (incarnations begun by one) nor a resend
/// explains: between two such restarts, more deliveries of a message than copies of it sent
/// so far. Each comes with its (producer, n).
fn unexplained_duplicates(
    received: &[Received],
    times: &[Vec<u32>],
    runs: &[SendRun],
    boundaries: &[u32],
) -> Vec<((u32, u64), String)> {
    // Incarnation i is in stretch k when k of the boundaries came before it.
    let stretch = |incarnation: u32| boundaries.iter().filter(|&&b| b <= incarnation).count();
    let mut per_stretch: HashMap<(u32, u64, usize), u32> = HashMap::new();
    for r in received {
        let count = times
            .get(r.producer as usize)
            .and_then(|t| t.get(r.n as usize));
        if count.is_some_and(|&c| c > 1) {
            *per_stretch
                .entry((r.producer, r.n, stretch(r.incarnation)))
                .or_default() += 1;
        }
    }
    let mut found: Vec<(u32, u64, usize, u32, usize)> = per_stretch
        .into_iter()
        .filter_map(|((producer, n, k), delivered)| {
            let sent = runs
                .iter()
                .filter(|r| r.producer == producer && (r.first..r.end).contains(&n))
                .filter(|r| stretch(r.incarnation) <= k)
                .count();
            (delivered as usize > sent).then_some((producer, n, k, delivered, sent))
        })
        .collect();
    found.sort_unstable();
    found
        .into_iter()
        .map(|(producer, n, k, delivered, sent)| {
            let why = format!(
                "producer {producer} n={n}: delivered {delivered} times between restarts {k} \
                 and {}, sent {sent} times by then",
                k + 1
            );
            ((producer, n), why)
        })
        .collect()
}
