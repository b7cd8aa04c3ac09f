//! A view's groups split by key into shards, one per worker: each shard
//! holds its own groups and pending rows, and folds its rows of a batch
//! on its own thread. The stages before the aggregate run once, on the
//! whole batch, and so does the evaluation of the aggregate's
//! expressions; each shard then goes through the batch's group keys and
//! folds the rows of the groups it owns (by a hash of the key, the same for the whole process), so
//! the shards' groups and view rows never overlap, no thread routes rows
//! for the others, and a commit writes them all together, at one frontier.

use crate::EngineError;
use crate::ops::aggregate::Shard;
use crate::ops::direct::{Direct, DirectRows};
use crate::ops::group_keys::BatchKeys;
use crate::ops::{Delta, Stage};
use crate::pending::{Pending, sink};
use crate::view::StoreSource;
use datafusion::arrow::array::ArrayRef;
use kappa_store::{StateStore, ViewId};
use std::sync::Arc;

/// A batch smaller than this is folded shard after shard on the calling
/// thread (a live step: a thread hop would cost more than it saves).
const PARALLEL_ROWS: usize = 4096;

/// How many shards a view with `stages` gets with `workers`: one per
/// worker when the view has exactly one aggregate, with GROUP BY, behind
/// stateless stages only and followed by stateless stages only; else one.
pub(crate) fn count(stages: &[Stage], workers: usize) -> usize {
    let aggregates: Vec<_> = stages
        .iter()
        .filter_map(|s| match s {
            Stage::Aggregate(a) => Some(a),
            _ => None,
        })
        .collect();
    let splittable = matches!(aggregates.as_slice(), [a] if !a.is_global())
        && !stages.iter().any(|s| matches!(s, Stage::Window(_)));
    if splittable { workers.max(1) } else { 1 }
}

/// `n` copies of `stages` with no state, for the shards beyond the first.
pub(crate) fn copies(stages: &[Stage], n: usize) -> Vec<Vec<Stage>> {
    (0..n)
        .map(|_| stages.iter().filter_map(Stage::empty_copy).collect())
        .collect()
}

/// Folds `delta` (the aggregate's input, its expressions `evaluated`)
/// into the shards: `shards[k]` is shard k's stages from its aggregate
/// on, `pending[k]` its pending rows.
pub(crate) fn apply(
    store: &Arc<dyn StateStore>,
    view: ViewId,
    delta: &Delta,
    evaluated: &(Vec<ArrayRef>, Vec<ArrayRef>),
    mut shards: Vec<&mut [Stage]>,
    pending: &mut [Pending],
) -> Result<(), EngineError> {
    let of = shards.len();
    // Every row's group key encoded and hashed once, here, for all the
    // shards: each used to encode and hash every row to find its own.
    let keys = (of > 1).then(|| {
        let mut keys = BatchKeys::default();
        keys.fill(&evaluated.0, delta.batch.num_rows(), None);
        keys
    });
    let keys = keys.as_ref();
    let fold = |stages: &mut [Stage], index: usize, pending: &mut Pending| {
        let mut source = StoreSource {
            read: store.read()?,
            view,
        };
        let Some((Stage::Aggregate(a), after)) = stages.split_first_mut() else {
            return Err(EngineError::Query(
                "a shard has no aggregate (a bug)".into(),
            ));
        };
        let shard = (of > 1).then_some(Shard { index, of });
        if let Some(plan) = Direct::plan(a, after, &evaluated.0) {
            let mut rows = DirectRows {
                plan: &plan,
                pending,
            };
            return a.fold(delta, evaluated, shard, keys, &mut source, &mut rows);
        }
        let mut out = a.apply_evaluated(delta, evaluated, shard, keys, &mut source)?;
        for s in after {
            out = s.apply(out, &mut source)?;
        }
        sink(pending, &out);
        Ok(())
    };
    let work = shards.iter_mut().enumerate().zip(pending.iter_mut());
    if delta.len() < PARALLEL_ROWS {
        for ((index, stages), pending) in work {
            fold(stages, index, pending)?;
        }
        return Ok(());
    }
    let fold = &fold;
    std::thread::scope(|scope| {
        let mut work = work;
        let first = work.next();
        let mut result = Ok(());
        let mut handles = Vec::new();
        for ((index, stages), pending) in work {
            let spawned = std::thread::Builder::new()
                .name("kappa-shard".into())
                .spawn_scoped(scope, move || fold(stages, index, pending));
            match spawned {
                Ok(h) => handles.push(h),
                Err(e) => {
                    result = Err(EngineError::Query(format!(
                        "cannot start a thread for a shard of the view: {e}"
                    )));
                }
            }
        }
        if let Some(((index, stages), pending)) = first {
            result = result.and(fold(stages, index, pending));
        }
        for h in handles {
            let joined = h
                .join()
                .unwrap_or_else(|_| Err(EngineError::Query("a shard of the view failed".into())));
            result = result.and(joined);
        }
        result
    })
}
