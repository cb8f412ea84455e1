//! Runtime join filters applied right above the Parquet scans they were pushed into.
//!
//! A hash join builds its table first and then publishes a filter of its keys (their
//! bounds and a set or a hash lookup: DataFusion's dynamic filters) to the scans of its
//! probe side, through projections, repartitions and the aggregates grouped by the key.
//! With `execution.parquet.pushdown_filters` off (its default, and quern's: row-level
//! pushdown made TPC-H's Q6, Q9 and Q15 twice as slow here) a scan only uses that filter
//! to skip row groups, which it rarely can, so every row still travels up to the join.
//! TPC-H Q17 aggregates all 6 M `lineitem` rows by part before the join keeps 0.1 % of
//! the parts.
//!
//! This rule, run after DataFusion's last filter pushdown, puts a [`RuntimeFilterExec`]
//! over each such scan. It drops the rows that no join above could keep, once the
//! filter is published, and stops filtering in a partition where the first rows show
//! that it keeps most of them (then the join's own probe does the work once, not twice).

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode, TreeNodeRecursion};
use datafusion::datasource::physical_plan::ParquetSource;
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::Result as DfResult;
use datafusion::execution::{RecordBatchStream, SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::expressions::DynamicFilterPhysicalExpr;
use datafusion::physical_expr::utils::{conjunction, reassign_expr_columns, split_conjunction};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::filter::batch_filter;
use datafusion::physical_plan::metrics::{
    Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet, Time,
};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures::{Stream, StreamExt};

/// Rows a partition filters before it judges whether filtering pays.
const SAMPLE_ROWS: usize = 65_536;
/// Above this share of rows kept, a partition stops filtering.
const KEEP_MOST: f64 = 0.6;

/// The physical optimizer rule: a [`RuntimeFilterExec`] over every Parquet scan holding
/// a join's dynamic filter that it does not apply to rows itself.
#[derive(Debug, Default)]
pub(crate) struct RuntimeFilters;

impl PhysicalOptimizerRule for RuntimeFilters {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        // Each scan says whether it holds dynamic filters and applies them itself (with
        // dynamic filters off it holds none; with `pushdown_filters` it applies them).
        plan.transform_down(|node| {
            // Already wrapped (the plan was optimized before): leave the subtree.
            if node.downcast_ref::<RuntimeFilterExec>().is_some() {
                return Ok(Transformed::new(node, false, TreeNodeRecursion::Jump));
            }
            match runtime_filter(&node) {
                Some(predicate) => Ok(Transformed::new(
                    Arc::new(RuntimeFilterExec::new(node, predicate)),
                    true,
                    TreeNodeRecursion::Jump,
                )),
                None => Ok(Transformed::no(node)),
            }
        })
        .data()
    }

    fn name(&self) -> &str {
        "RuntimeFilters"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// The conjunction of the dynamic filters `node`, a Parquet scan, holds without applying
/// them to rows, in terms of its output columns; None for any other node.
fn runtime_filter(node: &Arc<dyn ExecutionPlan>) -> Option<Arc<dyn PhysicalExpr>> {
    let scan = node.downcast_ref::<DataSourceExec>()?;
    let (_, parquet) = scan.downcast_to_file_source::<ParquetSource>()?;
    if parquet.table_parquet_options().global.pushdown_filters {
        return None;
    }
    let predicate = datafusion::datasource::physical_plan::FileSource::filter(parquet)?;
    let schema = scan.schema();
    let dynamic: Vec<_> = split_conjunction(&predicate)
        .into_iter()
        .filter(|part| !dynamic_filters(part).is_empty())
        // The scan's predicate names the table's columns; the filter runs on the
        // scan's output. A join key that is not an output column cannot be filtered on.
        .filter_map(|part| reassign_expr_columns(Arc::clone(part), &schema).ok())
        .collect();
    (!dynamic.is_empty()).then(|| conjunction(dynamic))
}

/// The dynamic filters in `expr`. Each starts at generation 1, empty, letting every
/// row through until its join publishes it.
fn dynamic_filters(expr: &Arc<dyn PhysicalExpr>) -> Vec<Arc<dyn PhysicalExpr>> {
    let mut filters = Vec::new();
    let _ = expr.apply(|e| {
        if e.downcast_ref::<DynamicFilterPhysicalExpr>().is_some() {
            filters.push(Arc::clone(e));
        }
        Ok(TreeNodeRecursion::Continue)
    });
    filters
}

/// Passes its input's batches on with the rows its joins' runtime filter drops removed;
/// partitioning, order and schema are its input's.
#[derive(Debug)]
pub(crate) struct RuntimeFilterExec {
    input: Arc<dyn ExecutionPlan>,
    predicate: Arc<dyn PhysicalExpr>,
    metrics: ExecutionPlanMetricsSet,
}

impl RuntimeFilterExec {
    fn new(input: Arc<dyn ExecutionPlan>, predicate: Arc<dyn PhysicalExpr>) -> Self {
        RuntimeFilterExec {
            input,
            predicate,
            metrics: ExecutionPlanMetricsSet::new(),
        }
    }
}

impl DisplayAs for RuntimeFilterExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "RuntimeFilterExec: {}", self.predicate)
    }
}

