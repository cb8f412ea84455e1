//! Expectations (`[[tasks.<task>.expect]]` in `pipeline.toml`): not null, unique,
//! accepted values, row count bounds and any SQL condition over a row, each with a
//! severity as in Databricks declarative pipelines — `warn` (write everything, count the
//! violating rows), `drop` (write only passing rows), `fail` (write nothing, name the
//! expectation and show offending rows).
//!
//! They are evaluated in the same pass that writes the table: the task's plan is read
//! through [`ExpectationsTable`], whose scan wraps the task's physical plan in
//! [`ExpectationsExec`]. A `fail` stops the stream, so the Delta commit never happens.

use std::collections::HashSet;
use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use crate::config::{ExpectationConfig, Severity};
use async_trait::async_trait;
use datafusion::arrow::array::{AsArray, BooleanArray, RecordBatch};
use datafusion::arrow::compute::{and, filter_record_batch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::catalog::Session;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::session_state::{SessionState, SessionStateBuilder};
use datafusion::execution::{RecordBatchStream, SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{col, lit, Expr, ExprSchemable, LogicalPlan};
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PhysicalExpr, PlanProperties,
};
use futures::{Stream, StreamExt};

/// How one expectation fared in a run.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExpectationOutcome {
    /// The expectation's name.
    pub name: String,
    /// Its severity.
    pub severity: Severity,
    /// Rows that violated it (for `row_count`: 1 when the count is out of bounds).
    pub violations: u64,
    /// Whether it bounds the row count (rather than judging rows).
    pub is_row_count: bool,
}

/// Why an expectation does not compile against its task's output.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExpectationError {
    /// It names a column the output lacks, or a value that cannot be compared.
    #[error("expectation `{name}`: {message}")]
    Invalid {
        /// The expectation.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// Its SQL condition does not parse or plan.
    #[error("expectation `{name}`: {source}")]
    Sql {
        /// The expectation.
        name: String,
        /// DataFusion's error.
        #[source]
        source: DataFusionError,
    },
    /// Its SQL is not a condition.
    #[error("expectation `{name}` is {data_type}, not a condition")]
    NotACondition {
        /// The expectation.
        name: String,
        /// The type the SQL has.
        data_type: datafusion::arrow::datatypes::DataType,
    },
}

/// What each expectation checks, resolved against the task's output schema.
#[derive(Debug)]
enum Check {
    /// A condition every row must meet (not null, accepted values, SQL).
    Row(Expr),
    /// The key columns must not repeat.
    Unique(Vec<usize>),
    /// The number of rows written must be within bounds.
    Count(Option<u64>, Option<u64>),
}

#[derive(Debug)]
struct Expectation {
    name: String,
    severity: Severity,
    check: Check,
    violations: AtomicU64,
}

/// A task's expectations, compiled for its output schema, with the counters one run
/// fills in.
#[derive(Debug)]
pub(crate) struct CompiledExpectations {
    task: String,
    expectations: Vec<Expectation>,
}

