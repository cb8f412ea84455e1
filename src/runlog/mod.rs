//! The run log: every run appends its outcome, its tasks, its expectations' counts and
//! its metric values to Delta tables under the environment's warehouse
//! (`<root>/_quern/{runs,tasks,expectations,metrics,models}`), so history needs no
//! other database. `quern status` reads it back. `models` records which model (URI,
//! registry version, SHA-256) each model function of a run scored with.

mod rows;

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::error::ArrowError;
use datafusion::prelude::SessionContext;

use rows::{ExpectationRow, LogRow, MetricRow, ModelRow, RunRow, TaskRow};

use crate::catalog::Catalog;
use crate::checks::{MetricValue, Previous};
use crate::config::{Materialization, TaskConfig};
use crate::delta::TableWrite;
use crate::error::{Error, Result};
use crate::report::{RunReport, TaskStatus};

/// Whether a recorded run succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RunStatus {
    /// Every task succeeded and every metric was computed.
    Succeeded,
    /// A task failed or a metric could not be computed.
    Failed,
}

impl RunStatus {
    /// The name the log stores: `succeeded` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
        }
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One run as the log records it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RunRecord {
    /// The run's id.
    pub run_id: String,
    /// The run date.
    pub ds: String,
    /// Whether it succeeded.
    pub status: RunStatus,
    /// When it finished (UTC).
    pub finished_at: String,
    /// Tasks that succeeded.
    pub tasks_ok: i64,
    /// Tasks that failed.
    pub tasks_failed: i64,
    /// Rows written.
    pub rows: i64,
    /// Metric values that breached a threshold.
    pub breaches: i64,
}

/// A pipeline's recent runs and metric values, newest first.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct RunHistory {
    /// The latest runs.
    pub runs: Vec<RunRecord>,
    /// Per metric (`name` or `name[group]`): its values in the latest runs.
    pub metrics: BTreeMap<String, Vec<MetricPoint>>,
}

/// One recorded value of a metric.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct MetricPoint {
    /// The run date.
    pub ds: String,
    /// The value.
    pub value: Option<f64>,
    /// Why it breached a threshold, if it did.
    pub breach: Option<String>,
}

/// The run log of one environment; its tables are resolved through the catalog.
#[derive(Debug, Clone)]
pub(crate) struct RunLog {
    catalog: Catalog,
}

/// A run's rows for every log table.
struct RunRows {
    runs: Vec<RunRow>,
    tasks: Vec<TaskRow>,
    expectations: Vec<ExpectationRow>,
    metrics: Vec<MetricRow>,
    models: Vec<ModelRow>,
}

impl RunRows {
    /// The rows of `report`: one `runs` row per pipeline it ran (all with the run's id),
    /// so each pipeline's history reads as before.
    fn of(report: &RunReport, started_at: DateTime<Utc>, metrics: &[MetricValue]) -> Self {
        let now = Utc::now();
        let run_id = || report.run_id.clone();
        let (tasks, expectations) = task_rows(report);
        let runs = report
            .pipelines
            .iter()
            .map(|p| {
                let of_p = || tasks.iter().filter(|t| t.pipeline == p.as_str());
                let count = |s: &str| of_p().filter(|t| t.status == s).count() as i64;
                let ok = report.pipeline_succeeded(p) && report.metric_errors.is_empty();
                RunRow {
                    run_id: run_id(),
                    pipeline: p.to_string(),
                    env: report.env.clone(),
                    ds: report.ds.date(),
                    started_at,
                    finished_at: now,
                    status: if ok {
                        RunStatus::Succeeded
                    } else {
                        RunStatus::Failed
                    }
                    .as_str(),
                    tasks_ok: count("succeeded"),
                    tasks_failed: count("failed"),
                    rows_written: of_p().filter_map(|t| t.rows).sum(),
                    breaches: metrics
                        .iter()
                        .filter(|m| &m.pipeline == p && m.breach.is_some())
                        .count() as i64,
                    selection: report.selection.clone(),
                }
            })
            .collect();
        let metrics = metrics
            .iter()
            .map(|m| MetricRow {
                run_id: run_id(),
                pipeline: m.pipeline.to_string(),
                ds: report.ds.date(),
                recorded_at: now,
                metric: m.metric.clone(),
                grp: m.group.clone(),
                value: m.value,
                previous: m.previous,
                breach: m.breach.clone(),
            })
            .collect();
        // A model is recorded under each pipeline whose SQL called it.
        let models = report
            .models
            .iter()
            .flat_map(|m| {
                let callers = report.model_callers.get(&m.function).into_iter().flatten();
                callers.map(move |p| (p, m))
            })
            .map(|(p, m)| ModelRow {
                run_id: run_id(),
                pipeline: p.to_string(),
                function: m.function.clone(),
                uri: m.uri.clone(),
                version: m.version.clone(),
                sha256: m.sha256.clone(),
            })
            .collect();
        RunRows {
            runs,
            tasks,
            expectations,
            metrics,
            models,
        }
    }
}

