//! Where a key lives: key groups, Flink's formulas, and a stable hash.
//!
//! A keyed stream is split into `max_parallelism` key groups. A key's group depends only on the
//! key, and a group's owner only on the group and the parallelism, so every process agrees on
//! where a key lives and state can later be split and merged by whole key groups on rescale.
//!
//! - `key_group = flink_murmur(hash_code(key)) % max_parallelism`
//! - `subtask = key_group * parallelism / max_parallelism`
//!
//! `hash_code` is [`StableHasher`] folded to 32 bits. It reads the key's `Hash` input by value
//! (integers are fed as little-endian, lengths as `u64`), so it does not depend on the process,
//! a random seed or the platform's word size.

use std::hash::{Hash, Hasher};
use std::ops::RangeInclusive;

/// The upper limit of max parallelism, as in Flink (`Short.MAX_VALUE + 1`).
pub const UPPER_BOUND_MAX_PARALLELISM: usize = 1 << 15;
/// The lowest default max parallelism Flink picks.
pub const DEFAULT_LOWER_BOUND_MAX_PARALLELISM: usize = 1 << 7;

/// Flink's default max parallelism for an operator of parallelism `p`:
/// `min(max(roundUpToPowerOfTwo(p + p/2), 128), 32768)`.
pub fn default_max_parallelism(parallelism: usize) -> usize {
    let p = parallelism + parallelism / 2;
    p.next_power_of_two().clamp(DEFAULT_LOWER_BOUND_MAX_PARALLELISM, UPPER_BOUND_MAX_PARALLELISM)
}

/// The 32-bit stable hash code of a key (the role of Java's `hashCode`).
#[inline]
pub fn hash_code<K: Hash + ?Sized>(key: &K) -> i32 {
    let mut h = StableHasher::new();
    key.hash(&mut h);
    let v = h.finish();
    (v ^ (v >> 32)) as i32
}

/// Flink's `MathUtils.murmurHash(int)`: a murmur3 round plus fmix32, made non-negative.
#[inline]
pub fn flink_murmur_hash(code: i32) -> i32 {
    let mut c = code as u32;
    c = c.wrapping_mul(0xcc9e_2d51);
    c = c.rotate_left(15);
    c = c.wrapping_mul(0x1b87_3593);
    c = c.rotate_left(13);
    c = c.wrapping_mul(5).wrapping_add(0xe654_6b64);
    c ^= 4;
    c ^= c >> 16;
    c = c.wrapping_mul(0x85eb_ca6b);
    c ^= c >> 13;
    c = c.wrapping_mul(0xc2b2_ae35);
    c ^= c >> 16;
    let c = c as i32;
    if c >= 0 {
        c
    } else if c != i32::MIN {
        -c
    } else {
        0
    }
}

/// The key group of a key hash code (`KeyGroupRangeAssignment.computeKeyGroupForKeyHash`).
#[inline]
pub fn key_group_for_hash_code(code: i32, max_parallelism: usize) -> usize {
    flink_murmur_hash(code) as usize % max_parallelism
}

/// The key group of a key.
#[inline]
pub fn assign_to_key_group<K: Hash + ?Sized>(key: &K, max_parallelism: usize) -> usize {
    key_group_for_hash_code(hash_code(key), max_parallelism)
}

/// The subtask that owns a key group (`computeOperatorIndexForKeyGroup`).
#[inline]
pub fn operator_index_for_key_group(max_parallelism: usize, parallelism: usize, key_group: usize) -> usize {
    key_group * parallelism / max_parallelism
}

/// The subtask that owns a key.
#[inline]
pub fn assign_key_to_operator<K: Hash + ?Sized>(
    key: &K,
    max_parallelism: usize,
    parallelism: usize,
) -> usize {
    operator_index_for_key_group(max_parallelism, parallelism, assign_to_key_group(key, max_parallelism))
}

/// The key groups owned by subtask `index` of `parallelism` (inclusive range).
pub fn key_group_range_for_operator(
    max_parallelism: usize,
    parallelism: usize,
    index: usize,
) -> RangeInclusive<usize> {
    let start = (index * max_parallelism).div_ceil(parallelism);
    let end = ((index + 1) * max_parallelism - 1) / parallelism;
    start..=end
}

/// A deterministic, seedless 64-bit hasher for routing keys.
///
/// Word-at-a-time multiply-rotate mixing with a murmur3 64-bit finalizer. It is fast on short
/// keys (the common case for words and ids) and identical in every process and on every
/// platform, which std's `DefaultHasher` does not promise.
#[derive(Debug, Clone)]
pub struct StableHasher {
    state: u64,
}

const SEED: u64 = 0x2545_f491_4f6c_dd1d;
const MUL: u64 = 0x9e37_79b9_7f4a_7c15;

impl StableHasher {
    pub const fn new() -> Self {
        StableHasher { state: SEED }
    }