impl CompiledExpectations {
    /// Resolves `configs` against `schema` (the task's planned output); an unknown
    /// column or a non-boolean condition is an error naming the expectation.
    pub(crate) fn compile(
        task: &str,
        configs: &[ExpectationConfig],
        schema: &DFSchema,
        parse_sql: impl Fn(&str) -> DfResult<Expr>,
    ) -> Result<Self, ExpectationError> {
        let mut expectations = Vec::new();
        for c in configs {
            let name = c.display_name();
            let invalid = |message: String| ExpectationError::Invalid {
                name: name.clone(),
                message,
            };
            let sql_err = |source| ExpectationError::Sql {
                name: name.clone(),
                source,
            };
            let column = |n: &String| -> Result<Expr, ExpectationError> {
                schema
                    .index_of_column_by_name(None, n)
                    .map(|_| col(datafusion::common::Column::new_unqualified(n)))
                    .ok_or_else(|| invalid(format!("the output has no column `{n}`")))
            };
            let check = if let Some(cols) = &c.not_null {
                let mut exprs = Vec::new();
                for n in cols {
                    exprs.push(column(n)?.is_not_null());
                }
                Check::Row(
                    exprs
                        .into_iter()
                        .reduce(Expr::and)
                        .unwrap_or_else(|| lit(true)),
                )
            } else if let Some(cols) = &c.unique {
                let mut idx = Vec::new();
                for n in cols {
                    column(n)?;
                    idx.push(schema.index_of_column_by_name(None, n).unwrap_or_default());
                }
                Check::Unique(idx)
            } else if let Some(a) = &c.accepted_values {
                let target = column(&a.column)?;
                let mut values = Vec::new();
                for v in &a.values {
                    let scalar = match v {
                        toml::Value::String(s) => ScalarValue::Utf8(Some(s.clone())),
                        toml::Value::Integer(i) => ScalarValue::Int64(Some(*i)),
                        toml::Value::Float(f) => ScalarValue::Float64(Some(*f)),
                        toml::Value::Boolean(b) => ScalarValue::Boolean(Some(*b)),
                        other => return Err(invalid(format!("{other} is not an accepted value"))),
                    };
                    values.push(lit(scalar));
                }
                // NULL is not judged here: pair with not_null to forbid it.
                Check::Row(target.clone().in_list(values, false).or(target.is_null()))
            } else if let Some(r) = &c.row_count {
                Check::Count(r.min, r.max)
            } else {
                let sql = c.sql.clone().unwrap_or_default();
                let expr = parse_sql(&sql).map_err(sql_err)?;
                Check::Row(expr)
            };
            if let Check::Row(expr) = &check {
                let data_type = expr.get_type(schema).map_err(sql_err)?;
                if data_type != datafusion::arrow::datatypes::DataType::Boolean {
                    return Err(ExpectationError::NotACondition {
                        name: name.clone(),
                        data_type,
                    });
                }
            }
            expectations.push(Expectation {
                name,
                severity: c.severity,
                check,
                violations: AtomicU64::new(0),
            });
        }
        Ok(CompiledExpectations {
            task: task.to_string(),
            expectations,
        })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.expectations.is_empty()
    }

    /// The counts of the run so far.
    pub(crate) fn outcomes(&self) -> Vec<ExpectationOutcome> {
        self.expectations
            .iter()
            .map(|e| ExpectationOutcome {
                name: e.name.clone(),
                severity: e.severity,
                violations: e.violations.load(Ordering::SeqCst),
                is_row_count: matches!(e.check, Check::Count(..)),
            })
            .collect()
    }
}

/// The task's plan as a table whose scan checks the expectations on the way out.
#[derive(Debug)]
pub(crate) struct ExpectationsTable {
    plan: LogicalPlan,
    schema: SchemaRef,
    checks: Arc<CompiledExpectations>,
}

impl ExpectationsTable {
    pub(crate) fn new(plan: LogicalPlan, checks: Arc<CompiledExpectations>) -> Self {
        let schema = Arc::new(plan.schema().as_arrow().clone());
        ExpectationsTable {
            plan,
            schema,
            checks,
        }
    }
}

#[async_trait]
impl TableProvider for ExpectationsTable {
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
        let mut input = plan_input(state, &self.plan).await?;
        // Uniqueness and row counts are over the whole output: one stream.
        if input.properties().partitioning.partition_count() > 1 {
            input = Arc::new(CoalescePartitionsExec::new(input));
        }
        let df_schema = DFSchema::try_from(self.schema.as_ref().clone())?;
        let mut row_checks = Vec::new();
        for (i, e) in self.checks.expectations.iter().enumerate() {
            if let Check::Row(expr) = &e.check {
                row_checks.push((i, state.create_physical_expr(expr.clone(), &df_schema)?));
            }
        }
        let output_schema = match projection {
            Some(p) => Arc::new(self.schema.project(p)?),
            None => self.schema.clone(),
        };
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(output_schema.clone()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        Ok(Arc::new(ExpectationsExec {
            input,
            checks: self.checks.clone(),
            row_checks,
            projection: projection.cloned(),
            schema: output_schema,
            properties,
        }))
    }
}

