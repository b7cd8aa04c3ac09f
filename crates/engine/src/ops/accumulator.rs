//! A group's accumulators and how rows change them: COUNT, SUM and AVG
//! (exact for integers, in 128 bits), MIN and MAX (the best value of an
//! append-only input, else every value with its count), latest and
//! earliest by log time, COUNT(DISTINCT); their results, their heap size
//! for the memory budget, and their encoding in the view's state.

use super::aggregate::{AggKind, AggSpec};
use super::output::Out;
use crate::EngineError;
use crate::value::{decode_scalar, encode_cell, encode_scalar};
use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type};
use datafusion::common::ScalarValue;
use smallvec::SmallVec;
use std::collections::BTreeMap;

/// A group's accumulators, inline for up to two aggregates, so that a
/// slot's key and state are read together: a replay touches groups at
/// random, and each pointer followed is a cache miss.
pub(super) type Accs = SmallVec<[Acc; 2]>;

/// Estimated heap bytes of a group.
pub(super) fn group_size(g: &Option<Group>) -> usize {
    let Some(g) = g else { return 0 };
    let scalar = |v: &ScalarValue| match v {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => s.len(),
        _ => 0,
    };
    let spilled = if g.accs.spilled() {
        g.accs.len() * std::mem::size_of::<Acc>()
    } else {
        0
    };
    spilled
        + g.accs
            .iter()
            .map(|a| match a {
                Acc::Best(Some(v)) => std::mem::size_of::<ScalarValue>() + scalar(v),
                Acc::ByTime(Some(b)) => std::mem::size_of::<(u64, ScalarValue)>() + scalar(&b.1),
                // A B-tree entry: the encoded key, the value, the count.
                Acc::Values(m) => m
                    .iter()
                    .map(|(k, (v, _))| {
                        48 + k.len() + std::mem::size_of::<ScalarValue>() + scalar(v)
                    })
                    .sum(),
                _ => 0,
            })
            .sum::<usize>()
}

#[derive(Clone, Debug, PartialEq)]
pub(super) struct Group {
    /// Sum of the weights of the rows in the group.
    pub(super) rows: i64,
    pub(super) accs: Accs,
}

#[derive(Clone, Debug, PartialEq)]
pub(super) enum Acc {
    Count(i64),
    SumInt {
        sum: Wide,
        n: i64,
    },
    SumFloat {
        sum: f64,
        n: i64,
    },
    /// Values are boxed: most groups' accumulators are numbers, and
    /// they stay small enough to sit inline in their slot.
    Best(Option<Box<ScalarValue>>),
    /// The value with its log time (append-only input).
    ByTime(Option<Box<(u64, ScalarValue)>>),
    /// Every distinct value (by its encoding) with its multiplicity.
    Values(BTreeMap<Vec<u8>, (ScalarValue, i64)>),
}

/// An `i128` sum stored as two halves: 8-byte aligned, so that an
/// accumulator stays 32 bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(super) struct Wide {
    lo: u64,
    hi: i64,
}

impl Wide {
    fn get(self) -> i128 {
        ((self.hi as i128) << 64) | self.lo as i128
    }

    fn new(v: i128) -> Wide {
        Wide {
            lo: v as u64,
            hi: (v >> 64) as i64,
        }
    }
}

pub(super) fn new_group(aggs: &[AggSpec], append_only: bool) -> Group {
    let accs = aggs
        .iter()
        .map(|a| match a.kind {
            AggKind::Count => Acc::Count(0),
            AggKind::Sum | AggKind::Avg => match sum_type(a) {
                Some(DataType::Int64) => Acc::SumInt {
                    sum: Wide::default(),
                    n: 0,
                },
                _ => Acc::SumFloat { sum: 0.0, n: 0 },
            },
            AggKind::Min | AggKind::Max if append_only => Acc::Best(None),
            AggKind::Latest | AggKind::Earliest => Acc::ByTime(None),
            AggKind::Min | AggKind::Max | AggKind::CountDistinct => Acc::Values(BTreeMap::new()),
        })
        .collect();
    Group { rows: 0, accs }
}

/// The type SUM and AVG accumulate their argument in.
pub(super) fn sum_type(a: &AggSpec) -> Option<DataType> {
    match a.kind {
        AggKind::Sum if !is_float(&a.arg_type) => Some(DataType::Int64),
        AggKind::Sum | AggKind::Avg => Some(DataType::Float64),
        _ => None,
    }
}

/// An aggregate's result for a group.
pub(super) fn output(acc: &Acc, spec: &AggSpec) -> Out {
    let avg = |sum: f64, n: i64| (n > 0).then(|| sum / n as f64);
    match (acc, spec.kind) {
        (Acc::Count(n), _) => Out::Int(Some(*n)),
        (Acc::SumInt { sum, n }, AggKind::Sum) => Out::Int((*n > 0).then_some(sum.get() as i64)),
        (Acc::SumFloat { sum, n }, AggKind::Sum) => Out::Float((*n > 0).then_some(*sum)),
        (Acc::SumFloat { sum, n }, _) => Out::Float(avg(*sum, *n)),
        (Acc::SumInt { sum, n }, _) => Out::Float(avg(sum.get() as f64, *n)),
        (Acc::Best(v), _) => Out::Scalar(v.as_deref().cloned().unwrap_or(ScalarValue::Null)),
        (Acc::ByTime(v), _) => Out::Scalar(v.as_ref().map_or(ScalarValue::Null, |b| b.1.clone())),
        (Acc::Values(m), AggKind::CountDistinct) => Out::Int(Some(m.len() as i64)),
        (Acc::Values(m), kind) => {
            let best = if kind == AggKind::Min {
                m.values()
                    .map(|(v, _)| v)
                    .min_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal))
            } else {
                m.values()
                    .map(|(v, _)| v)
                    .max_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal))
            };
            Out::Scalar(best.cloned().unwrap_or(ScalarValue::Null))
        }
    }
}