impl ExecutionPlan for RuntimeFilterExec {
    fn name(&self) -> &str {
        "RuntimeFilterExec"
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
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        f(&self.predicate)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(RuntimeFilterExec::new(
            children.remove(0),
            Arc::clone(&self.predicate),
        )))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context)?;
        let counters = Counters {
            rows_in: MetricBuilder::new(&self.metrics).counter("runtime_filter_rows_in", partition),
            rows_out: MetricBuilder::new(&self.metrics).output_rows(partition),
            stopped: MetricBuilder::new(&self.metrics)
                .counter("runtime_filter_stopped_partitions", partition),
            elapsed: MetricBuilder::new(&self.metrics).elapsed_compute(partition),
        };
        Ok(Box::pin(RuntimeFilterStream {
            input,
            predicate: Arc::clone(&self.predicate),
            dynamic: dynamic_filters(&self.predicate),
            mode: Mode::Sampling { seen: 0, kept: 0 },
            counters,
        }))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

struct Counters {
    rows_in: Count,
    rows_out: Count,
    stopped: Count,
    elapsed: Time,
}

#[derive(Debug, Clone, Copy)]
enum Mode {
    /// Filtering, and counting the rows seen and kept since the filter was published.
    Sampling { seen: usize, kept: usize },
    /// Filtering: it drops enough rows to pay for itself.
    Filtering,
    /// Passing every batch on: the filter kept most rows of the sample.
    Passing,
}

struct RuntimeFilterStream {
    input: SendableRecordBatchStream,
    predicate: Arc<dyn PhysicalExpr>,
    /// The dynamic filters in `predicate`, to see whether one was published.
    dynamic: Vec<Arc<dyn PhysicalExpr>>,
    mode: Mode,
    counters: Counters,
}

impl RuntimeFilterStream {
    /// Whether a join has published one of the filters yet.
    fn published(&self) -> bool {
        self.dynamic.iter().any(|f| f.snapshot_generation() > 1)
    }

    /// `batch` with the filtered rows removed, or None when none is left.
    fn filter_batch(&mut self, batch: RecordBatch) -> DfResult<Option<RecordBatch>> {
        self.counters.rows_in.add(batch.num_rows());
        let _timer = self.counters.elapsed.timer();
        let out = match self.mode {
            Mode::Passing => batch,
            Mode::Filtering => batch_filter(&batch, &self.predicate)?,
            Mode::Sampling { .. } if !self.published() => batch,
            Mode::Sampling { seen, kept } => {
                let out = batch_filter(&batch, &self.predicate)?;
                let (seen, kept) = (seen + batch.num_rows(), kept + out.num_rows());
                self.mode = if seen < SAMPLE_ROWS {
                    Mode::Sampling { seen, kept }
                } else if kept as f64 > KEEP_MOST * seen as f64 {
                    self.counters.stopped.add(1);
                    Mode::Passing
                } else {
                    Mode::Filtering
                };
                out
            }
        };
        self.counters.rows_out.add(out.num_rows());
        Ok((out.num_rows() > 0).then_some(out))
    }
}

impl Stream for RuntimeFilterStream {
    type Item = DfResult<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            match self.input.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(batch))) => match self.filter_batch(batch) {
                    Ok(Some(out)) => return Poll::Ready(Some(Ok(out))),
                    // Every row dropped: on to the next batch.
                    Ok(None) => continue,
                    Err(e) => return Poll::Ready(Some(Err(e))),
                },
                other => return other,
            }
        }
    }
}

impl RecordBatchStream for RuntimeFilterStream {
    fn schema(&self) -> datafusion::arrow::datatypes::SchemaRef {
        self.input.schema()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::execution::SessionStateBuilder;
    use datafusion::physical_plan::collect;
    use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};