/// Evaluates a task's expectations on its output stream (one partition).
#[derive(Debug)]
pub(crate) struct ExpectationsExec {
    input: Arc<dyn ExecutionPlan>,
    checks: Arc<CompiledExpectations>,
    row_checks: Vec<(usize, Arc<dyn PhysicalExpr>)>,
    projection: Option<Vec<usize>>,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

impl DisplayAs for ExpectationsExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let names: Vec<&str> = self
            .checks
            .expectations
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        write!(
            f,
            "ExpectationsExec: task={}, expectations=[{}]",
            self.checks.task,
            names.join(", ")
        )
    }
}

impl ExecutionPlan for ExpectationsExec {
    fn name(&self) -> &str {
        "ExpectationsExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        for (_, e) in &self.row_checks {
            if f(e)? == TreeNodeRecursion::Stop {
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    }

    #[allow(deprecated)]
    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        if children.len() != 1 {
            return Err(DataFusionError::Internal(
                "ExpectationsExec has one child".into(),
            ));
        }
        let mut input = children.remove(0);
        if input.properties().partitioning.partition_count() > 1 {
            input = Arc::new(CoalescePartitionsExec::new(input));
        }
        Ok(Arc::new(ExpectationsExec {
            input,
            checks: self.checks.clone(),
            row_checks: self.row_checks.clone(),
            projection: self.projection.clone(),
            schema: self.schema.clone(),
            properties: self.properties.clone(),
        }))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        if partition != 0 {
            return Err(DataFusionError::Internal(format!(
                "ExpectationsExec has one partition, not {partition}"
            )));
        }
        let mut keys = Vec::new();
        for e in &self.checks.expectations {
            if let Check::Unique(cols) = &e.check {
                let fields = cols
                    .iter()
                    .map(|i| SortField::new(self.input.schema().field(*i).data_type().clone()))
                    .collect();
                keys.push(Some((RowConverter::new(fields)?, HashSet::new())));
            } else {
                keys.push(None);
            }
        }
        Ok(Box::pin(ExpectationsStream {
            input: self.input.execute(0, context)?,
            checks: self.checks.clone(),
            row_checks: self.row_checks.clone(),
            keys: Mutex::new(keys),
            projection: self.projection.clone(),
            schema: self.schema.clone(),
            rows: 0,
            done: false,
        }))
    }
}

type UniqueState = Option<(RowConverter, HashSet<Box<[u8]>>)>;

struct ExpectationsStream {
    input: SendableRecordBatchStream,
    checks: Arc<CompiledExpectations>,
    row_checks: Vec<(usize, Arc<dyn PhysicalExpr>)>,
    keys: Mutex<Vec<UniqueState>>,
    projection: Option<Vec<usize>>,
    schema: SchemaRef,
    rows: u64,
    done: bool,
}

