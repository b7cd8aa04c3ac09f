//! The embedded state store on redb (copy-on-write B-trees, checksummed
//! pages, MVCC readers, one writer, fsync on commit).
//!
//! Tables: `catalog` (name → bytes), `meta` (view → frontier and history
//! start), `row_blocks` and `state_blocks` (view id, big-endian, then a
//! block's first key → a block of entries, see `packed`), `changes`
//! ((view, last log time of the block) → a block of changes),
//! `change_filters` (the same key → a filter of the block's row keys).
//! Stores written before packed blocks kept `rows` and `state` (view id,
//! then the key → bytes); opening one moves them into blocks.

use crate::change::{decode_changes, find_change};
use crate::key_filter;
use crate::packed;
use crate::redb_sync::Syncer;
use crate::{
    Block, Change, StateStore, StoreError, StoreRead, StoreWrite, ViewCommit, ViewId, ViewMeta,
};
use redb::{
    Database, DatabaseError, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition,
    TableHandle, WriteTransaction,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const CATALOG: TableDefinition<&str, &[u8]> = TableDefinition::new("catalog");
const META: TableDefinition<u64, (u64, u64)> = TableDefinition::new("meta");
const ROWS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("row_blocks");
const STATE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("state_blocks");
const CHANGES: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("changes");
const CHANGE_FILTERS: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("change_filters");

#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// The memory the store's page cache may take: the store's share of
    /// the memory budget, redb's bookkeeping and the allocator's free
    /// memory between its pages included (see `redb_cache_size`).
    pub cache_bytes: usize,
}

/// What to tell redb so that its cache takes at most `cache_bytes`.
///
/// redb's cache size counts page bytes only. Each cached page also costs
/// memory redb does not count:
/// - its bookkeeping: a heap profile of a 10M-key replay with a 256 MiB
///   cache showed 262.0 MiB held by the cache at the peak (256.7 MiB of
///   pages and `Arc` headers, 5.3 MiB of hash map and eviction queue),
///   2.3% over, and the allocator's chunk headers add ~0.4%;
/// - the allocator's free memory between pages: pages come and go one at
///   a time (read in, evicted, written in power-of-two runs of 4 KiB) and
///   leave holes in the heap that later pages only partly fill. At that
///   replay's peak (a 64 MiB view budget) glibc held 59 MiB free in 3,182
///   chunks, most of 18–100 KiB, and anonymous memory grew 321–331 MiB
///   against the 320 MiB of budget and cache.
///
/// An eighth of the cache is set apart for both: the same replay then
/// grew 298–301 MiB, at the same speed within the noise
/// (docs/benchmarks.md, session 21).
fn redb_cache_size(cache_bytes: usize) -> usize {
    cache_bytes - cache_bytes / 8
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            cache_bytes: 256 << 20,
        }
    }
}

pub struct RedbStore {
    /// Makes relaxed commits durable (see `commit_soon`). Declared first:
    /// dropped (its thread joined, after a last durable commit) before the
    /// database closes.
    syncer: Syncer,
    db: Arc<Database>,
    path: PathBuf,
}

