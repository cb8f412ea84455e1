//! Executing a planned run: tasks start as soon as their upstream tasks of the run
//! have succeeded (up to `max_concurrent_tasks` at once, across pipelines in a run of
//! the project); each written task is one Delta commit, after which downstream tasks
//! read the committed table. A failed task's downstream tasks are skipped; the other
//! branches go on. Then the metrics of each pipeline that ran completely are computed,
//! the run is logged, and alerts are sent.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use datafusion::common::TableReference;
use datafusion::datasource::ViewTable;
use datafusion::prelude::{DataFrame, SessionContext};
use futures::stream::{FuturesUnordered, StreamExt};

use super::command::{self, CommandError, PlannedCommand};
use super::events::{RowCount, RunEvent, RunObserver};
use super::plan::{PlannedTask, RunPlan, Work};
use super::Engine;
use crate::catalog::{register_provider, Catalog};
use crate::checks::{MetricError, MetricValue, PlannedMetric};
use crate::config::{Materialization, TaskId};
use crate::delta::WriteOutcome;
use crate::error::{Error, Result};
use crate::models::ResolvedModel;
use crate::report::{RunReport, TaskOutcome, TaskStatus};
use crate::runlog::RunLog;
use crate::template::RunDate;

pub(super) async fn execute(
    engine: &Engine,
    plan: RunPlan,
    observer: &dyn RunObserver,
) -> RunReport {
    let started = Instant::now();
    let started_at = chrono::Utc::now();
    let run_id = format!(
        "{}-{}-{}",
        plan.pipeline.as_ref().map_or("project", |p| p.as_str()),
        plan.ds.ds_nodash(),
        started_at.format("%Y%m%dT%H%M%S%.6fZ")
    );
    observer.on_event(&RunEvent::RunStarted {
        run_id: &run_id,
        plan: &plan,
    });
    let RunPlan {
        pipeline: _,
        pipelines,
        selection,
        env,
        ds,
        tasks,
        metrics,
        models,
        ctx,
        catalog,
        model_callers,
        fail_fast,
        retries,
        cancel,
    } = plan;
    let run = Run {
        engine,
        ctx: &ctx,
        catalog: &catalog,
        ds,
        run_id: &run_id,
        observer,
        fail_fast,
        retries,
        cancel: cancel.unwrap_or_default(),
        models: Mutex::new(models),
        output: Mutex::new(BTreeMap::new()),
    };
    let outcomes = run_tasks(engine, &run, &tasks).await;
    let models = run.models.into_inner().unwrap_or_else(|e| e.into_inner());
    let mut report = RunReport::new(pipelines, env, ds, run_id, outcomes);
    report.models = models;
    report.model_callers = model_callers;
    report.selection = selection;
    let log = RunLog::new(catalog);
    let log_ctx = engine.embedded_session();
    // A pipeline's metrics are computed when all its tasks succeeded.
    let metrics: Vec<PlannedMetric> = metrics
        .into_iter()
        .filter(|m| report.pipeline_succeeded(&m.pipeline))
        .collect();
    if !metrics.is_empty() {
        compute_metrics(&ctx, &log_ctx, &log, &metrics, &mut report).await;
    }
    // The run log is written last; a failure to write it never undoes the run's data.
    if let Err(e) = log
        .append(&log_ctx, &report, started_at, &report.metrics)
        .await
    {
        report.log_error = Some(e);
    }
    match crate::notify::log_to_mlflow(engine.environment(), &report, started_at.timestamp_millis())
        .await
    {
        Ok(id) => report.mlflow_run_id = id,
        Err(e) => report.mlflow_error = Some(e),
    }
    // Alerts last: the data is committed and logged whatever their delivery does.
    report.alerts = crate::notify::send_alerts(engine.environment(), &report).await;
    report.elapsed = started.elapsed();
    observer.on_event(&RunEvent::RunFinished { report: &report });
    report
}

/// What every task of one run shares.
struct Run<'a> {
    engine: &'a Engine,
    ctx: &'a SessionContext,
    catalog: &'a Catalog,
    ds: RunDate,
    run_id: &'a str,
    observer: &'a dyn RunObserver,
    /// Stop at the first failure, cancelling running writes (`fail_fast`).
    fail_fast: bool,
    /// Whether tasks' `retries` apply.
    retries: bool,
    cancel: Arc<AtomicBool>,
    /// The model functions the run calls; a command task that registers a model
    /// replaces the ones naming it.
    models: Mutex<Vec<ResolvedModel>>,
    /// The tail of each command task's output.
    output: Mutex<BTreeMap<TaskId, String>>,
}

