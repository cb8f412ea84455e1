//! What a run reports: how each task ended, the metric values, the alerts sent and
//! what could not be recorded. Made by the engine, read by the run log, the
//! notifications and the CLI.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::checks::{ExpectationOutcome, MetricValue};
use crate::config::{Materialization, PipelineName, TaskName};
use crate::delta::WriteOutcome;
use crate::error::Error;
use crate::models::ResolvedModel;
use crate::template::RunDate;

/// How one task of a run ended.
#[derive(Debug)]
#[non_exhaustive]
pub enum TaskStatus {
    /// Written (or, for a view, registered).
    Succeeded(Option<WriteOutcome>),
    /// Failed; its table is at its previous version.
    Failed(Error),
    /// Not started because an upstream task failed (or, with `fail_fast`, any task).
    Skipped,
    /// Stopped before its commit because another task failed (`fail_fast`) or the run was
    /// cancelled from outside (a signal); its table
    /// is at its previous version.
    Cancelled,
}

/// One task's result in a [`RunReport`].
#[derive(Debug)]
#[non_exhaustive]
pub struct TaskOutcome {
    /// The task's pipeline.
    pub pipeline: PipelineName,
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
    /// The transient failures of the attempts before the last, which were retried
    /// (`retries` in `pipeline.toml`).
    pub retried: Vec<Error>,
    /// A command task's last lines of output (stdout and stderr, as printed).
    pub output: Option<String>,
}

/// The result of executing a run.
#[derive(Debug)]
#[non_exhaustive]
pub struct RunReport {
    /// The pipelines the run had tasks of, by name (one, unless the run was of the
    /// project).
    pub pipelines: Vec<PipelineName>,
    /// The environment.
    pub env: String,
    /// The run date.
    pub ds: RunDate,
    /// The run's id in the run log.
    pub run_id: String,
    /// What the run was of, as the run log records it: `pipeline` or `*` (the whole
    /// project), then ` --select …` for a selection.
    pub selection: String,
    /// Each executed task, in the order they finished.
    pub tasks: Vec<TaskOutcome>,
    /// The metric values of each pipeline whose tasks all ran and succeeded, judged.
    pub metrics: Vec<MetricValue>,
    /// The metrics that could not be computed ([`Error::Metric`]), or why the
    /// previous runs' values could not be read (the written data stays).
    pub metric_errors: Vec<Error>,
    /// Why the run could not be recorded in the run log, if it could not (the written
    /// data stays).
    pub log_error: Option<Error>,
    /// The alerts sent after the run (failed deliveries included).
    pub alerts: Vec<AlertDelivery>,
    /// The MLflow run this run was logged to, when the environment names a server.
    pub mlflow_run_id: Option<String>,
    /// Why the run could not be logged to MLflow, if it could not (nothing is undone).
    pub mlflow_error: Option<Error>,
    /// The model functions the run called, as they were resolved when it was planned.
    pub models: Vec<ResolvedModel>,
    /// Wall time of the execution.
    pub elapsed: Duration,
    /// Model function → the pipelines whose SQL calls it.
    pub(crate) model_callers: BTreeMap<String, BTreeSet<PipelineName>>,
}

impl RunReport {
    pub(crate) fn new(
        pipelines: Vec<PipelineName>,
        env: String,
        ds: RunDate,
        run_id: String,
        tasks: Vec<TaskOutcome>,
    ) -> Self {
        RunReport {
            pipelines,
            env,
            ds,
            run_id,
            selection: String::new(),
            tasks,
            metrics: Vec::new(),
            metric_errors: Vec::new(),
            log_error: None,
            alerts: Vec::new(),
            mlflow_run_id: None,
            mlflow_error: None,
            models: Vec::new(),
            elapsed: Duration::ZERO,
            model_callers: BTreeMap::new(),
        }
    }

    /// Whether every task succeeded (metric breaches do not fail a run).
    pub fn succeeded(&self) -> bool {
        self.tasks
            .iter()
            .all(|t| matches!(t.status, TaskStatus::Succeeded(_)))
            && self.metric_errors.is_empty()
    }

    /// Whether the run had tasks of `pipeline` and every one of them succeeded.
    pub fn pipeline_succeeded(&self, pipeline: &PipelineName) -> bool {
        let mut tasks = self
            .tasks
            .iter()
            .filter(|t| &t.pipeline == pipeline)
            .peekable();
        tasks.peek().is_some() && tasks.all(|t| matches!(t.status, TaskStatus::Succeeded(_)))
    }

    /// The pipelines as one name for messages: `events`, or `events, reporting`.
    pub fn pipelines_text(&self) -> String {
        self.pipelines
            .iter()
            .map(PipelineName::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The rows the run's tasks wrote.
    pub fn rows_written(&self) -> u64 {
        self.tasks
            .iter()
            .filter_map(|t| match &t.status {
                TaskStatus::Succeeded(Some(w)) => Some(w.rows),
                _ => None,
            })
            .sum()
    }

    /// How a task of the run is named in messages: `task`, or `pipeline/task` when
    /// the run had tasks of several pipelines.
    pub fn name_of(&self, pipeline: &PipelineName, task: &TaskName) -> String {
        if self.pipelines.len() > 1 {
            format!("{pipeline}/{task}")
        } else {
            task.to_string()
        }
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

    /// The outcome of `task` (`task`, or `pipeline/task` in a run of the project).
    pub fn task(&self, task: &str) -> Option<&TaskOutcome> {
        let (pipeline, task) = match task.split_once('/') {
            Some((p, t)) => (Some(p), t),
            None => (None, task),
        };
        self.tasks
            .iter()
            .find(|t| t.task.as_str() == task && pipeline.is_none_or(|p| t.pipeline.as_str() == p))
    }
}

/// The result of sending one alert.
#[derive(Debug)]
#[non_exhaustive]
pub struct AlertDelivery {
    /// Where it went (no secrets): `webhook` or `email to …`.
    pub target: String,
    /// The first line of the message.
    pub subject: String,
    /// `Ok` when delivered, else the last error after the retries.
    pub result: Result<(), AlertError>,
}

/// Why an alert could not be delivered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AlertError {
    /// A setting of the alert needs a `${VAR}` that is not set.
    #[error(transparent)]
    Config(Box<Error>),
    /// The webhook could not be reached (its URL is a secret and never shown).
    #[error("{0}")]
    Webhook(#[source] reqwest::Error),
    /// The webhook answered with an error status.
    #[error("the webhook answered HTTP {0}")]
    WebhookStatus(u16),
    /// A sender or recipient address does not parse.
    #[error("{file}: key `{key}`: `{address}`: {source}")]
    Address {
        /// The environment file.
        file: String,
        /// The key, e.g. `alerts[0].to`.
        key: String,
        /// The address as written.
        address: String,
        /// lettre's error.
        #[source]
        source: lettre::address::AddressError,
    },
    /// The email could not be built.
    #[error(transparent)]
    Email(#[from] lettre::error::Error),
    /// The SMTP server refused or could not be reached.
    #[error("SMTP {host}: {source}")]
    Smtp {
        /// The server.
        host: String,
        /// lettre's error.
        #[source]
        source: lettre::transport::smtp::Error,
    },
}
