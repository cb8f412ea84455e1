//! Backfill: one run per day of a range, each planned before it runs and recorded in
//! the run log like any run. A day a run of the same selection already succeeded on is
//! skipped (unless forced), so running the same backfill again resumes it. Days run in
//! date order; with `parallel`, several at once when every selected task is safe out
//! of order.

use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};

use super::events::{RunEvent, RunObserver};
use super::{Engine, RunOptions};
use crate::config::Materialization;
use crate::error::{Error, Result};
use crate::report::RunReport;
use crate::runlog::RunLog;
use crate::template::RunDate;

/// The days of a backfill and what to do with failures.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BackfillOptions {
    /// The first day.
    pub from: RunDate,
    /// The last day (inclusive).
    pub to: RunDate,
    /// How many days may run at once (1: in date order).
    pub parallel: usize,
    /// Run days a run of the same selection already succeeded on.
    pub force: bool,
    /// Go on after a failed day (else the days after it are left).
    pub keep_going: bool,
}

impl BackfillOptions {
    /// The days `from` to `to`, one at a time, stopping at the first failure.
    pub fn new(from: RunDate, to: RunDate) -> Self {
        BackfillOptions {
            from,
            to,
            parallel: 1,
            force: false,
            keep_going: false,
        }
    }

    /// Runs up to `n` days at once.
    #[must_use]
    pub fn with_parallel(mut self, n: usize) -> Self {
        self.parallel = n.max(1);
        self
    }

    /// Runs days that already succeeded, too.
    #[must_use]
    pub fn with_force(mut self, force: bool) -> Self {
        self.force = force;
        self
    }

    /// Goes on after a failed day.
    #[must_use]
    pub fn with_keep_going(mut self, keep_going: bool) -> Self {
        self.keep_going = keep_going;
        self
    }
}

/// How one day of a backfill ended.
#[derive(Debug)]
#[non_exhaustive]
pub enum DayStatus {
    /// Its run succeeded.
    Succeeded(RunReport),
    /// Its run failed (a task or a metric).
    Failed(RunReport),
    /// It could not be planned; nothing of it was written.
    NotPlanned(Error),
    /// A run of the same selection had succeeded on it: the run's id.
    Skipped(String),
    /// Not run: an earlier day failed.
    Left,
}

impl DayStatus {
    /// `succeeded`, `failed` (its run or its plan), `skipped` or `left`.
    pub fn as_str(&self) -> &'static str {
        match self {
            DayStatus::Succeeded(_) => "succeeded",
            DayStatus::Failed(_) | DayStatus::NotPlanned(_) => "failed",
            DayStatus::Skipped(_) => "skipped",
            DayStatus::Left => "left",
        }
    }
}

/// One day of a backfill.
#[derive(Debug)]
#[non_exhaustive]
pub struct DayOutcome {
    /// The day.
    pub ds: RunDate,
    /// How it ended.
    pub status: DayStatus,
}

impl DayOutcome {
    /// Whether the day failed (its run, or its plan).
    pub fn failed(&self) -> bool {
        matches!(self.status, DayStatus::Failed(_) | DayStatus::NotPlanned(_))
    }
}

/// The result of a backfill: every day of the range, in date order.
#[derive(Debug)]
#[non_exhaustive]
pub struct BackfillReport {
    /// What was backfilled, as the run log names it (`pipeline` or `*`, selectors).
    pub selection: String,
    /// Each day.
    pub days: Vec<DayOutcome>,
    /// Wall time.
    pub elapsed: Duration,
}

impl BackfillReport {
    /// Whether every day succeeded or had succeeded before.
    pub fn succeeded(&self) -> bool {
        self.days
            .iter()
            .all(|d| matches!(d.status, DayStatus::Succeeded(_) | DayStatus::Skipped(_)))
    }
}

/// Every day from `from` to `to`, or a usage error when `from` is after `to`.
fn days(options: &BackfillOptions) -> Result<Vec<RunDate>> {
    if options.from > options.to {
        return Err(Error::InvalidArgument {
            what: "--from",
            value: options.from.to_string(),
            message: format!(
                "--from is after --to ({}); the range is --from FIRST --to LAST",
                options.to
            ),
        });
    }
    Ok(options
        .from
        .date()
        .iter_days()
        .take_while(|d| *d <= options.to.date())
        .map(RunDate::from_date)
        .collect())
}