/// The `tasks` rows of a run (a row per attempt) and its `expectations` rows.
fn task_rows(report: &RunReport) -> (Vec<TaskRow>, Vec<ExpectationRow>) {
    let run_id = || report.run_id.clone();
    let mut tasks = Vec::new();
    let mut expectations = Vec::new();
    for t in &report.tasks {
        // Each retried attempt has its own row, with its error.
        for (i, e) in t.retried.iter().enumerate() {
            tasks.push(TaskRow {
                run_id: run_id(),
                pipeline: t.pipeline.to_string(),
                task: t.task.to_string(),
                materialized: t.materialization.as_str(),
                status: "retried",
                rows: None,
                version: None,
                seconds: 0.0,
                error: Some(e.full_message()),
                attempt: i as i64 + 1,
                output: None,
            });
        }
        let (status, written, error) = match &t.status {
            TaskStatus::Succeeded(w) => ("succeeded", *w, None),
            TaskStatus::Failed(e) => ("failed", None, Some(e.full_message())),
            TaskStatus::Skipped => ("skipped", None, None),
            TaskStatus::Cancelled => ("cancelled", None, None),
        };
        tasks.push(TaskRow {
            run_id: run_id(),
            pipeline: t.pipeline.to_string(),
            task: t.task.to_string(),
            materialized: t.materialization.as_str(),
            status,
            rows: written.map(|w| w.rows as i64),
            version: written.map(|w| w.version as i64),
            seconds: t.elapsed.as_secs_f64(),
            error,
            attempt: t.retried.len() as i64 + 1,
            output: t.output.clone(),
        });
        expectations.extend(t.expectations.iter().map(|e| ExpectationRow {
            run_id: run_id(),
            pipeline: t.pipeline.to_string(),
            task: t.task.to_string(),
            expectation: e.name.clone(),
            severity: e.severity.as_str(),
            violations: e.violations as i64,
        }));
    }
    (tasks, expectations)
}

fn log_err(table: &'static str, action: &'static str, source: Error) -> Error {
    Error::RunLog {
        table,
        action,
        source: Box::new(source),
    }
}

/// A log table's column that does not read as its type.
fn read_err(table: &'static str, e: ArrowError) -> Error {
    log_err(
        table,
        "read",
        Error::session(format!("reading the columns of {table}"), e.into()),
    )
}

impl RunLog {
    pub(crate) fn new(catalog: Catalog) -> Self {
        RunLog { catalog }
    }

    /// Runs `sql` over the log tables registered in `ctx`.
    async fn query(
        ctx: &SessionContext,
        table: &'static str,
        sql: &str,
    ) -> Result<Vec<RecordBatch>> {
        let read = |e| {
            log_err(
                table,
                "read",
                Error::session(format!("querying {table}"), e),
            )
        };
        ctx.sql(sql)
            .await
            .map_err(read)?
            .collect()
            .await
            .map_err(read)
    }

