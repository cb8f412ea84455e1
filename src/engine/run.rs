//! Executing a planned run: tasks start as soon as their upstream tasks of the run
//! have finished (up to `max_concurrent_tasks` at once); each written task is one
//! Delta commit, after which downstream tasks read the committed table.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::common::TableReference;
use datafusion::datasource::ViewTable;
use futures::stream::{FuturesUnordered, StreamExt};

use super::plan::{PlannedTask, RunPlan};
use super::Engine;
use crate::checks::{AlertDelivery, ExpectationOutcome, MetricValue, PlannedMetric, RunLog};
use crate::config::{Materialization, PipelineName, TaskName};
use crate::delta::WriteOutcome;
use crate::error::{Error, Result};
use crate::template::RunDate;

/// How one task of a run ended.
#[derive(Debug)]
pub enum TaskStatus {
    /// Written (or, for a view, registered).
    Succeeded(Option<WriteOutcome>),
    /// Failed; its table is at its previous version.
    Failed(Error),
    /// Not started because an upstream task failed.
    Skipped,
}

/// One task's result in a [`RunReport`].
#[derive(Debug)]
pub struct TaskOutcome {
    /// The task.
    pub task: TaskName,
    /// How it was written.
    pub materialization: Materialization,
    /// What happened.
    pub status: TaskStatus,
    /// Time from start to commit.
    pub elapsed: Duration,
    /// How the task's expectations fared (also when a `fail` expectation failed it).
    pub expectations: Vec<ExpectationOutcome>,
}

/// The result of executing a run.
#[derive(Debug)]
pub struct RunReport {
    /// The pipeline.
    pub pipeline: PipelineName,
    /// The environment.
    pub env: String,
    /// The run date.
    pub ds: RunDate,
    /// The run's id in the run log.
    pub run_id: String,
    /// Each executed task, in the order they finished.
    pub tasks: Vec<TaskOutcome>,
    /// The pipeline's metric values, judged (after a full, successful run).
    pub metrics: Vec<MetricValue>,
    /// A metric that could not be computed (the written data stays).
    pub metric_errors: Vec<(String, String)>,
    /// Why the run could not be recorded in the run log, if it could not (the written
    /// data stays).
    pub log_error: Option<String>,
    /// The alerts sent after the run (failed deliveries included).
    pub alerts: Vec<AlertDelivery>,
    /// The MLflow run this run was logged to, when the environment names a server.
    pub mlflow_run_id: Option<String>,
    /// Why the run could not be logged to MLflow, if it could not (nothing is undone).
    pub mlflow_error: Option<Error>,
    /// The model functions the run called, as they were resolved when it was planned.
    pub models: Vec<crate::models::ResolvedModel>,
    /// Wall time of the execution.
    pub elapsed: Duration,
}

impl RunReport {
    fn new(
        pipeline: PipelineName,
        env: String,
        ds: RunDate,
        run_id: String,
        tasks: Vec<TaskOutcome>,
    ) -> Self {
        RunReport {
            pipeline,
            env,
            ds,
            run_id,
            tasks,
            metrics: Vec::new(),
            metric_errors: Vec::new(),
            log_error: None,
            alerts: Vec::new(),
            mlflow_run_id: None,
            mlflow_error: None,
            models: Vec::new(),
            elapsed: Duration::ZERO,
        }
    }

    /// Whether every task succeeded (metric breaches do not fail a run).
    pub fn succeeded(&self) -> bool {
        self.tasks
            .iter()
            .all(|t| matches!(t.status, TaskStatus::Succeeded(_)))
            && self.metric_errors.is_empty()
    }

    /// The metric values that breached a threshold.
    pub fn breaches(&self) -> impl Iterator<Item = &MetricValue> {
        self.metrics.iter().filter(|m| m.breach.is_some())
    }

    /// The first failure, if any.
    pub fn first_error(&self) -> Option<&Error> {
        self.tasks.iter().find_map(|t| match &t.status {
            TaskStatus::Failed(e) => Some(e),
            _ => None,
        })
    }

    /// The outcome of `task`.
    pub fn task(&self, task: &str) -> Option<&TaskOutcome> {
        self.tasks.iter().find(|t| t.task.as_str() == task)
    }
}

