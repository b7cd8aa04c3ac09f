//! A view at run time: its stages, applied to the log from its frontier.
//! Replay from the start and live tailing are the same loop: read a batch of
//! records in log-time order, push it through the stages, and commit the
//! changed rows, the operator state and the new frontier in one store
//! transaction.

use crate::EngineError;
use crate::ops::aggregate::StateSource;
use crate::ops::{Delta, Stage};
use crate::plan::Pipeline;
use crate::schema::TopicDef;
use crate::value::encode_row;
use datafusion::common::ScalarValue;
use kappa_log::{Log, LogTime, ReadLimits, Record};
use kappa_store::{Change, StateStore, StoreRead, ViewCommit, ViewId};
use std::collections::HashMap;
use std::sync::Arc;

/// Dead letters live in the view's state under this prefix, by log time.
pub const DEAD_LETTER_PREFIX: u8 = 0xFF;

pub struct ViewRuntime {
    pub id: ViewId,
    pub name: String,
    pub topic: TopicDef,
    pub pipeline: Pipeline,
    /// The last committed frontier, once known.
    pub frontier: Option<u64>,
    /// AS OF reaches this far behind the frontier; older changes are
    /// trimmed as the view advances.
    pub history_micros: u64,
}

struct StoreSource<'a> {
    read: Box<dyn StoreRead + 'a>,
    view: ViewId,
}

impl StateSource for StoreSource<'_> {
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        Ok(self.read.state(self.view, key)?)
    }
}

/// What one catch-up pass did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Progress {
    pub records: u64,
    pub commits: u64,
    pub frontier: u64,
}

impl ViewRuntime {
    /// Applies the log from the view's frontier to `head` (a log time),
    /// committing every batch.
    pub async fn catch_up(
        &mut self,
        log: &Arc<dyn Log>,
        store: &Arc<dyn StateStore>,
        head: u64,
        limits: ReadLimits,
    ) -> Result<Progress, EngineError> {
        let mut progress = Progress::default();
        let frontier = match self.frontier {
            Some(f) => f,
            None => {
                let meta = store.read()?.meta(self.id)?;
                match meta {
                    Some(m) => m.frontier,
                    None => {
                        self.start(store)?;
                        0
                    }
                }
            }
        };
        self.frontier = Some(frontier);
        progress.frontier = frontier;
        if frontier >= head {
            return Ok(progress);
        }
        let mut reader = log
            .merged_reader(&[self.topic.name.as_str()], LogTime(frontier))
            .await?;
        while self.frontier.unwrap_or(0) < head {
            let records = reader.next_batch(limits).await?;
            let position = reader.position().0;
            let commit = self.step(store, &records, position)?;
            let mut w = store.write()?;
            w.apply(&commit)?;
            w.commit()?;
            self.frontier = Some(position);
            progress.records += records.len() as u64;
            progress.commits += 1;
            progress.frontier = position;
            if records.is_empty() {
                break;
            }
        }
        if progress.commits > 0 {
            let before = progress.frontier.saturating_sub(self.history_micros);
            let mut w = store.write()?;
            w.trim_history(self.id, before)?;
            w.commit()?;
        }
        Ok(progress)
    }

    /// A new view: commit its initial state (a global aggregate's row).
    fn start(&mut self, store: &Arc<dyn StateStore>) -> Result<(), EngineError> {
        let mut delta = None;
        let mut rest = 0;
        for (i, s) in self.pipeline.stages.iter_mut().enumerate() {
            if let Stage::Aggregate(a) = s
                && a.is_global()
            {
                delta = Some(a.initial(0)?);
                rest = i + 1;
            }
        }
        let mut commit = ViewCommit {
            view: self.id,
            ..ViewCommit::default()
        };
        if let Some(mut d) = delta {
            let mut source = crate::ops::aggregate::NoState;
            for s in &mut self.pipeline.stages[rest..] {
                d = s.apply(d, &mut source)?;
            }
            sink(&mut commit, d);
            // A change at log time 0 is the view's starting point.
            for c in &mut commit.changes {
                c.log_time = 0;
            }
        }
        commit.state = self.take_state();
        let mut w = store.write()?;
        w.apply(&commit)?;
        w.commit()?;
        Ok(())
    }

