//! The broker-wide memory account and the producer gate (issue 12 §1).
//!
//! Every message the broker holds is wrapped, once, when it arrives (or is restored): its
//! bytes are counted on arrival and uncounted when the last copy of them is dropped, wherever
//! that happens (consumed, expired, purged, dead-lettered, written out). Incomplete deliveries
//! and connection output buffers are counted through [`Charge`]s. So the account needs no
//! bookkeeping in the many places a message can leave a queue, and costs one atomic add per
//! message on the hot path.
//!
//! Above the high watermark, or while the store is full, producers get no more link credit
//! (the *gate* is shut); it opens again once usage falls below the low watermark and the
//! store has room. Connections wait on [`Memory::subscribe`] to hand out the credit they
//! withheld.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::watch;

/// What a held message costs besides its bytes: its queue entry (128 bytes, see
/// `broker::queue::entry`) and the owner of its tracked bytes.
pub const PER_MESSAGE: u64 = 192;

/// The memory account of one broker.
#[derive(Debug)]
pub struct Memory {
    used: AtomicU64,
    high: AtomicU64,
    low: AtomicU64,
    /// Usage crossed the high watermark and has not yet fallen below the low one.
    alarm: AtomicBool,
    /// The store refuses durable messages for lack of space.
    store_full: AtomicBool,
    /// How many times the alarm went off.
    alarms: AtomicU64,
    /// True while producers may be given credit; every change wakes the connections.
    gate: watch::Sender<bool>,
}

impl Default for Memory {
    fn default() -> Memory {
        Memory {
            used: AtomicU64::new(0),
            high: AtomicU64::new(u64::MAX),
            low: AtomicU64::new(u64::MAX),
            alarm: AtomicBool::new(false),
            store_full: AtomicBool::new(false),
            alarms: AtomicU64::new(0),
            gate: watch::Sender::new(true),
        }
    }
}

/// What the admin API and `/metrics` show of the account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct MemoryStatus {
    /// Bytes accounted now.
    pub used: u64,
    /// The high watermark in bytes.
    pub high_watermark: u64,
    /// The low watermark in bytes.
    pub low_watermark: u64,
    /// Usage is above the high watermark (and not yet below the low one).
    pub alarm: bool,
    /// The store is full.
    pub store_full: bool,
    /// Producers are being denied credit (alarm or store full).
    pub producers_blocked: bool,
    /// How many times the alarm went off since the start.
    pub alarms: u64,
}

impl Memory {
    /// An account with no watermark (never blocks) until [`Memory::set_watermarks`].
    pub fn new() -> Arc<Memory> {
        Arc::new(Memory::default())
    }

    /// Sets the watermarks, in bytes (`low <= high`).
    pub fn set_watermarks(&self, high: u64, low: u64) {
        self.high.store(high, Ordering::Relaxed);
        self.low.store(low.min(high), Ordering::Relaxed);
        let used = self.used();
        if used > high {
            self.raise(used);
        }
    }

    /// Wraps the bytes of a message so that they are counted (with [`PER_MESSAGE`] for what
    /// holds them) until their last copy is gone.
    pub fn track(self: &Arc<Self>, bytes: Bytes) -> Bytes {
        let cost = bytes.len() as u64 + PER_MESSAGE;
        self.add(cost);
        Bytes::from_owner(Tracked {
            bytes,
            cost,
            memory: self.clone(),
        })
    }

    /// Bytes accounted now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Whether producers may be given credit: usage is below the high watermark (or has
    /// fallen below the low one since it crossed it) and the store has room.
    pub fn admits_producers(&self) -> bool {
        if self.alarm.load(Ordering::Relaxed) || self.store_full.load(Ordering::Relaxed) {
            return false;
        }
        let used = self.used();
        if used > self.high.load(Ordering::Relaxed) {
            self.raise(used);
            return false;
        }
        true
    }

    /// The credit to grant a producer whose full share is `link_credit`: all of it below half
    /// the high watermark, then less and less as usage nears it (at least 1), so that what
    /// producers may still send once the gate shuts shrinks with the room left.
    pub fn credit(&self, link_credit: u32) -> u32 {
        let high = self.high.load(Ordering::Relaxed);
        let used = self.used();
        if high == u64::MAX || used <= high / 2 {
            return link_credit;
        }
        let room = high.saturating_sub(used);
        let share = u64::from(link_credit) * room / (high / 2).max(1);
        u32::try_from(share)
            .unwrap_or(link_credit)
            .clamp(1, link_credit)
    }

    /// Records whether the store is full (refusing durable messages for lack of space).
    pub fn set_store_full(&self, full: bool) {
        if self.store_full.swap(full, Ordering::Relaxed) == full {
            return;
        }
        if full {
            tracing::warn!("the store is full: producers get no credit until it has room again");
        } else {
            tracing::info!("the store has room again");
        }
        self.update_gate();
    }