impl RedbStore {
    pub fn open(path: &Path, options: &StoreOptions) -> Result<RedbStore, StoreError> {
        let db = Database::builder()
            .set_cache_size(redb_cache_size(options.cache_bytes))
            .create(path)
            .map_err(|e| match e {
                DatabaseError::DatabaseAlreadyOpen => StoreError::Locked {
                    path: path.to_path_buf(),
                },
                other => StoreError::Open {
                    path: path.to_path_buf(),
                    detail: other.to_string(),
                },
            })?;
        // Create the tables once, so readers never meet a missing one.
        let txn = db.begin_write()?;
        txn.open_table(CATALOG)?;
        txn.open_table(META)?;
        txn.open_table(ROWS)?;
        txn.open_table(STATE)?;
        txn.open_table(CHANGES)?;
        txn.open_table(CHANGE_FILTERS)?;
        migrate_unpacked(&txn)?;
        txn.commit()?;
        let db = Arc::new(db);
        let syncer = Syncer::start(db.clone()).map_err(|e| StoreError::Open {
            path: path.to_path_buf(),
            detail: format!("cannot start its sync thread: {e}"),
        })?;
        Ok(RedbStore {
            syncer,
            db,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl StateStore for RedbStore {
    fn read(&self) -> Result<Box<dyn StoreRead + '_>, StoreError> {
        Ok(Box::new(RedbRead {
            txn: self.db.begin_read()?,
        }))
    }

    fn write(&self) -> Result<Box<dyn StoreWrite + '_>, StoreError> {
        if let Some(e) = self.syncer.failed() {
            return Err(StoreError::CommitFailed(format!(
                "an earlier durable commit failed ({e})"
            )));
        }
        Ok(Box::new(RedbWrite {
            txn: self.db.begin_write()?,
            syncer: &self.syncer,
        }))
    }
}

// Reads shared by the read and the write transaction.

fn catalog_of(
    t: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
    let mut out = Vec::new();
    for entry in t.iter()? {
        let (k, v) = entry?;
        out.push((k.value().to_string(), v.value().to_vec()));
    }
    Ok(out)
}

fn meta_of(
    t: &impl ReadableTable<u64, (u64, u64)>,
    view: ViewId,
) -> Result<Option<ViewMeta>, StoreError> {
    Ok(t.get(view)?.map(|g| {
        let (frontier, history_start) = g.value();
        ViewMeta {
            frontier,
            history_start,
        }
    }))
}

/// The last log time a read of the view's changes may see: its frontier.
/// Blocks staged past it (`stage_changes`) are not there yet. A staged
/// block's changes all follow the frontier and a committed block's
/// precede it, so whole blocks are in or out.
fn frontier_of(
    meta: &impl ReadableTable<u64, (u64, u64)>,
    view: ViewId,
) -> Result<u64, StoreError> {
    Ok(meta.get(view)?.map_or(0, |g| g.value().0))
}

fn changes_of(
    t: &impl ReadableTable<(u64, u64), &'static [u8]>,
    view: ViewId,
    after: u64,
    frontier: u64,
    visit: &mut dyn FnMut(&Change) -> bool,
) -> Result<(), StoreError> {
    // Blocks are keyed by their last log time: every block holding a change
    // after `after` has a key above it.
    let start = after.saturating_add(1);
    if start > frontier {
        return Ok(());
    }
    for entry in t.range((view, start)..=(view, frontier))? {
        let (_, v) = entry?;
        for change in decode_changes(v.value())? {
            if change.log_time > after && !visit(&change) {
                return Ok(());
            }
        }
    }
    Ok(())
}

fn change_for_key_of(
    blocks: &impl ReadableTable<(u64, u64), &'static [u8]>,
    filters: &impl ReadableTable<(u64, u64), &'static [u8]>,
    view: ViewId,
    key: &[u8],
    after: u64,
    frontier: u64,
) -> Result<Option<Change>, StoreError> {
    let hash = key_filter::key_hash(key);
    let start = after.saturating_add(1);
    if start > frontier {
        return Ok(None);
    }
    for entry in filters.range((view, start)..=(view, frontier))? {
        let (k, filter) = entry?;
        if !key_filter::may_contain(filter.value(), hash) {
            continue;
        }
        let Some(block) = blocks.get(k.value())? else {
            continue;
        };
        if let Some(c) = find_change(block.value(), key, after)? {
            return Ok(Some(c));
        }
    }
    Ok(None)
}

fn put_blocks(txn: &WriteTransaction, view: ViewId, blocks: &[Block]) -> Result<(), StoreError> {
    let mut t = txn.open_table(CHANGES)?;
    let mut f = txn.open_table(CHANGE_FILTERS)?;
    for b in blocks {
        t.insert((view, b.last), b.bytes.as_slice())?;
        f.insert((view, b.last), b.filter.as_slice())?;
    }
    Ok(())
}

struct RedbRead {
    txn: ReadTransaction,
}

struct RedbWrite<'s> {
    txn: WriteTransaction,
    syncer: &'s Syncer,
}

impl RedbWrite<'_> {
    /// Upserts and deletes entries of `view` in `table`, as given.
    fn put_all(
        &mut self,
        table: TableDefinition<&[u8], &[u8]>,
        view: ViewId,
        puts: &mut dyn Iterator<Item = (&[u8], Option<&[u8]>)>,
    ) -> Result<(), StoreError> {
        packed::put(&mut self.txn.open_table(table)?, view, puts)
    }
}

/// Entries moved into blocks at a time when a store is migrated.
const MIGRATE_CHUNK: usize = 65_536;

