//! An aggregate's output: each group's results ([`Out`]), and where its
//! changed rows go ([`Emit`]): an Arrow batch for the next stage
//! ([`OutRows`]), or straight into the view's pending rows
//! (`ops::direct`).

use super::Keys;
use crate::EngineError;
use crate::value::{encode_f64, encode_i64, encode_scalar};
use datafusion::arrow::array::{ArrayRef, Float64Builder, Int64Builder};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use std::sync::Arc;

/// One aggregate's result for a group. Integers and floats stay unboxed.
#[derive(Clone, Debug)]
pub(crate) enum Out {
    Int(Option<i64>),
    Float(Option<f64>),
    Scalar(ScalarValue),
}

impl PartialEq for Out {
    fn eq(&self, other: &Out) -> bool {
        match (self, other) {
            (Out::Int(a), Out::Int(b)) => a == b,
            // Bitwise, so NaN equals NaN and a group's unchanged row is not
            // re-emitted.
            (Out::Float(a), Out::Float(b)) => a.map(f64::to_bits) == b.map(f64::to_bits),
            (Out::Scalar(a), Out::Scalar(b)) => a == b,
            _ => false,
        }
    }
}

impl Out {
    pub(super) fn into_scalar(self) -> ScalarValue {
        match self {
            Out::Int(v) => ScalarValue::Int64(v),
            Out::Float(v) => ScalarValue::Float64(v),
            Out::Scalar(v) => v,
        }
    }
}

/// An aggregate result as a value of the output column's type `dt`.
fn out_scalar(v: &Out, dt: &DataType) -> ScalarValue {
    let v = v.clone().into_scalar();
    let v = if v.is_null() {
        ScalarValue::try_from(dt).unwrap_or(ScalarValue::Null)
    } else {
        v.cast_to(dt).unwrap_or(v)
    };
    match (dt, v) {
        (DataType::Int64, v @ ScalarValue::Int64(_)) => v,
        (DataType::Float64, v @ ScalarValue::Float64(_)) => v,
        (DataType::Int64, _) => ScalarValue::Int64(None),
        (DataType::Float64, _) => ScalarValue::Float64(None),
        (_, v) => v,
    }
}

/// Appends an aggregate result as a cell of type `dt`: the bytes
/// [`encode_cell`] gives it in the output batch.
pub(crate) fn encode_out(out: &mut Vec<u8>, v: &Out, dt: &DataType) {
    match (dt, v) {
        (DataType::Int64, Out::Int(x)) => encode_i64(out, *x),
        (DataType::Float64, Out::Float(x)) => encode_f64(out, *x),
        _ => encode_scalar(out, &out_scalar(v, dt)),
    }
}

/// An output column of aggregate results.
pub(super) enum OutCol {
    Int(Int64Builder),
    Float(Float64Builder),
    Scalar(Vec<ScalarValue>, DataType),
}

impl OutCol {
    pub(super) fn new(dt: &DataType, rows: usize) -> OutCol {
        match dt {
            DataType::Int64 => OutCol::Int(Int64Builder::with_capacity(rows)),
            DataType::Float64 => OutCol::Float(Float64Builder::with_capacity(rows)),
            other => OutCol::Scalar(Vec::with_capacity(rows), other.clone()),
        }
    }

    pub(super) fn push(&mut self, v: &Out) {
        match (self, v) {
            (OutCol::Int(b), Out::Int(v)) => b.append_option(*v),
            (OutCol::Float(b), Out::Float(v)) => b.append_option(*v),
            (OutCol::Int(b), v) => match out_scalar(v, &DataType::Int64) {
                ScalarValue::Int64(v) => b.append_option(v),
                _ => b.append_null(),
            },
            (OutCol::Float(b), v) => match out_scalar(v, &DataType::Float64) {
                ScalarValue::Float64(v) => b.append_option(v),
                _ => b.append_null(),
            },
            (OutCol::Scalar(values, dt), v) => {
                let v = out_scalar(v, dt);
                values.push(v)
            }
        }
    }

    pub(super) fn finish(self) -> Result<ArrayRef, EngineError> {
        Ok(match self {
            OutCol::Int(mut b) => Arc::new(b.finish()),
            OutCol::Float(mut b) => Arc::new(b.finish()),
            OutCol::Scalar(values, dt) if values.is_empty() => {
                datafusion::arrow::array::new_empty_array(&dt)
            }
            OutCol::Scalar(values, _) => ScalarValue::iter_to_array(values)?,
        })
    }
}

/// The output delta as it is built: for each row, the input row whose
/// key columns it takes, its aggregate results, weight, time and key.
pub(super) struct OutRows {
    pub(super) take: Vec<u32>,
    pub(super) cols: Vec<OutCol>,
    pub(super) weights: Vec<i64>,
    pub(super) log_times: Vec<u64>,
    pub(super) keys: Keys,
    pub(super) groups: Vec<u32>,
}

/// One changed row of an aggregate's output.
pub(crate) struct OutRow<'a> {
    /// The input row that caused it (whose key columns it takes).
    pub(crate) input_row: usize,
    /// The group's key, and where each of its cells ends in it.
    pub(crate) key: &'a [u8],
    pub(crate) cells: &'a [usize],
    /// The group's slot in the aggregate.
    pub(crate) slot: u32,
    pub(crate) results: &'a [Out],
    /// +1 inserted, -1 retracted.
    pub(crate) weight: i64,
    pub(crate) log_time: u64,
}

/// Where an aggregate's output rows go: an output batch for the next
/// stage ([`OutRows`]), or straight into the view's pending rows
/// (`ops::direct`).
pub(crate) trait Emit {
    fn push(&mut self, row: OutRow<'_>);

    /// A hint: rows of the group in `slot` will be pushed soon; start
    /// fetching where to find what they go to.
    fn prefetch_index(&self, _slot: u32) {}

    /// A hint: rows of the group in `slot` will be pushed soon; start
    /// fetching what they go to (after [`Emit::prefetch_index`]).
    fn prefetch(&self, _slot: u32) {}
}

impl Emit for OutRows {
    fn push(&mut self, row: OutRow<'_>) {
        let OutRow {
            input_row,
            key,
            slot,
            results,
            weight: w,
            log_time: t,
            ..
        } = row;
        self.take.push(input_row as u32);
        self.groups.push(slot);
        for (c, v) in self.cols.iter_mut().zip(results) {
            c.push(v);
        }
        self.weights.push(w);
        self.log_times.push(t);
        self.keys.push(key);
    }
}
