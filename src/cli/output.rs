//! How command results are printed for people (and, for `query`, as CSV or JSON).

use std::io::Write;

use anyhow::Result;
use quern::datafusion::arrow::record_batch::RecordBatch;
use quern::datafusion::arrow::util::display::FormatOptions;
use quern::datafusion::arrow::util::pretty::pretty_format_batches_with_options;
use std::collections::BTreeMap;

use quern::{
    distinct_causes, BackfillReport, Dag, DayOutcome, DayStatus, PipelineName, RenderedTask,
    RunPlan, RunReport, TaskId, TaskStatus,
};

pub(super) fn render(
    out: &mut impl Write,
    rendered: &[RenderedTask],
    only: Option<&str>,
) -> Result<()> {
    let mut first = true;
    for r in rendered
        .iter()
        .filter(|r| only.is_none_or(|t| r.task.as_str() == t))
    {
        if only.is_some() {
            writeln!(out, "{}", r.sql)?;
            continue;
        }
        if !first {
            writeln!(out)?;
        }
        first = false;
        writeln!(out, "-- {}.{} ({})", r.pipeline, r.task, r.file.display())?;
        writeln!(out, "{}", r.sql)?;
    }
    Ok(())
}

pub(super) fn plan(out: &mut impl Write, plan: &RunPlan) -> Result<()> {
    let scope = match &plan.pipeline {
        Some(p) => format!("pipeline {p}"),
        None => format!("project ({} pipeline(s))", plan.pipelines.len()),
    };
    // Tasks are named `task` in a plan of one pipeline, `pipeline/task` in the project's.
    let name = |id: &quern::TaskId| match &plan.pipeline {
        Some(p) => id.short(p.as_str()),
        None => id.to_string(),
    };
    writeln!(
        out,
        "{scope} · env {} · ds {} · {} task(s)",
        plan.env,
        plan.ds,
        plan.tasks.iter().filter(|t| t.selected).count()
    )?;
    for m in &plan.models {
        writeln!(out, "model {}", m.summary())?;
    }
    for (i, t) in plan.tasks.iter().enumerate() {
        let mut how = t.materialization.as_str().to_string();
        if !t.config.partition_by.is_empty() {
            how.push_str(&format!(" by {}", t.config.partition_by.join(", ")));
        }
        if !t.config.unique_key.is_empty() {
            how.push_str(&format!(" on {}", t.config.unique_key.join(", ")));
        }
        if t.evolve_schema {
            how.push_str(", adds columns");
        }
        if !t.selected {
            how.push_str(", read by the selection");
        }
        writeln!(out, "{}. {} ({how})", i + 1, name(&t.id()))?;
        if let Some(argv) = &t.command {
            writeln!(out, "   $ {}", argv.join(" "))?;
        }
        if let Some(url) = &t.table_url {
            writeln!(out, "   -> {url}")?;
        }
        if !t.upstream.is_empty() {
            let ups: Vec<String> = t.upstream.iter().map(name).collect();
            writeln!(out, "   <- {}", ups.join(", "))?;
        }
        for field in t.schema.fields() {
            let null = if field.is_nullable() { "" } else { " not null" };
            writeln!(out, "     {} {}{null}", field.name(), field.data_type())?;
        }
    }
    Ok(())
}

