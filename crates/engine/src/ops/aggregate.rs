//! GROUP BY, maintained incrementally. Each group keeps its accumulators;
//! an input row with weight +1 adds to them, -1 takes away. Groups live in
//! memory as a cache over the state store: a group not in memory is loaded
//! from the store, and groups changed since the last commit are written
//! back with it.

use super::Delta;
use crate::EngineError;
use crate::value::{decode_row, decode_scalar, encode_cell, encode_row, encode_scalar};
use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::physical_expr::PhysicalExpr;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

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
    /// Groups in memory; `None` is a group known to be gone (its deletion is
    /// not committed yet, so the store must not be asked).
    groups: HashMap<Vec<u8>, Option<Group>>,
    dirty: HashSet<Vec<u8>>,
}

#[derive(Clone, Debug, PartialEq)]
struct Group {
    values: Vec<ScalarValue>,
    /// Sum of the weights of the rows in the group.
    rows: i64,
    accs: Vec<Acc>,
}

#[derive(Clone, Debug, PartialEq)]
enum Acc {
    Count(i64),
    SumInt {
        sum: i128,
        n: i64,
    },
    SumFloat {
        sum: f64,
        n: i64,
    },
    Best(Option<ScalarValue>),
    /// The value with its log time (append-only input).
    ByTime(Option<(u64, ScalarValue)>),
    /// Every distinct value (by its encoding) with its multiplicity.
    Values(BTreeMap<Vec<u8>, (ScalarValue, i64)>),
}

impl Aggregate {
    pub fn new(
        group: Vec<Arc<dyn PhysicalExpr>>,
        group_types: Vec<DataType>,
        aggs: Vec<AggSpec>,
        out_schema: SchemaRef,
        append_only: bool,
    ) -> Aggregate {
        Aggregate {
            group,
            group_types,
            aggs,
            out_schema,
            append_only,
            state_prefix: 0,
            groups: HashMap::new(),
            dirty: HashSet::new(),
        }
    }

    /// A global aggregate (no GROUP BY) has its one row even with no input.
    pub fn is_global(&self) -> bool {
        self.group.is_empty()
    }

    /// The output delta of the initial, empty state (a global aggregate's
    /// row over no input), at log time `at`.
    pub fn initial(&mut self, at: u64) -> Result<Delta, EngineError> {
        let g = self.new_group(Vec::new());
        let row = self.output(&g);
        self.groups.insert(Vec::new(), Some(g));
        self.dirty.insert(Vec::new());
        self.rows_to_delta(vec![(Vec::new(), row, 1, at)])
    }

    fn new_group(&self, values: Vec<ScalarValue>) -> Group {
        let accs = self
            .aggs
            .iter()
            .map(|a| match a.kind {
                AggKind::Count => Acc::Count(0),
                AggKind::Sum | AggKind::Avg if is_float(&a.arg_type) || a.kind == AggKind::Avg => {
                    Acc::SumFloat { sum: 0.0, n: 0 }
                }
                AggKind::Sum | AggKind::Avg => Acc::SumInt { sum: 0, n: 0 },
                AggKind::Min | AggKind::Max if self.append_only => Acc::Best(None),
                AggKind::Latest | AggKind::Earliest => Acc::ByTime(None),
                AggKind::Min | AggKind::Max | AggKind::CountDistinct => {
                    Acc::Values(BTreeMap::new())
                }
            })
            .collect();
        Group {
            values,
            rows: 0,
            accs,
        }
    }

