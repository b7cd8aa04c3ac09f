//! Table scans that stream: a view's rows or a topic's records come out in
//! batches of [`SCAN_BATCH`] rows as the query consumes them, so a query
//! over a view of 10M rows holds a few batches, not the whole view. (A
//! `MemTable` of everything needed ~200 bytes per row at once.)

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, Partitioning, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use std::sync::Arc;

/// Rows per batch out of a scan.
pub(crate) const SCAN_BATCH: usize = 8192;

/// Opens the scan's stream of whole-schema batches; called once per
/// execution.
pub(crate) type Open = Arc<dyn Fn() -> BoxStream<'static, Result<RecordBatch>> + Send + Sync>;

/// A scan of one table, with its projection and limit applied to every
/// batch the source makes.
pub(crate) struct StreamScan {
    name: String,
    projected: SchemaRef,
    projection: Option<Vec<usize>>,
    limit: Option<usize>,
    open: Open,
    properties: Arc<PlanProperties>,
}

impl StreamScan {
    /// The scan as a plan, for `TableProvider::scan`.
    pub(crate) fn plan(
        name: String,
        schema: &SchemaRef,
        projection: Option<&Vec<usize>>,
        limit: Option<usize>,
        open: Open,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(StreamScan::new(
            name, schema, projection, limit, open,
        )?))
    }

    fn new(
        name: String,
        schema: &SchemaRef,
        projection: Option<&Vec<usize>>,
        limit: Option<usize>,
        open: Open,
    ) -> Result<StreamScan> {
        let projected = match projection {
            Some(p) => Arc::new(schema.project(p)?),
            None => schema.clone(),
        };
        let properties = PlanProperties::new(
            EquivalenceProperties::new(projected.clone()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Ok(StreamScan {
            name,
            projected,
            projection: projection.cloned(),
            limit,
            open,
            properties: Arc::new(properties),
        })
    }
}

impl std::fmt::Debug for StreamScan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamScan")
            .field("name", &self.name)
            .finish()
    }
}

impl DisplayAs for StreamScan {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "StreamScan: {}", self.name)?;
        if let Some(limit) = self.limit {
            write!(f, ", limit={limit}")?;
        }
        Ok(())
    }
}

impl ExecutionPlan for StreamScan {
    fn name(&self) -> &str {
        "StreamScan"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    #[allow(deprecated)]
    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.is_empty() {
            Ok(self)
        } else {
            Err(DataFusionError::Internal(
                "a table scan has no children".into(),
            ))
        }
    }

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return Err(DataFusionError::Internal(format!(
                "a table scan has one partition, not {}",
                partition + 1
            )));
        }
        let projection = self.projection.clone();
        let inner = (self.open)().map(move |batch| match &projection {
            Some(p) => Ok(batch?.project(p)?),
            None => batch,
        });
        // The limit cuts the batch that reaches it; then the source is
        // dropped, which stops it.
        let left = self.limit.unwrap_or(usize::MAX);
        let batches = futures_util::stream::unfold((inner, left), |(mut inner, left)| async move {
            if left == 0 {
                return None;
            }
            match inner.next().await? {
                Ok(batch) => {
                    let n = batch.num_rows().min(left);
                    Some((Ok(batch.slice(0, n)), (inner, left - n)))
                }
                Err(e) => Some((Err(e), (inner, 0))),
            }
        })
        .boxed();
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.projected.clone(),
            batches,
        )))
    }
}

/// A stream of batches made on a blocking thread by `produce`, which
/// hands each to its sink (false: the query is gone, stop) and may fail.
/// At most two batches wait between the thread and the query.
pub(crate) fn blocking_stream(
    produce: impl FnOnce(&mut dyn FnMut(RecordBatch) -> bool) -> Result<()> + Send + 'static,
) -> BoxStream<'static, Result<RecordBatch>> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<RecordBatch>>(2);
    tokio::task::spawn_blocking(move || {
        let mut sink = |batch: RecordBatch| tx.blocking_send(Ok(batch)).is_ok();
        if let Err(e) = produce(&mut sink) {
            let _ = tx.blocking_send(Err(e));
        }
    });
    futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|batch| (batch, rx))
    })
    .boxed()
}