pub(super) fn report(out: &mut impl Write, report: &RunReport) -> Result<()> {
    let width = report
        .tasks
        .iter()
        .map(|t| report.name_of(&t.pipeline, &t.task).len())
        .max()
        .unwrap_or(0);
    let (mut ok, mut failed, mut skipped) = (0, 0, 0);
    for m in &report.models {
        writeln!(out, "model   {}", m.summary())?;
    }
    for t in &report.tasks {
        let secs = t.elapsed.as_secs_f64();
        let name = report.name_of(&t.pipeline, &t.task);
        let name = name.as_str();
        let how = t.materialization.as_str();
        match &t.status {
            TaskStatus::Succeeded(Some(w)) if w.already_appended => {
                ok += 1;
                writeln!(
                    out,
                    "ok      {name:width$}  {how:9}  already appended for ds {}: nothing written  v{}",
                    report.ds, w.version
                )?;
            }
            TaskStatus::Succeeded(Some(w)) => {
                ok += 1;
                writeln!(
                    out,
                    "ok      {name:width$}  {how:9}  {:>10} rows  v{:<4}  {secs:.2}s",
                    w.rows, w.version
                )?;
            }
            TaskStatus::Succeeded(None) => {
                ok += 1;
                writeln!(
                    out,
                    "ok      {name:width$}  {how:9}  {:>10}                {secs:.2}s",
                    "-"
                )?;
            }
            TaskStatus::Failed(e) => {
                failed += 1;
                writeln!(out, "FAILED  {name:width$}  {how:9}  {e}")?;
                for cause in distinct_causes(e) {
                    writeln!(out, "          caused by: {cause}")?;
                }
            }
            TaskStatus::Cancelled => {
                skipped += 1;
                writeln!(
                    out,
                    "cancel  {name:width$}  {how:9}  (stopped before its commit: another task failed with --fail-fast, or quern was interrupted)"
                )?;
            }
            _ => {
                skipped += 1;
                writeln!(
                    out,
                    "skipped {name:width$}  {how:9}  (an upstream task failed)"
                )?;
            }
        }
        attempts_and_expectations(out, t)?;
    }
    after_run(out, report)?;
    writeln!(
        out,
        "run {} · env {} · ds {}: {ok} ok, {failed} failed, {skipped} skipped · {} rows · {:.2}s",
        report.pipelines_text(),
        report.env,
        report.ds,
        report.rows_written(),
        report.elapsed.as_secs_f64()
    )?;
    Ok(())
}

/// Under a task: its retried attempts, and how its expectations fared.
fn attempts_and_expectations(out: &mut impl Write, t: &quern::TaskOutcome) -> Result<()> {
    for (i, e) in t.retried.iter().enumerate() {
        writeln!(
            out,
            "          attempt {} failed, retried: {}",
            i + 1,
            e.full_message()
        )?;
    }
    for e in &t.expectations {
        let what = match (e.severity, e.violations) {
            (_, 0) => "met".to_string(),
            (quern::Severity::Warn, _) if e.is_row_count => {
                "row count out of bounds (written)".to_string()
            }
            (quern::Severity::Drop, n) => format!("{n} row(s) dropped"),
            (quern::Severity::Warn, n) => format!("{n} row(s) violate it (written)"),
            (quern::Severity::Fail, n) => format!("{n} violation(s): task failed"),
        };
        writeln!(
            out,
            "          expect {} ({}): {what}",
            e.name,
            e.severity.as_str()
        )?;
    }
    Ok(())
}

/// The lines after the tasks: metric values, alerts, and what could not be recorded.
fn after_run(out: &mut impl Write, report: &RunReport) -> Result<()> {
    for m in &report.metrics {
        let metric = match report.pipelines.len() {
            1 => m.metric.clone(),
            _ => format!("{}/{}", m.pipeline, m.metric),
        };
        let name = match &m.group {
            Some(g) => format!("{metric}[{g}]"),
            None => metric,
        };
        let value = m.value.map_or("NULL".to_string(), |v| v.to_string());
        let prev = m
            .previous
            .map(|p| format!(" (previous {p})"))
            .unwrap_or_default();
        match &m.breach {
            Some(why) => writeln!(out, "BREACH  metric {name} = {value}{prev}: {why}")?,
            None => writeln!(out, "metric  {name} = {value}{prev}")?,
        }
    }
    for e in &report.metric_errors {
        writeln!(out, "FAILED  {}", e.full_message())?;
    }
    for a in &report.alerts {
        match &a.result {
            Ok(()) => writeln!(out, "alert   {}: sent", a.target)?,
            Err(why) => writeln!(
                out,
                "warning: alert {} not delivered after 3 attempts: {}",
                a.target,
                full_message(why)
            )?,
        }
    }
    if let Some(id) = &report.mlflow_run_id {
        writeln!(out, "mlflow  run {id}")?;
    }
    if let Some(why) = &report.mlflow_error {
        writeln!(
            out,
            "warning: the run could not be logged to MLflow: {}",
            why.full_message()
        )?;
    }
    if let Some(why) = &report.log_error {
        writeln!(
            out,
            "warning: the run could not be recorded in the run log: {}",
            why.full_message()
        )?;
    }
    Ok(())
}

