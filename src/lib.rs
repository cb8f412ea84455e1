//! quern: an embedded dataflow engine with a SQL front end.
//!
//! A project is a folder of Jinja-templated SQL pipelines (`sql/<pipeline>/<task>.sql`)
//! and environments (`environments/<env>.toml`). quern renders the tasks for an
//! environment and a run date, works out their dependency graph from `ref()`, plans
//! every task with Apache DataFusion before anything runs, and streams each result
//! into a Delta Lake table, one commit per task.
//!
//! The command-line tool is a thin layer over this library; an embedding program uses
//! it the same way:
//!
//! ```
//! use quern::{Engine, Project, RunOptions, RunDate};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! # let root = dir.path();
//! # std::fs::create_dir_all(root.join("environments"))?;
//! # std::fs::create_dir_all(root.join("sql/shop"))?;
//! # std::fs::write(root.join("environments/local.toml"), "[warehouse]\nroot = \"warehouse\"\n")?;
//! # std::fs::write(root.join("sql/shop/orders.sql"),
//! #     "SELECT * FROM (VALUES (1, 'FR', 9.5), (2, 'DE', 3.0), (3, 'FR', 1.5)) AS t(id, country, amount)")?;
//! # std::fs::write(root.join("sql/shop/revenue.sql"),
//! #     "SELECT country, SUM(amount) AS revenue, DATE '{{ ds }}' AS ds\nFROM {{ ref('orders') }} GROUP BY country")?;
//! // A project folder with environments/local.toml and sql/shop/{orders,revenue}.sql.
//! let project = Project::load(root)?;
//! let engine = Engine::builder(project).with_environment("local").build()?;
//! let options = RunOptions::new("2024-03-01".parse::<RunDate>()?);
//!
//! // Render and plan without writing anything…
//! let plan = engine.plan("shop", &options).await?;
//! assert_eq!(plan.tasks.len(), 2);
//!
//! // …then run: each task is committed to <warehouse>/shop/<task> as a Delta table.
//! let report = engine.run("shop", &options).await?;
//! assert!(report.succeeded());
//!
//! let df = engine.query("SELECT revenue FROM shop.revenue WHERE country = 'FR'").await?;
//! let batches = df.collect().await?;
//! assert_eq!(batches[0].num_rows(), 1);
//! # Ok(())
//! # }
//! ```
//!
//! ## Layers
//!
//! The modules follow the data flow of DESIGN.md; each imports only the modules
//! before it (`tests/it/shape.rs` checks it). `error` is the one exception: every
//! stage uses it, and it names every stage's own error type.
//!
//! Layers, each importing only those before it: `error` → `config` → `pipeline` → `template` → `functions` → `http` → `mlflow` → `models` → `checks` → `delta` → `catalog` → `report` → `runlog` → `notify` → `distributed` → `engine` → `airflow` → `testing`
//!
//! - `config`: environments and `pipeline.toml` read into typed structs;
//! - `pipeline`: the project on disk, dependency extraction from SQL, the DAG;
//! - `template`: rendering a task for an environment and a run date;
//! - `functions`: quern's SQL aggregate functions;
//! - `http`, `mlflow`: the shared HTTP client and the MLflow REST client;
//! - `models`: ONNX models as SQL functions, resolved from files or the registry;
//! - `checks`: expectations and metrics;
//! - `delta`: reading and writing Delta tables;
//! - `catalog`: where every table lives and how a query's tables are registered;
//! - `report`: what a run reports;
//! - `runlog`, `notify`: recording a run, alerts and MLflow tracking;
//! - `engine`: the one session builder, planning and running (SQL and command tasks);
//! - `distributed`: Ballista's scheduler and executor roles, and the client's side of
//!   a distributed run;
//! - `airflow`: Airflow DAG files generated from quern's DAG;
//! - `testing`: pipeline tests.
#![deny(missing_docs)]

mod airflow;
mod catalog;
mod checks;
mod config;
mod delta;
mod distributed;
mod engine;
mod error;
mod functions;
mod http;
mod mlflow;
pub mod models;
mod notify;
mod pipeline;
mod report;
mod runlog;
mod template;
pub mod testing;

pub use airflow::{AirflowOptions, DagFile, Granularity};
pub use catalog::StorageError;
pub use checks::{ExpectationError, ExpectationOutcome, MetricError, MetricValue, PlannedMetric};
pub use config::{
    Dialect, Environment, InvalidName, Materialization, MetricConfig, ModelUri, ModelUriError,
    OnSchemaChange, PipelineName, Produces, Severity, TaskConfig, TaskId, TaskName,
    DEFAULT_ENVIRONMENT,
};
pub use delta::WriteOutcome;
pub use distributed::{serve_scheduler, ExecutorOptions, SchedulerOptions};
pub use engine::{
    BackfillOptions, BackfillReport, CommandError, DayOutcome, DayStatus, Engine, EngineBuilder,
    PlannedTask, RowCount, RunEvent, RunObserver, RunOptions, RunPlan,
};
pub use error::{distinct_causes, Error, ErrorKind, ParseProblem, PlanError, Result};
pub use mlflow::MlflowError;
pub use pipeline::{Command, Dag, Metric, Pipeline, Project, Selector, SelectorTarget, Task};
pub use report::{AlertDelivery, AlertError, RunReport, TaskOutcome, TaskStatus};
pub use runlog::{MetricPoint, RunHistory, RunRecord, RunStatus};
pub use template::{DataInterval, RenderedTask, Renderer, RunDate, Vars};

/// The README's Rust examples, compiled as doctests so they stay true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// Re-exported so embedders use the same DataFusion (and its Arrow) as quern.
pub use datafusion;
