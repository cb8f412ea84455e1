//! Watching a task's rows as they stream into its table: each batch's rows are added
//! to a counter (for a live progress display), and the first error of the task's own
//! query is kept as it was raised — delta-rs turns most query errors into text, and
//! the task's failure should name its cause (a division by zero) with its type. The
//! plan is read through a table whose scan does this partition by partition, without
//! changing the plan's partitioning or order.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::Session;
use datafusion::datasource::{provider_as_source, TableProvider, TableType};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures::StreamExt;

use crate::error::{Error, Result};

/// The first error the task's query raised while it was written.
pub(crate) type QueryError = Arc<Mutex<Option<DataFusionError>>>;

/// `plan` read through a counter of its rows and a keeper of its first error.
pub(crate) fn counted(
    plan: LogicalPlan,
    rows: Arc<AtomicU64>,
    error: QueryError,
    cancel: Arc<AtomicBool>,
) -> Result<LogicalPlan> {
    let schema = Arc::new(plan.schema().as_arrow().clone());
    let watch = Watch {
        rows,
        error,
        cancel,
    };
    let table = CountedTable {
        plan,
        schema,
        watch,
    };
    LogicalPlanBuilder::scan("counted", provider_as_source(Arc::new(table)), None)
        .and_then(LogicalPlanBuilder::build)
        .map_err(|e| Error::session("counting the rows written", e))
}

/// What the stream of a write reports to, and is stopped by.
#[derive(Debug, Clone)]
struct Watch {
    rows: Arc<AtomicU64>,
    error: QueryError,
    cancel: Arc<AtomicBool>,
}

/// The run was cancelled (`--fail-fast`) while this task was writing.
#[derive(Debug, thiserror::Error)]
#[error("cancelled before its commit: another task of the run failed (--fail-fast)")]
pub(crate) struct Cancelled;

#[derive(Debug)]
struct CountedTable {
    plan: LogicalPlan,
    schema: SchemaRef,
    watch: Watch,
}

#[async_trait]
impl TableProvider for CountedTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let mut input = crate::checks::plan_input(state, &self.plan).await?;
        if let Some(columns) = projection {
            let exprs = columns.iter().map(|i| {
                let field = self.schema.field(*i);
                let column = datafusion::physical_expr::expressions::Column::new(field.name(), *i);
                (
                    Arc::new(column) as Arc<dyn datafusion::physical_expr::PhysicalExpr>,
                    field.name().clone(),
                )
            });
            input = Arc::new(ProjectionExec::try_new(exprs, input)?);
        }
        Ok(Arc::new(CountedExec {
            input,
            watch: self.watch.clone(),
        }))
    }
}

/// Passes its input through, adding the rows of each batch to `rows`.
#[derive(Debug)]
struct CountedExec {
    input: Arc<dyn ExecutionPlan>,
    watch: Watch,
}

impl DisplayAs for CountedExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "CountedExec")
    }
}

impl ExecutionPlan for CountedExec {
    fn name(&self) -> &str {
        "CountedExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(
            &Arc<dyn datafusion::physical_expr::PhysicalExpr>,
        ) -> DfResult<datafusion::common::tree_node::TreeNodeRecursion>,
    ) -> DfResult<datafusion::common::tree_node::TreeNodeRecursion> {
        // No expressions of its own.
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(CountedExec {
            input: children.remove(0),
            watch: self.watch.clone(),
        }))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context)?;
        let schema = input.schema();
        let watch = self.watch.clone();
        let counted = input.map(move |batch| match batch {
            // Cancelled: the stream ends in an error, so delta-rs does not commit.
            Ok(_) if watch.cancel.load(Ordering::Relaxed) => {
                let mut first = watch.error.lock().unwrap_or_else(|p| p.into_inner());
                first.get_or_insert(DataFusionError::External(Box::new(Cancelled)));
                Err(DataFusionError::Execution(Cancelled.to_string()))
            }
            Ok(b) => {
                watch.rows.fetch_add(b.num_rows() as u64, Ordering::Relaxed);
                Ok(b)
            }
            Err(e) => {
                let kept = &watch.error;
                // Pass on its text; keep the error itself for the task's report.
                let text = DataFusionError::Execution(e.to_string());
                let mut first = kept.lock().unwrap_or_else(|p| p.into_inner());
                first.get_or_insert(e);
                Err(text)
            }
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, counted)))
    }
}
