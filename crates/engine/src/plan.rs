//! From a view's SELECT to Kappa's incremental stages.
//!
//! DataFusion parses, resolves names, coerces types and inlines the views a
//! definition reads (its analyzer); Kappa then walks the analyzed logical
//! plan. Each node it can maintain becomes a stage; anything else is refused
//! with the construct's name, never maintained wrongly.

use crate::EngineError;
use crate::ops::Stage;
use crate::ops::aggregate::{AggKind, AggSpec, Aggregate};
use crate::value;
use crate::window_table::WindowTable;
use datafusion::common::DFSchema;
use datafusion::common::tree_node::TreeNode;
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::{Expr, ExprSchemable, LogicalPlan};
use datafusion::physical_expr::PhysicalExpr;
use std::sync::Arc;

/// A view's dataflow: one source topic, then stages.
pub struct Pipeline {
    pub topic: String,
    pub stages: Vec<Stage>,
    /// The view's columns.
    pub schema: datafusion::arrow::datatypes::SchemaRef,
    /// Whether an aggregate keys the rows (else each source record is a row).
    pub keyed: bool,
}

impl Pipeline {
    /// Which of the first `columns` columns of the topic's table (its own
    /// columns) the stages read; `None` when they may read all of them.
    pub fn columns_read(&self, columns: usize) -> Option<Vec<bool>> {
        use datafusion::physical_expr::utils::collect_columns;
        let cols = |e: &Arc<dyn PhysicalExpr>| {
            collect_columns(e)
                .into_iter()
                .map(|c| c.index())
                .collect::<Vec<_>>()
        };
        // What each stage needs of its input, from the last stage back
        // (`None`: all of it).
        let mut need: Option<std::collections::HashSet<usize>> = None;
        for stage in self.stages.iter().rev() {
            need = match stage {
                Stage::Filter(p) => need.map(|mut n| {
                    n.extend(cols(p));
                    n
                }),
                Stage::Project { exprs, .. } => Some(
                    exprs
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| need.as_ref().is_none_or(|n| n.contains(i)))
                        .flat_map(|(_, e)| cols(e))
                        .collect(),
                ),
                Stage::Aggregate(a) => Some(
                    a.group
                        .iter()
                        .chain(a.aggs.iter().map(|g| &g.arg))
                        .flat_map(cols)
                        .collect(),
                ),
                Stage::Window(_) => None,
            };
        }
        need.map(|n| (0..columns).map(|i| n.contains(&i)).collect())
    }

    /// The view's columns that hold its key, in key order: a row's key is
    /// their values encoded one after another. `None` when the rows are
    /// not keyed by columns (each record is a row, or the final stages
    /// compute over the group columns instead of passing them on).
    pub fn key_columns(&self) -> Option<Vec<usize>> {
        let last = self
            .stages
            .iter()
            .rposition(|s| matches!(s, Stage::Aggregate(_)))?;
        let Stage::Aggregate(a) = &self.stages[last] else {
            unreachable!("found above")
        };
        let mut at: Vec<usize> = (0..a.group.len()).collect();
        for s in &self.stages[last + 1..] {
            if let Stage::Project { exprs, .. } = s {
                at = at
                    .iter()
                    .map(|i| {
                        exprs.iter().position(|e| {
                            e.downcast_ref::<datafusion::physical_expr::expressions::Column>()
                                .is_some_and(|c| c.index() == *i)
                        })
                    })
                    .collect::<Option<Vec<_>>>()?;
            }
        }
        Some(at)
    }
}

pub fn compile(state: &SessionState, plan: &LogicalPlan) -> Result<Pipeline, EngineError> {
    let plan =
        state
            .analyzer()
            .execute_and_check(plan.clone(), state.config_options(), |_, _| {})?;
    let mut p = walk(state, &plan)?;
    let schema = Arc::new(plan.schema().as_arrow().clone());
    for f in schema.fields() {
        if !value::supported(f.data_type()) {
            return Err(EngineError::Unsupported {
                construct: format!("column {} of type {}", f.name(), f.data_type()),
                hint: " in a view (cast it to TEXT, BIGINT, DOUBLE, BOOLEAN or TIMESTAMP)".into(),
            });
        }
    }
    p.schema = schema;
    Ok(p)
}

fn unsupported(construct: &str, hint: &str) -> EngineError {
    EngineError::Unsupported {
        construct: construct.into(),
        hint: hint.into(),
    }
}