    /// The latest recorded value of each metric (and group) of `pipeline`.
    pub(crate) async fn previous_metrics(
        &self,
        ctx: &SessionContext,
        pipeline: &str,
    ) -> Result<Previous> {
        let mut previous = Previous::new();
        if !self
            .catalog
            .register_log_table(ctx, MetricRow::TABLE)
            .await?
        {
            return Ok(previous);
        }
        // Pipeline names are identifiers, so they need no quoting beyond the literal.
        let sql = format!(
            "SELECT metric, grp, value FROM metrics WHERE pipeline = '{pipeline}' AND value IS NOT NULL ORDER BY recorded_at"
        );
        for batch in Self::query(ctx, MetricRow::TABLE, &sql).await? {
            let read = |e: ArrowError| read_err(MetricRow::TABLE, e);
            let metric = rows::strings(&batch, 0).map_err(read)?;
            let group = rows::strings(&batch, 1).map_err(read)?;
            let value = rows::floats(&batch, 2).map_err(read)?;
            for ((m, g), v) in metric.into_iter().zip(group).zip(value) {
                if let (Some(m), Some(v)) = (m, v) {
                    previous.insert((m, g), v);
                }
            }
        }
        Ok(previous)
    }

    /// Appends a finished run to every log table.
    pub(crate) async fn append(
        &self,
        ctx: &SessionContext,
        report: &RunReport,
        started_at: DateTime<Utc>,
        metrics: &[MetricValue],
    ) -> Result<()> {
        let rows = RunRows::of(report, started_at, metrics);
        self.append_rows(ctx, &rows.tasks).await?;
        self.append_rows(ctx, &rows.expectations).await?;
        self.append_rows(ctx, &rows.metrics).await?;
        self.append_rows(ctx, &rows.models).await?;
        // The runs rows last: a run is in the log once they are, with all its details.
        self.append_rows(ctx, &rows.runs).await
    }

    /// Appends `rows` to their table (nothing when there are none).
    async fn append_rows<R: LogRow>(&self, ctx: &SessionContext, rows: &[R]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let build = |e| log_err(R::TABLE, "append", Error::session("building log rows", e));
        let batch = R::batch(rows).map_err(|e| build(e.into()))?;
        let plan = ctx
            .read_batch(batch)
            .map_err(build)?
            .into_unoptimized_plan();
        let url = self.catalog.warehouse().log_table_url(R::TABLE);
        let append = TaskConfig {
            materialized: Materialization::Append,
            ..TaskConfig::default()
        };
        // Runs that finish together may race to create a log table; the loser tries
        // again and appends to the table the winner created.
        let mut attempt = 0;
        loop {
            let target = TableWrite {
                url: &url,
                storage: self.catalog.storage(),
                table_name: R::TABLE,
                config: &append,
                // Log tables written by an older quern gain the newer columns.
                evolve: true,
                expectations: None,
                append_id: None,
                rows: None,
                cancel: None,
            };
            match crate::delta::write(&ctx.state(), plan.clone(), target).await {
                Ok(_) => return Ok(()),
                Err(_) if attempt < 3 => attempt += 1,
                Err(e) => return Err(log_err(R::TABLE, "append", e)),
            }
        }
    }

    /// The days on which a run of `selection` succeeded (every pipeline of it), with
    /// the run's id.
    pub(crate) async fn succeeded_days(
        &self,
        ctx: &SessionContext,
        selection: &str,
    ) -> Result<BTreeMap<String, String>> {
        let mut days = BTreeMap::new();
        if !self.catalog.register_log_table(ctx, RunRow::TABLE).await? {
            return Ok(days);
        }
        // A log written before runs recorded their selection has none to match.
        let table = ctx
            .table(RunRow::TABLE)
            .await
            .map_err(|e| log_err(RunRow::TABLE, "read", Error::session("reading runs", e)))?;
        if !table.schema().has_column_with_unqualified_name("selection") {
            return Ok(days);
        }
        let sql = format!(
            "SELECT CAST(ds AS VARCHAR) AS day, run_id FROM runs WHERE selection = '{}' \
             GROUP BY run_id, ds HAVING bool_and(status = 'succeeded') ORDER BY run_id",
            selection.replace('\'', "''")
        );
        for batch in Self::query(ctx, RunRow::TABLE, &sql).await? {
            let read = |i| rows::strings(&batch, i).map_err(|e| read_err(RunRow::TABLE, e));
            for (day, run) in read(0)?.into_iter().zip(read(1)?) {
                if let (Some(day), Some(run)) = (day, run) {
                    days.insert(day, run);
                }
            }
        }
        Ok(days)
    }