impl ExpectationsStream {
    /// Applies every expectation to `batch`: counts, drops or fails.
    fn check(&mut self, batch: RecordBatch) -> DfResult<RecordBatch> {
        let n = batch.num_rows();
        let mut keep: Option<BooleanArray> = None;
        let mut violations_of: Vec<(usize, BooleanArray)> = Vec::new();
        for (i, expr) in &self.row_checks {
            let passed = expr.evaluate(&batch)?.into_array(n)?;
            let passed = passed.as_boolean();
            // A row violates a condition unless it is TRUE (FALSE and NULL violate).
            let violated: BooleanArray = passed.iter().map(|v| Some(v != Some(true))).collect();
            violations_of.push((*i, violated));
        }
        {
            let mut keys = self
                .keys
                .lock()
                .map_err(|_| DataFusionError::Internal("poisoned".into()))?;
            for (i, state) in keys.iter_mut().enumerate() {
                let (Some((converter, seen)), Check::Unique(cols)) =
                    (state, &self.checks.expectations[i].check)
                else {
                    continue;
                };
                let columns: Vec<_> = cols.iter().map(|c| batch.column(*c).clone()).collect();
                let rows = converter.convert_columns(&columns)?;
                let violated: BooleanArray = (0..n)
                    .map(|r| Some(!seen.insert(rows.row(r).as_ref().into())))
                    .collect();
                violations_of.push((i, violated));
            }
        }
        for (i, violated) in violations_of {
            let count = violated.true_count() as u64;
            if count == 0 {
                continue;
            }
            let e = &self.checks.expectations[i];
            e.violations.fetch_add(count, Ordering::SeqCst);
            match e.severity {
                Severity::Warn => {}
                Severity::Drop => {
                    let passing: BooleanArray = violated.iter().map(|v| v.map(|x| !x)).collect();
                    keep = Some(match keep {
                        Some(k) => and(&k, &passing)?,
                        None => passing,
                    });
                }
                Severity::Fail => {
                    let offending = filter_record_batch(&batch, &violated)?;
                    let preview =
                        pretty_format_batches(&[offending.slice(0, offending.num_rows().min(5))])?;
                    return Err(DataFusionError::Execution(format!(
                        "expectation `{}` (fail) of task `{}` is violated by {count} row(s) of a batch; nothing was written. The first:\n{preview}",
                        e.name, self.checks.task
                    )));
                }
            }
        }
        let batch = match keep {
            Some(k) => filter_record_batch(&batch, &k)?,
            None => batch,
        };
        self.rows += batch.num_rows() as u64;
        Ok(match &self.projection {
            Some(p) => batch.project(p)?,
            None => batch,
        })
    }

    /// The row-count expectations, once the stream has ended.
    fn finish(&self) -> DfResult<()> {
        for e in &self.checks.expectations {
            let Check::Count(min, max) = &e.check else {
                continue;
            };
            let low = min.is_some_and(|m| self.rows < m);
            let high = max.is_some_and(|m| self.rows > m);
            if !(low || high) {
                continue;
            }
            e.violations.fetch_add(1, Ordering::SeqCst);
            if e.severity == Severity::Fail {
                let bounds = format!(
                    "{}..{}",
                    min.map(|m| m.to_string()).unwrap_or_default(),
                    max.map(|m| m.to_string()).unwrap_or_default()
                );
                return Err(DataFusionError::Execution(format!(
                    "expectation `{}` (fail) of task `{}`: {} rows, outside {bounds}; nothing was written",
                    e.name, self.checks.task, self.rows
                )));
            }
        }
        Ok(())
    }
}

impl Stream for ExpectationsStream {
    type Item = DfResult<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.input.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(batch))) => Poll::Ready(Some(self.check(batch))),
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) => {
                self.done = true;
                match self.finish() {
                    Ok(()) => Poll::Ready(None),
                    Err(e) => Poll::Ready(Some(Err(e))),
                }
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl RecordBatchStream for ExpectationsStream {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

/// The physical plan of a wrapper table's input (the checked or counted output of a
/// write), without DataFusion's post-optimization filter pushdown: the plan holding the
/// wrapper is optimized again as a whole, and join selection may then swap a join's
/// sides, which DataFusion refuses once that pushdown has built the join's dynamic
/// filters ("Cannot swap HashJoinExec inputs after dynamic filters have been
/// constructed"). The outer optimization pushes them instead.
pub(crate) async fn plan_input(
    state: &dyn Session,
    plan: &LogicalPlan,
) -> DfResult<Arc<dyn ExecutionPlan>> {
    let Some(session) = state.as_any().downcast_ref::<SessionState>() else {
        return state.create_physical_plan(plan).await;
    };
    let rules = session
        .physical_optimizers()
        .iter()
        .filter(|rule| rule.name() != "FilterPushdown(Post)")
        .cloned()
        .collect();
    SessionStateBuilder::new_from_existing(session.clone())
        .with_physical_optimizer_rules(rules)
        .build()
        .create_physical_plan(plan)
        .await
}
