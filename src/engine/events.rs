//! What a run and a backfill tell while they go, for a live progress display and for
//! machine-readable output (`--json`): an observer is called with each event, in the
//! order things happen, from the task that runs them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::{DayOutcome, PlannedTask, RunPlan};
use crate::error::Error;
use crate::report::{RunReport, TaskOutcome};
use crate::template::RunDate;

/// One thing that happened in a run or a backfill.
#[derive(Debug)]
#[non_exhaustive]
pub enum RunEvent<'a> {
    /// A run starts executing `plan`.
    RunStarted {
        /// The run's id in the run log.
        run_id: &'a str,
        /// What it executes.
        plan: &'a RunPlan,
    },
    /// An attempt of a task starts (1 for the first).
    TaskStarted {
        /// The run.
        run_id: &'a str,
        /// The task.
        task: &'a PlannedTask,
        /// Which attempt.
        attempt: u32,
        /// The rows it has written so far, counted as they stream into its table.
        rows: &'a RowCount,
    },
    /// A line a command task's program printed.
    TaskOutput {
        /// The run.
        run_id: &'a str,
        /// The task.
        task: &'a PlannedTask,
        /// Whether it was printed on stderr (else stdout).
        stderr: bool,
        /// The line, without its newline.
        line: &'a str,
    },
    /// An attempt failed transiently; the task runs again after `wait`.
    TaskRetrying {
        /// The run.
        run_id: &'a str,
        /// The task.
        task: &'a PlannedTask,
        /// The attempt that failed.
        attempt: u32,
        /// Why.
        error: &'a Error,
        /// The wait before the next attempt.
        wait: Duration,
    },
    /// A task ended: succeeded, failed, or skipped because an upstream task failed.
    TaskFinished {
        /// The run.
        run_id: &'a str,
        /// How it ended.
        outcome: &'a TaskOutcome,
    },
    /// A run ended (its tasks, metrics, log and alerts).
    RunFinished {
        /// The whole report.
        report: &'a RunReport,
    },
    /// A day of a backfill starts.
    DayStarted {
        /// The day.
        ds: RunDate,
    },
    /// A day of a backfill ended (or was skipped, or left).
    DayFinished {
        /// How.
        day: &'a DayOutcome,
    },
}

/// Told of each [`RunEvent`]; `Fn(&RunEvent)` closures are observers.
pub trait RunObserver: Send + Sync {
    /// Called for each event.
    fn on_event(&self, event: &RunEvent<'_>);
}

impl<F: Fn(&RunEvent<'_>) + Send + Sync> RunObserver for F {
    fn on_event(&self, event: &RunEvent<'_>) {
        self(event)
    }
}

/// An observer that ignores every event.
pub(crate) struct Silent;

impl RunObserver for Silent {
    fn on_event(&self, _event: &RunEvent<'_>) {}
}

/// The rows a running task has written so far.
#[derive(Debug, Clone, Default)]
pub struct RowCount(Arc<AtomicU64>);

impl RowCount {
    /// The rows so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    pub(crate) fn counter(&self) -> Arc<AtomicU64> {
        self.0.clone()
    }
}