    /// The latest `limit` runs of `pipeline` and their metric values.
    pub(crate) async fn history(
        &self,
        ctx: &SessionContext,
        pipeline: &str,
        limit: usize,
    ) -> Result<RunHistory> {
        let mut history = RunHistory::default();
        if !self.catalog.register_log_table(ctx, RunRow::TABLE).await? {
            return Ok(history);
        }
        let sql = format!(
            "SELECT run_id, CAST(ds AS VARCHAR) AS day, status, CAST(finished_at AS VARCHAR) AS finished, tasks_ok, tasks_failed, rows_written, breaches FROM runs WHERE pipeline = '{pipeline}' ORDER BY runs.finished_at DESC LIMIT {limit}"
        );
        for batch in Self::query(ctx, RunRow::TABLE, &sql).await? {
            history
                .runs
                .extend(run_records(&batch).map_err(|e| read_err(RunRow::TABLE, e))?);
        }
        if self
            .catalog
            .register_log_table(ctx, MetricRow::TABLE)
            .await?
        {
            let sql = format!(
                "SELECT metric, grp, CAST(ds AS VARCHAR) AS day, value, breach FROM metrics WHERE pipeline = '{pipeline}' ORDER BY recorded_at DESC"
            );
            for batch in Self::query(ctx, MetricRow::TABLE, &sql).await? {
                add_metric_points(&mut history, &batch, limit)
                    .map_err(|e| read_err(MetricRow::TABLE, e))?;
            }
        }
        Ok(history)
    }
}

/// The runs of a `history` query's batch.
fn run_records(batch: &RecordBatch) -> std::result::Result<Vec<RunRecord>, ArrowError> {
    let text = |i| rows::strings(batch, i);
    let num = |i| rows::ints(batch, i);
    let (ids, days, statuses, finished) = (text(0)?, text(1)?, text(2)?, text(3)?);
    let (ok, failed, written, breaches) = (num(4)?, num(5)?, num(6)?, num(7)?);
    Ok((0..batch.num_rows())
        .map(|r| RunRecord {
            run_id: ids[r].clone().unwrap_or_default(),
            ds: days[r].clone().unwrap_or_default(),
            status: if statuses[r].as_deref() == Some("succeeded") {
                RunStatus::Succeeded
            } else {
                RunStatus::Failed
            },
            finished_at: finished[r].clone().unwrap_or_default(),
            tasks_ok: ok[r].unwrap_or_default(),
            tasks_failed: failed[r].unwrap_or_default(),
            rows: written[r].unwrap_or_default(),
            breaches: breaches[r].unwrap_or_default(),
        })
        .collect())
}

/// Adds the metric values of a `history` query's batch, at most `limit` per metric.
fn add_metric_points(
    history: &mut RunHistory,
    batch: &RecordBatch,
    limit: usize,
) -> std::result::Result<(), ArrowError> {
    let (metrics, groups, days) = (
        rows::strings(batch, 0)?,
        rows::strings(batch, 1)?,
        rows::strings(batch, 2)?,
    );
    let (values, breaches) = (rows::floats(batch, 3)?, rows::strings(batch, 4)?);
    for r in 0..batch.num_rows() {
        let name = match (&metrics[r], &groups[r]) {
            (Some(m), Some(g)) => format!("{m}[{g}]"),
            (Some(m), None) => m.clone(),
            _ => continue,
        };
        let points = history.metrics.entry(name).or_default();
        if points.len() < limit {
            points.push(MetricPoint {
                ds: days[r].clone().unwrap_or_default(),
                value: values[r],
                breach: breaches[r].clone(),
            });
        }
    }
    Ok(())
}