    /// A session with the rule, over `facts` (200 000 rows, 20 000 keys, in 2 files)
    /// and `dims` (the 20 000 keys, one in a thousand `rare`) as Parquet.
    async fn session(pushdown_filters: bool) -> (SessionContext, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let mut config = SessionConfig::new().with_target_partitions(2);
        config.options_mut().execution.parquet.pushdown_filters = pushdown_filters;
        let state = SessionStateBuilder::new()
            .with_default_features()
            .with_config(config)
            .with_physical_optimizer_rule(Arc::new(RuntimeFilters))
            .build();
        let ctx = SessionContext::new_with_state(state);
        let write = |sql: &str, name: &str| {
            let (ctx, path) = (ctx.clone(), dir.path().join(name));
            let sql = sql.to_owned();
            async move {
                ctx.sql(&sql)
                    .await
                    .unwrap()
                    .write_parquet(path.to_str().unwrap(), Default::default(), None)
                    .await
                    .unwrap();
                path
            }
        };
        let facts = dir.path().join("facts");
        std::fs::create_dir(&facts).unwrap();
        for (i, range) in ["0, 99999", "100000, 199999"].iter().enumerate() {
            let sql =
                format!("SELECT value % 20000 AS k, value AS v FROM generate_series({range})");
            write(&sql, &format!("facts/{i}.parquet")).await;
        }
        let dims = write(
            "SELECT value AS k, value % 1000 = 0 AS rare FROM generate_series(0, 19999)",
            "dims.parquet",
        )
        .await;
        let options = ParquetReadOptions::default();
        ctx.register_parquet("facts", facts.to_str().unwrap(), options.clone())
            .await
            .unwrap();
        ctx.register_parquet("dims", dims.to_str().unwrap(), options)
            .await
            .unwrap();
        (ctx, dir)
    }

    /// The query's single value, and the runtime filters' rows in, out and partitions
    /// that stopped filtering.
    async fn run(ctx: &SessionContext, sql: &str) -> (i64, Vec<(usize, usize, usize)>) {
        let plan = ctx
            .sql(sql)
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap();
        let batches = collect(plan.clone(), ctx.task_ctx()).await.unwrap();
        let column = batches[0].column(0);
        let value = datafusion::common::cast::as_int64_array(column)
            .unwrap()
            .value(0);
        let mut filters = Vec::new();
        plan.apply(|node| {
            if let Some(exec) = node.downcast_ref::<RuntimeFilterExec>() {
                let metrics = exec.metrics().unwrap();
                let count = |name: &str| metrics.sum_by_name(name).map_or(0, |m| m.as_usize());
                filters.push((
                    count("runtime_filter_rows_in"),
                    metrics.output_rows().unwrap_or(0),
                    count("runtime_filter_stopped_partitions"),
                ));
            }
            Ok(TreeNodeRecursion::Continue)
        })
        .unwrap();
        (value, filters)
    }

    /// TPC-H Q17's shape: an aggregate by the key on the probe side of a selective join.
    const AGGREGATE_THEN_JOIN: &str = "SELECT CAST(sum(a.s) AS BIGINT) FROM \
        (SELECT k, sum(v) AS s FROM facts GROUP BY k) a JOIN dims d ON a.k = d.k WHERE d.rare";

    #[tokio::test]
    async fn a_selective_join_filters_its_probe_scan_before_the_aggregate() {
        let (ctx, _dir) = session(false).await;
        let (sum, filters) = run(&ctx, AGGREGATE_THEN_JOIN).await;
        // Keys 0, 1000, …, 19000, each with v = k + 20000·j for j in 0..10.
        let expected: i64 = (0..20)
            .map(|i| (0..10).map(|j| i * 1000 + 20000 * j).sum::<i64>())
            .sum();
        assert_eq!(sum, expected);
        assert_eq!(filters.len(), 1, "one runtime filter, over the facts scan");
        let (rows_in, rows_out, stopped) = filters[0];
        assert_eq!(rows_in, 200_000);
        assert_eq!(
            rows_out, 200,
            "only the rare keys' rows reach the aggregate"
        );
        assert_eq!(stopped, 0);
    }

    #[tokio::test]
    async fn a_filter_that_keeps_most_rows_stops_and_the_answer_is_the_same() {
        let (ctx, _dir) = session(false).await;
        let sql = "SELECT CAST(count(*) AS BIGINT) FROM facts f JOIN dims d ON f.k = d.k \
            WHERE d.k >= 100";
        let (count, filters) = run(&ctx, sql).await;
        assert_eq!(count, 200_000 - 100 * 10);
        assert_eq!(filters.len(), 1);
        let (rows_in, _, stopped) = filters[0];
        assert_eq!(rows_in, 200_000);
        assert_eq!(
            stopped, 2,
            "both partitions saw the filter keep 99 % and stopped"
        );
    }

    #[tokio::test]
    async fn scans_that_filter_rows_themselves_are_left_alone() {
        let (ctx, _dir) = session(true).await;
        let (_, filters) = run(&ctx, AGGREGATE_THEN_JOIN).await;
        assert!(filters.is_empty());
    }

    #[tokio::test]
    async fn optimizing_twice_wraps_a_scan_once() {
        let (ctx, _dir) = session(false).await;
        let plan = ctx
            .sql(AGGREGATE_THEN_JOIN)
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap();
        let again = RuntimeFilters
            .optimize(plan, ctx.state().config_options())
            .unwrap();
        let mut wrappers = 0;
        again
            .apply(|node| {
                wrappers += usize::from(node.downcast_ref::<RuntimeFilterExec>().is_some());
                Ok(TreeNodeRecursion::Continue)
            })
            .unwrap();
        assert_eq!(wrappers, 1);
    }
}
