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
use crate::checks::ExpectationOutcome;
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
    /// Each executed task, in the order they finished.
    pub tasks: Vec<TaskOutcome>,
    /// Wall time of the execution.
    pub elapsed: Duration,
}

impl RunReport {
    /// Whether every task succeeded.
    pub fn succeeded(&self) -> bool {
        self.tasks
            .iter()
            .all(|t| matches!(t.status, TaskStatus::Succeeded(_)))
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
    let RunPlan {
        pipeline,
        env,
        ds,
        tasks,
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
            return RunReport {
                pipeline,
                env,
                ds,
                tasks: outcomes,
                elapsed: started.elapsed(),
            };
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
    RunReport {
        pipeline,
        env,
        ds,
        tasks: outcomes,
        elapsed: started.elapsed(),
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
    let outcome = crate::delta::write(&ctx.state(), plan, target).await?;
    // Downstream tasks read the committed table.
    if let Some(table) = crate::delta::open(url, warehouse.storage()).await? {
        let provider = crate::delta::provider(&table, url).await?;
        ctx.deregister_table(reference.clone()).map_err(plan_err)?;
        ctx.register_table(reference, provider).map_err(plan_err)?;
    }
    Ok(Some(outcome))
}