    #[inline]
    fn mix(&mut self, word: u64) {
        self.state = (self.state.rotate_left(23) ^ word).wrapping_mul(MUL);
    }
}

impl Default for StableHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl Hasher for StableHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let len = bytes.len();
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.mix(u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]));
        }
        let rest = chunks.remainder();
        if rest.is_empty() {
            return;
        }
        // The tail without copying it to a buffer: overlapping loads of what is there.
        let tail = if len >= 8 {
            let c = &bytes[len - 8..];
            u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])
        } else if rest.len() >= 4 {
            let lo = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as u64;
            let r = &rest[rest.len() - 4..];
            let hi = u32::from_le_bytes([r[0], r[1], r[2], r[3]]) as u64;
            lo | (hi << 32)
        } else {
            rest[0] as u64 | ((rest[rest.len() / 2] as u64) << 8) | ((rest[rest.len() - 1] as u64) << 16)
        };
        // The length tag keeps inputs whose loads overlap differently apart.
        self.mix(tail ^ ((rest.len() as u64) << 59));
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.mix(i as u64 | 0x100);
    }
    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.mix(i as u64 | 0x2_0000);
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.mix(i as u64 | 0x4_0000_0000);
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.mix(i);
    }
    #[inline]
    fn write_u128(&mut self, i: u128) {
        self.mix(i as u64);
        self.mix((i >> 64) as u64);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.mix(i as u64);
    }
    #[inline]
    fn write_i8(&mut self, i: i8) {
        self.write_u8(i as u8)
    }
    #[inline]
    fn write_i16(&mut self, i: i16) {
        self.write_u16(i as u16)
    }
    #[inline]
    fn write_i32(&mut self, i: i32) {
        self.write_u32(i as u32)
    }
    #[inline]
    fn write_i64(&mut self, i: i64) {
        self.write_u64(i as u64)
    }
    #[inline]
    fn write_isize(&mut self, i: isize) {
        self.write_u64(i as u64)
    }
    #[inline]
    fn finish(&self) -> u64 {
        // murmur3 fmix64
        let mut k = self.state;
        k ^= k >> 33;
        k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
        k ^= k >> 33;
        k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        k ^= k >> 33;
        k
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_max_parallelism_follows_flink() {
        assert_eq!(default_max_parallelism(1), 128);
        assert_eq!(default_max_parallelism(85), 128);
        assert_eq!(default_max_parallelism(86), 256);
        assert_eq!(default_max_parallelism(200), 512);
        assert_eq!(default_max_parallelism(100_000), UPPER_BOUND_MAX_PARALLELISM);
    }

    #[test]
    fn murmur_matches_flink_reference_values() {
        // Computed by a Java transcription of Flink's MathUtils.murmurHash (Java int arithmetic).
        assert_eq!(flink_murmur_hash(0), 593_689_054);
        assert_eq!(flink_murmur_hash(1), 68_075_478);
        assert_eq!(flink_murmur_hash(42), 1_134_849_565);
        assert_eq!(flink_murmur_hash(-1), 1_982_413_648);
        assert_eq!(flink_murmur_hash(i32::MIN), 1_718_298_732);
        // "hello".hashCode() == 99162322 lands in key group 35 of 128 in Flink.
        assert_eq!(key_group_for_hash_code(99_162_322, 128), 35);
    }

    #[test]
    fn key_group_ranges_partition_all_groups() {
        for p in [1usize, 2, 3, 7, 128] {
            let mut next = 0;
            for i in 0..p {
                let r = key_group_range_for_operator(128, p, i);
                assert_eq!(*r.start(), next, "p={p} i={i}");
                for kg in r.clone() {
                    assert_eq!(operator_index_for_key_group(128, p, kg), i);
                }
                next = r.end() + 1;
            }
            assert_eq!(next, 128);
        }
    }

    #[test]
    fn every_byte_of_a_key_changes_its_hash() {
        for len in 1..40usize {
            let base: Vec<u8> = (0..len as u8).map(|b| b.wrapping_mul(37).wrapping_add(11)).collect();
            let h0 = hash_code(&base[..]);
            for pos in 0..len {
                let mut changed = base.clone();
                changed[pos] ^= 0x20;
                assert_ne!(hash_code(&changed[..]), h0, "len {len}: byte {pos} ignored");
            }
            assert_ne!(hash_code(&base[..len - 1]), h0, "len {len}: length ignored");
        }
    }

    #[test]
    fn stable_hash_is_seedless_and_spreads_keys() {
        assert_eq!(hash_code("hello"), hash_code(&"hello".to_string()));
        assert_ne!(hash_code("a"), hash_code("a\0"));
        let mut counts = [0usize; 4];
        for i in 0..40_000u64 {
            counts[assign_key_to_operator(&format!("word{i}"), 128, 4)] += 1;
        }
        for c in counts {
            assert!((8_000..12_000).contains(&c), "skewed: {counts:?}");
        }
    }
}
