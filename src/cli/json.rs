//! `--json`: newline-delimited JSON on stdout, one object per event, each with an
//! `event` field. The schema is in the README ("Output for machines"). Exit codes are
//! the same as without `--json`.

use std::io::Write;

use serde_json::{json, Value};

use quern::testing::{Outcome, TestReport};
use quern::{
    distinct_causes, BackfillReport, Dag, DayOutcome, DayStatus, Error, PlannedTask, RunEvent,
    RunHistory, RunPlan, RunReport, TaskOutcome, TaskStatus,
};

/// Writes `value` as one line of stdout.
pub(super) fn emit(value: &Value) {
    let mut out = std::io::stdout().lock();
    // A closed stdout ends the stream; the exit code still tells the result.
    let _ = writeln!(out, "{value}");
    let _ = out.flush();
}

/// An error as JSON: its message, the file and line it is in, its causes.
pub(super) fn error(e: &Error) -> Value {
    json!({
        "message": e.to_string(),
        "file": e.file().map(|f| f.display().to_string()),
        "line": e.line(),
        "causes": distinct_causes(e).iter().map(ToString::to_string).collect::<Vec<_>>(),
        "kind": format!("{:?}", e.kind()).to_lowercase(),
    })
}

/// The `error` event of a command that failed before or instead of running.
pub(super) fn failure(err: &anyhow::Error, exit_code: u8) -> Value {
    let quern_error = err.chain().find_map(|e| e.downcast_ref::<Error>());
    let mut value = match quern_error {
        Some(e) => error(e),
        None => json!({ "message": err.to_string(), "file": null, "line": null,
            "causes": err.chain().skip(1).map(ToString::to_string).collect::<Vec<_>>() }),
    };
    value["event"] = json!("error");
    value["exit_code"] = json!(exit_code);
    value
}

fn task_json(t: &PlannedTask) -> Value {
    json!({
        "pipeline": t.pipeline.as_str(),
        "task": t.task.as_str(),
        "file": t.file.display().to_string(),
        "materialization": t.materialization.as_str(),
        "command": t.command,
        "selected": t.selected,
        "table": t.table_url.as_ref().map(ToString::to_string),
        "upstream": t.upstream.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "columns": t.schema.fields().iter().map(|f| json!({
            "name": f.name(), "type": f.data_type().to_string(), "nullable": f.is_nullable(),
        })).collect::<Vec<_>>(),
    })
}

pub(super) fn plan(plan: &RunPlan) -> Value {
    json!({
        "event": "plan",
        "pipeline": plan.pipeline.as_ref().map(|p| p.as_str()),
        "pipelines": plan.pipelines.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
        "selection": plan.selection,
        "env": plan.env,
        "ds": plan.ds.ds(),
        "models": plan.models.iter().map(|m| m.summary()).collect::<Vec<_>>(),
        "tasks": plan.tasks.iter().map(task_json).collect::<Vec<_>>(),
    })
}

