//! Pull queries: DataFusion plans and runs any SELECT; topics and views are
//! its tables. A topic reads as an append-only table from the log; a view
//! reads its rows from the store, now or AS OF a point (the current rows
//! with every later change undone).

use crate::EngineError;
use crate::scan::{Open, SCAN_BATCH, StreamScan, blocking_stream};
use crate::schema::TopicDef;
use crate::value::{decode_row, encode_scalar};
use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::datasource::{MemTable, TableType};
use datafusion::logical_expr::Expr;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{Operator, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use kappa_log::{Log, LogTime, MergedReader, ReadLimits};
use kappa_store::{StateStore, ViewId};
use std::collections::BTreeMap;
use std::sync::Arc;

/// A topic as a table: every record up to `upto` (a log time).
pub struct TopicTable {
    pub def: TopicDef,
    pub log: Arc<dyn Log>,
    pub upto: u64,
}

impl std::fmt::Debug for TopicTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopicTable")
            .field("topic", &self.def.name)
            .field("upto", &self.upto)
            .finish()
    }
}

impl TopicTable {
    /// The records up to `upto`, a batch per log read, read as the stream
    /// is consumed.
    pub fn stream(&self) -> BoxStream<'static, datafusion::error::Result<RecordBatch>> {
        let (log, def, upto) = (self.log.clone(), Arc::new(self.def.clone()), self.upto);
        let state: (Option<Box<dyn MergedReader>>, bool) = (None, false);
        futures_util::stream::try_unfold(state, move |(reader, done)| {
            let (log, def) = (log.clone(), def.clone());
            async move {
                if done {
                    return Ok(None);
                }
                let mut reader = match reader {
                    Some(r) => r,
                    None => log
                        .merged_reader(&[def.name.as_str()], LogTime::ZERO)
                        .await
                        .map_err(|e| external(e.into()))?,
                };
                let mut records = reader
                    .next_columns(ReadLimits::default())
                    .await
                    .map_err(|e| external(e.into()))?;
                if records.is_empty() {
                    return Ok(None);
                }
                let done = records
                    .entries()
                    .last()
                    .is_some_and(|r| r.log_time.0 >= upto);
                let records = records.split_off_front(records.count_upto(LogTime(upto)));
                let (batch, _) = def.to_batch(&records);
                Ok(Some((batch, (Some(reader), done))))
            }
        })
        .boxed()
    }
}

#[async_trait]
impl TableProvider for TopicTable {
    fn schema(&self) -> SchemaRef {
        self.def.arrow_schema()
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
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let _ = (state, filters);
        let table = TopicTable {
            def: self.def.clone(),
            log: self.log.clone(),
            upto: self.upto,
        };
        let open: Open = Arc::new(move || table.stream());
        let name = format!("topic {}", self.def.name);
        StreamScan::plan(name, &self.schema(), projection, limit, open)
    }
}

/// A view's rows at a point: `None` is now (the frontier).
#[derive(Clone)]
pub struct StoredView {
    pub name: String,
    pub id: ViewId,
    pub schema: SchemaRef,
    /// The columns that make a row's key (see `Pipeline::key_columns`):
    /// a query that fixes them all with `=` reads one row, not the view.
    pub key_columns: Option<Vec<usize>>,
    pub store: Arc<dyn StateStore>,
    pub as_of: Option<u64>,
    /// The view's history retention (`WITH (history = ...)`).
    pub history_micros: u64,
}

/// The earliest point AS OF may read: the retention window behind the
/// frontier, and never before a change the store has let go of.
pub fn window_start(meta: &kappa_store::ViewMeta, history_micros: u64) -> u64 {
    meta.history_start
        .max(meta.frontier.saturating_sub(history_micros))
}

impl std::fmt::Debug for StoredView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredView")
            .field("name", &self.name)
            .field("as_of", &self.as_of)
            .finish()
    }
}

