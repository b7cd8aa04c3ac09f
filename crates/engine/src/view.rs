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
                let mut key = vec![DEAD_LETTER_PREFIX];
                key.extend_from_slice(&r.log_time.0.to_be_bytes());
                let letter = serde_json::json!({
                    "topic": r.topic.to_string(), "partition": r.partition,
                    "offset": r.offset, "log_time": r.log_time.0, "reason": reason,
                });
                commit
                    .state
                    .push((key, Some(letter.to_string().into_bytes())));
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
            for s in &mut self.pipeline.stages {
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
