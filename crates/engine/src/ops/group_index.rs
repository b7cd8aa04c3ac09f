//! The in-memory index of an aggregate's groups: from a key's hash to the
//! group's slot, by open addressing with linear probing.
//!
//! Hand-written (not a `hashbrown` table) for one reason: a replay looks
//! groups up at random, every lookup misses the cache, and the fold can
//! only hide that by fetching a batch's lookups ahead of time, which needs
//! the address a hash will probe ([`GroupIndex::prefetch`]) and a guess at
//! the slot it finds without comparing keys ([`GroupIndex::candidate`]).
//!
//! An entry is one `u64`: the hash's top 32 bits (its tag) above the slot
//! number. The home of an entry is its tag's top bits (a power-of-two
//! table), so growing rehashes from the tags alone, and the entries sit in
//! tag order. The hash's low half is left to pick a group's shard.

/// No entry.
const EMPTY: u64 = u64::MAX;

/// Entries at most this many quarters of the table (linear probing slows
/// sharply past ~80%).
const MAX_LOAD_QUARTERS: usize = 3;

const MIN_CAPACITY: usize = 16;

#[derive(Debug, Default)]
pub(crate) struct GroupIndex {
    entries: Vec<u64>,
    len: usize,
    /// log2 of the capacity (when there are entries).
    bits: u32,
}

fn tag(hash: u64) -> u32 {
    (hash >> 32) as u32
}

fn entry(tag: u32, slot: u32) -> u64 {
    (u64::from(tag) << 32) | u64::from(slot)
}

impl GroupIndex {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Heap bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.entries.capacity() * 8
    }

    fn mask(&self) -> usize {
        self.entries.len() - 1
    }

    fn home(&self, tag: u32) -> usize {
        // The tag's top `bits` bits (shifting a u64 so that 0 bits works).
        ((u64::from(tag) << self.bits) >> 32) as usize
    }

    /// The slot of the entry with `hash` for which `eq` holds.
    pub(crate) fn find(&self, hash: u64, mut eq: impl FnMut(u32) -> bool) -> Option<u32> {
        if self.entries.is_empty() {
            return None;
        }
        let t = tag(hash);
        let mask = self.mask();
        let mut i = self.home(t);
        loop {
            let e = self.entries[i];
            if e == EMPTY {
                return None;
            }
            if (e >> 32) as u32 == t && eq(e as u32) {
                return Some(e as u32);
            }
            i = (i + 1) & mask;
        }
    }

    /// Starts fetching the entries a lookup of `hash` probes first.
    pub(crate) fn prefetch(&self, hash: u64) {
        if let Some(e) = self.entries.get(self.home(tag(hash))) {
            crate::memory::prefetch(e);
        }
    }

    /// The first slot whose tag is `hash`'s, without comparing keys: the
    /// slot a lookup of `hash` most likely finds (a hint for prefetching).
    pub(crate) fn candidate(&self, hash: u64) -> Option<u32> {
        self.find(hash, |_| true)
    }

    /// Adds `slot` under `hash` (no entry for its key may exist).
    pub(crate) fn insert(&mut self, hash: u64, slot: u32) {
        debug_assert!(slot != u32::MAX, "a slot number, not the empty entry");
        if (self.len + 1) * 4 > self.entries.len() * MAX_LOAD_QUARTERS {
            self.resize((self.len + 1).max(MIN_CAPACITY / 2) * 2);
        }
        self.place(entry(tag(hash), slot));
        self.len += 1;
    }

    fn place(&mut self, e: u64) {
        let mask = self.mask();
        let mut i = self.home((e >> 32) as u32);
        while self.entries[i] != EMPTY {
            i = (i + 1) & mask;
        }
        self.entries[i] = e;
    }

    /// Removes the entry of `slot` under `hash`, if there is one.
    pub(crate) fn remove(&mut self, hash: u64, slot: u32) {
        if self.entries.is_empty() {
            return;
        }
        let wanted = entry(tag(hash), slot);
        let mask = self.mask();
        let mut hole = self.home(tag(hash));
        loop {
            match self.entries[hole] {
                EMPTY => return,
                e if e == wanted => break,
                _ => hole = (hole + 1) & mask,
            }
        }
        // Backward shift: entries after the hole that may live in it move
        // up, so that no probe meets an empty entry before its own.
        let mut i = hole;
        loop {
            i = (i + 1) & mask;
            let e = self.entries[i];
            if e == EMPTY {
                break;
            }
            let home = self.home((e >> 32) as u32);
            // `e` may move to the hole unless its home lies cyclically in
            // (hole, i].
            let stays = if hole <= i {
                hole < home && home <= i
            } else {
                hole < home || home <= i
            };
            if !stays {
                self.entries[hole] = e;
                hole = i;
            }
        }
        self.entries[hole] = EMPTY;
        self.len -= 1;
    }

    /// Room for at least `capacity` entries within the load limit, every
    /// entry kept.
    fn resize(&mut self, capacity: usize) {
        let size = (capacity * 4)
            .div_ceil(MAX_LOAD_QUARTERS)
            .next_power_of_two()
            .max(MIN_CAPACITY);
        let old = std::mem::replace(&mut self.entries, vec![EMPTY; size]);
        self.bits = size.trailing_zeros();
        for e in old {
            if e != EMPTY {
                self.place(e);
            }
        }
    }

    /// Forgets every entry, keeping the memory.
    pub(crate) fn clear(&mut self) {
        self.entries.fill(EMPTY);
        self.len = 0;
    }

    /// Gives back what the entries do not need.
    pub(crate) fn shrink_to_fit(&mut self) {
        if self.len == 0 {
            *self = GroupIndex::default();
        } else {
            self.resize(self.len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Random inserts, lookups and removals against a list of the live
    /// entries, with hashes drawn from a few values so that tags and homes
    /// collide.
    #[test]
    fn matches_a_map_under_random_operations() {
        let mut rng = crate::test_rng::seeded();
        let mut next = move || rng(u64::MAX);
        // The live (slot, hash) pairs; a slot's entry is found by its
        // slot number.
        let mut model: Vec<(u32, u64)> = Vec::new();
        let mut index = GroupIndex::default();
        let mut next_slot = 0u32;
        for step in 0..100_000 {
            let r = next() % 100;
            if r < 55 || model.is_empty() {
                // Hashes from a small set of tags, in both halves.
                let h = (next() % 64) << 58 | (next() % 7) << 32 | (next() & 0xffff_ffff);
                index.insert(h, next_slot);
                model.push((next_slot, h));
                next_slot += 1;
            } else if r < 85 {
                let (slot, h) = model.swap_remove((next() as usize) % model.len());
                index.remove(h, slot);
                assert_eq!(index.find(h, |s| s == slot), None, "step {step}: removed");
            } else {
                let (slot, h) = model[(next() as usize) % model.len()];
                assert_eq!(index.find(h, |s| s == slot), Some(slot), "step {step}");
            }
            assert_eq!(index.len(), model.len());
            if step % 10_000 == 0 {
                for &(slot, h) in &model {
                    assert_eq!(index.find(h, |s| s == slot), Some(slot), "step {step}");
                }
                if step % 20_000 == 0 {
                    index.shrink_to_fit();
                }
            }
        }
        for &(slot, h) in &model {
            assert_eq!(index.find(h, |s| s == slot), Some(slot));
            assert!(index.candidate(h).is_some());
        }
        index.clear();
        assert!(index.is_empty());
        assert!(
            model
                .iter()
                .all(|&(s, h)| index.find(h, |x| x == s).is_none())
        );
    }
}