/// Refuses `parallel` days when a selected task's result depends on the order days
/// run in: a `table` (the last day wins), a `merge` (updates in day order), or a
/// command task (quern cannot tell what its program does).
fn check_parallel(plan: &super::RunPlan, parallel: usize) -> Result<()> {
    if parallel <= 1 {
        return Ok(());
    }
    let unsafe_task = plan.tasks.iter().find(|t| {
        t.selected
            && matches!(
                t.materialization,
                Materialization::Table | Materialization::Merge | Materialization::Command
            )
    });
    match unsafe_task {
        Some(t) => Err(Error::InvalidArgument {
            what: "--parallel",
            value: parallel.to_string(),
            message: format!(
                "task {} {}, whose result depends on the order days run in; backfill without --parallel, or select only partition, view and append tasks",
                t.id(),
                match t.materialization {
                    Materialization::Command => "is a command task".to_string(),
                    m => format!("is materialized = \"{}\"", m.as_str()),
                }
            ),
        }),
        None => Ok(()),
    }
}

/// The days the run log records as succeeded for the selection, with their run ids.
async fn succeeded_days(
    engine: &Engine,
    selection: &str,
) -> Result<std::collections::BTreeMap<String, String>> {
    let log = RunLog::new(engine.catalog()?);
    log.succeeded_days(&engine.embedded_session(), selection)
        .await
}

pub(super) async fn backfill(
    engine: &Engine,
    pipeline: Option<&str>,
    options: &RunOptions,
    backfill: &BackfillOptions,
    observer: &dyn RunObserver,
) -> Result<BackfillReport> {
    let on_day = |day: &DayOutcome| observer.on_event(&RunEvent::DayFinished { day });
    let started = Instant::now();
    let days = days(backfill)?;
    let selection = super::graph::selection_key(pipeline, &options.select);
    let done = match backfill.force {
        true => Default::default(),
        false => succeeded_days(engine, &selection).await?,
    };
    let for_day = |ds: RunDate| {
        let mut o = options.clone();
        o.ds = ds;
        o
    };
    let plan_day = |ds: RunDate| {
        let o = for_day(ds);
        async move { super::plan::plan(engine, pipeline, &o).await }
    };
    let mut outcomes = Vec::new();
    let mut pending = Vec::new();
    for ds in days {
        match done.get(&ds.ds()) {
            Some(run_id) => {
                let outcome = DayOutcome {
                    ds,
                    status: DayStatus::Skipped(run_id.clone()),
                };
                on_day(&outcome);
                outcomes.push(outcome);
            }
            None => pending.push(ds),
        }
    }
    // The first day is planned before anything is written: a template, selection or
    // --parallel error stops the backfill here.
    let mut first = match pending.first() {
        Some(ds) => Some(plan_day(*ds).await?),
        None => None,
    };
    if let Some(plan) = &first {
        check_parallel(plan, backfill.parallel)?;
    }
    let run_day = |ds: RunDate, planned: Option<super::RunPlan>| async move {
        observer.on_event(&RunEvent::DayStarted { ds });
        let plan = match planned {
            Some(p) => Ok(p),
            None => plan_day(ds).await,
        };
        let status = match plan {
            Err(e) => DayStatus::NotPlanned(e),
            Ok(plan) => {
                let report = engine.execute_observed(plan, observer).await;
                if report.succeeded() {
                    DayStatus::Succeeded(report)
                } else {
                    DayStatus::Failed(report)
                }
            }
        };
        DayOutcome { ds, status }
    };
    let mut queue = pending.into_iter();
    let mut running = FuturesUnordered::new();
    let mut stopped = false;
    loop {
        while !stopped && running.len() < backfill.parallel {
            let Some(ds) = queue.next() else { break };
            running.push(run_day(ds, first.take()));
        }
        let Some(outcome) = running.next().await else {
            break;
        };
        stopped |= outcome.failed() && !backfill.keep_going;
        on_day(&outcome);
        outcomes.push(outcome);
    }
    for ds in queue {
        let outcome = DayOutcome {
            ds,
            status: DayStatus::Left,
        };
        on_day(&outcome);
        outcomes.push(outcome);
    }
    outcomes.sort_by_key(|d| d.ds);
    Ok(BackfillReport {
        selection,
        days: outcomes,
        elapsed: started.elapsed(),
    })
}