    /// Evaluates the group and argument expressions of `batch`: all of the
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
        let arg_cols: Vec<ArrayRef> = self
            .aggs
            .iter()
            .map(|a| a.arg.evaluate(batch).and_then(|v| v.into_array(n)))
            .collect::<Result<_, _>>()?;
        Ok((group_cols, arg_cols))
    }

    /// Folds `delta` into the groups. An evaluation error leaves the state
    /// as it was.
    pub fn apply(
        &mut self,
        delta: Delta,
        state: &mut dyn StateSource,
    ) -> Result<Delta, EngineError> {
        let n = delta.batch.num_rows();
        let (group_cols, arg_cols) = self.evaluate(&delta.batch)?;
        let mut out = Vec::with_capacity(2 * n);
        let mut key = Vec::new();
        for i in 0..n {
            key.clear();
            for c in &group_cols {
                encode_cell(&mut key, c, i);
            }
            let w = delta.weights[i];
            let t = delta.log_times[i];
            let cached = self.groups.remove(&key);
            let mut group = match cached {
                Some(Some(g)) => g,
                Some(None) => self.new_group(group_values(&group_cols, i)?),
                None => match state.get(&self.state_key(&key))? {
                    Some(bytes) => self.decode_group(&bytes).ok_or_else(|| {
                        EngineError::Store(kappa_store::StoreError::Corrupt(
                            "a group's state does not decode".into(),
                        ))
                    })?,
                    None => self.new_group(group_values(&group_cols, i)?),
                },
            };
            let existed = group.rows > 0 || self.is_global();
            let old = existed.then(|| self.output(&group));
            group.rows += w;
            for (acc, (spec, col)) in group.accs.iter_mut().zip(self.aggs.iter().zip(&arg_cols)) {
                update(acc, spec, col, i, w, t)?;
            }
            let exists = group.rows > 0 || self.is_global();
            let new = exists.then(|| self.output(&group));
            if old != new {
                if let Some(old) = old {
                    out.push((key.clone(), old, -1, t));
                }
                if let Some(new) = new {
                    out.push((key.clone(), new, 1, t));
                }
            }
            self.dirty.insert(key.clone());
            // An emptied group is remembered as gone (deleted at commit).
            self.groups.insert(key.clone(), exists.then_some(group));
        }
        self.rows_to_delta(out)
    }

    fn rows_to_delta(
        &self,
        rows: Vec<(Vec<u8>, Vec<ScalarValue>, i64, u64)>,
    ) -> Result<Delta, EngineError> {
        let width = self.out_schema.fields().len();
        let mut columns = Vec::with_capacity(width);
        for c in 0..width {
            let dt = self.out_schema.field(c).data_type();
            let array = if rows.is_empty() {
                datafusion::arrow::array::new_empty_array(dt)
            } else {
                ScalarValue::iter_to_array(rows.iter().map(|r| r.1[c].clone()))?
            };
            columns.push(array);
        }
        let batch = RecordBatch::try_new(self.out_schema.clone(), columns)?;
        let mut keys = Vec::with_capacity(rows.len());
        let mut weights = Vec::with_capacity(rows.len());
        let mut log_times = Vec::with_capacity(rows.len());
        for (k, _, w, t) in rows {
            keys.push(k);
            weights.push(w);
            log_times.push(t);
        }
        Ok(Delta {
            batch,
            weights,
            log_times,
            keys,
        })
    }

    /// The group's output row: group values, then each aggregate's result.
    fn output(&self, g: &Group) -> Vec<ScalarValue> {
        let mut row = g.values.clone();
        for (acc, spec) in g.accs.iter().zip(&self.aggs) {
            let v = match (acc, spec.kind) {
                (Acc::Count(n), _) => ScalarValue::Int64(Some(*n)),
                (Acc::SumInt { sum, n }, AggKind::Sum) => {
                    ScalarValue::Int64((*n > 0).then_some(*sum as i64))
                }
                (Acc::SumFloat { sum, n }, AggKind::Sum) => {
                    ScalarValue::Float64((*n > 0).then_some(*sum))
                }
                (Acc::SumFloat { sum, n }, _) => {
                    ScalarValue::Float64((*n > 0).then(|| *sum / *n as f64))
                }
                (Acc::SumInt { sum, n }, _) => {
                    ScalarValue::Float64((*n > 0).then(|| *sum as f64 / *n as f64))
                }
                (Acc::Best(v), _) => v.clone().unwrap_or(ScalarValue::Null),
                (Acc::ByTime(v), _) => v.as_ref().map_or(ScalarValue::Null, |(_, v)| v.clone()),
                (Acc::Values(m), AggKind::CountDistinct) => {
                    ScalarValue::Int64(Some(m.len() as i64))
                }
                (Acc::Values(m), kind) => {
                    let mut best: Option<&ScalarValue> = None;
                    for (v, _) in m.values() {
                        let better = match best {
                            None => true,
                            Some(b) if kind == AggKind::Min => v < b,
                            Some(b) => v > b,
                        };
                        if better {
                            best = Some(v);
                        }
                    }
                    best.cloned().unwrap_or(ScalarValue::Null)
                }
            };
            let v = if v.is_null() {
                ScalarValue::try_from(&spec.out_type).unwrap_or(ScalarValue::Null)
            } else {
                v.cast_to(&spec.out_type).unwrap_or(v)
            };
            row.push(v);
        }
        row
    }

    fn state_key(&self, key: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(1 + key.len());
        k.push(self.state_prefix);
        k.extend_from_slice(key);
        k
    }

    /// Groups changed since the last call, for the commit: (key, state or
    /// `None` when the group is gone).
    pub fn take_dirty(&mut self) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        let dirty = std::mem::take(&mut self.dirty);
        dirty
            .into_iter()
            .map(|k| {
                let v = self
                    .groups
                    .get(&k)
                    .and_then(Option::as_ref)
                    .map(|g| self.encode_group(g));
                (self.state_key(&k), v)
            })
            .collect()
    }

    /// Drops every group from memory (after a commit, when over budget).
    pub fn evict_clean(&mut self) {
        let dirty = &self.dirty;
        self.groups.retain(|k, _| dirty.contains(k));
    }

    pub fn groups_in_memory(&self) -> usize {
        self.groups.len()
    }

    fn encode_group(&self, g: &Group) -> Vec<u8> {
        let mut out = encode_row(&g.values);
        out.extend_from_slice(&g.rows.to_le_bytes());
        for acc in &g.accs {
            match acc {
                Acc::Count(n) => {
                    out.push(0);
                    out.extend_from_slice(&n.to_le_bytes());
                }
                Acc::SumInt { sum, n } => {
                    out.push(1);
                    out.extend_from_slice(&sum.to_le_bytes());
                    out.extend_from_slice(&n.to_le_bytes());
                }
                Acc::SumFloat { sum, n } => {
                    out.push(2);
                    out.extend_from_slice(&sum.to_le_bytes());
                    out.extend_from_slice(&n.to_le_bytes());
                }
                Acc::Best(v) => {
                    out.push(3);
                    match v {
                        None => out.push(0),
                        Some(v) => {
                            out.push(1);
                            encode_scalar(&mut out, v);
                        }
                    }
                }
                Acc::ByTime(v) => {
                    out.push(5);
                    match v {
                        None => out.push(0),
                        Some((t, v)) => {
                            out.push(1);
                            out.extend_from_slice(&t.to_le_bytes());
                            encode_scalar(&mut out, v);
                        }
                    }
                }
                Acc::Values(m) => {
                    out.push(4);
                    out.extend_from_slice(&(m.len() as u32).to_le_bytes());
                    for (v, count) in m.values() {
                        encode_scalar(&mut out, v);
                        out.extend_from_slice(&count.to_le_bytes());
                    }
                }
            }
        }
        out
    }

    fn decode_group(&self, b: &[u8]) -> Option<Group> {
        let width = 2 + {
            // The row prefix: find its end by decoding it.
            let mut at = 2;
            for t in &self.group_types {
                decode_scalar(b, &mut at, t)?;
            }
            at - 2
        };
        let values = decode_row(b.get(..width)?, &self.group_types)?;
        let mut at = width;
        let take = |n: usize, at: &mut usize| -> Option<&[u8]> {
            let s = b.get(*at..*at + n)?;
            *at += n;
            Some(s)
        };
        let rows = i64::from_le_bytes(take(8, &mut at)?.try_into().ok()?);
        let mut accs = Vec::with_capacity(self.aggs.len());
        for spec in &self.aggs {
            let tag = take(1, &mut at)?[0];
            let acc = match tag {
                0 => Acc::Count(i64::from_le_bytes(take(8, &mut at)?.try_into().ok()?)),
                1 => Acc::SumInt {
                    sum: i128::from_le_bytes(take(16, &mut at)?.try_into().ok()?),
                    n: i64::from_le_bytes(take(8, &mut at)?.try_into().ok()?),
                },
                2 => Acc::SumFloat {
                    sum: f64::from_le_bytes(take(8, &mut at)?.try_into().ok()?),
                    n: i64::from_le_bytes(take(8, &mut at)?.try_into().ok()?),
                },
                3 => match take(1, &mut at)?[0] {
                    0 => Acc::Best(None),
                    _ => Acc::Best(Some(decode_scalar(b, &mut at, &spec.arg_type)?)),
                },
                5 => match take(1, &mut at)?[0] {
                    0 => Acc::ByTime(None),
                    _ => {
                        let t = u64::from_le_bytes(take(8, &mut at)?.try_into().ok()?);
                        Acc::ByTime(Some((t, decode_scalar(b, &mut at, &spec.arg_type)?)))
                    }
                },
                4 => {
                    let n = u32::from_le_bytes(take(4, &mut at)?.try_into().ok()?);
                    let mut m = BTreeMap::new();
                    for _ in 0..n {
                        let v = decode_scalar(b, &mut at, &spec.arg_type)?;
                        let count = i64::from_le_bytes(take(8, &mut at)?.try_into().ok()?);
                        let mut k = Vec::new();
                        encode_scalar(&mut k, &v);
                        m.insert(k, (v, count));
                    }
                    Acc::Values(m)
                }
                _ => return None,
            };
            accs.push(acc);
        }
        (at == b.len()).then_some(Group { values, rows, accs })
    }
}