/// Moves the entries of a store written before packed blocks (one table
/// entry per key, in `rows` and `state`) into blocks, and drops the old
/// tables: once, in the transaction that opens the store.
fn migrate_unpacked(txn: &WriteTransaction) -> Result<(), StoreError> {
    let names: Vec<String> = txn.list_tables()?.map(|h| h.name().to_string()).collect();
    // Before packed blocks: one entry per key.
    for (name, packed_table) in [("rows", ROWS), ("state", STATE)] {
        if !names.iter().any(|n| n == name) {
            continue;
        }
        let old: TableDefinition<&[u8], &[u8]> = TableDefinition::new(name);
        {
            let from = txn.open_table(old)?;
            let mut to = txn.open_table(packed_table)?;
            // Keys are the view id (big-endian) and the key: in key order,
            // one view after another.
            let mut view_puts: Option<(ViewId, crate::Puts)> = None;
            for entry in from.iter()? {
                let (k, v) = entry?;
                let k = k.value();
                let Some(view) = k
                    .get(..8)
                    .map(|b| ViewId::from_be_bytes(b.try_into().unwrap_or_default()))
                else {
                    return Err(StoreError::Corrupt(format!(
                        "table {name} has a key of {} bytes, shorter than a view id",
                        k.len()
                    )));
                };
                // A view's entries go in chunks, so that a big one is
                // not held whole.
                if let Some((v, p)) =
                    view_puts.take_if(|(v, p)| *v != view || p.len() >= MIGRATE_CHUNK)
                {
                    packed::put(&mut to, v, &mut p.iter())?;
                }
                view_puts
                    .get_or_insert_with(|| (view, crate::Puts::default()))
                    .1
                    .push(&k[8..], Some(v.value()));
            }
            if let Some((v, p)) = view_puts {
                packed::put(&mut to, v, &mut p.iter())?;
            }
        }
        txn.delete_table(old)?;
        tracing::info!(
            table = name,
            "state store: moved entries into packed blocks"
        );
    }
    Ok(())
}

/// A step's rows and state are written at once, on two threads, when the
/// state has at least this many entries (each is a tree of its own).
const PARALLEL_PUTS: usize = 10_000;

/// The reads of both transaction kinds (each opens its tables the same way).
macro_rules! store_read {
    ($t:ty) => {
        impl StoreRead for $t {
            fn catalog(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
                catalog_of(&self.txn.open_table(CATALOG)?)
            }
            fn meta(&self, view: ViewId) -> Result<Option<ViewMeta>, StoreError> {
                meta_of(&self.txn.open_table(META)?, view)
            }
            fn row(&self, view: ViewId, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
                packed::get(&self.txn.open_table(ROWS)?, view, key)
            }
            fn rows(
                &self,
                view: ViewId,
                visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
            ) -> Result<(), StoreError> {
                packed::scan_from(&self.txn.open_table(ROWS)?, view, &[], visit)
            }
            fn state(&self, view: ViewId, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
                packed::get(&self.txn.open_table(STATE)?, view, key)
            }
            fn state_prefix(
                &self,
                view: ViewId,
                prefix: &[u8],
                visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
            ) -> Result<(), StoreError> {
                packed::scan_from(&self.txn.open_table(STATE)?, view, prefix, &mut |k, v| {
                    k.starts_with(prefix) && visit(k, v)
                })
            }
            fn changes(
                &self,
                view: ViewId,
                after: u64,
                visit: &mut dyn FnMut(&Change) -> bool,
            ) -> Result<(), StoreError> {
                let frontier = frontier_of(&self.txn.open_table(META)?, view)?;
                changes_of(&self.txn.open_table(CHANGES)?, view, after, frontier, visit)
            }
            fn change_for_key(
                &self,
                view: ViewId,
                key: &[u8],
                after: u64,
            ) -> Result<Option<Change>, StoreError> {
                change_for_key_of(
                    &self.txn.open_table(CHANGES)?,
                    &self.txn.open_table(CHANGE_FILTERS)?,
                    view,
                    key,
                    after,
                    frontier_of(&self.txn.open_table(META)?, view)?,
                )
            }
        }
    };
}

