//! The run log: every run appends its outcome, its tasks, its expectations' counts and
//! its metric values to Delta tables under the environment's warehouse
//! (`<root>/_quern/{runs,tasks,expectations,metrics,models}`), so history needs no
//! other database. `quern status` reads it back. `models` records which model (URI,
//! registry version, SHA-256) each model function of a run scored with.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use datafusion::arrow::array::{
    ArrayRef, Date32Array, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use datafusion::arrow::util::display::array_value_to_string;
use datafusion::prelude::SessionContext;
use url::Url;

use super::{MetricValue, Previous};
use crate::config::{Materialization, TaskConfig};
use crate::delta::{StorageOptions, TableWrite};
use crate::engine::register_delta;
use crate::engine::{RunReport, TaskStatus};
use crate::error::{Error, Result};
use datafusion::common::TableReference;

/// One run as the log records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRecord {
    /// The run's id.
    pub run_id: String,
    /// The run date.
    pub ds: String,
    /// `succeeded` or `failed`.
    pub status: String,
    /// When it finished (UTC).
    pub finished_at: String,
    /// Tasks that succeeded / failed.
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
pub struct RunHistory {
    /// The latest runs.
    pub runs: Vec<RunRecord>,
    /// Per metric (`name` or `name[group]`): its values in the latest runs.
    pub metrics: BTreeMap<String, Vec<MetricPoint>>,
}

/// One recorded value of a metric.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricPoint {
    /// The run date.
    pub ds: String,
    /// The value.
    pub value: Option<f64>,
    /// Why it breached a threshold, if it did.
    pub breach: Option<String>,
}

/// The run log of one environment.
#[derive(Debug, Clone)]
pub(crate) struct RunLog {
    root: Url,
    storage: StorageOptions,
}

fn col(values: Vec<Option<String>>) -> ArrayRef {
    Arc::new(StringArray::from(values))
}

impl RunLog {
    pub(crate) fn new(root: &Url, storage: &StorageOptions) -> Self {
        RunLog {
            root: root.clone(),
            storage: storage.clone(),
        }
    }

    fn url(&self, table: &str) -> Result<Url> {
        self.root
            .join(&format!("_quern/{table}/"))
            .map_err(|e| Error::InvalidArgument {
                what: "run log",
                value: table.to_string(),
                message: e.to_string(),
            })
    }

    /// Registers the log table `table` in `ctx` as `table`; false when it does not exist yet.
    async fn register(&self, ctx: &SessionContext, table: &str) -> Result<bool> {
        let url = self.url(table)?;
        register_delta(ctx, TableReference::bare(table), &url, &self.storage).await
    }

    async fn rows(ctx: &SessionContext, sql: &str) -> Result<Vec<Vec<Option<String>>>> {
        let batches = ctx
            .sql(sql)
            .await
            .map_err(Error::query)?
            .collect()
            .await
            .map_err(Error::query)?;
        let mut out = Vec::new();
        for b in &batches {
            for r in 0..b.num_rows() {
                let mut row = Vec::new();
                for c in b.columns() {
                    row.push(if c.is_null(r) {
                        None
                    } else {
                        array_value_to_string(c, r).ok()
                    });
                }
                out.push(row);
            }
        }
        Ok(out)
    }

    /// The latest recorded value of each metric (and group) of `pipeline`.
    pub(crate) async fn previous_metrics(
        &self,
        ctx: &SessionContext,
        pipeline: &str,
    ) -> Result<Previous> {
        let mut previous = Previous::new();
        if !self.register(ctx, "metrics").await? {
            return Ok(previous);
        }
        // Pipeline names are identifiers, so they need no quoting beyond the literal.
        let sql = format!(
            "SELECT metric, grp, value FROM metrics WHERE pipeline = '{pipeline}' AND value IS NOT NULL ORDER BY recorded_at"
        );
        for row in Self::rows(ctx, &sql).await? {
            if let (Some(metric), Some(Ok(v))) =
                (row[0].clone(), row[2].as_deref().map(str::parse::<f64>))
            {
                previous.insert((metric, row[1].clone()), v);
            }
        }
        Ok(previous)
    }

