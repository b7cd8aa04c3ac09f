//! A view's rows written by its last aggregate straight into its pending
//! rows, when nothing but projections that pick columns follows the
//! aggregate (`SELECT k, SUM(x) AS total FROM t GROUP BY k`): no output
//! batch is built for a stage that would only encode it again, and a
//! row's key cells are copied from its group's key.

use super::Stage;
use super::aggregate::Aggregate;
use super::output::{Emit, OutRow, encode_out};
use crate::pending::Pending;
use datafusion::arrow::array::{Array, ArrayRef};
use datafusion::arrow::datatypes::DataType;
use datafusion::physical_expr::expressions::Column;

/// How each column of the view's row is made from an aggregate's output.
pub(crate) struct Direct {
    columns: Vec<Cell>,
}

enum Cell {
    /// The group's n-th key cell.
    Group(usize),
    /// The n-th aggregate's result, as a value of this type.
    Result(usize, DataType),
}

impl Direct {
    /// The plan for rows of `agg` passed through `after`, whose group
    /// columns were evaluated as `group_cols`; `None` unless `after` only
    /// picks columns and the group cells keep their type (so the key's
    /// bytes are the cells' bytes).
    pub(crate) fn plan(
        agg: &Aggregate,
        after: &[Stage],
        group_cols: &[ArrayRef],
    ) -> Option<Direct> {
        let schema = &agg.out_schema;
        let groups = agg.group.len();
        for (g, col) in group_cols.iter().enumerate() {
            if col.data_type() != schema.field(g).data_type() {
                return None;
            }
        }
        let mut picked: Vec<usize> = (0..schema.fields().len()).collect();
        for stage in after {
            let Stage::Project { exprs, .. } = stage else {
                return None;
            };
            picked = exprs
                .iter()
                .map(|e| {
                    let c = e.downcast_ref::<Column>()?;
                    picked.get(c.index()).copied()
                })
                .collect::<Option<_>>()?;
        }
        let columns = picked
            .into_iter()
            .map(|c| match c.checked_sub(groups) {
                None => Cell::Group(c),
                Some(k) => Cell::Result(k, schema.field(c).data_type().clone()),
            })
            .collect();
        Some(Direct { columns })
    }
}

/// An aggregate's output going into `pending` by `plan`.
pub(crate) struct DirectRows<'a> {
    pub(crate) plan: &'a Direct,
    pub(crate) pending: &'a mut Pending,
}

impl Emit for DirectRows<'_> {
    fn prefetch_index(&self, slot: u32) {
        self.pending.prefetch_index(slot);
    }

    fn prefetch(&self, slot: u32) {
        self.pending.prefetch(slot);
    }

    fn push(&mut self, row: OutRow<'_>) {
        let OutRow {
            key,
            cells,
            slot,
            results,
            weight,
            log_time,
            ..
        } = row;
        let columns = &self.plan.columns;
        let width = (columns.len() as u16).to_le_bytes();
        self.pending
            .sink_row(key, slot, log_time, weight > 0, true, |arena| {
                arena.extend_from_slice(&width);
                for c in columns {
                    match c {
                        Cell::Group(g) => {
                            let start = if *g == 0 { 0 } else { cells[g - 1] };
                            arena.extend_from_slice(&key[start..cells[*g]]);
                        }
                        Cell::Result(k, dt) => encode_out(arena, &results[*k], dt),
                    }
                }
            });
    }
}