impl Run<'_> {
    /// Records `outcome` and tells the observer.
    fn finished(&self, outcomes: &mut Vec<TaskOutcome>, outcome: TaskOutcome) {
        self.observer.on_event(&RunEvent::TaskFinished {
            run_id: self.run_id,
            outcome: &outcome,
        });
        outcomes.push(outcome);
    }
}

/// Runs the planned tasks, each as soon as its upstream tasks of the run succeeded.
/// A task whose upstream task failed (or was skipped) is skipped; the others run.
async fn run_tasks(engine: &Engine, run: &Run<'_>, tasks: &[PlannedTask]) -> Vec<TaskOutcome> {
    let mut outcomes = Vec::new();
    let mut waiting: Vec<&PlannedTask> = tasks.iter().collect();
    let mut done: BTreeSet<TaskId> = BTreeSet::new();
    // Failed or skipped: their downstream tasks are skipped.
    let mut blocked: BTreeSet<TaskId> = BTreeSet::new();
    let mut running = FuturesUnordered::new();
    let limit = engine.max_concurrent_tasks();
    loop {
        // `waiting` is in DAG order, so a skip reaches every task downstream in one pass.
        waiting.retain(|t| {
            if !t.upstream.iter().any(|u| blocked.contains(u)) {
                return true;
            }
            blocked.insert(t.id());
            if t.selected {
                run.finished(
                    &mut outcomes,
                    outcome(t, TaskStatus::Skipped, Duration::ZERO),
                );
            }
            false
        });
        let mut i = 0;
        let stopping = run.cancel.load(Ordering::Relaxed);
        while !stopping && i < waiting.len() && running.len() < limit {
            if !waiting[i].upstream.iter().all(|u| done.contains(u)) {
                i += 1;
                continue;
            }
            let task = waiting.remove(i);
            running.push(async move {
                let start = Instant::now();
                let (status, retried) = run_with_retries(run, task).await;
                (task, status, retried, start.elapsed())
            });
        }
        let Some((task, status, retried, elapsed)) = running.next().await else {
            break;
        };
        let status = match status {
            Ok(written) => {
                done.insert(task.id());
                TaskStatus::Succeeded(written)
            }
            // Stopped by --fail-fast after another failure, or from outside.
            Err(e) if run.cancel.load(Ordering::Relaxed) && is_cancelled(&e) => {
                blocked.insert(task.id());
                TaskStatus::Cancelled
            }
            Err(e) => {
                blocked.insert(task.id());
                if run.fail_fast {
                    // Start nothing more; running writes stop before their commit.
                    run.cancel.store(true, Ordering::Relaxed);
                }
                TaskStatus::Failed(e)
            }
        };
        // A view read by the selection is reported only when it failed.
        if task.selected || matches!(status, TaskStatus::Failed(_)) {
            let mut o = outcome(task, status, elapsed);
            o.retried = retried;
            o.output = lock(&run.output).remove(&task.id());
            o.expectations = task
                .expectations
                .as_ref()
                .map(|e| e.outcomes())
                .unwrap_or_default();
            run.finished(&mut outcomes, o);
        }
    }
    // With fail_fast, the tasks not started after a failure are skipped.
    for t in waiting.into_iter().filter(|t| t.selected) {
        run.finished(
            &mut outcomes,
            outcome(t, TaskStatus::Skipped, Duration::ZERO),
        );
    }
    outcomes
}

/// Whether `e` is a task stopped because the run was cancelled.
fn is_cancelled(e: &Error) -> bool {
    crate::delta::is_cancelled(e)
        || matches!(
            e,
            Error::Command { source, .. } if matches!(**source, CommandError::Cancelled)
        )
}

/// `mutex`'s value; a panic while holding it left it consistent (only inserts).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn outcome(task: &PlannedTask, status: TaskStatus, elapsed: Duration) -> TaskOutcome {
    TaskOutcome {
        pipeline: task.pipeline.clone(),
        task: task.task.clone(),
        materialization: task.materialization,
        status,
        elapsed,
        expectations: Vec::new(),
        retried: Vec::new(),
        output: None,
    }
}