fn group_values(cols: &[ArrayRef], i: usize) -> Result<Vec<ScalarValue>, EngineError> {
    Ok(cols
        .iter()
        .map(|c| ScalarValue::try_from_array(c, i))
        .collect::<Result<Vec<_>, _>>()?)
}

fn is_float(dt: &DataType) -> bool {
    matches!(
        dt,
        DataType::Float16 | DataType::Float32 | DataType::Float64
    )
}

fn update(
    acc: &mut Acc,
    spec: &AggSpec,
    col: &ArrayRef,
    i: usize,
    w: i64,
    t: u64,
) -> Result<(), EngineError> {
    if let Acc::ByTime(current) = acc {
        // NULLs count here (last_value respects them); the input is
        // append-only and in log-time order.
        let take = match current {
            None => true,
            Some((at, _)) => match spec.kind {
                AggKind::Latest => t >= *at,
                _ => t < *at,
            },
        };
        if take {
            *current = Some((t, ScalarValue::try_from_array(col, i)?));
        }
        return Ok(());
    }
    if col.is_null(i) {
        return Ok(());
    }
    match acc {
        Acc::ByTime(_) => unreachable!("handled above"),
        Acc::Count(n) => *n += w,
        Acc::SumInt { sum, n } => {
            let v = ScalarValue::try_from_array(col, i)?.cast_to(&DataType::Int64)?;
            if let ScalarValue::Int64(Some(v)) = v {
                *sum += v as i128 * w as i128;
                *n += w;
            }
        }
        Acc::SumFloat { sum, n } => {
            let v = ScalarValue::try_from_array(col, i)?.cast_to(&DataType::Float64)?;
            if let ScalarValue::Float64(Some(v)) = v {
                *sum += v * w as f64;
                *n += w;
            }
        }
        Acc::Best(best) => {
            debug_assert!(w > 0, "append-only input");
            let v = ScalarValue::try_from_array(col, i)?;
            let better = match best {
                None => true,
                Some(b) if spec.kind == AggKind::Min => v < *b,
                Some(b) => v > *b,
            };
            if better {
                *best = Some(v);
            }
        }
        Acc::Values(m) => {
            let mut k = Vec::new();
            encode_cell(&mut k, col, i);
            let entry = m
                .entry(k.clone())
                .or_insert_with(|| (ScalarValue::try_from_array(col, i).expect("in range"), 0));
            entry.1 += w;
            if entry.1 == 0 {
                m.remove(&k);
            }
        }
    }
    Ok(())
}