    /// Pushes `records` through the stages; the commit takes the view to
    /// `position`.
    pub fn step(
        &mut self,
        store: &Arc<dyn StateStore>,
        records: &[Record],
        position: u64,
    ) -> Result<ViewCommit, EngineError> {
        let mut commit = ViewCommit {
            view: self.id,
            frontier: position,
            ..ViewCommit::default()
        };
        if !records.is_empty() {
            let (batch, rejected) = self.topic.to_batch(records);
            for (i, reason) in rejected {
                let r = &records[i];
                commit
                    .state
                    .push(dead_letter(r.log_time.0, Some(r), &reason));
            }
            let n = batch.num_rows();
            // Column 2 from the end is `_log_time`, in batch order.
            let log_col = batch.column(batch.num_columns() - 2);
            let log_times: Vec<u64> = (0..n)
                .map(|i| match ScalarValue::try_from_array(log_col, i) {
                    Ok(ScalarValue::TimestampMicrosecond(Some(t), _)) => t as u64,
                    _ => 0,
                })
                .collect();
            let keys = log_times.iter().map(|t| t.to_be_bytes().to_vec()).collect();
            let mut delta = Delta {
                batch,
                weights: vec![1; n],
                log_times,
                keys,
            };
            let mut source = StoreSource {
                read: store.read()?,
                view: self.id,
            };
            // The stateless stages before the first aggregate see the raw
            // records: a record they cannot evaluate (a failed cast, say)
            // is found by evaluating the batch record by record, and goes
            // to the dead letters; the others go on.
            let split = self
                .pipeline
                .stages
                .iter()
                .position(|s| matches!(s, Stage::Aggregate(_)))
                .unwrap_or(self.pipeline.stages.len());
            // The first aggregate evaluates its expressions before it
            // changes any state, so its evaluation is part of the check.
            let checked = (split + 1).min(self.pipeline.stages.len());
            let (prefix, rest) = self.pipeline.stages.split_at_mut(checked);
            delta = match run(prefix, delta.clone(), &mut source) {
                Ok(d) => d,
                Err(e) if is_evaluation_error(&e) => {
                    let (kept, failed) = isolate(prefix, &delta, &mut source)?;
                    for (log_time, reason) in failed {
                        let r = records.iter().find(|r| r.log_time.0 == log_time);
                        commit.state.push(dead_letter(log_time, r, &reason));
                    }
                    kept
                }
                Err(e) => return Err(e),
            };
            for s in rest {
                delta = s.apply(delta, &mut source)?;
            }
            sink(&mut commit, delta);
        }
        commit.state.extend(self.take_state());
        Ok(commit)
    }

    fn take_state(&mut self) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        let mut out = Vec::new();
        for s in &mut self.pipeline.stages {
            if let Stage::Aggregate(a) = s {
                out.extend(a.take_dirty());
            }
        }
        out
    }
}

fn run(
    stages: &mut [Stage],
    mut delta: Delta,
    source: &mut dyn StateSource,
) -> Result<Delta, EngineError> {
    for s in stages {
        delta = s.apply(delta, source)?;
    }
    Ok(delta)
}

/// An error that comes from evaluating expressions on the data (as opposed
/// to the store or the log failing).
fn is_evaluation_error(e: &EngineError) -> bool {
    matches!(e, EngineError::Query(_) | EngineError::Plan(_))
}