impl StoredView {
    /// The key that `filters` fix, when they set every key column equal
    /// to a literal.
    pub fn pinned_key(&self, filters: &[Expr]) -> Option<Vec<u8>> {
        let columns = self.key_columns.as_ref()?;
        let mut values: Vec<Option<ScalarValue>> = vec![None; columns.len()];
        for f in filters {
            for c in split_conjunction(f) {
                let Expr::BinaryExpr(b) = c else { continue };
                if b.op != Operator::Eq {
                    continue;
                }
                let (column, value) = match (b.left.as_ref(), b.right.as_ref()) {
                    (Expr::Column(c), Expr::Literal(v, _))
                    | (Expr::Literal(v, _), Expr::Column(c)) => (c, v),
                    _ => continue,
                };
                let Ok(index) = self.schema.index_of(&column.name) else {
                    continue;
                };
                if let Some(k) = columns.iter().position(|&x| x == index) {
                    values[k] = Some(value.clone());
                }
            }
        }
        let mut key = Vec::new();
        for (column, value) in columns.iter().zip(values) {
            let v = value?
                .cast_to(self.schema.field(*column).data_type())
                .ok()?;
            if v.is_null() {
                // `= NULL` holds for no row: let the filter say so.
                return None;
            }
            encode_scalar(&mut key, &v);
        }
        Some(key)
    }

    /// The row with `key` at the table's point, if any.
    pub fn row(&self, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        let read = self.store.read()?;
        let meta = read.meta(self.id)?.unwrap_or_default();
        let mut row = read.row(self.id, key)?;
        if let Some(t) = self.as_of {
            self.check_as_of(t, &meta)?;
            // The earliest change after `t` says what the row was at `t`.
            if let Some(c) = read.change_for_key(self.id, key, t)? {
                row = c.before;
            }
        }
        Ok(row)
    }

    fn check_as_of(&self, t: u64, meta: &kappa_store::ViewMeta) -> Result<(), EngineError> {
        if t > meta.frontier {
            return Err(EngineError::AsOf {
                requested: t.to_string(),
                reason: format!(
                    "view {} has only applied the log up to {} (wait for it, or ask for an earlier point)",
                    self.name,
                    LogTime(meta.frontier).to_rfc3339()
                ),
            });
        }
        let start = window_start(meta, self.history_micros);
        if t < start {
            return Err(EngineError::AsOf {
                requested: LogTime(t).to_rfc3339(),
                reason: format!(
                    "view {} keeps history from {} on; that is the earliest point AS OF can read",
                    self.name,
                    LogTime(start).to_rfc3339()
                ),
            });
        }
        Ok(())
    }

