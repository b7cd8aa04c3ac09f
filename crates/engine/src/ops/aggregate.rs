//! GROUP BY, maintained incrementally. Each group keeps its accumulators;
//! an input row with weight +1 adds to them, -1 takes away. Groups live in
//! memory as a cache over the state store: a group not in memory is loaded
//! from the store, and groups changed since the last commit are written
//! back with it.
//!
//! The hot path is columnar where it matters: group keys are encoded
//! straight from the key columns, COUNT/SUM/AVG read typed arrays, and the
//! output's key columns are gathered (`take`) from the input rows that
//! caused each output row, so no per-row `ScalarValue` is built for them.

use super::accumulator::{
    Acc, Group, decode_group, encode_group, group_size, new_group, output, sum_type, update,
};
use super::output::{Emit, Out, OutCol, OutRow, OutRows};
use super::{Delta, Keys};
use crate::EngineError;
use datafusion::arrow::array::{Array, ArrayRef, RecordBatch, UInt32Array};
use datafusion::arrow::compute::{CastOptions, cast_with_options, take};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::physical_expr::PhysicalExpr;
use std::sync::Arc;

use super::group_index::GroupIndex;
pub use super::group_keys::Shard;
use super::group_keys::{BatchKeys, Rows, key_hash};
use smallvec::SmallVec;

/// Where groups not in memory come from (the store, at the view's frontier).
pub trait StateSource {
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError>;
}

