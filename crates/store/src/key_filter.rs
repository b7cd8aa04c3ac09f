//! A Bloom filter over the keys of one block of changes, so a point
//! lookup AS OF a past time opens only the blocks that may hold its key.
//!
//! ```text
//! filter  u8 hashes (k), then the bit array (its length in bytes is the
//!         rest of the filter)
//! ```
//! Bit positions come from one stable 64-bit hash of the key (the format is
//! on disk: the hash must never change), split in two for double hashing.
//! About 10 bits per key with k = 7: about 1% false positives.

const BITS_PER_KEY: usize = 10;
const HASHES: u8 = 7;

/// A stable 64-bit hash (FNV-1a, then a final mix).
pub fn key_hash(key: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // murmur3's finalizer spreads FNV's weak low bits.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The bits of a key: `(h1 + i * h2) % bits` for `i` in `0..k`, with
/// `h1` and `h2` the hash's halves (`h2` odd). Computed by adding
/// `h2 % bits` each step: two divisions a key, not `k` (a replay builds
/// a filter entry for every change it writes).
fn positions(hash: u64, k: u8, bits: u64) -> impl Iterator<Item = u64> {
    let h1 = hash & 0xFFFF_FFFF;
    let h2 = (hash >> 32) | 1;
    let step = h2 % bits;
    let mut at = h1 % bits;
    (0..k).map(move |_| {
        let p = at;
        at += step;
        if at >= bits {
            at -= bits;
        }
        p
    })
}

/// The filter of a block whose keys hash to `hashes`.
pub fn build(hashes: &[u64]) -> Vec<u8> {
    let bytes = (hashes.len() * BITS_PER_KEY).div_ceil(8).max(8);
    let mut out = vec![0u8; 1 + bytes];
    out[0] = HASHES;
    let bits = (bytes * 8) as u64;
    for &h in hashes {
        for p in positions(h, HASHES, bits) {
            out[1 + (p / 8) as usize] |= 1 << (p % 8);
        }
    }
    out
}

/// Whether the block may hold a key with this hash (`false`: it does
/// not). A filter that does not parse says "may", never "no".
pub fn may_contain(filter: &[u8], hash: u64) -> bool {
    let Some((&k, bits)) = filter.split_first() else {
        return true;
    };
    if bits.is_empty() || k == 0 {
        return true;
    }
    let n = (bits.len() * 8) as u64;
    positions(hash, k, n).all(|p| bits[(p / 8) as usize] & (1 << (p % 8)) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_the_double_hashing_formula() {
        // The bits are on disk: they must stay `(h1 + i * h2) % bits`.
        let mut h: u64 = 0x9e37_79b9_7f4a_7c15;
        for bits in [64u64, 72, 1000, 80_008, 1 << 20] {
            for _ in 0..1000 {
                h ^= h << 13;
                h ^= h >> 7;
                h ^= h << 17;
                let (h1, h2) = (h & 0xFFFF_FFFF, (h >> 32) | 1);
                let want: Vec<u64> = (0..7u64).map(|i| (h1 + i * h2) % bits).collect();
                assert_eq!(positions(h, 7, bits).collect::<Vec<_>>(), want);
            }
        }
    }

    #[test]
    fn no_false_negatives_and_few_false_positives() {
        let keys: Vec<Vec<u8>> = (0..6000)
            .map(|i| format!("acc-{i:05}").into_bytes())
            .collect();
        let hashes: Vec<u64> = keys.iter().map(|k| key_hash(k)).collect();
        let filter = build(&hashes);
        assert!(hashes.iter().all(|&h| may_contain(&filter, h)));
        let absent = (6000..106_000)
            .filter(|i| may_contain(&filter, key_hash(format!("acc-{i:05}").as_bytes())))
            .count();
        // About 1% expected; 3% would mean the filter is broken.
        assert!(absent < 3000, "{absent} false positives in 100,000");
        assert!(may_contain(&[], 1) && may_contain(&[7], 1));
    }

    #[test]
    fn the_hash_is_stable() {
        // On disk: a change here makes stored filters lie. (Values from
        // an independent implementation of the same steps.)
        assert_eq!(key_hash(b""), 0xefd0_1f60_ba99_2926);
        assert_eq!(key_hash(b"a"), 0x82a2_a958_a9be_ce5b);
        assert_eq!(key_hash(b"acc-00042"), 0xd13e_e4cd_2d33_b3c1);
    }
}
