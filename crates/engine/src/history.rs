//! A catch-up's changes, encoded into change blocks as it goes and written
//! to the store ahead of the commit that reaches them.
//!
//! A replay's changes are most of what its commits write (one per record,
//! against one row per key), and the last commit of a catch-up is not
//! overlapped by anything: written at that commit, a replay's history was
//! most of its time (1M changes, ~70 MB, half of it waiting for the disk).
//! So after each batch the pending changes are encoded, and each few
//! sealed blocks go to the view's committer thread, which stages them
//! in the store in a transaction of their own
//! ([`kappa_store::StoreWrite::stage_changes`]) while the operators go on.
//! Staged blocks are past the view's frontier, so no read sees them until
//! the commit that moves the frontier past them; a catch-up that stops
//! before it leaves them to be discarded when the view is next loaded.

use crate::pending::{Changes, merged_changes};
use kappa_store::{Block, ChangeBlocks};

/// A batch with at least this many changes has its history encoded in
/// two runs at once (see [`History::encode`]).
const PARALLEL_CHANGES: usize = 16_384;

/// The changes of the pending commit encoded so far.
#[derive(Default)]
pub(crate) struct History {
    blocks: ChangeBlocks,
    /// The last log time let go of (older than the view's retention).
    dropped: u64,
    /// Sealed blocks are staged once they hold this many bytes
    /// (`EngineOptions::stage_bytes`).
    stage_bytes: usize,
}

impl History {
    pub(crate) fn new(stage_bytes: usize) -> History {
        History {
            blocks: ChangeBlocks::with_block_bytes(stage_bytes),
            dropped: 0,
            stage_bytes,
        }
    }

