//! Kappa's incremental operators. A view is a chain of stages over deltas:
//! rows with a weight (+1 inserted, -1 retracted), the log time of the
//! record that caused them, and the key of the view row they become.
//! Filter and projection evaluate DataFusion physical expressions on Arrow
//! batches; the aggregate keeps state per group and turns each input row
//! into a retraction of the group's old output row and the new one.

mod accumulator;
pub mod aggregate;
pub(crate) mod direct;
mod group_index;
pub(crate) mod group_keys;
pub(crate) mod output;
pub mod window;

use crate::EngineError;
use datafusion::arrow::array::{Array, BooleanArray, RecordBatch};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::physical_expr::PhysicalExpr;
use std::sync::Arc;

/// Rows with weights, causes and view keys: the unit stages exchange.
#[derive(Clone, Debug)]
pub struct Delta {
    pub batch: RecordBatch,
    pub weights: Vec<i64>,
    pub log_times: Vec<u64>,
    pub keys: Keys,
    /// Row identities, once an aggregate has run: the slot of the group
    /// (in the last aggregate) each row belongs to. Rows with the same key
    /// have the same slot, which lets the sink find a row's pending
    /// change without hashing its key again. Valid until the next commit
    /// (when slots may be freed). Empty before any aggregate.
    pub groups: Vec<u32>,
}

impl Delta {
    /// A topic's records as insertions: weight 1, the log time in column
    /// `log_time` (a timestamp), each keyed by its log time until a stage
    /// gives it a view key.
    pub fn insertions(batch: RecordBatch, log_time: usize) -> Delta {
        use datafusion::arrow::array::AsArray;
        use datafusion::arrow::datatypes::TimestampMicrosecondType;
        let n = batch.num_rows();
        let log_times: Vec<u64> = batch
            .column(log_time)
            .as_primitive::<TimestampMicrosecondType>()
            .values()
            .iter()
            .map(|&t| t as u64)
            .collect();
        let mut keys = Keys::with_capacity(n, 8 * n);
        for t in &log_times {
            keys.push(&t.to_be_bytes());
        }
        Delta {
            batch,
            weights: vec![1; n],
            log_times,
            keys,
            groups: Vec::new(),
        }
    }
}

/// The view keys of a delta's rows, in one buffer (no allocation per row).
#[derive(Clone, Debug, Default)]
pub struct Keys {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl Keys {
    pub fn with_capacity(rows: usize, bytes: usize) -> Keys {
        Keys {
            bytes: Vec::with_capacity(bytes),
            ends: Vec::with_capacity(rows),
        }
    }

    pub fn push(&mut self, key: &[u8]) {
        self.bytes.extend_from_slice(key);
        self.ends.push(self.bytes.len());
    }

    pub fn get(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.bytes[start..self.ends[i]]
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    pub fn extend(&mut self, other: &Keys) {
        for i in 0..other.len() {
            self.push(other.get(i));
        }
    }
}

impl Delta {
    pub fn len(&self) -> usize {
        self.weights.len()
    }

    pub fn is_empty(&self) -> bool {
        self.weights.is_empty()
    }

    fn retain(self, mask: &BooleanArray) -> Result<Delta, EngineError> {
        let batch = filter_record_batch(&self.batch, mask)?;
        let keep = |i: usize| mask.is_valid(i) && mask.value(i);
        let mut weights = Vec::with_capacity(batch.num_rows());
        let mut log_times = Vec::with_capacity(batch.num_rows());
        let mut keys = Keys::with_capacity(batch.num_rows(), 0);
        let mut groups = Vec::with_capacity(if self.groups.is_empty() {
            0
        } else {
            batch.num_rows()
        });
        for i in 0..self.len() {
            if keep(i) {
                weights.push(self.weights[i]);
                log_times.push(self.log_times[i]);
                keys.push(self.keys.get(i));
                if let Some(&g) = self.groups.get(i) {
                    groups.push(g);
                }
            }
        }
        Ok(Delta {
            batch,
            weights,
            log_times,
            keys,
            groups,
        })
    }
}

pub enum Stage {
    Filter(Arc<dyn PhysicalExpr>),
    Project {
        exprs: Vec<Arc<dyn PhysicalExpr>>,
        schema: SchemaRef,
    },
    Aggregate(Box<aggregate::Aggregate>),
    /// Event-time windows over a topic's records (always the first stage).
    Window(Box<window::Windower>),
}

impl Stage {
    /// The same stage with no state: for another shard of a view's
    /// groups. `None` for a window (its state is not split by group).
    pub fn empty_copy(&self) -> Option<Stage> {
        Some(match self {
            Stage::Filter(p) => Stage::Filter(p.clone()),
            Stage::Project { exprs, schema } => Stage::Project {
                exprs: exprs.clone(),
                schema: schema.clone(),
            },
            Stage::Aggregate(a) => Stage::Aggregate(Box::new(a.empty_copy())),
            Stage::Window(_) => return None,
        })
    }

    /// Turns one delta into the next. The aggregate reads and updates its
    /// state through `state`.
    pub fn apply(
        &mut self,
        delta: Delta,
        state: &mut dyn aggregate::StateSource,
    ) -> Result<Delta, EngineError> {
        if delta.is_empty() {
            return Ok(delta);
        }
        match self {
            Stage::Filter(predicate) => {
                let value = predicate.evaluate(&delta.batch)?;
                let array = value.into_array(delta.batch.num_rows())?;
                let mask = array
                    .as_any()
                    .downcast_ref::<BooleanArray>()
                    .ok_or_else(|| EngineError::Plan("a filter must be a boolean".into()))?
                    .clone();
                delta.retain(&mask)
            }
            Stage::Project { exprs, schema } => {
                let n = delta.batch.num_rows();
                let columns = exprs
                    .iter()
                    .map(|e| e.evaluate(&delta.batch).and_then(|v| v.into_array(n)))
                    .collect::<Result<Vec<_>, _>>()?;
                let batch = RecordBatch::try_new(schema.clone(), columns)?;
                Ok(Delta { batch, ..delta })
            }
            Stage::Aggregate(agg) => agg.apply(delta, state),
            Stage::Window(w) => w.apply(delta, state),
        }
    }
}