/// Runs `task`, and again after a transient failure as long as its `retries` allow,
/// waiting `retry_delay` doubled for each retry, with jitter. Returns the last result
/// and the errors of the attempts that were retried.
async fn run_with_retries(
    run: &Run<'_>,
    task: &PlannedTask,
) -> (Result<Option<WriteOutcome>>, Vec<Error>) {
    let mut retried = Vec::new();
    let allowed = match run.retries {
        true => task.config.retries() as usize,
        false => 0,
    };
    loop {
        let attempt = retried.len() as u32 + 1;
        let rows = RowCount::default();
        run.observer.on_event(&RunEvent::TaskStarted {
            run_id: run.run_id,
            task,
            attempt,
            rows: &rows,
        });
        match run_task(run, task, &rows).await {
            Err(e) if e.is_transient() && retried.len() < allowed => {
                let wait = backoff(task.config.retry_delay(), retried.len() as u32);
                run.observer.on_event(&RunEvent::TaskRetrying {
                    run_id: run.run_id,
                    task,
                    attempt,
                    error: &e,
                    wait,
                });
                retried.push(e);
                tokio::time::sleep(wait).await;
            }
            last => return (last, retried),
        }
    }
}

/// The wait before retry `n` (0 for the first): `base` × 2ⁿ × a random factor in
/// [0.5, 1.5), so tasks failing together do not retry together; at most an hour.
fn backoff(base: Duration, n: u32) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    // A fresh RandomState is randomly keyed: hashing nothing gives a random u64.
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let unit = (random >> 11) as f64 / (1u64 << 53) as f64;
    let factor = 2f64.powi(n.min(30) as i32) * (0.5 + unit);
    base.mul_f64(factor).min(Duration::from_secs(3600))
}

/// Computes each metric on the committed tables and judges it against its thresholds
/// and the previous successful run's value.
async fn compute_metrics(
    ctx: &SessionContext,
    log_ctx: &SessionContext,
    log: &RunLog,
    metrics: &[PlannedMetric],
    report: &mut RunReport,
) {
    let metric_err = |m: &PlannedMetric, source: MetricError| Error::Metric {
        metric: m.name.to_string(),
        file: m.file.clone(),
        source,
    };
    let mut previous = std::collections::BTreeMap::new();
    for m in metrics {
        if previous.contains_key(&m.pipeline) {
            continue;
        }
        let values = match log.previous_metrics(log_ctx, m.pipeline.as_str()).await {
            Ok(p) => p,
            Err(e) => {
                // The metrics are judged without the previous values; why is reported.
                report.metric_errors.push(e);
                Default::default()
            }
        };
        previous.insert(m.pipeline.clone(), values);
    }
    for m in metrics {
        match metric_values(ctx, m).await {
            Ok(values) => {
                for (group, value) in values {
                    let prev = previous[&m.pipeline]
                        .get(&(m.name.to_string(), group.clone()))
                        .copied();
                    report.metrics.push(MetricValue {
                        pipeline: m.pipeline.clone(),
                        metric: m.name.to_string(),
                        breach: crate::checks::judge(&m.config, value, prev),
                        group,
                        value,
                        previous: prev,
                    });
                }
            }
            Err(source) => report.metric_errors.push(metric_err(m, source)),
        }
    }
}

/// Runs a metric's query: its (group, value) pairs.
async fn metric_values(
    ctx: &SessionContext,
    m: &PlannedMetric,
) -> std::result::Result<crate::checks::GroupValues, MetricError> {
    let plan = crate::functions::state_for(ctx.state(), m.dialect)
        .statement_to_plan(m.statement.clone())
        .await?;
    let batches = DataFrame::new(ctx.state(), plan).collect().await?;
    crate::checks::values(&batches, m.grouped)
}