pub(super) async fn execute(engine: &Engine, plan: RunPlan) -> RunReport {
    let started = Instant::now();
    let started_at = chrono::Utc::now();
    let run_id = format!(
        "{}-{}-{}",
        plan.pipeline,
        plan.ds.ds_nodash(),
        started_at.format("%Y%m%dT%H%M%S%.6fZ")
    );
    let RunPlan {
        pipeline,
        env,
        ds,
        tasks,
        metrics,
        models,
        ctx,
    } = plan;
    let mut outcomes = Vec::new();
    let warehouse = match engine.warehouse() {
        Ok(w) => w,
        Err(e) => {
            // Plans are only made when the warehouse resolves, so this is unreachable in
            // practice; report it on the first task rather than panic.
            if let Some(first) = tasks.first() {
                outcomes.push(TaskOutcome {
                    task: first.task.clone(),
                    materialization: first.materialization,
                    status: TaskStatus::Failed(e),
                    elapsed: Duration::ZERO,
                    expectations: Vec::new(),
                });
            }
            let mut report = RunReport::new(pipeline, env, ds, run_id, outcomes);
            report.models = models;
            report.elapsed = started.elapsed();
            return report;
        }
    };
    let mut waiting: Vec<&PlannedTask> = tasks.iter().collect();
    let mut done: BTreeSet<TaskName> = BTreeSet::new();
    let mut failed = false;
    let mut running = FuturesUnordered::new();
    let limit = engine.max_concurrent_tasks();

    loop {
        if !failed {
            let mut i = 0;
            while i < waiting.len() && running.len() < limit {
                if waiting[i].upstream.iter().all(|u| done.contains(u)) {
                    let task = waiting.remove(i);
                    let ctx = ctx.clone();
                    let warehouse = warehouse.clone();
                    let pipeline = pipeline.clone();
                    running.push(async move {
                        let start = Instant::now();
                        let status = run_task(&ctx, &warehouse, &pipeline, task).await;
                        (task, status, start.elapsed())
                    });
                } else {
                    i += 1;
                }
            }
        }
        let Some((task, status, elapsed)) = running.next().await else {
            break;
        };
        let status = match status {
            Ok(outcome) => {
                done.insert(task.task.clone());
                TaskStatus::Succeeded(outcome)
            }
            Err(e) => {
                failed = true;
                TaskStatus::Failed(e)
            }
        };
        if task.selected || matches!(status, TaskStatus::Failed(_)) {
            outcomes.push(TaskOutcome {
                task: task.task.clone(),
                materialization: task.materialization,
                status,
                elapsed,
                expectations: task
                    .expectations
                    .as_ref()
                    .map(|e| e.outcomes())
                    .unwrap_or_default(),
            });
        }
    }
    for task in waiting.into_iter().filter(|t| t.selected) {
        outcomes.push(TaskOutcome {
            task: task.task.clone(),
            materialization: task.materialization,
            status: TaskStatus::Skipped,
            elapsed: Duration::ZERO,
            expectations: Vec::new(),
        });
    }
    let mut report = RunReport::new(pipeline, env, ds, run_id, outcomes);
    report.models = models;
    let log = RunLog::new(warehouse.root(), warehouse.storage());
    let log_ctx = engine.session();
    if report.succeeded() && !metrics.is_empty() {
        compute_metrics(&ctx, &log_ctx, &log, &metrics, &mut report).await;
    }
    // The run log is written last; a failure to write it never undoes the run's data.
    if let Err(e) = log
        .append(&log_ctx, &report, started_at, &report.metrics)
        .await
    {
        report.log_error = Some(e.full_message());
    }
    match crate::checks::log_to_mlflow(engine.environment(), &report, started_at.timestamp_millis())
        .await
    {
        Ok(id) => report.mlflow_run_id = id,
        Err(e) => report.mlflow_error = Some(e),
    }
    // Alerts last: the data is committed and logged whatever their delivery does.
    report.alerts = crate::checks::send_alerts(engine.environment(), &report).await;
    report.elapsed = started.elapsed();
    report
}

/// Computes each metric on the committed tables and judges it against its thresholds
/// and the previous successful run's value.
async fn compute_metrics(
    ctx: &datafusion::prelude::SessionContext,
    log_ctx: &datafusion::prelude::SessionContext,
    log: &RunLog,
    metrics: &[PlannedMetric],
    report: &mut RunReport,
) {
    let previous = match log
        .previous_metrics(log_ctx, report.pipeline.as_str())
        .await
    {
        Ok(p) => p,
        Err(e) => {
            report
                .metric_errors
                .push(("(previous values)".into(), e.to_string()));
            Default::default()
        }
    };
    for m in metrics {
        let result = async {
            let plan = ctx
                .state()
                .statement_to_plan(m.statement.clone())
                .await
                .map_err(|e| e.to_string())?;
            let batches = datafusion::prelude::DataFrame::new(ctx.state(), plan)
                .collect()
                .await
                .map_err(|e| e.to_string())?;
            crate::checks::values(&batches, m.grouped)
        }
        .await;
        match result {
            Ok(values) => {
                for (group, value) in values {
                    let prev = previous.get(&(m.name.to_string(), group.clone())).copied();
                    report.metrics.push(MetricValue {
                        metric: m.name.to_string(),
                        breach: crate::checks::judge(&m.config, value, prev),
                        group,
                        value,
                        previous: prev,
                    });
                }
            }
            Err(message) => report.metric_errors.push((
                m.name.to_string(),
                format!("{}: {message}", m.file.display()),
            )),
        }
    }
}

/// Plans `task` again against the tables as they are now (upstream tasks of the run
/// committed), then writes it; a view is registered for its downstream tasks instead.
async fn run_task(
    ctx: &datafusion::prelude::SessionContext,
    warehouse: &super::Warehouse,
    pipeline: &PipelineName,
    task: &PlannedTask,
) -> Result<Option<WriteOutcome>> {
    let reference = TableReference::partial(pipeline.as_str(), task.task.as_str());
    let plan_err = |source| Error::plan(task.task.as_str(), task.file.clone(), source);
    let plan = ctx
        .state()
        .statement_to_plan(task.statement.clone())
        .await
        .map_err(plan_err)?;
    let Some(url) = &task.table_url else {
        ctx.deregister_table(reference.clone()).map_err(plan_err)?;
        ctx.register_table(
            reference,
            Arc::new(ViewTable::new(plan, Some(task.sql.clone()))),
        )
        .map_err(plan_err)?;
        return Ok(None);
    };
    let target = crate::delta::TableWrite {
        url,
        storage: warehouse.storage(),
        table_name: task.task.as_str(),
        config: &task.config,
        evolve: task.evolve_schema,
        expectations: task.expectations.clone(),
    };
    let written = crate::delta::write(&ctx.state(), plan, target).await?;
    // Downstream tasks read the committed table.
    let provider = crate::delta::provider(&written.table, url).await?;
    ctx.deregister_table(reference.clone()).map_err(plan_err)?;
    ctx.register_table(reference, provider).map_err(plan_err)?;
    Ok(Some(written.outcome))
}
