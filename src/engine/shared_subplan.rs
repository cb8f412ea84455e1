//! Aggregates that a plan computes twice, computed once.
//!
//! DataFusion inlines a common table expression at each of its references, so a CTE
//! used twice is planned, scanned and aggregated twice. TPC-H Q15 reads `lineitem`
//! once for the revenue of each supplier and again for the largest of them. DuckDB
//! and Postgres materialize such a CTE instead.
//!
//! This rule finds the aggregates that occur more than once in a plan with the same
//! displayed form (operators, expressions, files). It only looks at subtrees whose
//! every leaf is a scan of files and that hold no dynamic filter (a filter owned by one
//! join or TopK above). It replaces each occurrence with a [`SharedSubplanExec`]. For
//! each partition, the first of them to run collects the aggregate's rows, and the
//! others replay them. The rows are counted in the memory pool. An aggregate's output
//! is one row per group, so it is bounded by the groups and not by the rows scanned.
//!
//! The rule runs before DataFusion's last filter pushdown, while the copies are still
//! the same. A [`SharedSubplanExec`] lets no filter from above pass into its input,
//! because each reference needs every row of it.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, OnceLock};

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode, TreeNodeRecursion};
use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    displayable, DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties,
    PlanProperties,
};
use futures::{StreamExt, TryStreamExt};
use tokio::sync::OnceCell;

/// The physical optimizer rule: every aggregate that occurs more than once in a plan
/// becomes [`SharedSubplanExec`]s over one shared result.
#[derive(Debug, Default)]
pub(crate) struct SharedSubplans;

impl PhysicalOptimizerRule for SharedSubplans {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        // Each candidate's key, by node (the second pass visits the same nodes).
        let mut keys: HashMap<*const (), String> = HashMap::new();
        let mut uses: HashMap<String, usize> = HashMap::new();
        plan.apply(|node| {
            if let Some(key) = shareable(node) {
                *uses.entry(key.clone()).or_default() += 1;
                keys.insert(Arc::as_ptr(node).cast(), key);
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        let shared: HashMap<String, Arc<Shared>> = uses
            .into_iter()
            .filter(|(_, uses)| *uses > 1)
            .map(|(key, uses)| (key, Arc::new(Shared::new(uses))))
            .collect();
        if shared.is_empty() {
            return Ok(plan);
        }
        plan.transform_down(|node| {
            if node.downcast_ref::<SharedSubplanExec>().is_some() {
                return Ok(Transformed::new(node, false, TreeNodeRecursion::Jump));
            }
            let state = keys
                .get(&Arc::as_ptr(&node).cast())
                .and_then(|key| shared.get(key));
            match state {
                Some(state) => {
                    let exec = SharedSubplanExec::new(node, Arc::clone(state));
                    Ok(Transformed::new(
                        Arc::new(exec),
                        true,
                        TreeNodeRecursion::Jump,
                    ))
                }
                None => Ok(Transformed::no(node)),
            }
        })
        .data()
    }

    fn name(&self) -> &str {
        "SharedSubplans"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// `node`'s displayed subtree when it can be shared: a final aggregate over scans of
/// files only, without dynamic filters.
fn shareable(node: &Arc<dyn ExecutionPlan>) -> Option<String> {
    let aggregate = node.downcast_ref::<AggregateExec>()?;
    if !matches!(
        aggregate.mode(),
        AggregateMode::Final
            | AggregateMode::FinalPartitioned
            | AggregateMode::Single
            | AggregateMode::SinglePartitioned
    ) {
        return None;
    }
    let mut files_only = true;
    node.apply(|n| {
        if n.children().is_empty() {
            let scans_files = n
                .downcast_ref::<DataSourceExec>()
                .and_then(|scan| scan.data_source().downcast_ref::<FileScanConfig>())
                .is_some();
            files_only &= scans_files;
        }
        Ok(TreeNodeRecursion::Continue)
    })
    .ok()?;
    if !files_only {
        return None;
    }
    // Verbose: every file of every group, every expression.
    let key = displayable(node.as_ref()).indent(true).to_string();
    (!key.contains("DynamicFilter")).then_some(key)
}

/// One subplan's result, shared by its occurrences: the plan that computes it (the
/// input of the first occurrence to run) and each partition's rows once collected.
struct Shared {
    uses: usize,
    plan: OnceLock<Arc<dyn ExecutionPlan>>,
    partitions: OnceLock<Vec<OnceCell<Collected>>>,
}

/// A partition's rows (held in the memory pool) or why computing them failed.
type Collected = Result<Arc<Rows>, Arc<DataFusionError>>;

struct Rows {
    batches: Vec<RecordBatch>,
    _reservation: MemoryReservation,
}

impl Shared {
    fn new(uses: usize) -> Self {
        Shared {
            uses,
            plan: OnceLock::new(),
            partitions: OnceLock::new(),
        }
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared").field("uses", &self.uses).finish()
    }
}

/// One occurrence of a subplan that occurs more than once: each partition is computed
/// by the first occurrence to run it and replayed to the others.
#[derive(Debug)]
pub(crate) struct SharedSubplanExec {
    input: Arc<dyn ExecutionPlan>,
    shared: Arc<Shared>,
}

impl SharedSubplanExec {
    fn new(input: Arc<dyn ExecutionPlan>, shared: Arc<Shared>) -> Self {
        SharedSubplanExec { input, shared }
    }
}

impl DisplayAs for SharedSubplanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SharedSubplanExec: computed once for {} uses",
            self.shared.uses
        )
    }
}

impl ExecutionPlan for SharedSubplanExec {
    fn name(&self) -> &str {
        "SharedSubplanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    /// A later rule may rewrite the input (a join inside it gets its dynamic filter):
    /// the occurrences stay one shared result, computed by whichever input runs first.
    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(SharedSubplanExec::new(
            children.remove(0),
            Arc::clone(&self.shared),
        )))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let plan = Arc::clone(self.shared.plan.get_or_init(|| Arc::clone(&self.input)));
        let count = plan.output_partitioning().partition_count();
        let shared = Arc::clone(&self.shared);
        let collected = async move {
            let cells = shared
                .partitions
                .get_or_init(|| (0..count).map(|_| OnceCell::new()).collect());
            let cell = cells.get(partition).ok_or_else(|| {
                DataFusionError::Internal(format!(
                    "SharedSubplanExec: partition {partition} of {count}"
                ))
            })?;
            let rows = cell
                .get_or_init(|| collect(plan, partition, context))
                .await
                .clone()
                .map_err(DataFusionError::Shared)?;
            let batches: Vec<DfResult<RecordBatch>> =
                rows.batches.iter().cloned().map(Ok).collect();
            Ok::<_, DataFusionError>(futures::stream::iter(batches))
        };
        let stream = futures::stream::once(collected).try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.input.schema(),
            stream.boxed(),
        )))
    }
}

/// Runs `partition` of `plan` to the end: its batches, counted in the memory pool.
async fn collect(
    plan: Arc<dyn ExecutionPlan>,
    partition: usize,
    context: Arc<TaskContext>,
) -> Collected {
    let reservation = MemoryConsumer::new(format!("SharedSubplanExec[{partition}]"))
        .register(context.memory_pool());
    let mut stream = plan.execute(partition, context).map_err(Arc::new)?;
    let mut batches = Vec::new();
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(Arc::new)?;
        reservation.grow(batch.get_array_memory_size());
        batches.push(batch);
    }
    Ok(Arc::new(Rows {
        batches,
        _reservation: reservation,
    }))
}
