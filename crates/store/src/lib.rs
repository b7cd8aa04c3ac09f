//! View state: what the engine keeps for each view, committed atomically.
//!
//! A view's state is four things, all changed by one [`ViewCommit`] in one
//! transaction, so a crash keeps all or none of a step:
//!
//! - **rows**: the view's current output rows, by row key;
//! - **operator state**: accumulators and the like, by key, opaque here;
//! - **changes**: every change to a row (key, before, after, log time), in
//!   blocks, in log-time order. They serve change feeds and AS OF (the view
//!   at time T is the current rows with every change after T undone). A
//!   long step may write its blocks ahead of the commit that reaches
//!   them ([`StoreWrite::stage_changes`]): reads never go past the
//!   frontier, so they are seen only with it;
//! - **meta**: the frontier (every record up to this log time is applied)
//!   and the start of retained history.
//!
//! [`StateStore`] is the contract (a PostgreSQL implementation will meet it
//! too); [`RedbStore`] is the embedded one.

mod change;
mod codec;
mod error;
mod key_filter;
mod packed;
mod puts;
mod redb_store;
mod redb_sync;
#[cfg(test)]
mod test_rng;

pub use change::{Block, Change, ChangeBlocks, decode_changes};
pub use error::StoreError;
pub use puts::{Puts, key_head, sort_by_head};
pub use redb_store::{RedbStore, StoreOptions};

/// Views are numbered; ids are never reused.
pub type ViewId = u64;

/// Frontier and history bounds of a view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ViewMeta {
    /// Every record with log time up to this one is applied.
    pub frontier: u64,
    /// Every change after this log time is retained (none was let go
    /// of): history is exact from here to the frontier. The view's
    /// retention may promise less (see the engine's window).
    pub history_start: u64,
}

/// One atomic step of one view: what changed, and the new frontier.
#[derive(Clone, Debug, Default)]
pub struct ViewCommit {
    pub view: ViewId,
    pub rows: Puts,
    pub state: Puts,
    /// In log-time order, all after the previous frontier.
    pub changes: ChangeBlocks,
    pub frontier: u64,
    /// Raises the view's history start to this point: changes at or before
    /// it were not kept (they were older than the view's retention).
    pub history_start: u64,
}

/// The store. Reads see a consistent snapshot; one writer at a time.
pub trait StateStore: Send + Sync + 'static {
    fn read(&self) -> Result<Box<dyn StoreRead + '_>, StoreError>;
    fn write(&self) -> Result<Box<dyn StoreWrite + '_>, StoreError>;
}

/// A consistent snapshot.
pub trait StoreRead {
    /// Every catalog entry, by name.
    fn catalog(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError>;
    fn meta(&self, view: ViewId) -> Result<Option<ViewMeta>, StoreError>;
    fn row(&self, view: ViewId, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Every row in key order; `visit` returns false to stop.
    fn rows(
        &self,
        view: ViewId,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError>;
    fn state(&self, view: ViewId, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Every state entry whose key starts with `prefix`, in key order;
    /// `visit` returns false to stop.
    fn state_prefix(
        &self,
        view: ViewId,
        prefix: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError>;
    /// Every retained change with log time > `after`, in log-time order;
    /// `visit` returns false to stop.
    fn changes(
        &self,
        view: ViewId,
        after: u64,
        visit: &mut dyn FnMut(&Change) -> bool,
    ) -> Result<(), StoreError>;
    /// The earliest retained change to the row with `key` after the log
    /// time `after` (its `before` is the row as it was then). Blocks
    /// carry a filter of their keys, so only those that may hold the key
    /// are read.
    fn change_for_key(
        &self,
        view: ViewId,
        key: &[u8],
        after: u64,
    ) -> Result<Option<Change>, StoreError>;
}

/// A write transaction: nothing is visible, or durable, before `commit`.
pub trait StoreWrite: StoreRead {
    fn put_catalog(&mut self, name: &str, value: &[u8]) -> Result<(), StoreError>;
    fn delete_catalog(&mut self, name: &str) -> Result<(), StoreError>;
    /// Applies one step of a view (rows, state, changes, frontier). The
    /// puts may be reordered.
    fn apply(&mut self, commit: &mut ViewCommit) -> Result<(), StoreError>;
    /// Upserts (`Some`) and deletes (`None`) rows of a view from the
    /// caller's buffers (no copy into a [`Puts`]), and puts its state, as
    /// [`ViewCommit::rows`] and [`ViewCommit::state`] do. Fastest with the
    /// rows in key order; the state may be reordered. The store may write
    /// the two at once. Part of the step that the next
    /// [`StoreWrite::apply`] of the view completes.
    fn put_rows_and_state(
        &mut self,
        view: ViewId,
        rows: &mut (dyn Iterator<Item = (&[u8], Option<&[u8]>)> + Send),
        state: &mut Puts,
    ) -> Result<(), StoreError>;
    /// Writes change blocks ahead of the commit that moves the view's
    /// frontier past them (they follow the frontier and every block staged
    /// before them). Until then no read sees them: reads stop at the
    /// frontier. A view that stops before that commit (a crash, a failed
    /// step) has them removed by [`StoreWrite::discard_staged`] before it
    /// applies anything again. Nothing is written for a view that has no
    /// frontier (dropped, or never started).
    fn stage_changes(&mut self, view: ViewId, blocks: &[crate::Block]) -> Result<(), StoreError>;
    /// Removes the blocks staged past the view's frontier; whether there
    /// were any.
    fn discard_staged(&mut self, view: ViewId) -> Result<bool, StoreError>;
    /// Drops changes at or before `before` and moves the history start up.
    fn trim_history(&mut self, view: ViewId, before: u64) -> Result<(), StoreError>;
    /// Removes everything of a view.
    fn drop_view(&mut self, view: ViewId) -> Result<(), StoreError>;
    /// Makes the transaction durable (fsync) and visible.
    fn commit(self: Box<Self>) -> Result<(), StoreError>;
    /// Makes the transaction visible now and durable within `within` of
    /// the last durable commit, without waiting for the disk (the store
    /// syncs in the background). A crash may lose it, and every commit
    /// after the last durable one, whole: for state that can be
    /// recomputed from the log (a view's step), where a lost step is
    /// applied again.
    fn commit_soon(self: Box<Self>, within: std::time::Duration) -> Result<(), StoreError>;
}
