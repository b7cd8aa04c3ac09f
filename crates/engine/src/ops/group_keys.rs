//! A batch's group keys, encoded and hashed once before any group is
//! looked up (so that lookups can be started ahead), and the shards the
//! hash splits an aggregate's groups into.

use crate::value::encode_cell;
use datafusion::arrow::array::ArrayRef;
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

/// A batch's rows that one shard folds, with their group keys encoded
/// and hashed in one pass before any group is looked up, so that lookups
/// can be started ahead. Kept between batches for its buffers.
#[derive(Default)]
pub(super) struct BatchKeys {
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
    pub(super) fn fill(&mut self, group_cols: &[ArrayRef], n: usize, shard: Option<Shard>) {
        self.rows.clear();
        self.hashes.clear();
        self.bytes.clear();
        self.starts.clear();
        self.cells.clear();
        self.starts.push(0);
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

    /// Heap bytes held, by capacity.
    pub(super) fn bytes(&self) -> usize {
        self.rows.capacity() * 4
            + self.hashes.capacity() * 8
            + self.bytes.capacity()
            + (self.starts.capacity() + self.cells.capacity()) * std::mem::size_of::<usize>()
    }
}
