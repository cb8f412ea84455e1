//! How `run` and `backfill` show their progress: a live display on a terminal
//! (indicatif: a line per running task with its rows so far and elapsed time, a bar of
//! days for a backfill), plain lines otherwise, or JSON events with `--json`. What a
//! command task prints goes to stderr, each line after the task's name and ` | `.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use quern::{RunEvent, RunObserver, TaskId, TaskStatus};

use super::{json, output};

/// `--progress`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum Progress {
    /// Live on a terminal, plain otherwise.
    Auto,
    /// Plain lines.
    Plain,
}

/// The observer of a run or backfill, as the command line asked.
pub(super) enum Display {
    Json,
    Plain,
    Live(Live),
}

impl Display {
    /// JSON with `--json`; live when stdout is a terminal and `--progress` is auto;
    /// else plain. `days` is the length of a backfill.
    pub(super) fn new(json: bool, progress: Progress, days: Option<u64>) -> Self {
        if json {
            Display::Json
        } else if progress == Progress::Auto && std::io::stdout().is_terminal() {
            Display::Live(Live::new(days))
        } else {
            Display::Plain
        }
    }

    /// Clears the live display before the final report is printed.
    pub(super) fn finish(&self) {
        if let Display::Live(live) = self {
            if let Some(days) = &live.days {
                days.finish_and_clear();
            }
            let _ = live.multi.clear();
        }
    }
}

impl RunObserver for Display {
    fn on_event(&self, event: &RunEvent<'_>) {
        match self {
            Display::Json => {
                if let Some(v) = json::event(event) {
                    json::emit(&v);
                }
            }
            Display::Plain => match event {
                RunEvent::DayFinished { day } => {
                    let _ = output::day(&mut std::io::stdout(), day);
                }
                RunEvent::TaskOutput { task, line, .. } => {
                    eprintln!("{} | {line}", task.id());
                }
                _ => {}
            },
            Display::Live(live) => live.on_event(event),
        }
    }
}

/// The live display: one spinner line per running task, and a bar of days.
pub(super) struct Live {
    multi: MultiProgress,
    tasks: Mutex<HashMap<TaskId, ProgressBar>>,
    days: Option<ProgressBar>,
}

impl Live {
    fn new(days: Option<u64>) -> Self {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let days = days.map(|n| {
            let bar = multi.add(ProgressBar::new(n));
            bar.set_style(
                ProgressStyle::with_template("days {bar:30} {pos}/{len} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar
        });
        Live {
            multi,
            tasks: Mutex::new(HashMap::new()),
            days,
        }
    }

    fn on_event(&self, event: &RunEvent<'_>) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        match event {
            RunEvent::TaskStarted {
                task,
                attempt,
                rows,
                ..
            } => {
                let rows = (*rows).clone();
                let style = ProgressStyle::with_template("{spinner} {prefix:30} {rows} {elapsed}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner())
                    .with_key(
                        "rows",
                        move |_: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                            let _ = write!(w, "{:>12} rows", rows.get());
                        },
                    );
                let bar = self.multi.add(ProgressBar::new_spinner().with_style(style));
                let attempt = match attempt {
                    1 => String::new(),
                    n => format!(" (attempt {n})"),
                };
                bar.set_prefix(format!("{}{attempt}", task.id()));
                bar.enable_steady_tick(Duration::from_millis(120));
                if let Some(old) = tasks.insert(task.id(), bar) {
                    old.finish_and_clear();
                }
            }
            RunEvent::TaskFinished { outcome, .. } => {
                let id = TaskId::new(outcome.pipeline.clone(), outcome.task.clone());
                if let Some(bar) = tasks.remove(&id) {
                    bar.finish_and_clear();
                }
                let what = match &outcome.status {
                    TaskStatus::Succeeded(Some(w)) => format!("ok       {} rows", w.rows),
                    TaskStatus::Succeeded(None) => "ok".to_string(),
                    TaskStatus::Failed(e) => format!("FAILED   {e}"),
                    TaskStatus::Cancelled => {
                        "cancelled (another task failed with --fail-fast, or quern was interrupted)"
                            .into()
                    }
                    _ => "skipped  (an upstream task failed)".to_string(),
                };
                let secs = outcome.elapsed.as_secs_f64();
                let _ = self.multi.println(format!("{id}  {what}  {secs:.2}s"));
            }
            RunEvent::TaskOutput { task, line, .. } => {
                let _ = self.multi.println(format!("{} | {line}", task.id()));
            }
            RunEvent::DayStarted { ds } => {
                if let Some(days) = &self.days {
                    days.set_message(format!("running {ds}"));
                }
            }
            RunEvent::DayFinished { day } => {
                let mut line = Vec::new();
                let _ = output::day(&mut line, day);
                let _ = self
                    .multi
                    .println(String::from_utf8_lossy(&line).trim_end());
                if let Some(days) = &self.days {
                    days.inc(1);
                }
            }
            _ => {}
        }
    }
}