pub(super) fn dag(dag: &Dag) -> Value {
    json!({
        "event": "dag",
        "pipeline": dag.pipeline().map(|p| p.as_str()),
        "tasks": dag.order().iter().map(|t| json!({
            "pipeline": t.pipeline.as_str(),
            "task": t.task.as_str(),
            "upstream": dag.upstream_of(t).map(ToString::to_string).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

pub(super) fn status(pipeline: &str, history: &RunHistory) -> Value {
    json!({
        "event": "status",
        "pipeline": pipeline,
        "runs": history.runs.iter().map(|r| json!({
            "run_id": r.run_id, "ds": r.ds, "status": r.status.as_str(),
            "finished_at": r.finished_at, "tasks_ok": r.tasks_ok,
            "tasks_failed": r.tasks_failed, "rows": r.rows, "breaches": r.breaches,
        })).collect::<Vec<_>>(),
        "metrics": history.metrics.iter().map(|(name, points)| (name.clone(), json!(
            points.iter().map(|p| json!({ "ds": p.ds, "value": p.value, "breach": p.breach }))
                .collect::<Vec<_>>()
        ))).collect::<serde_json::Map<_, _>>(),
    })
}

/// One event per test, then the summary.
pub(super) fn test(report: &TestReport) {
    for r in &report.results {
        let (status, detail) = match &r.outcome {
            Outcome::Passed => ("passed", None),
            Outcome::Failed(why) => ("failed", Some(why.as_str())),
        };
        emit(&json!({ "event": "test", "name": r.name, "status": status, "detail": detail }));
    }
    emit(&json!({
        "event": "tests_finished", "passed": report.passed(), "failed": report.failed(),
    }));
}

fn outcome(run_id: &str, o: &TaskOutcome) -> Value {
    let (status, written, error) = match &o.status {
        TaskStatus::Succeeded(w) => ("succeeded", *w, None),
        TaskStatus::Failed(e) => ("failed", None, Some(self::error(e))),
        TaskStatus::Cancelled => ("cancelled", None, None),
        _ => ("skipped", None, None),
    };
    json!({
        "event": "task_finished",
        "run_id": run_id,
        "pipeline": o.pipeline.as_str(),
        "task": o.task.as_str(),
        "materialization": o.materialization.as_str(),
        "status": status,
        "rows": written.map(|w| w.rows),
        "version": written.map(|w| w.version),
        "already_appended": written.map(|w| w.already_appended),
        "seconds": o.elapsed.as_secs_f64(),
        "attempts": o.retried.len() + usize::from(status != "skipped"),
        "error": error,
        "expectations": o.expectations.iter().map(|e| json!({
            "name": e.name, "severity": e.severity.as_str(), "violations": e.violations,
        })).collect::<Vec<_>>(),
    })
}

fn run_finished(r: &RunReport) -> Value {
    let count = |f: fn(&TaskStatus) -> bool| r.tasks.iter().filter(|t| f(&t.status)).count();
    json!({
        "event": "run_finished",
        "run_id": r.run_id,
        "ds": r.ds.ds(),
        "env": r.env,
        "pipelines": r.pipelines.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
        "selection": r.selection,
        "status": if r.succeeded() { "succeeded" } else { "failed" },
        "tasks_ok": count(|s| matches!(s, TaskStatus::Succeeded(_))),
        "tasks_failed": count(|s| matches!(s, TaskStatus::Failed(_))),
        "tasks_skipped": count(|s| matches!(s, TaskStatus::Skipped)),
        "tasks_cancelled": count(|s| matches!(s, TaskStatus::Cancelled)),
        "rows": r.rows_written(),
        "seconds": r.elapsed.as_secs_f64(),
        "metrics": r.metrics.iter().map(|m| json!({
            "pipeline": m.pipeline.as_str(), "metric": m.metric, "group": m.group,
            "value": m.value, "previous": m.previous, "breach": m.breach,
        })).collect::<Vec<_>>(),
        "metric_errors": r.metric_errors.iter().map(error).collect::<Vec<_>>(),
        "log_error": r.log_error.as_ref().map(error),
        "mlflow_run_id": r.mlflow_run_id,
        "mlflow_error": r.mlflow_error.as_ref().map(error),
        "alerts": r.alerts.iter().map(|a| json!({
            "target": a.target, "delivered": a.result.is_ok(),
            "error": a.result.as_ref().err().map(ToString::to_string),
        })).collect::<Vec<_>>(),
    })
}

fn day(d: &DayOutcome) -> Value {
    let run_id = match &d.status {
        DayStatus::Succeeded(r) | DayStatus::Failed(r) => Some(r.run_id.as_str()),
        DayStatus::Skipped(run) => Some(run.as_str()),
        _ => None,
    };
    let status = d.status.as_str();
    let error = match &d.status {
        DayStatus::NotPlanned(e) => Some(error(e)),
        _ => None,
    };
    json!({ "event": "day_finished", "ds": d.ds.ds(), "status": status, "run_id": run_id, "error": error })
}

pub(super) fn backfill(report: &BackfillReport, from: &str, to: &str) -> Value {
    let days = |want: &str| -> Vec<String> {
        report
            .days
            .iter()
            .filter(|d| d.status.as_str() == want)
            .map(|d| d.ds.ds())
            .collect()
    };
    json!({
        "event": "backfill_finished",
        "selection": report.selection,
        "from": from,
        "to": to,
        "status": if report.succeeded() { "succeeded" } else { "failed" },
        "succeeded": days("succeeded"),
        "failed": days("failed"),
        "skipped": days("skipped"),
        "left": days("left"),
        "seconds": report.elapsed.as_secs_f64(),
    })
}

/// The JSON line of a run or backfill event, if it has one.
pub(super) fn event(e: &RunEvent<'_>) -> Option<Value> {
    Some(match e {
        RunEvent::RunStarted { run_id, plan } => json!({
            "event": "run_started", "run_id": run_id, "ds": plan.ds.ds(), "env": plan.env,
            "pipelines": plan.pipelines.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
            "selection": plan.selection,
            "tasks": plan.tasks.iter().filter(|t| t.selected).count(),
        }),
        RunEvent::TaskStarted {
            run_id,
            task,
            attempt,
            ..
        } => json!({
            "event": "task_started", "run_id": run_id, "pipeline": task.pipeline.as_str(),
            "task": task.task.as_str(), "materialization": task.materialization.as_str(),
            "attempt": attempt,
        }),
        RunEvent::TaskRetrying {
            run_id,
            task,
            attempt,
            error,
            wait,
        } => json!({
            "event": "task_retrying", "run_id": run_id, "pipeline": task.pipeline.as_str(),
            "task": task.task.as_str(), "attempt": attempt, "wait_seconds": wait.as_secs_f64(),
            "error": self::error(error),
        }),
        RunEvent::TaskOutput {
            run_id,
            task,
            stderr,
            line,
        } => json!({
            "event": "task_output", "run_id": run_id, "pipeline": task.pipeline.as_str(),
            "task": task.task.as_str(), "stream": if *stderr { "stderr" } else { "stdout" },
            "line": line,
        }),
        RunEvent::TaskFinished { run_id, outcome } => self::outcome(run_id, outcome),
        RunEvent::RunFinished { report } => run_finished(report),
        RunEvent::DayStarted { ds } => json!({ "event": "day_started", "ds": ds.ds() }),
        RunEvent::DayFinished { day } => self::day(day),
        _ => return None,
    })
}
