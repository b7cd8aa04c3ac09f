//! A batch's group keys, encoded and hashed once before any group is
//! looked up (so that lookups can be started ahead), and the shards the
//! hash splits an aggregate's groups into.

use crate::value::{encode_cell, put_text};
use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use std::hash::BuildHasher;

/// One of `of` shards of an aggregate's groups: a group belongs to the
/// shard its key's hash picks (the same for the whole process), so every
/// copy of the aggregate agrees.
#[derive(Clone, Copy, Debug)]
pub struct Shard {
    pub index: usize,
    pub of: usize,
}

impl Shard {
    /// Whether the group whose key (its encoding) hashes to `hash` (by
    /// [`key_hash`]) belongs to this shard. From the hash's low half: the
    /// in-memory index takes its tags from the top bits.
    pub fn owns(&self, hash: u64) -> bool {
        ((hash as u32 as u64 * self.of as u64) >> 32) as usize == self.index
    }
}

/// The hash of a group key's encoding: it picks the group's shard and
/// finds the group in memory, so a key is hashed once. Fixed for the
/// process (every copy of an aggregate agrees on a group's shard; shards
/// are not stored), and seeded at random per process, so that keys
/// chosen to collide cannot be prepared in advance.
pub(super) fn key_hash(key: &[u8]) -> u64 {
    KEY_HASHER.hash_one(key)
}

static KEY_HASHER: std::sync::LazyLock<foldhash::fast::FixedState> =
    std::sync::LazyLock::new(|| {
        foldhash::fast::FixedState::with_seed(
            foldhash::fast::RandomState::default().hash_one(0x6b61_7070_615f_7368_u64),
        )
    });

/// The rows one shard folds ([`Rows::get`]): all of a [`BatchKeys`], or
/// those `picked` (places in it).
pub(super) struct Rows<'a> {
    pub(super) keys: &'a BatchKeys,
    pub(super) picked: Option<&'a [u32]>,
}

impl Rows<'_> {
    pub(super) fn len(&self) -> usize {
        self.picked.map_or(self.keys.hashes.len(), <[u32]>::len)
    }

    #[inline]
    fn at(&self, j: usize) -> usize {
        self.picked.map_or(j, |p| p[j] as usize)
    }

    /// The hash of row `j`, if there is one (for lookups started ahead).
    #[inline]
    pub(super) fn hash_of(&self, j: usize) -> Option<u64> {
        (j < self.len()).then(|| self.keys.hashes[self.at(j)])
    }

    /// Row `j`'s place in the batch, its hash, its key, and where its
    /// `width` key cells end in the key.
    #[inline]
    pub(super) fn get(&self, j: usize, width: usize) -> (usize, u64, &[u8], &[usize]) {
        let k = &self.keys;
        let a = self.at(j);
        (
            k.rows[a] as usize,
            k.hashes[a],
            &k.bytes[k.starts[a]..k.starts[a + 1]],
            &k.cells[a * width..(a + 1) * width],
        )
    }
}

/// A batch's rows that one shard folds, with their group keys encoded
/// and hashed in one pass before any group is looked up, so that lookups
/// can be started ahead. Kept between batches for its buffers.
#[derive(Default)]
pub(crate) struct BatchKeys {
    pub(super) rows: Vec<u32>,
    pub(super) hashes: Vec<u64>,
    /// Row `j`'s key is `bytes[starts[j]..starts[j + 1]]`.
    pub(super) bytes: Vec<u8>,
    pub(super) starts: Vec<usize>,
    /// Where each of a row's key cells ends in its key, one per group
    /// column.
    pub(super) cells: Vec<usize>,
}