fn physical(
    state: &SessionState,
    e: &Expr,
    schema: &DFSchema,
) -> Result<Arc<dyn PhysicalExpr>, EngineError> {
    Ok(state.create_physical_expr(e.clone(), schema)?)
}

fn walk(state: &SessionState, plan: &LogicalPlan) -> Result<Pipeline, EngineError> {
    match plan {
        LogicalPlan::TableScan(scan) => {
            if !scan.filters.is_empty() || scan.fetch.is_some() {
                return Err(unsupported("a pushed-down scan", ""));
            }
            let mut stages = Vec::new();
            let provider = datafusion::datasource::source_as_provider(&scan.source)?;
            let topic = match provider.downcast_ref::<WindowTable>() {
                Some(w) => {
                    stages.push(Stage::Window(Box::new(w.stage())));
                    w.topic.def.name.clone()
                }
                None => scan.table_name.table().to_string(),
            };
            if let Some(projection) = &scan.projection {
                let source = scan.source.schema();
                let exprs: Vec<Arc<dyn PhysicalExpr>> = projection
                    .iter()
                    .map(|&i| {
                        Arc::new(datafusion::physical_expr::expressions::Column::new(
                            source.field(i).name(),
                            i,
                        )) as Arc<dyn PhysicalExpr>
                    })
                    .collect();
                stages.push(Stage::Project {
                    exprs,
                    schema: Arc::new(scan.projected_schema.as_arrow().clone()),
                });
            }
            Ok(Pipeline {
                topic,
                stages,
                schema: Arc::new(scan.projected_schema.as_arrow().clone()),
                keyed: false,
            })
        }
        LogicalPlan::SubqueryAlias(a) => walk(state, &a.input),
        LogicalPlan::Filter(f) => {
            if f.predicate.contains_outer() || has_subquery(&f.predicate) {
                return Err(unsupported("a subquery in WHERE or HAVING", ""));
            }
            let mut p = walk(state, &f.input)?;
            p.stages.push(Stage::Filter(physical(
                state,
                &f.predicate,
                f.input.schema(),
            )?));
            Ok(p)
        }
        LogicalPlan::Projection(proj) => {
            for e in &proj.expr {
                if has_subquery(e) {
                    return Err(unsupported("a subquery in SELECT", ""));
                }
            }
            let mut p = walk(state, &proj.input)?;
            let exprs = proj
                .expr
                .iter()
                .map(|e| physical(state, e, proj.input.schema()))
                .collect::<Result<Vec<_>, _>>()?;
            p.stages.push(Stage::Project {
                exprs,
                schema: Arc::new(proj.schema.as_arrow().clone()),
            });
            Ok(p)
        }
        LogicalPlan::Aggregate(agg) => {
            let mut p = walk(state, &agg.input)?;
            let input_schema = agg.input.schema();
            let mut group = Vec::new();
            let mut group_types = Vec::new();
            for e in &agg.group_expr {
                if matches!(e, Expr::GroupingSet(_)) {
                    return Err(unsupported("GROUPING SETS, CUBE or ROLLUP", ""));
                }
                group.push(physical(state, e, input_schema)?);
                group_types.push(e.get_type(input_schema)?);
            }
            let mut aggs = Vec::new();
            for (i, e) in agg.aggr_expr.iter().enumerate() {
                let inner = match e {
                    Expr::Alias(a) => a.expr.as_ref(),
                    other => other,
                };
                let Expr::AggregateFunction(f) = inner else {
                    return Err(unsupported(&format!("the aggregate {e}"), ""));
                };
                let name = f.func.name().to_ascii_lowercase();
                let params = &f.params;
                if params.filter.is_some() {
                    return Err(unsupported("FILTER (WHERE ...) on an aggregate", ""));
                }
                // Entity state folded from events: the latest or earliest
                // value by log time, on a topic's own records.
                let by_log_time = match params.order_by.as_slice() {
                    [] => None,
                    [sort] if is_log_time(&sort.expr) && !p.keyed => Some(sort.asc),
                    _ => {
                        return Err(unsupported(
                            "ORDER BY inside an aggregate",
                            " (only last_value(x ORDER BY _log_time) and first_value(x ORDER BY _log_time) over a topic are)",
                        ));
                    }
                };
                let kind = match (name.as_str(), params.distinct, by_log_time) {
                    ("last_value", false, Some(asc)) => {
                        if asc {
                            AggKind::Latest
                        } else {
                            AggKind::Earliest
                        }
                    }
                    ("first_value", false, Some(asc)) => {
                        if asc {
                            AggKind::Earliest
                        } else {
                            AggKind::Latest
                        }
                    }
                    (_, _, Some(_)) => {
                        return Err(unsupported(
                            &format!("{}(... ORDER BY ...)", name.to_uppercase()),
                            " (ORDER BY _log_time goes with last_value and first_value)",
                        ));
                    }
                    (n, d, None) => match (n, d) {
                        ("count", false) => AggKind::Count,
                        ("count", true) => AggKind::CountDistinct,
                        ("sum", false) => AggKind::Sum,
                        ("avg" | "mean", false) => AggKind::Avg,
                        ("min", _) => AggKind::Min,
                        ("max", _) => AggKind::Max,
                        (other, true) => {
                            return Err(unsupported(
                                &format!("{}(DISTINCT ...)", other.to_uppercase()),
                                " (COUNT(DISTINCT ...) is)",
                            ));
                        }
                        (other, false) => {
                            return Err(unsupported(
                                &format!("the aggregate function {}", other.to_uppercase()),
                                " (supported: COUNT, COUNT(DISTINCT), SUM, MIN, MAX, AVG, last_value and first_value ORDER BY _log_time)",
                            ));
                        }
                    },
                };
                if params.null_treatment.is_some() {
                    return Err(unsupported("IGNORE NULLS / RESPECT NULLS", ""));
                }
                if params.args.len() != 1 {
                    return Err(unsupported(
                        &format!(
                            "{} with {} arguments",
                            name.to_uppercase(),
                            params.args.len()
                        ),
                        "",
                    ));
                }
                let arg = &params.args[0];
                let arg_type = arg.get_type(input_schema)?;
                if matches!(kind, AggKind::Sum | AggKind::Avg)
                    && !(arg_type.is_integer() || arg_type.is_floating())
                {
                    return Err(unsupported(
                        &format!("{} of {arg_type}", name.to_uppercase()),
                        " (SUM and AVG take integers and floating-point numbers)",
                    ));
                }
                if !value::supported(&arg_type) {
                    return Err(unsupported(&format!("{name} over {arg_type}"), ""));
                }
                let out_type = agg
                    .schema
                    .field(agg.group_expr.len() + i)
                    .data_type()
                    .clone();
                aggs.push(AggSpec {
                    kind,
                    arg: physical(state, arg, input_schema)?,
                    arg_type,
                    out_type,
                });
            }
            // Over an aggregate the input retracts: MIN/MAX then keep every
            // value, not just the best.
            let append_only = !p.keyed;
            let mut aggregate = Aggregate::new(
                group,
                group_types,
                aggs,
                Arc::new(agg.schema.as_arrow().clone()),
                append_only,
            );
            let earlier = p
                .stages
                .iter()
                .filter(|s| matches!(s, Stage::Aggregate(_)))
                .count();
            aggregate.state_prefix = u8::try_from(earlier + 1)
                .ok()
                .filter(|p| *p < crate::view::DEAD_LETTER_PREFIX)
                .ok_or_else(|| unsupported("more than 200 aggregates in one view", ""))?;
            p.stages.push(Stage::Aggregate(Box::new(aggregate)));
            p.keyed = true;
            Ok(p)
        }
        LogicalPlan::Join(_) => Err(unsupported(
            "JOIN",
            " in a view yet (join views in a query)",
        )),
        LogicalPlan::Window(_) => Err(unsupported("window functions (OVER ...)", "")),
        LogicalPlan::Sort(_) => Err(unsupported(
            "ORDER BY",
            " in a view (a view is a set; order its rows when you query it)",
        )),
        LogicalPlan::Limit(_) => Err(unsupported("LIMIT", " in a view")),
        LogicalPlan::Distinct(_) => Err(unsupported(
            "SELECT DISTINCT",
            " yet (write GROUP BY over the columns)",
        )),
        LogicalPlan::Union(_) => Err(unsupported("UNION", " in a view")),
        LogicalPlan::Values(_) | LogicalPlan::EmptyRelation(_) => Err(unsupported(
            "a view without a topic",
            " (a view reads a topic or another view)",
        )),
        other => Err(unsupported(&other.display().to_string(), "")),
    }
}

/// `_log_time`, the topic's own log-time column.
fn is_log_time(e: &Expr) -> bool {
    matches!(e, Expr::Column(c) if c.name == "_log_time")
}

fn has_subquery(e: &Expr) -> bool {
    let mut found = false;
    let _ = e.apply(|e| {
        if matches!(
            e,
            Expr::ScalarSubquery(_) | Expr::Exists(_) | Expr::InSubquery(_)
        ) {
            found = true;
        }
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    });
    found
}
