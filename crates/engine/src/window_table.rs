//! `TUMBLE(topic, time, size [, lateness])` and
//! `HOP(topic, time, slide, size [, lateness])`: a topic's records with
//! the bounds of the event-time windows they fall in (`window_start`,
//! `window_end`), as RisingWave and Flink write them. In a view they become
//! the window stage (`ops::window`); in a query they are evaluated over the
//! topic's records in log-time order, with the same rules.

use crate::ops::Delta;
use crate::ops::aggregate::NoState;
use crate::ops::window::{WindowSpec, Windower};
use crate::query::TopicTable;
use crate::scan::{Open, StreamScan};
use crate::schema::TopicDef;
use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use futures_util::StreamExt;
use kappa_log::Log;
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowKind {
    Tumble,
    Hop,
}

impl WindowKind {
    fn usage(self) -> &'static str {
        match self {
            WindowKind::Tumble => "TUMBLE(topic, time_column, size [, allowed_lateness])",
            WindowKind::Hop => "HOP(topic, time_column, slide, size [, allowed_lateness])",
        }
    }
}

/// The table function, bound to a session's topics.
pub struct WindowFunction {
    pub kind: WindowKind,
    pub topics: Arc<BTreeMap<String, TopicDef>>,
    pub log: Arc<dyn Log>,
    /// Records up to this log time.
    pub upto: u64,
}

impl std::fmt::Debug for WindowFunction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowFunction")
            .field("kind", &self.kind)
            .field("upto", &self.upto)
            .finish()
    }
}

fn refuse(kind: WindowKind, what: String) -> DataFusionError {
    DataFusionError::Plan(format!("{what}; write {}", kind.usage()))
}

/// An interval literal in microseconds (months have no fixed length).
fn micros(kind: WindowKind, name: &str, e: &Expr) -> Result<i64> {
    let v = match e {
        Expr::Literal(v, _) => v,
        other => {
            return Err(refuse(
                kind,
                format!("the {name} must be an INTERVAL literal, not {other}"),
            ));
        }
    };
    let us = match v {
        ScalarValue::IntervalMonthDayNano(Some(i)) if i.months == 0 => {
            (i.days as i64) * 86_400_000_000 + i.nanoseconds / 1000
        }
        ScalarValue::IntervalDayTime(Some(i)) => {
            (i.days as i64) * 86_400_000_000 + (i.milliseconds as i64) * 1000
        }
        ScalarValue::IntervalMonthDayNano(Some(_)) | ScalarValue::IntervalYearMonth(Some(_)) => {
            return Err(refuse(
                kind,
                format!("the {name} {v} counts months, which have no fixed length; use days"),
            ));
        }
        other => {
            return Err(refuse(
                kind,
                format!("the {name} must be an INTERVAL such as INTERVAL '1 minute', not {other}"),
            ));
        }
    };
    Ok(us)
}

impl TableFunctionImpl for WindowFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let kind = self.kind;
        let args = args.exprs();
        let (min, max) = match kind {
            WindowKind::Tumble => (3, 4),
            WindowKind::Hop => (4, 5),
        };
        if args.len() < min || args.len() > max {
            return Err(refuse(kind, format!("{} arguments given", args.len())));
        }
        let Expr::Column(topic) = &args[0] else {
            return Err(refuse(
                kind,
                format!("the first argument must name a topic, not {}", args[0]),
            ));
        };
        let def = self.topics.get(&topic.name).ok_or_else(|| {
            refuse(
                kind,
                format!(
                    "{} is not a topic (windows read a topic's records; a view's rows change, so window the topic it reads)",
                    topic.name
                ),
            )
        })?;
        let Expr::Column(time) = &args[1] else {
            return Err(refuse(
                kind,
                format!(
                    "the second argument must name a TIMESTAMP column of {}, not {}",
                    def.name, args[1]
                ),
            ));
        };
        let source = def.arrow_schema();
        let time_column = source.index_of(&time.name).map_err(|_| {
            refuse(
                kind,
                format!("topic {} has no column {}", def.name, time.name),
            )
        })?;
        let time_type = source.field(time_column).data_type().clone();
        if !matches!(time_type, DataType::Timestamp(_, _)) {
            return Err(refuse(
                kind,
                format!(
                    "column {} of {} is {time_type}, not a TIMESTAMP",
                    time.name, def.name
                ),
            ));
        }
        let (slide, size) = match kind {
            WindowKind::Tumble => {
                let size = micros(kind, "size", &args[2])?;
                (size, size)
            }
            WindowKind::Hop => (
                micros(kind, "slide", &args[2])?,
                micros(kind, "size", &args[3])?,
            ),
        };
        if size <= 0 || slide <= 0 {
            return Err(refuse(
                kind,
                "window sizes and slides must be positive".into(),
            ));
        }
        if size / slide > 1000 {
            return Err(refuse(
                kind,
                format!(
                    "a record would fall in {} windows (at most 1000)",
                    size / slide
                ),
            ));
        }
        let lateness = match args.get(min) {
            Some(e) => {
                let l = micros(kind, "allowed lateness", e)?;
                if l < 0 {
                    return Err(refuse(
                        kind,
                        "the allowed lateness must not be negative".into(),
                    ));
                }
                Some(l)
            }
            None => None,
        };
        let mut fields: Vec<Field> = source.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new("window_start", time_type.clone(), false));
        fields.push(Field::new("window_end", time_type, false));
        Ok(Arc::new(WindowTable {
            topic: TopicTable {
                def: def.clone(),
                log: self.log.clone(),
                upto: self.upto,
            },
            spec: WindowSpec {
                time_column,
                size,
                slide,
                lateness,
            },
            schema: Arc::new(Schema::new(fields)),
        }))
    }
}

/// A topic's records in their windows.
#[derive(Debug)]
pub struct WindowTable {
    pub topic: TopicTable,
    pub spec: WindowSpec,
    pub schema: SchemaRef,
}

impl WindowTable {
    /// The stage that does the same in a view.
    pub fn stage(&self) -> Windower {
        Windower::new(self.spec, self.schema.clone())
    }
}

#[async_trait]
impl TableProvider for WindowTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
    fn table_type(&self) -> TableType {
        TableType::Base
    }
    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let _ = (state, filters);
        let topic = TopicTable {
            def: self.topic.def.clone(),
            log: self.topic.log.clone(),
            upto: self.topic.upto,
        };
        let (spec, schema) = (self.spec, self.schema.clone());
        let open: Open = Arc::new(move || {
            let mut windows = Windower::new(spec, schema.clone());
            windows.assume_empty_state();
            // In log-time order, as a view applies them.
            topic
                .stream()
                .map(move |batch| window_batch(&mut windows, batch?))
                .boxed()
        });
        let name = format!("windows of topic {}", self.topic.def.name);
        StreamScan::plan(name, &self.schema, projection, limit, open)
    }
}

/// A batch of a topic's records through the window stage.
fn window_batch(windows: &mut Windower, batch: RecordBatch) -> Result<RecordBatch> {
    let external = |e: crate::EngineError| DataFusionError::External(Box::new(e));
    let log_time = batch.schema().index_of("_log_time")?;
    let delta = Delta::insertions(batch, log_time);
    Ok(windows.apply(delta, &mut NoState).map_err(external)?.batch)
}
