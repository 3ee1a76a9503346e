//! The group table's invariants under random attach/detach/credit/settle/reset sequences.

use std::collections::{HashMap, HashSet};

use proptest::prelude::*;

use super::{Got, Rig};
use crate::broker::{ConsumerId, Outcome};
use crate::config::{GroupRelease, QueueSettings};

/// One step of a random workload against a grouped queue.
#[derive(Debug, Clone)]
enum Op {
    Send(Option<u8>),
    Attach,
    Detach(usize),
    Credit(usize, u8),
    Settle(usize, usize, u8),
    Reset,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => proptest::option::weighted(0.8, 0u8..5).prop_map(Op::Send),
        1 => Just(Op::Attach),
        1 => any::<usize>().prop_map(Op::Detach),
        3 => (any::<usize>(), 1u8..4).prop_map(|(c, n)| Op::Credit(c, n)),
        4 => (any::<usize>(), any::<usize>(), 0u8..4).prop_map(|(c, d, o)| Op::Settle(c, d, o)),
        1 => Just(Op::Reset),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn groups_never_have_two_owners_and_every_message_is_consumed_once(
        ops in proptest::collection::vec(op(), 1..120),
        on_close in any::<bool>(),
    ) {
        let mut rig = Rig::new(QueueSettings {
            group_release: if on_close { GroupRelease::OnClose } else { GroupRelease::OnAck },
            ..QueueSettings::default()
        });
        let mut next_id: ConsumerId = 1;
        let mut live: Vec<ConsumerId> = Vec::new();
        let mut unsettled: HashMap<ConsumerId, Vec<Got>> = HashMap::new();
        let mut consumed: HashSet<u64> = HashSet::new();
        let mut group_of: HashMap<u64, Option<u8>> = HashMap::new();
        let mut resets = false;
        for op in ops {
            match op {
                Op::Send(g) => {
                    let name = format!("m{}", rig.names.len());
                    group_of.insert(rig.names.len() as u64, g);
                    rig.send(&name, g.map(|g| format!("g{g}")).as_deref());
                }
                Op::Attach => {
                    rig.attach(next_id);
                    live.push(next_id);
                    next_id += 1;
                }
                Op::Detach(i) if !live.is_empty() => {
                    let c = live.remove(i % live.len());
                    rig.detach(c);
                    unsettled.remove(&c);
                }
                Op::Credit(i, n) if !live.is_empty() => {
                    let c = live[i % live.len()];
                    rig.queue.flow(c, rig.received[&c].wrapping_add(u32::from(n)), false);
                }
                Op::Settle(i, d, o) if !live.is_empty() => {
                    let c = live[i % live.len()];
                    let held = unsettled.entry(c).or_default();
                    if !held.is_empty() {
                        let got = held.remove(d % held.len());
                        let outcome = match o {
                            0 | 1 => Outcome::Accepted,
                            2 => Outcome::Released,
                            _ => Outcome::Modified { delivery_failed: true, undeliverable_here: false, annotations: None },
                        };
                        if outcome == Outcome::Accepted {
                            prop_assert!(consumed.insert(got.seq), "{} consumed twice", got.seq);
                        }
                        rig.settle(c, &[got], outcome);
                    }
                }
                Op::Reset => {
                    resets = true;
                    rig.queue.reset_groups();
                }
                _ => {}
            }
            for &c in &live {
                let got = rig.take(c);
                unsettled.entry(c).or_default().extend(got);
            }
            // A message is held by at most one consumer.
            let mut held = HashSet::new();
            for got in unsettled.values().flatten() {
                prop_assert!(held.insert(got.seq), "{} delivered to two consumers", got.seq);
                prop_assert!(!consumed.contains(&got.seq));
            }
            // Without a reset, a group's unsettled messages are all with one consumer, and
            // that consumer is the owner the table reports.
            if !resets {
                let owners = rig.owners();
                let mut holder: HashMap<u8, ConsumerId> = HashMap::new();
                for (&c, gots) in &unsettled {
                    for got in gots {
                        if let Some(g) = group_of[&got.seq] {
                            let h = *holder.entry(g).or_insert(c);
                            prop_assert_eq!(h, c, "group {} held by two consumers", g);
                            prop_assert_eq!(owners.get(&format!("g{g}")).copied().flatten(), Some(c));
                        }
                    }
                }
            }
        }
        // Drain: one fresh consumer takes and accepts everything left.
        for c in live.drain(..) {
            rig.detach(c);
        }
        rig.attach(next_id);
        let rest = rig.fetch(next_id, 10_000);
        for got in &rest {
            prop_assert!(consumed.insert(got.seq), "{} consumed twice", got.seq);
        }
        rig.settle(next_id, &rest, Outcome::Accepted);
        rig.detach(next_id);
        prop_assert_eq!(consumed.len(), rig.names.len() - 1, "every message consumed once");
        prop_assert_eq!(rig.queue.stats().groups, 0, "nothing left tracked");
    }
}