/// No state anywhere (a view that has none, or a test).
pub struct NoState;
impl StateSource for NoState {
    fn get(&mut self, _: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        Ok(None)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AggKind {
    /// COUNT(x): rows where x is not NULL (COUNT(*) is COUNT(1)).
    Count,
    CountDistinct,
    Sum,
    Avg,
    Min,
    Max,
    /// `last_value(x ORDER BY _log_time)`: the value of the latest record.
    Latest,
    /// `first_value(x ORDER BY _log_time)`: the value of the earliest.
    Earliest,
}

#[derive(Clone)]
pub struct AggSpec {
    pub kind: AggKind,
    pub arg: Arc<dyn PhysicalExpr>,
    pub arg_type: DataType,
    /// The result type DataFusion gives this aggregate.
    pub out_type: DataType,
}

pub struct Aggregate {
    pub group: Vec<Arc<dyn PhysicalExpr>>,
    pub group_types: Vec<DataType>,
    pub aggs: Vec<AggSpec>,
    pub out_schema: SchemaRef,
    /// The input never retracts (a topic through filters and projections):
    /// MIN and MAX then keep only the best value, not every value.
    pub append_only: bool,
    /// Prefixes this aggregate's keys in the view's state (a view may hold
    /// several aggregates).
    pub state_prefix: u8,
    /// Groups in memory, found by key (the group values' encoding)
    /// through `index`, which holds slot numbers. A slot without a group
    /// is a group known not to exist.
    slots: Vec<Slot>,
    index: GroupIndex,
    /// This shard's rows of the batch being folded.
    batch: BatchKeys,
    /// Slots no longer used.
    free: Vec<u32>,
    /// Slots changed since the last commit.
    dirty: Vec<u32>,
    /// Slots of groups deleted by a commit that may not have reached the
    /// store yet: until it has, they stay in memory as known not to exist
    /// (the store still has the old group).
    deleted: Vec<u32>,
    /// Every group that exists is in memory (a new view, nothing evicted):
    /// a key not in memory needs no store lookup.
    complete: bool,
    /// Heap bytes of the keys and accumulators of the groups in memory.
    bytes: usize,
    /// No group's accumulators hold heap memory (COUNT, SUM and AVG, at
    /// most two of them, inline): a group's size is its key's and never
    /// changes, so a fold does not estimate it again for every row.
    fixed_size: bool,
}

/// How far ahead of the row being folded its group is fetched into the
/// cache, in three steps that each follow what the one before brought
/// in: the index entries `3 * AHEAD` rows ahead, then the slot they point
/// to `2 * AHEAD` ahead, then what the group emits to (its pending row)
/// `AHEAD` ahead. A group's lookup misses the cache more often than not
/// in a replay, and costs more than the fold itself; started this far
/// ahead, it has arrived by the time the row is folded.
const AHEAD: usize = 8;

/// A group key, inline when short (most are: an account, an id).
type GroupKey = SmallVec<[u8; 16]>;

struct Slot {
    key: GroupKey,
    group: Option<Group>,
    dirty: bool,
    /// In use (else on the free list).
    live: bool,
    /// Its share of [`Aggregate::memory`].
    size: usize,
}

/// Heap bytes of a group key.
fn key_size(k: &GroupKey) -> usize {
    if k.spilled() { k.capacity() } else { 0 }
}

impl Aggregate {
    pub fn new(
        group: Vec<Arc<dyn PhysicalExpr>>,
        group_types: Vec<DataType>,
        aggs: Vec<AggSpec>,
        out_schema: SchemaRef,
        append_only: bool,
    ) -> Aggregate {
        let fixed_size = {
            let g = new_group(&aggs, append_only);
            !g.accs.spilled()
                && g.accs
                    .iter()
                    .all(|a| matches!(a, Acc::Count(_) | Acc::SumInt { .. } | Acc::SumFloat { .. }))
        };
        Aggregate {
            group,
            group_types,
            aggs,
            out_schema,
            append_only,
            fixed_size,
            state_prefix: 0,
            slots: Vec::new(),
            index: GroupIndex::default(),
            batch: BatchKeys::default(),
            free: Vec::new(),
            dirty: Vec::new(),
            deleted: Vec::new(),
            complete: false,
            bytes: 0,
        }
    }

    /// The same aggregate with no groups in memory: another shard of it.
    pub fn empty_copy(&self) -> Aggregate {
        let mut a = Aggregate::new(
            self.group.clone(),
            self.group_types.clone(),
            self.aggs.clone(),
            self.out_schema.clone(),
            self.append_only,
        );
        a.state_prefix = self.state_prefix;
        a
    }

    /// A global aggregate (no GROUP BY) has its one row even with no input.
    pub fn is_global(&self) -> bool {
        self.group.is_empty()
    }

    /// The view is new: no group exists yet, so until groups are evicted,
    /// a key not in memory is a new group without asking the store.
    pub fn assume_empty_state(&mut self) {
        self.complete = self.index.is_empty();
    }

    /// The slot of `key` (which hashes to `hash`), if in memory.
    fn find(&self, hash: u64, key: &[u8]) -> Option<u32> {
        self.index
            .find(hash, |i| &self.slots[i as usize].key[..] == key)
    }

    /// Starts fetching the slot of the group whose key hashes to `hash`
    /// into the cache, its index entries being fetched already (and,
    /// through `out`, where it finds what the group emits to). The first
    /// slot whose tag matches is taken for it without comparing keys
    /// (that would wait for the slot): a rare wrong guess costs a wasted
    /// fetch.
    fn prefetch_slot(&self, hash: u64, out: &impl Emit) {
        if let Some(i) = self.index.candidate(hash)
            && let Some(slot) = self.slots.get(i as usize)
        {
            crate::memory::prefetch(slot);
            out.prefetch_index(i);
        }
    }

    /// Starts fetching, through `out`, what the group whose key hashes to
    /// `hash` emits to (where to find it being fetched already).
    fn prefetch_output(&self, hash: u64, out: &impl Emit) {
        if let Some(i) = self.index.candidate(hash) {
            out.prefetch(i);
        }
    }

    /// A new slot for `key` (not in memory yet), which hashes to `hash`.
    fn insert(&mut self, hash: u64, key: &[u8], group: Option<Group>) -> u32 {
        let key = GroupKey::from_slice(key);
        let size = key_size(&key) + group_size(&group);
        self.bytes += size;
        let slot = Slot {
            key,
            group,
            dirty: false,
            live: true,
            size,
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = slot;
                i
            }
            None => {
                self.slots.push(slot);
                (self.slots.len() - 1) as u32
            }
        };
        self.index.insert(hash, i);
        i
    }

    /// Frees slot `i`.
    fn remove(&mut self, i: u32) {
        let key = std::mem::take(&mut self.slots[i as usize].key);
        self.slots[i as usize].group = None;
        self.slots[i as usize].live = false;
        self.bytes -= std::mem::take(&mut self.slots[i as usize].size);
        self.index.remove(key_hash(&key), i);
        self.free.push(i);
    }

    /// The output delta of the initial, empty state (a global aggregate's
    /// row over no input), at log time `at`.
    pub fn initial(&mut self, at: u64) -> Result<Delta, EngineError> {
        let g = new_group(&self.aggs, self.append_only);
        let results: Vec<Out> = g
            .accs
            .iter()
            .zip(&self.aggs)
            .map(|(a, s)| output(a, s))
            .collect();
        let i = self.insert(key_hash(&[]), &[], Some(g));
        self.slots[i as usize].dirty = true;
        self.dirty.push(i);
        let mut out = self.out_rows(1);
        out.push(OutRow {
            input_row: 0,
            key: &[],
            cells: &[],
            slot: i,
            results: &results,
            weight: 1,
            log_time: at,
        });
        self.finish(out, &[])
    }

    fn out_rows(&self, rows: usize) -> OutRows {
        let width = self.out_schema.fields().len();
        OutRows {
            take: Vec::with_capacity(rows),
            cols: (self.group.len()..width)
                .map(|c| OutCol::new(self.out_schema.field(c).data_type(), rows))
                .collect(),
            weights: Vec::with_capacity(rows),
            log_times: Vec::with_capacity(rows),
            keys: Keys::with_capacity(rows, rows * 16),
            groups: Vec::with_capacity(rows),
        }
    }

    fn finish(&self, out: OutRows, group_cols: &[ArrayRef]) -> Result<Delta, EngineError> {
        let indices = UInt32Array::from(out.take);
        let mut columns = Vec::with_capacity(self.out_schema.fields().len());
        for (c, col) in group_cols.iter().enumerate() {
            let taken = take(col.as_ref(), &indices, None)?;
            let dt = self.out_schema.field(c).data_type();
            columns.push(if taken.data_type() == dt {
                taken
            } else {
                datafusion::arrow::compute::cast(&taken, dt)?
            });
        }
        for c in out.cols {
            columns.push(c.finish()?);
        }
        let batch = RecordBatch::try_new(self.out_schema.clone(), columns)?;
        Ok(Delta {
            batch,
            weights: out.weights,
            log_times: out.log_times,
            keys: out.keys,
            groups: out.groups,
        })
    }

    /// Evaluates the group and argument expressions of `batch` (arguments
    /// of SUM and AVG cast to the type they are summed in): all of the
    /// aggregate's work that can fail on bad data, done before any state
    /// changes.
    #[allow(clippy::type_complexity)]
    pub fn evaluate(
        &self,
        batch: &RecordBatch,
    ) -> Result<(Vec<ArrayRef>, Vec<ArrayRef>), EngineError> {
        let n = batch.num_rows();
        let group_cols: Vec<ArrayRef> = self
            .group
            .iter()
            .map(|e| e.evaluate(batch).and_then(|v| v.into_array(n)))
            .collect::<Result<_, _>>()?;
        let strict = CastOptions {
            safe: false,
            ..CastOptions::default()
        };
        let mut arg_cols = Vec::with_capacity(self.aggs.len());
        for a in &self.aggs {
            let col = a.arg.evaluate(batch)?.into_array(n)?;
            let col = match sum_type(a) {
                Some(dt) if col.data_type() != &dt => cast_with_options(&col, &dt, &strict)?,
                _ => col,
            };
            arg_cols.push(col);
        }
        Ok((group_cols, arg_cols))
    }

    /// Folds `delta` into the groups. An evaluation error leaves the state
    /// as it was.
    pub fn apply(
        &mut self,
        delta: Delta,
        state: &mut dyn StateSource,
    ) -> Result<Delta, EngineError> {
        let evaluated = self.evaluate(&delta.batch)?;
        self.apply_evaluated(&delta, &evaluated, None, None, state)
    }

    /// Folds the rows of `delta` into the groups, with their expressions
    /// already evaluated (by [`Aggregate::evaluate`] on the whole batch):
    /// all rows, or with `Some(Shard)` only those of the groups of that
    /// shard (their keys taken from `keys`, when every row's are there).
    pub(crate) fn apply_evaluated(
        &mut self,
        delta: &Delta,
        evaluated: &(Vec<ArrayRef>, Vec<ArrayRef>),
        shard: Option<Shard>,
        keys: Option<&BatchKeys>,
        state: &mut dyn StateSource,
    ) -> Result<Delta, EngineError> {
        let n = delta.batch.num_rows();
        let mut out = self.out_rows(match shard {
            Some(s) => 2 * n / s.of.max(1) + 64,
            None => 2 * n,
        });
        self.fold(delta, evaluated, shard, keys, state, &mut out)?;
        self.finish(out, &evaluated.0)
    }

    /// Folds the rows of `delta` (all, or those of `shard`'s groups) into
    /// the groups, each changed group's old and new row into `out`.
    /// `keys`: every row's group key, encoded and hashed once for all the
    /// shards (else this shard encodes and hashes them).
    pub(crate) fn fold(
        &mut self,
        delta: &Delta,
        (group_cols, arg_cols): &(Vec<ArrayRef>, Vec<ArrayRef>),
        shard: Option<Shard>,
        keys: Option<&BatchKeys>,
        state: &mut dyn StateSource,
        out: &mut impl Emit,
    ) -> Result<(), EngineError> {
        let mut batch = std::mem::take(&mut self.batch);
        let rows = match (keys, shard) {
            (Some(all), Some(shard)) => {
                batch.pick(all, shard);
                Rows {
                    keys: all,
                    picked: Some(&batch.rows),
                }
            }
            _ => {
                batch.fill(group_cols, delta.batch.num_rows(), shard);
                Rows {
                    keys: &batch,
                    picked: None,
                }
            }
        };
        let folded = self.fold_rows(delta, &rows, group_cols.len(), arg_cols, state, out);
        self.batch = batch;
        folded
    }

    /// Folds `batch`'s rows of `delta` (`width` key cells each).
    fn fold_rows(
        &mut self,
        delta: &Delta,
        batch: &Rows<'_>,
        width: usize,
        arg_cols: &[ArrayRef],
        state: &mut dyn StateSource,
        out: &mut impl Emit,
    ) -> Result<(), EngineError> {
        let global = self.is_global();
        let mut old = Vec::with_capacity(self.aggs.len());
        let mut new = Vec::with_capacity(self.aggs.len());
        for j in 0..batch.len() {
            if let Some(ahead) = batch.hash_of(j + 3 * AHEAD) {
                self.index.prefetch(ahead);
            }
            if let Some(ahead) = batch.hash_of(j + 2 * AHEAD) {
                self.prefetch_slot(ahead, out);
            }
            if let Some(ahead) = batch.hash_of(j + AHEAD) {
                self.prefetch_output(ahead, out);
            }
            let (i, hash, key, cells) = batch.get(j, width);
            let w = delta.weights[i];
            let t = delta.log_times[i];
            let slot = match self.find(hash, key) {
                Some(i) => i,
                None => {
                    let group = if self.complete {
                        None
                    } else {
                        let mut state_key = vec![self.state_prefix];
                        state_key.extend_from_slice(key);
                        match state.get(&state_key)? {
                            Some(bytes) => {
                                Some(decode_group(&bytes, &self.aggs).ok_or_else(|| {
                                    EngineError::Store(kappa_store::StoreError::Corrupt(
                                        "a group's state does not decode".into(),
                                    ))
                                })?)
                            }
                            None => None,
                        }
                    };
                    self.insert(hash, key, group)
                }
            };
            let entry = &mut self.slots[slot as usize];
            let group = entry
                .group
                .get_or_insert_with(|| new_group(&self.aggs, self.append_only));
            let existed = group.rows > 0 || global;
            old.clear();
            if existed {
                old.extend(group.accs.iter().zip(&self.aggs).map(|(a, s)| output(a, s)));
            }
            group.rows += w;
            for (acc, (spec, col)) in group.accs.iter_mut().zip(self.aggs.iter().zip(arg_cols)) {
                update(acc, spec, col, i, w, t)?;
            }
            let exists = group.rows > 0 || global;
            new.clear();
            if exists {
                new.extend(group.accs.iter().zip(&self.aggs).map(|(a, s)| output(a, s)));
            } else {
                // Remembered as gone until the deletion is committed.
                entry.group = None;
            }
            if existed != exists || old != new {
                if existed {
                    out.push(OutRow {
                        input_row: i,
                        key,
                        cells,
                        slot,
                        results: &old,
                        weight: -1,
                        log_time: t,
                    });
                }
                if exists {
                    out.push(OutRow {
                        input_row: i,
                        key,
                        cells,
                        slot,
                        results: &new,
                        weight: 1,
                        log_time: t,
                    });
                }
            }
            if self.fixed_size {
                debug_assert_eq!(entry.size, key_size(&entry.key) + group_size(&entry.group));
            } else {
                let size = key_size(&entry.key) + group_size(&entry.group);
                self.bytes = self.bytes + size - entry.size;
                entry.size = size;
            }
            if !entry.dirty {
                entry.dirty = true;
                self.dirty.push(slot);
            }
        }
        Ok(())
    }

    /// Puts the groups changed since the last call into `out`, for the
    /// commit: each group's state, or a deletion when the group is gone.
    pub fn take_dirty(&mut self, out: &mut kappa_store::Puts) {
        let dirty = std::mem::take(&mut self.dirty);
        for i in dirty {
            let slot = &mut self.slots[i as usize];
            slot.dirty = false;
            let key: [&[u8]; 2] = [&[self.state_prefix], &slot.key];
            match &slot.group {
                Some(g) => out.push_with(&key, Some(&|b: &mut Vec<u8>| encode_group(b, g))),
                None => {
                    out.push_with(&key, None);
                    self.deleted.push(i);
                }
            }
        }
    }

    /// The commits of the groups deleted so far are in the store: their
    /// slots are freed (unless the group came back since).
    pub fn forget_deleted(&mut self) {
        for i in std::mem::take(&mut self.deleted) {
            let slot = &self.slots[i as usize];
            if slot.live && slot.group.is_none() && !slot.dirty {
                self.remove(i);
            }
        }
    }

    /// Drops every group from memory and gives the memory back (right
    /// after a commit, when no group is dirty); groups are loaded from the
    /// store again when needed.
    pub fn evict(&mut self) {
        debug_assert!(self.dirty.is_empty(), "evict after a commit only");
        self.reset();
        self.slots.shrink_to_fit();
        self.free.shrink_to_fit();
        self.index.shrink_to_fit();
    }

    /// Estimated bytes the groups in memory take: what their keys and
    /// accumulators hold on the heap, and the slots, index and lists by
    /// their capacity (a vector that doubled holds twice its length).
    pub fn memory(&self) -> usize {
        let slots = self.slots.capacity() * std::mem::size_of::<Slot>();
        let lists = (self.free.capacity() + self.dirty.capacity() + self.deleted.capacity()) * 4;
        self.bytes + slots + self.index.bytes() + lists + self.batch.bytes()
    }

    /// Forgets every group (they are reloaded from the store).
    pub fn reset(&mut self) {
        self.slots.clear();
        self.index.clear();
        self.free.clear();
        self.dirty.clear();
        self.deleted.clear();
        self.complete = false;
        self.bytes = 0;
    }

    pub fn groups_in_memory(&self) -> usize {
        self.index.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A slot holds its key and accumulators inline; growing it past a
    /// few cache lines would cost every group lookup (and the budget).
    #[test]
    fn a_slot_stays_a_few_cache_lines() {
        let size = std::mem::size_of::<Slot>();
        println!(
            "slot: {size} bytes, accumulator: {}",
            std::mem::size_of::<Acc>()
        );
        assert!(size <= 160, "a slot takes {size} bytes");
    }

    /// Only aggregates whose accumulators never hold heap memory skip
    /// the per-row size estimate.
    #[test]
    fn only_inline_number_accumulators_are_of_fixed_size() {
        use datafusion::arrow::datatypes::Schema;
        use datafusion::physical_expr::expressions::Column as Col;
        let spec = |kind: AggKind, ty: DataType| AggSpec {
            kind,
            arg: Arc::new(Col::new("x", 0)),
            arg_type: ty.clone(),
            out_type: ty,
        };
        let fixed = |aggs: Vec<AggSpec>, append_only: bool| {
            Aggregate::new(
                Vec::new(),
                Vec::new(),
                aggs,
                Arc::new(Schema::empty()),
                append_only,
            )
            .fixed_size
        };
        let (int, float, text) = (DataType::Int64, DataType::Float64, DataType::Utf8);
        assert!(fixed(vec![], false));
        assert!(fixed(vec![spec(AggKind::Count, int.clone())], false));
        assert!(fixed(
            vec![
                spec(AggKind::Sum, float.clone()),
                spec(AggKind::Count, int.clone())
            ],
            false
        ));
        assert!(fixed(
            vec![
                spec(AggKind::Avg, int.clone()),
                spec(AggKind::Sum, int.clone())
            ],
            false
        ));
        // Three spill out of the slot.
        assert!(!fixed(
            vec![
                spec(AggKind::Count, int.clone()),
                spec(AggKind::Sum, int.clone()),
                spec(AggKind::Sum, float.clone())
            ],
            false
        ));
        for append_only in [false, true] {
            for kind in [
                AggKind::Min,
                AggKind::Max,
                AggKind::Latest,
                AggKind::Earliest,
                AggKind::CountDistinct,
            ] {
                assert!(!fixed(vec![spec(kind, text.clone())], append_only));
            }
        }
    }
}