store_read!(RedbRead);
store_read!(RedbWrite<'_>);

impl StoreWrite for RedbWrite<'_> {
    fn put_catalog(&mut self, name: &str, value: &[u8]) -> Result<(), StoreError> {
        self.txn.open_table(CATALOG)?.insert(name, value)?;
        Ok(())
    }

    fn delete_catalog(&mut self, name: &str) -> Result<(), StoreError> {
        self.txn.open_table(CATALOG)?.remove(name)?;
        Ok(())
    }

    fn apply(&mut self, c: &mut ViewCommit) -> Result<(), StoreError> {
        for (table, puts) in [(ROWS, &mut c.rows), (STATE, &mut c.state)] {
            // In key order: neighbouring inserts then touch the same pages.
            puts.sort_by_key();
            self.put_all(table, c.view, &mut puts.iter())?;
        }
        if !c.changes.is_empty() {
            put_blocks(&self.txn, c.view, c.changes.blocks())?;
        }
        let mut meta = self.txn.open_table(META)?;
        let history_start = meta.get(c.view)?.map_or(0, |g| g.value().1);
        meta.insert(c.view, (c.frontier, history_start.max(c.history_start)))?;
        Ok(())
    }

    fn put_rows_and_state(
        &mut self,
        view: ViewId,
        rows: &mut (dyn Iterator<Item = (&[u8], Option<&[u8]>)> + Send),
        state: &mut crate::Puts,
    ) -> Result<(), StoreError> {
        // In key order: neighbouring inserts then touch the same pages.
        state.sort_by_key();
        if state.len() < PARALLEL_PUTS {
            self.put_all(STATE, view, &mut state.iter())?;
            return self.put_all(ROWS, view, rows);
        }
        let mut row_table = self.txn.open_table(ROWS)?;
        let mut state_table = self.txn.open_table(STATE)?;
        std::thread::scope(|scope| {
            let helper = std::thread::Builder::new()
                .name("kappa-store-put".into())
                .spawn_scoped(scope, || {
                    packed::put(&mut state_table, view, &mut state.iter())
                })
                .map_err(|e| StoreError::Io(format!("cannot start a thread for a write: {e}")))?;
            let rows_put = packed::put(&mut row_table, view, rows);
            let state_put = helper
                .join()
                .map_err(|_| StoreError::Io("writing a step's state failed".into()))?;
            rows_put.and(state_put)
        })
    }

    fn stage_changes(&mut self, view: ViewId, blocks: &[Block]) -> Result<(), StoreError> {
        let Some(meta) = meta_of(&self.txn.open_table(META)?, view)? else {
            return Ok(());
        };
        if let Some(b) = blocks.first() {
            debug_assert!(b.last > meta.frontier, "staged blocks follow the frontier");
        }
        put_blocks(&self.txn, view, blocks)
    }

    fn discard_staged(&mut self, view: ViewId) -> Result<bool, StoreError> {
        let frontier = frontier_of(&self.txn.open_table(META)?, view)?;
        let Some(first) = frontier.checked_add(1) else {
            return Ok(false);
        };
        let mut any = false;
        for table in [CHANGES, CHANGE_FILTERS] {
            let mut t = self.txn.open_table(table)?;
            any |= t.range((view, first)..=(view, u64::MAX))?.next().is_some();
            t.retain_in((view, first)..=(view, u64::MAX), |_, _| false)?;
        }
        Ok(any)
    }

    fn trim_history(&mut self, view: ViewId, before: u64) -> Result<(), StoreError> {
        // Whole blocks only: a block goes when its last change is at or
        // before `before`; history then starts at that block's end.
        let mut start = None;
        {
            let mut t = self.txn.open_table(CHANGES)?;
            let mut doomed = Vec::new();
            for entry in t.range((view, 0)..=(view, before))? {
                let (k, _) = entry?;
                doomed.push(k.value());
            }
            let mut f = self.txn.open_table(CHANGE_FILTERS)?;
            for k in doomed {
                t.remove(k)?;
                f.remove(k)?;
                start = Some(k.1);
            }
        }
        if let Some(start) = start {
            let mut meta = self.txn.open_table(META)?;
            let (frontier, old) = meta.get(view)?.map_or((0, 0), |g| g.value());
            meta.insert(view, (frontier, old.max(start)))?;
        }
        Ok(())
    }

    fn drop_view(&mut self, view: ViewId) -> Result<(), StoreError> {
        for table in [ROWS, STATE] {
            packed::drop_view(&mut self.txn.open_table(table)?, view)?;
        }
        for table in [CHANGES, CHANGE_FILTERS] {
            self.txn
                .open_table(table)?
                .retain_in((view, 0)..=(view, u64::MAX), |_, _| false)?;
        }
        self.txn.open_table(META)?.remove(view)?;
        Ok(())
    }

    fn commit(self: Box<Self>) -> Result<(), StoreError> {
        let syncer = self.syncer;
        self.txn.commit()?;
        syncer.synced();
        Ok(())
    }

    fn commit_soon(mut self: Box<Self>, within: std::time::Duration) -> Result<(), StoreError> {
        // Visible at once; the syncer's next durable commit writes it,
        // and a crash before that rolls back to the last durable one.
        self.txn
            .set_durability(redb::Durability::None)
            .map_err(|e| StoreError::CommitFailed(format!("cannot relax a commit: {e}")))?;
        let syncer = self.syncer;
        self.txn.commit()?;
        syncer.relaxed(within);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::redb_cache_size;

    #[test]
    fn redb_is_told_less_than_the_cache_so_its_bookkeeping_fits() {
        assert_eq!(redb_cache_size(256 << 20), 224 << 20);
        assert_eq!(redb_cache_size(32), 28);
        assert_eq!(redb_cache_size(0), 0);
    }
}