impl BatchKeys {
    /// The rows of `shard` (all with `None`) among `n`, keyed by `group_cols`.
    pub(crate) fn fill(&mut self, group_cols: &[ArrayRef], n: usize, shard: Option<Shard>) {
        self.rows.clear();
        self.hashes.clear();
        self.bytes.clear();
        self.starts.clear();
        self.cells.clear();
        self.starts.push(0);
        if shard.is_none()
            && let [column] = group_cols
            && let Some(text) = column.as_string_opt::<i32>()
        {
            // One text column, the usual GROUP BY: encoded as `encode_cell`
            // does, without its dispatch on the type for every row. The
            // buffers are sized exactly (a tag and a length a key, and the
            // text): grown by doubling, they held up to twice it.
            let offsets = text.value_offsets();
            let text_bytes = offsets.get(n).map_or(0, |end| (end - offsets[0]) as usize);
            self.bytes.reserve_exact(5 * n + text_bytes);
            self.rows.reserve_exact(n);
            self.hashes.reserve_exact(n);
            self.starts.reserve_exact(n);
            self.cells.reserve_exact(n);
            for i in 0..n {
                let start = self.bytes.len();
                if text.is_null(i) {
                    self.bytes.push(0);
                } else {
                    put_text(&mut self.bytes, text.value(i));
                }
                self.cells.push(self.bytes.len() - start);
                self.rows.push(i as u32);
                self.hashes.push(key_hash(&self.bytes[start..]));
                self.starts.push(self.bytes.len());
            }
            return;
        }
        for i in 0..n {
            let start = self.bytes.len();
            for c in group_cols {
                encode_cell(&mut self.bytes, c, i);
                self.cells.push(self.bytes.len() - start);
            }
            let hash = key_hash(&self.bytes[start..]);
            if shard.is_some_and(|s| !s.owns(hash)) {
                self.bytes.truncate(start);
                self.cells.truncate(self.cells.len() - group_cols.len());
                continue;
            }
            self.rows.push(i as u32);
            self.hashes.push(hash);
            self.starts.push(self.bytes.len());
        }
    }

    /// Picks the rows of `shard` among `all` (every row of a batch,
    /// encoded and hashed once by [`BatchKeys::fill`] for all the
    /// shards): their places in `all`, in `self.rows`.
    pub(super) fn pick(&mut self, all: &BatchKeys, shard: Shard) {
        self.rows.clear();
        self.rows
            .extend((0..all.hashes.len() as u32).filter(|&j| shard.owns(all.hashes[j as usize])));
    }

    /// Heap bytes held, by capacity.
    pub(super) fn bytes(&self) -> usize {
        self.rows.capacity() * 4
            + self.hashes.capacity() * 8
            + self.bytes.capacity()
            + (self.starts.capacity() + self.cells.capacity()) * std::mem::size_of::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::StringArray;
    use std::sync::Arc;

    /// The fast path for one text column encodes and hashes as the general
    /// one does (nulls, empty strings, and text of any length).
    #[test]
    fn one_text_column_is_encoded_as_any_column() {
        let values: Vec<Option<String>> = (0..500)
            .map(|i| match i % 7 {
                0 => None,
                1 => Some(String::new()),
                _ => Some(format!("acc-{}{}", i * 7919 % 1000, "é".repeat(i % 5))),
            })
            .collect();
        let column: ArrayRef = Arc::new(StringArray::from(values));
        let mut fast = BatchKeys::default();
        fast.fill(std::slice::from_ref(&column), column.len(), None);
        // A shard that owns every group takes the general path.
        let mut general = BatchKeys::default();
        general.fill(
            std::slice::from_ref(&column),
            column.len(),
            Some(Shard { index: 0, of: 1 }),
        );
        assert_eq!(fast.bytes, general.bytes);
        assert_eq!(fast.hashes, general.hashes);
        assert_eq!(fast.starts, general.starts);
        assert_eq!(fast.cells, general.cells);
        assert_eq!(fast.rows, general.rows);
        assert_eq!(fast.rows.len(), 500);
    }

    /// Two shards' picks of one batch's keys are every row once, each
    /// with the key and hash the batch gave it.
    #[test]
    fn shards_pick_every_row_once() {
        let column: ArrayRef = Arc::new(StringArray::from(
            (0..1000).map(|i| format!("k{i}")).collect::<Vec<_>>(),
        ));
        let mut all = BatchKeys::default();
        all.fill(std::slice::from_ref(&column), column.len(), None);
        let mut seen = vec![0; 1000];
        for index in 0..2 {
            let shard = Shard { index, of: 2 };
            let mut mine = BatchKeys::default();
            mine.pick(&all, shard);
            let rows = Rows {
                keys: &all,
                picked: Some(&mine.rows),
            };
            let mut own = BatchKeys::default();
            own.fill(std::slice::from_ref(&column), column.len(), Some(shard));
            assert_eq!(rows.len(), own.rows.len());
            for j in 0..rows.len() {
                let (i, hash, key, cells) = rows.get(j, 1);
                seen[i] += 1;
                assert_eq!(i, own.rows[j] as usize);
                assert_eq!(hash, own.hashes[j]);
                assert_eq!(key, &own.bytes[own.starts[j]..own.starts[j + 1]]);
                assert_eq!(cells, &own.cells[j..j + 1]);
            }
        }
        assert!(seen.iter().all(|&n| n == 1));
    }
}