    /// A receiver that changes whenever the gate opens or shuts.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.gate.subscribe()
    }

    /// The account as the admin API shows it.
    pub fn status(&self) -> MemoryStatus {
        let alarm = self.alarm.load(Ordering::Relaxed);
        let store_full = self.store_full.load(Ordering::Relaxed);
        MemoryStatus {
            used: self.used(),
            high_watermark: self.high.load(Ordering::Relaxed),
            low_watermark: self.low.load(Ordering::Relaxed),
            alarm,
            store_full,
            producers_blocked: alarm || store_full,
            alarms: self.alarms.load(Ordering::Relaxed),
        }
    }

    fn add(&self, n: u64) {
        let used = self.used.fetch_add(n, Ordering::Relaxed) + n;
        if used > self.high.load(Ordering::Relaxed) && !self.alarm.load(Ordering::Relaxed) {
            self.raise(used);
        }
    }

    fn sub(&self, n: u64) {
        let used = self.used.fetch_sub(n, Ordering::Relaxed).saturating_sub(n);
        if self.alarm.load(Ordering::Relaxed) && used < self.low.load(Ordering::Relaxed) {
            self.clear(used);
        }
    }

    fn raise(&self, used: u64) {
        if self.alarm.swap(true, Ordering::Relaxed) {
            return;
        }
        self.alarms.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            used,
            high_watermark = self.high.load(Ordering::Relaxed),
            "memory above the high watermark: producers get no more credit until it falls below {} bytes",
            self.low.load(Ordering::Relaxed)
        );
        self.update_gate();
    }

    fn clear(&self, used: u64) {
        if !self.alarm.swap(false, Ordering::Relaxed) {
            return;
        }
        tracing::info!(
            used,
            low_watermark = self.low.load(Ordering::Relaxed),
            "memory below the low watermark: producers get credit again"
        );
        self.update_gate();
    }

    fn update_gate(&self) {
        let open = !self.alarm.load(Ordering::Relaxed) && !self.store_full.load(Ordering::Relaxed);
        self.gate
            .send_if_modified(|g| std::mem::replace(g, open) != open);
    }
}

/// The owner of a tracked message's bytes: uncounts them when the last copy is dropped.
struct Tracked {
    bytes: Bytes,
    cost: u64,
    memory: Arc<Memory>,
}

impl AsRef<[u8]> for Tracked {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.memory.sub(self.cost);
    }
}

/// Bytes held outside messages (an incomplete delivery, an output buffer), counted while the
/// charge lives and as [`Charge::set`] changes them.
#[derive(Debug)]
pub struct Charge {
    memory: Arc<Memory>,
    bytes: u64,
}

impl Charge {
    /// A charge of 0 bytes.
    pub fn new(memory: &Arc<Memory>) -> Charge {
        Charge {
            memory: memory.clone(),
            bytes: 0,
        }
    }

    /// The bytes charged now.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Charges `bytes` instead of what was charged before.
    pub fn set(&mut self, bytes: u64) {
        if bytes > self.bytes {
            self.memory.add(bytes - self.bytes);
        } else if bytes < self.bytes {
            self.memory.sub(self.bytes - bytes);
        }
        self.bytes = bytes;
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.memory.sub(self.bytes);
    }
}

/// The RAM available to this process: the physical memory, or the cgroup's limit when that is
/// smaller. `None` when neither can be read (not Linux).
pub fn available_ram() -> Option<u64> {
    let physical = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| mem_total(&text));
    let cgroup = [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]
    .iter()
    .find_map(|path| std::fs::read_to_string(path).ok())
    .and_then(|text| text.trim().parse::<u64>().ok());
    match (physical, cgroup) {
        (Some(p), Some(c)) => Some(p.min(c)),
        (p, c) => p.or(c),
    }
}

/// `MemTotal` of /proc/meminfo, in bytes.
fn mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line
        .trim_start_matches("MemTotal:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracked_bytes_are_counted_until_the_last_copy_is_dropped() {
        let memory = Memory::new();
        let bytes = memory.track(Bytes::from(vec![0u8; 1000]));
        let copy = bytes.slice(10..20);
        assert_eq!(memory.used(), 1000 + PER_MESSAGE);
        drop(bytes);
        assert_eq!(memory.used(), 1000 + PER_MESSAGE);
        drop(copy);
        assert_eq!(memory.used(), 0);
    }

    #[test]
    fn the_gate_shuts_above_high_and_opens_below_low() {
        let memory = Memory::new();
        memory.set_watermarks(1000, 500);
        let mut gate = memory.subscribe();
        let a = memory.track(Bytes::from(vec![0u8; 800]));
        assert!(memory.admits_producers());
        let b = memory.track(Bytes::from(vec![0u8; 300]));
        assert!(!memory.admits_producers());
        assert!(gate.has_changed().unwrap_or(false));
        assert!(!*gate.borrow_and_update());
        drop(b); // 800: above low, the alarm holds
        assert!(!memory.admits_producers());
        let mut charge = Charge::new(&memory);
        charge.set(100);
        drop(a); // 100
        assert!(memory.admits_producers());
        assert!(*gate.borrow_and_update());
        memory.set_store_full(true);
        assert!(!memory.admits_producers());
        memory.set_store_full(false);
        assert!(memory.admits_producers());
        drop(charge);
        assert_eq!(memory.status().used, 0);
        assert_eq!(memory.status().alarms, 1);
    }

    #[test]
    fn credit_shrinks_as_usage_nears_the_watermark() {
        let memory = Memory::new();
        assert_eq!(memory.credit(1000), 1000);
        memory.set_watermarks(1000, 900);
        let mut charge = Charge::new(&memory);
        charge.set(400);
        assert_eq!(memory.credit(1000), 1000);
        charge.set(750);
        assert_eq!(memory.credit(1000), 500);
        charge.set(999);
        assert_eq!(memory.credit(1000), 2);
        charge.set(1000);
        assert_eq!(memory.credit(1000), 1);
    }

    #[test]
    fn mem_total_reads_meminfo() {
        let text = "MemTotal:       24584756 kB\nMemFree:          123 kB\n";
        assert_eq!(mem_total(text), Some(24_584_756 * 1024));
        assert_eq!(mem_total("nonsense"), None);
    }
}