/// One day of a backfill, as it ends.
pub(super) fn day(out: &mut impl Write, day: &DayOutcome) -> Result<()> {
    let ds = day.ds;
    match &day.status {
        DayStatus::Succeeded(r) => {
            writeln!(
                out,
                "day {ds}  ok       {} task(s), {} rows, {:.2}s",
                r.tasks.len(),
                r.rows_written(),
                r.elapsed.as_secs_f64()
            )?;
        }
        DayStatus::Failed(r) => {
            writeln!(out, "day {ds}  FAILED")?;
            for t in &r.tasks {
                if let TaskStatus::Failed(e) = &t.status {
                    writeln!(
                        out,
                        "          task {}: {e}",
                        r.name_of(&t.pipeline, &t.task)
                    )?;
                    for cause in distinct_causes(e) {
                        writeln!(out, "            caused by: {cause}")?;
                    }
                }
            }
            for e in &r.metric_errors {
                writeln!(out, "          {}", e.full_message())?;
            }
        }
        DayStatus::NotPlanned(e) => {
            writeln!(out, "day {ds}  FAILED   not planned: {}", e.full_message())?;
        }
        DayStatus::Skipped(run) => {
            writeln!(out, "day {ds}  skipped  succeeded before (run {run})")?;
        }
        _ => writeln!(out, "day {ds}  left     (an earlier day failed)")?,
    }
    Ok(())
}

/// The summary of a backfill: how many days of each kind, and which.
pub(super) fn backfill(
    out: &mut impl Write,
    report: &BackfillReport,
    from: &str,
    to: &str,
) -> Result<()> {
    let mut kinds: [(&str, Vec<String>); 4] = [
        ("succeeded", vec![]),
        ("failed", vec![]),
        ("skipped", vec![]),
        ("left", vec![]),
    ];
    for d in &report.days {
        if let Some((_, days)) = kinds.iter_mut().find(|(k, _)| *k == d.status.as_str()) {
            days.push(d.ds.to_string());
        }
    }
    let counts: Vec<String> = kinds
        .iter()
        .map(|(k, days)| format!("{} {k}", days.len()))
        .collect();
    writeln!(
        out,
        "backfill {} {from}..{to}: {} · {:.2}s",
        report.selection,
        counts.join(", "),
        report.elapsed.as_secs_f64()
    )?;
    for (kind, days) in kinds.iter().filter(|(_, d)| !d.is_empty()) {
        writeln!(out, "  {kind}: {}", days.join(", "))?;
    }
    Ok(())
}

pub(super) fn dag_text(out: &mut impl Write, dag: &Dag) -> Result<()> {
    for task in dag.order() {
        let ups: Vec<String> = dag.upstream_of(task).map(|t| dag.name_of(t)).collect();
        let name = dag.name_of(task);
        if ups.is_empty() {
            writeln!(out, "{name}")?;
        } else {
            writeln!(out, "{name} <- {}", ups.join(", "))?;
        }
    }
    Ok(())
}

/// The tasks of the DAG by pipeline, each pipeline's in DAG order.
fn by_pipeline(dag: &Dag) -> BTreeMap<&PipelineName, Vec<&TaskId>> {
    let mut groups: BTreeMap<&PipelineName, Vec<&TaskId>> = BTreeMap::new();
    for t in dag.order() {
        groups.entry(&t.pipeline).or_default().push(t);
    }
    groups
}

