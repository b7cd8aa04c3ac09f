//! Pull queries: DataFusion plans and runs any SELECT; topics and views are
//! its tables. A topic reads as an append-only table from the log; a view
//! reads its rows from the store, now or AS OF a point (the current rows
//! with every later change undone).

use crate::EngineError;
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
use kappa_log::{Log, LogTime, ReadLimits};
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
    pub async fn batches(&self) -> Result<Vec<RecordBatch>, EngineError> {
        let mut reader = self
            .log
            .merged_reader(&[self.def.name.as_str()], LogTime::ZERO)
            .await?;
        let mut out = Vec::new();
        loop {
            let mut records = reader.next_batch(ReadLimits::default()).await?;
            if records.is_empty() {
                break;
            }
            let done = records.last().is_some_and(|r| r.log_time.0 >= self.upto);
            records.retain(|r| r.log_time.0 <= self.upto);
            let (batch, _) = self.def.to_batch(&records);
            out.push(batch);
            if done {
                break;
            }
        }
        Ok(out)
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
        let batches = self.batches().await.map_err(external)?;
        scan_batches(self.schema(), batches, state, projection, filters, limit).await
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

    /// The rows (by key, encoded) at the table's point.
    pub fn rows(&self) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, EngineError> {
        let read = self.store.read()?;
        let meta = read.meta(self.id)?.unwrap_or_default();
        let mut rows = BTreeMap::new();
        read.rows(self.id, &mut |k, v| {
            rows.insert(k.to_vec(), v.to_vec());
            true
        })?;
        if let Some(t) = self.as_of {
            self.check_as_of(t, &meta)?;
            let mut later = Vec::new();
            read.changes(self.id, t, &mut |c| {
                later.push(c.clone());
                true
            })?;
            for c in later.into_iter().rev() {
                match c.before {
                    Some(b) => rows.insert(c.key, b),
                    None => rows.remove(&c.key),
                };
            }
        }
        Ok(rows)
    }

    /// Every row, as one batch.
    pub fn batch(&self) -> Result<RecordBatch, EngineError> {
        self.to_batch(self.rows()?.into_values())
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
        let batch = match self.pinned_key(filters) {
            Some(key) => {
                let row = self.row(&key).map_err(external)?;
                self.to_batch(row.into_iter()).map_err(external)?
            }
            None => self.batch().map_err(external)?,
        };
        scan_batches(
            self.schema(),
            vec![batch],
            state,
            projection,
            filters,
            limit,
        )
        .await
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
