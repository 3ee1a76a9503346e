//! Hash maps keyed by integers the broker controls or bounds: queue sequence numbers,
//! consumer ids, channels and link handles.
//!
//! std's SipHash defends against keys chosen to collide, at a cost paid on every message.
//! These keys are either our own counters or peer numbers bounded by channel-max and
//! handle-max, so a multiplicative hash (Fibonacci hashing) is safe and several times
//! cheaper.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A `HashMap` with [`IntHasher`].
pub type IntMap<K, V> = HashMap<K, V, BuildHasherDefault<IntHasher>>;

/// Creates an empty [`IntMap`].
pub fn new<K, V>() -> IntMap<K, V> {
    HashMap::with_hasher(BuildHasherDefault::default())
}

/// Fibonacci hashing of integer keys: spreads consecutive keys over the high bits, which
/// hashbrown uses for its control bytes.
#[derive(Debug, Default, Clone, Copy)]
pub struct IntHasher(u64);

const PHI: u64 = 0x9e37_79b9_7f4a_7c15;

impl Hasher for IntHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(PHI);
        }
    }

    fn write_u16(&mut self, n: u16) {
        self.write_u64(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(PHI);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_keys_land_in_distinct_buckets_of_a_small_table() {
        let mut seen = std::collections::HashSet::new();
        for k in 0u64..64 {
            let mut h = IntHasher::default();
            h.write_u64(k);
            seen.insert(h.finish() >> 58);
        }
        // 64 keys over 64 top-6-bit buckets: Fibonacci hashing spreads them nearly evenly.
        assert!(seen.len() > 40, "only {} distinct buckets", seen.len());
    }
}