    /// Appends a finished run.
    pub(crate) async fn append(
        &self,
        ctx: &SessionContext,
        report: &RunReport,
        started_at: DateTime<Utc>,
        metrics: &[MetricValue],
    ) -> Result<()> {
        let now = Utc::now();
        let ts = |t: DateTime<Utc>| -> ArrayRef {
            Arc::new(
                TimestampMicrosecondArray::from(vec![t.timestamp_micros()]).with_timezone("UTC"),
            )
        };
        let days = (report.ds.date()
            - chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default())
        .num_days() as i32;
        let pipeline = report.pipeline.to_string();
        let run_id = report.run_id.clone();
        let (mut ok, mut failed, mut rows) = (0i64, 0i64, 0i64);
        let (
            mut t_name,
            mut t_how,
            mut t_status,
            mut t_rows,
            mut t_version,
            mut t_secs,
            mut t_error,
        ) = (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
        let (mut e_task, mut e_name, mut e_sev, mut e_count) = (vec![], vec![], vec![], vec![]);
        for t in &report.tasks {
            t_name.push(Some(t.task.to_string()));
            t_how.push(Some(t.materialization.as_str().to_string()));
            t_secs.push(t.elapsed.as_secs_f64());
            let (status, r, v, err) = match &t.status {
                TaskStatus::Succeeded(w) => {
                    ok += 1;
                    rows += w.map_or(0, |w| w.rows as i64);
                    (
                        "succeeded",
                        w.map(|w| w.rows as i64),
                        w.map(|w| w.version as i64),
                        None,
                    )
                }
                TaskStatus::Failed(e) => {
                    failed += 1;
                    ("failed", None, None, Some(e.to_string()))
                }
                TaskStatus::Skipped => ("skipped", None, None, None),
            };
            t_status.push(Some(status.to_string()));
            t_rows.push(r);
            t_version.push(v);
            t_error.push(err);
            for e in &t.expectations {
                e_task.push(Some(t.task.to_string()));
                e_name.push(Some(e.name.clone()));
                e_sev.push(Some(e.severity.as_str().to_string()));
                e_count.push(e.violations as i64);
            }
        }
        let n = report.tasks.len();
        let repeat = |v: &str, n: usize| col(vec![Some(v.to_string()); n]);
        let breaches = metrics.iter().filter(|m| m.breach.is_some()).count() as i64;
        let status = if report.succeeded() {
            "succeeded"
        } else {
            "failed"
        };
        let batches = [
            (
                "runs",
                vec![
                    ("run_id", repeat(&run_id, 1)),
                    ("pipeline", repeat(&pipeline, 1)),
                    ("env", repeat(&report.env, 1)),
                    ("ds", Arc::new(Date32Array::from(vec![days])) as ArrayRef),
                    ("started_at", ts(started_at)),
                    ("finished_at", ts(now)),
                    ("status", repeat(status, 1)),
                    ("tasks_ok", Arc::new(Int64Array::from(vec![ok]))),
                    ("tasks_failed", Arc::new(Int64Array::from(vec![failed]))),
                    ("rows_written", Arc::new(Int64Array::from(vec![rows]))),
                    ("breaches", Arc::new(Int64Array::from(vec![breaches]))),
                ],
            ),
            (
                "tasks",
                vec![
                    ("run_id", repeat(&run_id, n)),
                    ("pipeline", repeat(&pipeline, n)),
                    ("task", col(t_name)),
                    ("materialized", col(t_how)),
                    ("status", col(t_status)),
                    ("rows", Arc::new(Int64Array::from(t_rows))),
                    ("version", Arc::new(Int64Array::from(t_version))),
                    ("seconds", Arc::new(Float64Array::from(t_secs))),
                    ("error", col(t_error)),
                ],
            ),
            (
                "expectations",
                vec![
                    ("run_id", repeat(&run_id, e_task.len())),
                    ("pipeline", repeat(&pipeline, e_task.len())),
                    ("task", col(e_task)),
                    ("expectation", col(e_name)),
                    ("severity", col(e_sev)),
                    ("violations", Arc::new(Int64Array::from(e_count))),
                ],
            ),
            (
                "metrics",
                vec![
                    ("run_id", repeat(&run_id, metrics.len())),
                    ("pipeline", repeat(&pipeline, metrics.len())),
                    ("ds", Arc::new(Date32Array::from(vec![days; metrics.len()]))),
                    (
                        "recorded_at",
                        Arc::new(
                            TimestampMicrosecondArray::from(vec![
                                now.timestamp_micros();
                                metrics.len()
                            ])
                            .with_timezone("UTC"),
                        ),
                    ),
                    (
                        "metric",
                        col(metrics.iter().map(|m| Some(m.metric.clone())).collect()),
                    ),
                    (
                        "grp",
                        col(metrics.iter().map(|m| m.group.clone()).collect()),
                    ),
                    (
                        "value",
                        Arc::new(Float64Array::from(
                            metrics.iter().map(|m| m.value).collect::<Vec<_>>(),
                        )),
                    ),
                    (
                        "previous",
                        Arc::new(Float64Array::from(
                            metrics.iter().map(|m| m.previous).collect::<Vec<_>>(),
                        )),
                    ),
                    (
                        "breach",
                        col(metrics.iter().map(|m| m.breach.clone()).collect()),
                    ),
                ],
            ),
        ];
        let models = &report.models;
        let m = models.len();
        let batches = batches.into_iter().chain([(
            "models",
            vec![
                ("run_id", repeat(&run_id, m)),
                ("pipeline", repeat(&pipeline, m)),
                (
                    "function",
                    col(models.iter().map(|x| Some(x.function.clone())).collect()),
                ),
                (
                    "uri",
                    col(models.iter().map(|x| Some(x.uri.clone())).collect()),
                ),
                (
                    "version",
                    col(models.iter().map(|x| x.version.clone()).collect()),
                ),
                (
                    "sha256",
                    col(models.iter().map(|x| Some(x.sha256.clone())).collect()),
                ),
            ],
        )]);
        let append = TaskConfig {
            materialized: Materialization::Append,
            ..TaskConfig::default()
        };
        for (table, columns) in batches {
            if table != "runs" && columns[0].1.is_empty() {
                continue;
            }
            // Every column nullable: whether a value is NULL differs from run to run.
            let batch = RecordBatch::try_from_iter_with_nullable(
                columns.into_iter().map(|(n, a)| (n, a, true)),
            )
            .map_err(|e| Error::query(e.into()))?;
            let plan = ctx
                .read_batch(batch)
                .map_err(Error::query)?
                .into_unoptimized_plan();
            let url = self.url(table)?;
            // Runs that finish together may race to create a log table; the loser
            // tries again and appends to the table the winner created.
            let mut attempt = 0;
            loop {
                let target = TableWrite {
                    url: &url,
                    storage: &self.storage,
                    table_name: table,
                    config: &append,
                    evolve: false,
                    expectations: None,
                };
                match crate::delta::write(&ctx.state(), plan.clone(), target).await {
                    Ok(_) => break,
                    Err(_) if attempt < 3 => attempt += 1,
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    /// The latest `limit` runs of `pipeline` and their metric values.
    pub(crate) async fn history(
        &self,
        ctx: &SessionContext,
        pipeline: &str,
        limit: usize,
    ) -> Result<RunHistory> {
        let mut history = RunHistory::default();
        if !self.register(ctx, "runs").await? {
            return Ok(history);
        }
        let sql = format!(
            "SELECT run_id, CAST(ds AS VARCHAR) AS day, status, CAST(finished_at AS VARCHAR) AS finished, tasks_ok, tasks_failed, rows_written, breaches FROM runs WHERE pipeline = '{pipeline}' ORDER BY runs.finished_at DESC LIMIT {limit}"
        );
        for row in Self::rows(ctx, &sql).await? {
            let text = |i: usize| row[i].clone().unwrap_or_default();
            let num = |i: usize| text(i).parse::<i64>().unwrap_or_default();
            history.runs.push(RunRecord {
                run_id: text(0),
                ds: text(1),
                status: text(2),
                finished_at: text(3),
                tasks_ok: num(4),
                tasks_failed: num(5),
                rows: num(6),
                breaches: num(7),
            });
        }
        if self.register(ctx, "metrics").await? {
            let sql = format!(
                "SELECT metric, grp, CAST(ds AS VARCHAR) AS day, value, breach FROM metrics WHERE pipeline = '{pipeline}' ORDER BY recorded_at DESC"
            );
            for row in Self::rows(ctx, &sql).await? {
                let name = match (&row[0], &row[1]) {
                    (Some(m), Some(g)) => format!("{m}[{g}]"),
                    (Some(m), None) => m.clone(),
                    _ => continue,
                };
                let values = history.metrics.entry(name).or_default();
                if values.len() < limit {
                    let v = row[3].as_deref().and_then(|v| v.parse::<f64>().ok());
                    values.push(MetricPoint {
                        ds: row[2].clone().unwrap_or_default(),
                        value: v,
                        breach: row[4].clone(),
                    });
                }
            }
        }
        Ok(history)
    }
}