pub(super) fn encode_group(out: &mut Vec<u8>, g: &Group) {
    out.extend_from_slice(&g.rows.to_le_bytes());
    for acc in &g.accs {
        match acc {
            Acc::Count(n) => {
                out.push(0);
                out.extend_from_slice(&n.to_le_bytes());
            }
            Acc::SumInt { sum, n } => {
                out.push(1);
                out.extend_from_slice(&sum.get().to_le_bytes());
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
                        encode_scalar(out, v);
                    }
                }
            }
            Acc::ByTime(v) => {
                out.push(5);
                match v {
                    None => out.push(0),
                    Some(b) => {
                        let (t, v) = &**b;
                        out.push(1);
                        out.extend_from_slice(&t.to_le_bytes());
                        encode_scalar(out, v);
                    }
                }
            }
            Acc::Values(m) => {
                out.push(4);
                out.extend_from_slice(&(m.len() as u32).to_le_bytes());
                for (v, count) in m.values() {
                    encode_scalar(out, v);
                    out.extend_from_slice(&count.to_le_bytes());
                }
            }
        }
    }
}

/// A group's state: its row count, then each accumulator (the group's
/// values are its key).
pub(super) fn decode_group(b: &[u8], aggs: &[AggSpec]) -> Option<Group> {
    let mut at = 0;
    let take = |n: usize, at: &mut usize| -> Option<&[u8]> {
        let s = b.get(*at..*at + n)?;
        *at += n;
        Some(s)
    };
    let rows = i64::from_le_bytes(take(8, &mut at)?.try_into().ok()?);
    let mut accs = Accs::with_capacity(aggs.len());
    for spec in aggs {
        let tag = take(1, &mut at)?[0];
        let acc = match tag {
            0 => Acc::Count(i64::from_le_bytes(take(8, &mut at)?.try_into().ok()?)),
            1 => Acc::SumInt {
                sum: Wide::new(i128::from_le_bytes(take(16, &mut at)?.try_into().ok()?)),
                n: i64::from_le_bytes(take(8, &mut at)?.try_into().ok()?),
            },
            2 => Acc::SumFloat {
                sum: f64::from_le_bytes(take(8, &mut at)?.try_into().ok()?),
                n: i64::from_le_bytes(take(8, &mut at)?.try_into().ok()?),
            },
            3 => match take(1, &mut at)?[0] {
                0 => Acc::Best(None),
                _ => Acc::Best(Some(Box::new(decode_scalar(b, &mut at, &spec.arg_type)?))),
            },
            5 => match take(1, &mut at)?[0] {
                0 => Acc::ByTime(None),
                _ => {
                    let t = u64::from_le_bytes(take(8, &mut at)?.try_into().ok()?);
                    let v = decode_scalar(b, &mut at, &spec.arg_type)?;
                    Acc::ByTime(Some(Box::new((t, v))))
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
    (at == b.len()).then_some(Group { rows, accs })
}

fn is_float(dt: &DataType) -> bool {
    matches!(
        dt,
        DataType::Float16 | DataType::Float32 | DataType::Float64
    )
}

pub(super) fn update(
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
            Some(b) => match spec.kind {
                AggKind::Latest => t >= b.0,
                _ => t < b.0,
            },
        };
        if take {
            let v = ScalarValue::try_from_array(col, i)?;
            match current {
                Some(b) => **b = (t, v),
                None => *current = Some(Box::new((t, v))),
            }
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
            *sum =
                Wide::new(sum.get() + col.as_primitive::<Int64Type>().value(i) as i128 * w as i128);
            *n += w;
        }
        Acc::SumFloat { sum, n } => {
            *sum += col.as_primitive::<Float64Type>().value(i) * w as f64;
            *n += w;
        }
        Acc::Best(best) => {
            debug_assert!(w > 0, "append-only input");
            let v = ScalarValue::try_from_array(col, i)?;
            let better = match best {
                None => true,
                Some(b) if spec.kind == AggKind::Min => v < **b,
                Some(b) => v > **b,
            };
            if better {
                *best = Some(Box::new(v));
            }
        }
        Acc::Values(m) => {
            let mut k = Vec::new();
            encode_cell(&mut k, col, i);
            match m.get_mut(&k) {
                Some(entry) => {
                    entry.1 += w;
                    if entry.1 == 0 {
                        m.remove(&k);
                    }
                }
                None => {
                    m.insert(k, (ScalarValue::try_from_array(col, i)?, w));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wide_sum_keeps_every_i128() {
        for v in [
            0,
            1,
            -1,
            i64::MIN as i128,
            i64::MAX as i128 * 3,
            i128::MIN,
            i128::MAX,
        ] {
            assert_eq!(Wide::new(v).get(), v);
        }
    }
}