/// Mermaid node ids are word characters: `task`, or `pipeline__task` in the project's
/// DAG (labelled `task`, inside its pipeline's subgraph).
fn mermaid_id(dag: &Dag, task: &TaskId) -> String {
    match dag.pipeline() {
        Some(_) => task.task.to_string(),
        None => format!("{}__{}", task.pipeline, task.task),
    }
}

pub(super) fn dag_mermaid(out: &mut impl Write, dag: &Dag) -> Result<()> {
    writeln!(out, "graph LR")?;
    if dag.pipeline().is_some() {
        for task in dag.order() {
            writeln!(out, "    {}", task.task)?;
        }
    } else {
        // The project's DAG: one subgraph per pipeline.
        for (pipeline, tasks) in by_pipeline(dag) {
            writeln!(out, "    subgraph {pipeline}")?;
            for task in tasks {
                writeln!(out, "        {}[{}]", mermaid_id(dag, task), task.task)?;
            }
            writeln!(out, "    end")?;
        }
    }
    for task in dag.order() {
        for down in dag.downstream_of(task) {
            let (from, to) = (mermaid_id(dag, task), mermaid_id(dag, down));
            writeln!(out, "    {from} --> {to}")?;
        }
    }
    Ok(())
}

pub(super) fn dag_dot(out: &mut impl Write, dag: &Dag) -> Result<()> {
    let graph = dag.pipeline().map_or("project", |p| p.as_str());
    writeln!(out, "digraph \"{graph}\" {{")?;
    writeln!(out, "    rankdir=LR;")?;
    if dag.pipeline().is_some() {
        for task in dag.order() {
            writeln!(out, "    \"{}\";", task.task)?;
        }
    } else {
        // The project's DAG: one cluster per pipeline.
        for (pipeline, tasks) in by_pipeline(dag) {
            writeln!(out, "    subgraph \"cluster_{pipeline}\" {{")?;
            writeln!(out, "        label=\"{pipeline}\";")?;
            for task in tasks {
                writeln!(out, "        \"{task}\" [label=\"{}\"];", task.task)?;
            }
            writeln!(out, "    }}")?;
        }
    }
    for task in dag.order() {
        for down in dag.downstream_of(task) {
            let (from, to) = (dag.name_of(task), dag.name_of(down));
            writeln!(out, "    \"{from}\" -> \"{to}\";")?;
        }
    }
    writeln!(out, "}}")?;
    Ok(())
}

pub(super) fn table(out: &mut impl Write, batches: &[RecordBatch]) -> Result<()> {
    // NULL is written out, so that it differs from an empty string, in nested values too.
    let options = FormatOptions::default().with_null("NULL");
    writeln!(
        out,
        "{}",
        pretty_format_batches_with_options(batches, &options)?
    )?;
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    writeln!(out, "{rows} row(s)")?;
    Ok(())
}

pub(super) fn csv(out: &mut impl Write, batches: &[RecordBatch]) -> Result<()> {
    let mut writer = quern::datafusion::arrow::csv::WriterBuilder::new()
        .with_header(true)
        .build(out);
    for batch in batches {
        writer.write(&super::values::csv_ready(batch)?)?;
    }
    Ok(())
}

pub(super) fn json(out: &mut impl Write, batches: &[RecordBatch]) -> Result<()> {
    // NULLs are written (a map entry or a struct field with a NULL value is kept).
    let mut writer = quern::datafusion::arrow::json::WriterBuilder::new()
        .with_explicit_nulls(true)
        .build::<_, quern::datafusion::arrow::json::writer::JsonArray>(out);
    let ready = batches
        .iter()
        .map(super::values::json_ready)
        .collect::<Result<Vec<_>, _>>()?;
    let refs: Vec<&RecordBatch> = ready.iter().collect();
    writer.write_batches(&refs)?;
    writer.finish()?;
    let out = writer.into_inner();
    writeln!(out)?;
    Ok(())
}