    /// Hands the rows at the table's point to `sink` in key order, in
    /// batches of [`SCAN_BATCH`] (see [`StoredView::visit_rows`]); stops
    /// when `sink` says so.
    pub fn stream_rows(
        &self,
        sink: &mut dyn FnMut(RecordBatch) -> bool,
    ) -> Result<(), EngineError> {
        let mut out = Batcher {
            view: self,
            rows: Vec::with_capacity(SCAN_BATCH),
            sink,
            stopped: false,
            error: None,
        };
        self.visit_rows(&mut |_, row| {
            out.push(row.to_vec());
            !out.stopped
        })?;
        out.flush();
        match out.error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Hands each row at the table's point to `visit` (key, encoded row),
    /// in key order, from one store snapshot; stops when `visit` returns
    /// false. AS OF merges the current rows with what each key changed
    /// after the point was then (the `before` of its earliest change
    /// after it), which holds only the keys changed since.
    pub fn visit_rows(
        &self,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), EngineError> {
        let read = self.store.read()?;
        let meta = read.meta(self.id)?.unwrap_or_default();
        let mut then: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
        if let Some(t) = self.as_of {
            self.check_as_of(t, &meta)?;
            read.changes(self.id, t, &mut |c| {
                then.entry(c.key.clone())
                    .or_insert_with(|| c.before.clone());
                true
            })?;
        }
        let mut then = then.into_iter().peekable();
        let mut go = true;
        // A row as it was at the point: none if it did not exist then.
        let was =
            |visit: &mut dyn FnMut(&[u8], &[u8]) -> bool, key: &[u8], row: Option<Vec<u8>>| {
                row.is_none_or(|row| visit(key, &row))
            };
        read.rows(self.id, &mut |key, row| {
            while let Some((k, before)) = then.next_if(|(k, _)| k.as_slice() < key) {
                go = go && was(visit, &k, before);
            }
            go = go
                && match then.next_if(|(k, _)| k.as_slice() == key) {
                    Some((_, before)) => was(visit, key, before),
                    None => visit(key, row),
                };
            go
        })?;
        for (k, before) in then {
            if !go {
                break;
            }
            go = was(visit, &k, before);
        }
        Ok(())
    }

    /// Encoded rows as one batch.
    pub(crate) fn to_batch(
        &self,
        rows: impl ExactSizeIterator<Item = Vec<u8>>,
    ) -> Result<RecordBatch, EngineError> {
        let types: Vec<_> = self
            .schema
            .fields()
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        let mut columns: Vec<Vec<ScalarValue>> = vec![Vec::with_capacity(rows.len()); types.len()];
        for bytes in rows {
            let row = decode_row(&bytes, &types).ok_or_else(|| {
                EngineError::Store(kappa_store::StoreError::Corrupt(format!(
                    "a row of view {} does not decode",
                    self.name
                )))
            })?;
            for (c, v) in columns.iter_mut().zip(row) {
                c.push(v);
            }
        }
        let arrays = columns
            .into_iter()
            .zip(&types)
            .map(|(c, t)| {
                if c.is_empty() {
                    Ok(datafusion::arrow::array::new_empty_array(t))
                } else {
                    ScalarValue::iter_to_array(c)
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RecordBatch::try_new(self.schema.clone(), arrays)?)
    }
}

#[async_trait]
impl TableProvider for StoredView {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
    fn table_type(&self) -> TableType {
        TableType::View
    }
    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> datafusion::error::Result<Vec<TableProviderFilterPushDown>> {
        // Seen by `scan` (for key lookups), and applied again above it.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }
    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        if let Some(key) = self.pinned_key(filters) {
            let row = self.row(&key).map_err(external)?;
            let batch = self.to_batch(row.into_iter()).map_err(external)?;
            return scan_batches(
                self.schema(),
                vec![batch],
                state,
                projection,
                filters,
                limit,
            )
            .await;
        }
        // A point outside the view's history is an error now, at planning
        // (the stream checks again on its own snapshot).
        if let Some(t) = self.as_of {
            let meta = self
                .store
                .read()
                .and_then(|r| r.meta(self.id))
                .map_err(|e| external(e.into()))?
                .unwrap_or_default();
            self.check_as_of(t, &meta).map_err(external)?;
        }
        let view = self.clone();
        let open: Open = Arc::new(move || {
            let view = view.clone();
            blocking_stream(move |sink| view.stream_rows(sink).map_err(external))
        });
        let name = format!("view {}", self.name);
        StreamScan::plan(name, &self.schema(), projection, limit, open)
    }
}

/// Gathers encoded rows into batches for a sink.
struct Batcher<'a> {
    view: &'a StoredView,
    rows: Vec<Vec<u8>>,
    sink: &'a mut dyn FnMut(RecordBatch) -> bool,
    /// The sink wants no more, or a row failed to decode.
    stopped: bool,
    error: Option<EngineError>,
}

impl Batcher<'_> {
    fn push(&mut self, row: Vec<u8>) {
        self.rows.push(row);
        if self.rows.len() >= SCAN_BATCH {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.rows.is_empty() || self.stopped {
            return;
        }
        match self.view.to_batch(self.rows.drain(..)) {
            Ok(batch) => self.stopped = !(self.sink)(batch),
            Err(e) => {
                self.error = Some(e);
                self.stopped = true;
            }
        }
    }
}

fn external(e: EngineError) -> datafusion::error::DataFusionError {
    datafusion::error::DataFusionError::External(Box::new(e))
}

/// Serves batches made at scan time through DataFusion's in-memory scan.
pub(crate) async fn scan_batches(
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    state: &dyn Session,
    projection: Option<&Vec<usize>>,
    filters: &[Expr],
    limit: Option<usize>,
) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
    MemTable::try_new(schema, vec![batches])?
        .scan(state, projection, filters, limit)
        .await
}