/// Runs the stateless `stages` record by record: the output of the records
/// that evaluate, and (log time, reason) of those that do not.
fn isolate(
    stages: &mut [Stage],
    delta: &Delta,
    source: &mut dyn StateSource,
) -> Result<(Delta, Vec<(u64, String)>), EngineError> {
    let mut outputs = Vec::new();
    let mut failed = Vec::new();
    // The stateless stages run per record; a trailing aggregate only
    // evaluates per record, then folds the records that pass, together.
    let (stateless, aggregate) = match stages.split_last_mut() {
        Some((Stage::Aggregate(a), before)) => (before, Some(a)),
        _ => (stages, None),
    };
    for i in 0..delta.len() {
        let one = Delta {
            batch: delta.batch.slice(i, 1),
            weights: vec![delta.weights[i]],
            log_times: vec![delta.log_times[i]],
            keys: vec![delta.keys[i].clone()],
        };
        let result = run(stateless, one, source).and_then(|d| match &aggregate {
            Some(a) if !d.is_empty() => a.evaluate(&d.batch).map(|_| d),
            _ => Ok(d),
        });
        match result {
            Ok(d) => outputs.push(d),
            Err(e) if is_evaluation_error(&e) => failed.push((delta.log_times[i], e.to_string())),
            Err(e) => return Err(e),
        }
    }
    let Some(first) = outputs.first() else {
        // Nothing evaluated: no rows, in the stages' output shape.
        let empty = empty_output(stateless, delta);
        return match aggregate {
            Some(a) => Ok((a.apply(empty, source)?, failed)),
            None => Ok((empty, failed)),
        };
    };
    let schema = first.batch.schema();
    let batches: Vec<_> = outputs.iter().map(|d| d.batch.clone()).collect();
    let batch = datafusion::arrow::compute::concat_batches(&schema, &batches)?;
    let mut out = Delta {
        batch,
        weights: Vec::new(),
        log_times: Vec::new(),
        keys: Vec::new(),
    };
    for d in outputs {
        out.weights.extend(d.weights);
        out.log_times.extend(d.log_times);
        out.keys.extend(d.keys);
    }
    match aggregate {
        Some(a) => Ok((a.apply(out, source)?, failed)),
        None => Ok((out, failed)),
    }
}

/// No rows in the shape the stages output (that of their last projection,
/// else their input's).
fn empty_output(stages: &[Stage], delta: &Delta) -> Delta {
    let schema = stages
        .iter()
        .rev()
        .find_map(|s| match s {
            Stage::Project { schema, .. } => Some(schema.clone()),
            _ => None,
        })
        .unwrap_or_else(|| delta.batch.schema());
    Delta {
        batch: datafusion::arrow::array::RecordBatch::new_empty(schema),
        weights: Vec::new(),
        log_times: Vec::new(),
        keys: Vec::new(),
    }
}

fn dead_letter(log_time: u64, r: Option<&Record>, reason: &str) -> (Vec<u8>, Option<Vec<u8>>) {
    let mut key = vec![DEAD_LETTER_PREFIX];
    key.extend_from_slice(&log_time.to_be_bytes());
    let letter = serde_json::json!({
        "topic": r.map(|r| r.topic.to_string()),
        "partition": r.map(|r| r.partition),
        "offset": r.map(|r| r.offset),
        "log_time": log_time,
        "reason": reason,
    });
    (key, Some(letter.to_string().into_bytes()))
}

/// Turns the last stage's delta into row puts and changes, one change per
/// (key, log time).
fn sink(commit: &mut ViewCommit, delta: Delta) {
    let n = delta.len();
    let width = delta.batch.num_columns();
    let mut current: HashMap<Vec<u8>, Option<Vec<u8>>> = HashMap::new();
    let mut last_change: HashMap<Vec<u8>, usize> = HashMap::new();
    for i in 0..n {
        let row: Vec<ScalarValue> = (0..width)
            .map(|c| ScalarValue::try_from_array(delta.batch.column(c), i).expect("in range"))
            .collect();
        let encoded = encode_row(&row);
        let key = &delta.keys[i];
        let t = delta.log_times[i];
        let before = match current.get(key) {
            Some(v) => v.clone(),
            // Not seen in this batch: a retraction names the old row.
            None if delta.weights[i] < 0 => Some(encoded.clone()),
            None => None,
        };
        let after = if delta.weights[i] > 0 {
            Some(encoded)
        } else {
            None
        };
        match last_change.get(key) {
            Some(&at) if commit.changes[at].log_time == t => {
                commit.changes[at].after = after.clone();
            }
            _ => {
                last_change.insert(key.clone(), commit.changes.len());
                commit.changes.push(Change {
                    log_time: t,
                    key: key.clone(),
                    before,
                    after: after.clone(),
                });
            }
        }
        current.insert(key.clone(), after);
    }
    commit.changes.retain(|c| c.before != c.after);
    commit.rows = current.into_iter().collect();
}