/// The texts of `err`'s causes, leaving out a cause whose text the previous one
/// already ends with (DataFusion wraps one error in layers that print the same text).
/// An error's message and its distinct causes, joined by `: `.
fn full_message(err: &(dyn std::error::Error + 'static)) -> String {
    std::iter::once(err.to_string())
        .chain(distinct_causes(err))
        .collect::<Vec<_>>()
        .join(": ")
}

pub(super) fn status(
    out: &mut impl Write,
    pipeline: &str,
    history: &quern::RunHistory,
) -> Result<()> {
    if history.runs.is_empty() {
        writeln!(
            out,
            "no runs of {pipeline} recorded in this environment yet"
        )?;
        return Ok(());
    }
    writeln!(out, "latest runs of {pipeline}:")?;
    for r in &history.runs {
        writeln!(
            out,
            "  {}  ds {}  {:9}  {} ok, {} failed  {} rows  {} breach(es)",
            r.finished_at, r.ds, r.status, r.tasks_ok, r.tasks_failed, r.rows, r.breaches
        )?;
    }
    if !history.metrics.is_empty() {
        writeln!(out, "metrics (newest first):")?;
    }
    for (name, values) in &history.metrics {
        let shown: Vec<String> = values
            .iter()
            .map(|p| {
                let v = p.value.map_or("NULL".to_string(), |v| format!("{v}"));
                let breach = if p.breach.is_some() { " (breach)" } else { "" };
                format!("{}: {v}{breach}", p.ds)
            })
            .collect();
        writeln!(out, "  {name}: {}", shown.join(", "))?;
    }
    Ok(())
}

pub(super) fn models(
    out: &mut impl Write,
    env: &quern::Environment,
    models: &[quern::models::ResolvedModel],
) -> Result<()> {
    if models.is_empty() {
        writeln!(
            out,
            "no model functions in {} ([models])",
            env.file.display()
        )?;
        return Ok(());
    }
    for m in models {
        let model = &m.model;
        writeln!(out, "{}", m.function)?;
        writeln!(out, "  uri       {}", m.uri)?;
        if let Some(v) = &m.version {
            writeln!(out, "  resolved  {v}")?;
        }
        writeln!(out, "  file      {}", m.file.display())?;
        writeln!(out, "  sha256    {}", m.sha256)?;
        let inputs: Vec<String> = model
            .inputs
            .iter()
            .map(|i| {
                let t = match i.elem {
                    quern::models::ElemType::Float => "float",
                    quern::models::ElemType::Double => "double",
                };
                format!("{} {t}[{}]", i.name, i.width)
            })
            .collect();
        writeln!(
            out,
            "  inputs    {} ({} arguments)",
            inputs.join(", "),
            model.n_features()
        )?;
        let what = match &model.kind {
            quern::models::OutputKind::Probabilities(l) => {
                let labels: Vec<String> = (0..l.len()).map(|i| l.name(i)).collect();
                if l.len() == 2 {
                    format!(
                        "probability of class {} (classes {})",
                        l.name(1),
                        labels.join(", ")
                    )
                } else {
                    format!(
                        "label and class probabilities (classes {})",
                        labels.join(", ")
                    )
                }
            }
            quern::models::OutputKind::Values if model.width == 1 => "value".to_string(),
            quern::models::OutputKind::Values => format!("{} values", model.width),
        };
        writeln!(
            out,
            "  output    {} → {}: {what}",
            model.output,
            m.return_type()
        )?;
        let trees = if model.compiled_trees {
            ", trees compiled"
        } else {
            ""
        };
        writeln!(
            out,
            "  runtime   {}{trees}: {}",
            model.runtime,
            model.operators.join(", ")
        )?;
    }
    Ok(())
}
