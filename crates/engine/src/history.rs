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
    pub(crate) fn encode(&mut self, shards: &[Changes<'_>], cutoff: u64) {
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
