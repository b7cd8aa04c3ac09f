//! When a batch fails to evaluate (a failed cast on a raw JSON topic, say),
//! the view isolates the records that do not evaluate, runs the others, and
//! keeps each failure as a dead letter in its state (by log time, with the
//! reason and the record's position); the view goes on.

use crate::EngineError;
use crate::ops::aggregate::{Aggregate, StateSource};
use crate::ops::{Delta, Keys, Stage};
use crate::view::DEAD_LETTER_PREFIX;
use kappa_store::Puts;

pub(crate) fn run(
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
pub(crate) fn is_evaluation_error(e: &EngineError) -> bool {
    matches!(e, EngineError::Query(_) | EngineError::Plan(_))
}

/// Runs the stages before a view's first aggregate record by record, and
/// evaluates that aggregate's expressions on each record's output (if
/// given): the output of the records that evaluate (the aggregate's
/// input, not folded in yet), and (log time, reason) of those that do not.
pub(crate) fn isolate(
    stateless: &mut [Stage],
    aggregate: Option<&Aggregate>,
    delta: &Delta,
    source: &mut dyn StateSource,
) -> Result<(Delta, Vec<(u64, String)>), EngineError> {
    let mut outputs = Vec::new();
    let mut failed = Vec::new();
    for i in 0..delta.len() {
        let mut keys = Keys::default();
        keys.push(delta.keys.get(i));
        let one = Delta {
            batch: delta.batch.slice(i, 1),
            weights: vec![delta.weights[i]],
            log_times: vec![delta.log_times[i]],
            keys,
            groups: Vec::new(),
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
        return Ok((empty_output(stateless, delta), failed));
    };
    let schema = first.batch.schema();
    let batches: Vec<_> = outputs.iter().map(|d| d.batch.clone()).collect();
    let batch = datafusion::arrow::compute::concat_batches(&schema, &batches)?;
    let mut out = Delta {
        batch,
        weights: Vec::new(),
        log_times: Vec::new(),
        keys: Keys::default(),
        groups: Vec::new(),
    };
    for d in outputs {
        out.weights.extend(d.weights);
        out.log_times.extend(d.log_times);
        out.keys.extend(&d.keys);
    }
    Ok((out, failed))
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
        keys: Keys::default(),
        groups: Vec::new(),
    }
}

pub(crate) fn dead_letter(
    out: &mut Puts,
    topic: &str,
    partition: u32,
    offset: u64,
    log_time: u64,
    reason: &str,
) {
    let mut key = vec![DEAD_LETTER_PREFIX];
    key.extend_from_slice(&log_time.to_be_bytes());
    let letter = serde_json::json!({
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "log_time": log_time,
        "reason": reason,
    });
    out.push(&key, Some(letter.to_string().as_bytes()));
}

impl crate::Engine {
    /// The records a view could not evaluate, oldest first: each with its
    /// topic, partition, offset, log time and the reason.
    pub async fn dead_letters(&self, view: &str) -> Result<Vec<serde_json::Value>, EngineError> {
        let id = self.view_id(view).await?;
        let mut out = Vec::new();
        self.store
            .read()?
            .state_prefix(id, &[crate::view::DEAD_LETTER_PREFIX], &mut |_, v| {
                out.push(serde_json::from_slice(v).unwrap_or(serde_json::Value::Null));
                true
            })?;
        Ok(out)
    }
}