    /// Encodes the shards' changes, merged in log-time order, after those
    /// encoded before. Changes at or before `cutoff` are older than the
    /// view's retention and are not kept: history then starts at the last
    /// one let go of (exactly: AS OF and feeds past it miss nothing).
    ///
    /// Many changes (a replay's batch) are encoded in two runs of log
    /// time at once, the later on a thread of its own: the operators'
    /// thread encodes history between batches while the other shards
    /// wait, and it was ~30% of its time (`catch-up` debug log).
    pub(crate) fn encode(&mut self, shards: &[Changes<'_>], cutoff: u64) {
        let total: usize = shards.iter().map(|s| s.changes.len()).sum();
        let Some(mid) = shards
            .iter()
            .max_by_key(|s| s.changes.len())
            .and_then(|s| s.changes.get(s.changes.len() / 2))
            .map(|c| c.log_time)
            .filter(|_| total >= PARALLEL_CHANGES)
        else {
            self.encode_run(shards, cutoff);
            return;
        };
        // Changes at `mid` all go to the first run: a log time is never
        // split between blocks.
        let (early, late): (Vec<_>, Vec<_>) = shards
            .iter()
            .map(|s| {
                let at = s.changes.partition_point(|c| c.log_time <= mid);
                let (a, b) = s.changes.split_at(at);
                (
                    Changes {
                        arena: s.arena,
                        changes: a,
                    },
                    Changes {
                        arena: s.arena,
                        changes: b,
                    },
                )
            })
            .unzip();
        // Its blocks as this one's (a commit's history, made by
        // `History::default`, seals them at the default size).
        let mut tail = History {
            blocks: self.blocks.empty_like(),
            dropped: 0,
            stage_bytes: self.stage_bytes,
        };
        let spawned = std::thread::scope(|scope| {
            let spawned = std::thread::Builder::new()
                .name("kappa-history".into())
                .spawn_scoped(scope, || tail.encode_run(&late, cutoff))
                .is_ok();
            self.encode_run(&early, cutoff);
            spawned
        });
        if !spawned {
            tail.encode_run(&late, cutoff);
        }
        self.blocks.append(tail.blocks);
        self.dropped = self.dropped.max(tail.dropped);
    }

    /// Encodes the changes, merged in log-time order, after those
    /// encoded before.
    fn encode_run(&mut self, shards: &[Changes<'_>], cutoff: u64) {
        for (p, c) in merged_changes(shards) {
            let arena = shards[p].arena;
            let get = |s: crate::pending::Span| &arena[s.range()];
            // A row version's identity: its shard's arena and its place
            // there (an arena only grows until the commit that ends this
            // history). A before that is its key's last after is then
            // written as a reference, its bytes not read again.
            let version =
                |s: crate::pending::Span| (get(s), Some((p as u64) << 32 | u64::from(s.start())));
            let before = c.before.map(version);
            let after = c.after.map(version);
            if !c.differs && before.map(|b| b.0) == after.map(|a| a.0) {
                continue;
            }
            if c.log_time > cutoff {
                self.blocks
                    .push_versions(c.log_time, get(c.key), before, after);
            } else {
                self.dropped = self.dropped.max(c.log_time);
            }
        }
    }

    /// Not made by [`History::new`] (nothing encoded yet, no settings).
    pub(crate) fn is_new(&self) -> bool {
        self.stage_bytes == 0
    }

    /// The sealed blocks, once there are enough to be worth a transaction.
    pub(crate) fn ready(&mut self) -> Option<Vec<Block>> {
        let bytes = self.blocks.sealed_bytes();
        (bytes > 0 && bytes >= self.stage_bytes).then(|| self.blocks.take_sealed())
    }

    /// Bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.blocks.sealed_bytes() + self.stage_bytes.min(ChangeBlocks::BLOCK_BYTES)
    }

    /// What the commit writes: the blocks not staged, and the last log
    /// time let go of.
    pub(crate) fn finish(self) -> (ChangeBlocks, u64) {
        (self.blocks, self.dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pending::{PendingChange, Span};

    /// A shard's arena and changes: `n` changes to keys `k<i % keys>`,
    /// at log times `first + step * i`, each key's row counting up.
    fn shard(n: usize, keys: usize, first: u64, step: u64) -> (Vec<u8>, Vec<PendingChange>) {
        let mut arena = Vec::new();
        let mut changes = Vec::new();
        let mut last: Vec<Option<Span>> = vec![None; keys];
        let put = |arena: &mut Vec<u8>, b: &[u8]| {
            let s = Span::new(arena.len(), b.len());
            arena.extend_from_slice(b);
            s
        };
        for i in 0..n {
            let k = i % keys;
            let key = put(&mut arena, format!("k{k}").as_bytes());
            let after = put(&mut arena, format!("\x01\x00row {k} {i}").as_bytes());
            changes.push(PendingChange {
                log_time: first + step * i as u64,
                key,
                before: last[k],
                after: Some(after),
                differs: true,
            });
            last[k] = Some(after);
        }
        (arena, changes)
    }

    /// The changes, and how many blocks they were in.
    fn decoded(history: History) -> (Vec<kappa_store::Change>, usize) {
        let blocks = history.finish().0.into_blocks();
        for pair in blocks.windows(2) {
            let first_of_next = kappa_store::decode_changes(&pair[1].bytes).unwrap()[0].log_time;
            assert!(
                first_of_next > pair[0].last,
                "a log time split between blocks"
            );
        }
        let changes = blocks
            .iter()
            .flat_map(|b| kappa_store::decode_changes(&b.bytes).unwrap())
            .collect();
        (changes, blocks.len())
    }

    #[test]
    fn history_encoded_in_two_runs_decodes_as_one_run() {
        // Two shards, interleaved in log time, sharing some log times (a
        // record that changed a row in each), enough to be split.
        let (a_arena, a) = shard(40_000, 700, 1_000, 2);
        let (b_arena, b) = shard(30_000, 500, 1_001, 2);
        let (c_arena, c) = shard(18_000, 300, 1_000, 4);
        fn pair<'a>(
            x: (&'a [u8], &'a [PendingChange]),
            y: (&'a [u8], &'a [PendingChange]),
        ) -> [Changes<'a>; 2] {
            [x, y].map(|(arena, changes)| Changes { arena, changes })
        }
        // Staged ahead (blocks of 64 KiB), and a commit's own history
        // (`default`: blocks of the default size).
        let staged: fn() -> History = || History::new(64 << 10);
        let own: fn() -> History = History::default;
        for make in [staged, own] {
            for shards in [
                pair((&a_arena, &a), (&b_arena, &b)),
                pair((&a_arena, &a), (&c_arena, &c)),
            ] {
                // In two batches (before and after a log time), each split.
                fn half<'a>(s: &Changes<'a>, second: bool) -> Changes<'a> {
                    let at = s.changes.partition_point(|c| c.log_time <= 40_000);
                    let changes = if second {
                        &s.changes[at..]
                    } else {
                        &s.changes[..at]
                    };
                    Changes {
                        arena: s.arena,
                        changes,
                    }
                }
                let mut split = make();
                let mut one = make();
                for second in [false, true] {
                    let batch: Vec<_> = shards.iter().map(|s| half(s, second)).collect();
                    // Split in two runs, not encoded in one.
                    assert!(
                        batch.iter().map(|s| s.changes.len()).sum::<usize>() >= PARALLEL_CHANGES
                    );
                    split.encode(&batch, 1_500);
                    one.encode_run(&batch, 1_500);
                }
                assert_eq!(split.dropped, one.dropped);
                assert_eq!(split.dropped, 1_500);
                let (got, want) = (decoded(split), decoded(one));
                // A split batch seals one more block, not more.
                assert!(got.1 <= want.1 + 2, "{} blocks against {}", got.1, want.1);
                assert_eq!(got.0.len(), want.0.len());
                assert!(got.0 == want.0, "the split encoding decodes differently");
            }
        }
    }
}