/// Plans `task` again against the tables as they are now (upstream tasks of the run
/// committed), then writes it; a view is registered for its downstream tasks instead.
async fn run_task(
    run: &Run<'_>,
    task: &PlannedTask,
    rows: &RowCount,
) -> Result<Option<WriteOutcome>> {
    let (ctx, catalog, ds) = (run.ctx, run.catalog, run.ds);
    let reference = TableReference::partial(task.pipeline.as_str(), task.task.as_str());
    let (statement, dialect) = match &task.work {
        Work::Sql(statement, dialect) => (statement, *dialect),
        Work::Command(cmd) => return run_command(run, task, cmd).await,
    };
    let plan = crate::functions::state_for(ctx.state(), dialect)
        .statement_to_plan(statement.clone())
        .await
        .map_err(|source| Error::plan(task.task.as_str(), task.file.clone(), source))?;
    let Some(url) = &task.table_url else {
        let view = ViewTable::new(plan, Some(task.sql.clone()));
        register_provider(ctx, reference, Arc::new(view))?;
        return Ok(None);
    };
    // An append is idempotent per task and run date, through the table's own log.
    let append_id = (task.materialization == Materialization::Append)
        .then(|| format!("quern/{}/{}/{}", task.pipeline, task.task, ds));
    let target = crate::delta::TableWrite {
        url,
        storage: catalog.storage(),
        table_name: task.task.as_str(),
        config: &task.config,
        evolve: task.evolve_schema,
        expectations: task.expectations.clone(),
        append_id,
        rows: Some(rows.counter()),
        cancel: Some(run.cancel.clone()),
    };
    let written = crate::delta::write(&ctx.state(), plan, target).await?;
    // Downstream tasks read the committed table.
    let provider = crate::delta::provider(&written.table, url, ctx).await?;
    register_provider(ctx, reference, provider)?;
    Ok(Some(written.outcome))
}

/// Runs command task `task`'s program, then checks what it declares: a new version of
/// its table with its columns (then registered for the tasks downstream), or a new
/// version of its registered model (then the run's model functions naming it are
/// resolved again, so downstream scoring uses the version the alias now names).
async fn run_command(
    run: &Run<'_>,
    task: &PlannedTask,
    cmd: &PlannedCommand,
) -> Result<Option<WriteOutcome>> {
    let env = run.engine.environment();
    let storage = run.catalog.storage();
    let before = match &cmd.output {
        Some((url, _)) => command::table_version(url, storage).await?,
        None => None,
    };
    let registered_before = match &cmd.registers {
        Some(model) => command::latest_version(env, model).await?,
        None => None,
    };
    let on_line = |stderr: bool, line: &str| {
        run.observer.on_event(&RunEvent::TaskOutput {
            run_id: run.run_id,
            task,
            stderr,
            line,
        })
    };
    let launch = command::Launch {
        secrets: command::secret_vars(env, storage)?,
        run_id: run.run_id,
        cancel: &run.cancel,
        on_line: &on_line,
    };
    let mut tail = command::Tail::default();
    let ran = command::execute(cmd, &launch, &mut tail).await;
    let tail = tail.text();
    lock(&run.output).insert(task.id(), tail.clone());
    let fail = |source: CommandError| Error::Command {
        task: format!("{}/{}", task.pipeline, task.task),
        file: task.file.clone(),
        tail: tail.clone(),
        retry: cmd.retry_on_exit,
        source: Box::new(source),
    };
    ran.map_err(fail)?;
    let mut written = None;
    if let Some((url, schema)) = &cmd.output {
        let (table, mut outcome) = command::check_output(task, url, schema, storage, before)
            .await?
            .map_err(fail)?;
        let provider = crate::delta::provider(&table, url, run.ctx).await?;
        let reference = TableReference::partial(task.pipeline.as_str(), task.task.as_str());
        register_provider(run.ctx, reference.clone(), provider)?;
        let rows = run
            .ctx
            .table(reference)
            .await
            .map_err(|source| Error::plan(task.task.as_str(), task.file.clone(), source))?
            .count()
            .await;
        outcome.rows = rows.map_or(0, |n| n as u64);
        written = Some(outcome);
    }
    if let Some(model) = &cmd.registers {
        let latest = command::latest_version(env, model).await?;
        if latest <= registered_before {
            return Err(fail(CommandError::NoNewVersion {
                model: model.clone(),
                latest,
            }));
        }
        let used: BTreeSet<String> = lock(&run.models)
            .iter()
            .filter(|m| cmd.refreshes.contains(&m.function))
            .map(|m| m.function.clone())
            .collect();
        if !used.is_empty() {
            let fresh = run.engine.load_models(run.ctx, &used).await?;
            let mut models = lock(&run.models);
            models.retain(|m| !used.contains(&m.function));
            models.extend(fresh);
            models.sort_by(|a, b| a.function.cmp(&b.function));
        }
    }
    Ok(written)
}
