//! The whole project as one DAG: a generated project of many pipelines planned and run
//! from an empty warehouse, selectors across pipelines and by tag, the project's DAG
//! drawn with pipelines as clusters, and a failed task that skips only what reads it.

use std::path::Path;
use std::process::Command;

use quern::{Engine, Project, RunDate, RunOptions, TaskStatus};

use super::common::{python, quern_at, repo_root, stderr, stdout, TempProject};

/// A project written by `scripts/gen-project.py`.
fn generated(pipelines: usize, tasks: usize) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("quern-gen-")
        .tempdir()
        .expect("temp dir");
    let status = Command::new(python())
        .arg(repo_root().join("scripts/gen-project.py"))
        .arg(dir.path())
        .args(["--pipelines", &pipelines.to_string()])
        .args(["--tasks", &tasks.to_string()])
        .status()
        .expect("python runs");
    assert!(status.success(), "gen-project.py failed");
    dir
}

fn engine(dir: &Path) -> Engine {
    Engine::builder(Project::load(dir).expect("project loads"))
        .with_environment("local")
        .build()
        .expect("engine builds")
}

fn options() -> RunOptions {
    RunOptions::new("2024-03-01".parse::<RunDate>().unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_generated_project_plans_and_runs_from_an_empty_warehouse() {
    let dir = generated(10, 300);
    let engine = engine(dir.path());
    // One pipeline alone reads its upstream pipelines from the warehouse: not there yet.
    let err = engine.plan("marts_1", &options()).await.unwrap_err();
    let message = err.full_message();
    assert!(
        message.contains("does not exist yet") && message.contains("run pipeline `intermediate_"),
        "{message}"
    );
    assert!(message.contains("run the project"), "{message}");

    let plan = engine
        .plan_project(&options())
        .await
        .expect("the project plans");
    assert_eq!(plan.pipeline, None);
    assert_eq!(plan.tasks.len(), 300);
    assert_eq!(plan.pipelines.len(), 10);
    let crossing = plan
        .tasks
        .iter()
        .filter(|t| t.upstream.iter().any(|u| u.pipeline != t.pipeline))
        .count();
    assert!(crossing > 100, "{crossing} tasks read another pipeline");
    let report = engine.execute(plan).await;
    if let Some(e) = report.first_error() {
        panic!("{}", e.full_message());
    }
    assert_eq!(report.tasks.len(), 300);
    assert_eq!(report.pipelines.len(), 10);

    // Every pipeline's history shows the one run of the project.
    for p in ["staging_1", "intermediate_4", "marts_3"] {
        let history = engine.status(p, 5).await.unwrap();
        assert_eq!(history.runs.len(), 1, "{p}");
        assert_eq!(history.runs[0].run_id, report.run_id, "{p}");
        assert_eq!(history.runs[0].status, quern::RunStatus::Succeeded);
        assert!(history.runs[0].tasks_ok > 0, "{p}");
    }
    assert!(
        report.run_id.starts_with("project-20240301-"),
        "{}",
        report.run_id
    );

    // A written mart reads back, and the pipeline now plans on its own.
    let mart = report
        .tasks
        .iter()
        .find(|t| {
            t.pipeline.as_str() == "marts_1" && matches!(t.status, TaskStatus::Succeeded(Some(_)))
        })
        .expect("a written mart");
    let sql = format!("SELECT count(*) AS n FROM marts_1.{}", mart.task);
    let batches = engine.query(&sql).await.unwrap().collect().await.unwrap();
    assert_eq!(batches[0].num_rows(), 1);
    engine
        .plan("marts_1", &options())
        .await
        .expect("plans against the warehouse");
}

#[test]
fn selectors_tags_and_the_dag_span_the_project() {
    let dir = generated(10, 300);
    // Selected tasks read the others from the warehouse: write it first.
    let out = quern_at(dir.path(), &["run", "--ds", "2024-03-01"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let plan = |select: &str| {
        quern_at(
            dir.path(),
            &["plan", "--ds", "2024-03-01", "--select", select],
        )
    };
    let lines = |o: &std::process::Output| -> Vec<String> {
        stdout(o)
            .lines()
            .filter(|l| l.chars().next().is_some_and(|c| c.is_ascii_digit()))
            .map(str::to_string)
            .collect()
    };

    // A pipeline and everything downstream of it, across pipelines.
    let out = plan("staging_1+");
    assert!(out.status.success(), "{}", stderr(&out));
    let tasks = lines(&out);
    assert!(tasks.iter().any(|l| l.contains(" staging_1/")), "{tasks:?}");
    assert!(tasks.iter().any(|l| l.contains(" marts_")), "{tasks:?}");
    assert!(
        !tasks.iter().any(|l| l.contains(" staging_2/")),
        "{tasks:?}"
    );

    // A task with everything upstream of it: its staging tasks too.
    let out = plan("+marts_1/mart_219");
    assert!(out.status.success(), "{}", stderr(&out));
    let tasks = lines(&out);
    assert!(
        tasks.last().unwrap().contains("marts_1/mart_219"),
        "{tasks:?}"
    );
    assert!(tasks.iter().any(|l| l.contains(" staging_")), "{tasks:?}");

    // Tags: on a pipeline (staging, `daily`), on tasks (`finance`), comma-separated.
    let out = plan("tag:daily");
    let tasks = lines(&out);
    assert!(
        !tasks.is_empty() && tasks.iter().all(|l| l.contains(" staging_")),
        "{tasks:?}"
    );
    let out = plan("tag:finance,staging_1/stg_000");
    let tasks = lines(&out);
    assert!(
        tasks.iter().any(|l| l.contains("marts_1/mart_219 ")),
        "{tasks:?}"
    );
    assert!(
        tasks.iter().any(|l| l.contains("staging_1/stg_000 ")),
        "{tasks:?}"
    );

    // Bad selectors are usage errors naming what exists; nothing is planned.
    for (select, says) in [
        ("tag:weekly", "tags in the project: daily, finance"),
        ("nope_1", "unknown pipeline `nope_1`"),
        ("mart_219", "select marts_1/mart_219"),
        ("marts_1/nope", "pipeline `marts_1` has no task `nope`"),
        ("marts_1//x", "expected pipeline/task"),
    ] {
        let out = plan(select);
        assert_eq!(out.status.code(), Some(2), "{select}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{select}: {}", stderr(&out));
    }
    let out = quern_at(
        dir.path(),
        &["plan", "marts_1", "--select", "staging_1/stg_000"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("this run is of pipeline `marts_1`"),
        "{}",
        stderr(&out)
    );

    // The project's DAG, pipelines as clusters.
    let out = quern_at(dir.path(), &["dag", "--format", "dot"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let dot = stdout(&out);
    assert!(dot.contains("subgraph \"cluster_staging_1\""), "{dot}");
    assert!(dot.contains("\"staging_1/stg_000\" -> \""), "{dot}");
    let out = quern_at(dir.path(), &["dag", "--format", "mermaid"]);
    let mermaid = stdout(&out);
    assert!(mermaid.contains("    subgraph marts_1\n"), "{mermaid}");
    assert!(mermaid.contains("staging_1__stg_000 --> "), "{mermaid}");
    let out = quern_at(dir.path(), &["dag"]);
    assert!(
        stdout(&out).contains("marts_1/mart_219 <- "),
        "{}",
        stdout(&out)
    );
}

#[test]
fn a_cycle_across_pipelines_is_listed_with_pipeline_and_task() {
    let dir = generated(3, 12);
    // A staging task reading a mart closes a loop through the layers.
    let stg = dir.path().join("sql/staging_1/stg_000.sql");
    let mart = std::fs::read_dir(dir.path().join("sql/marts_1"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "sql"))
        .unwrap();
    let mart = mart.file_stem().unwrap().to_string_lossy().into_owned();
    std::fs::write(
        &stg,
        format!("SELECT id, k, v FROM {{{{ ref('marts_1', '{mart}') }}}}"),
    )
    .unwrap();
    let out = quern_at(dir.path(), &["plan", "--ds", "2024-03-01"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("the project has a dependency cycle: "),
        "{err}"
    );
    assert!(
        err.contains("staging_1/stg_000") && err.contains(&format!("marts_1/{mart}")),
        "{err}"
    );
    assert!(!dir.path().join("warehouse").exists(), "nothing is written");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_task_skips_only_its_downstream_tasks() {
    let project = TempProject::new();
    // An independent task that fails at run time, and a task that reads it.
    project.write(
        "sql/events/broken.sql",
        "SELECT n / (n - n) AS ratio FROM (VALUES (1), (2)) AS t(n)",
    );
    project.write(
        "sql/events/after_broken.sql",
        "SELECT ratio FROM {{ ref('broken') }}",
    );
    let engine = project.engine("local");
    let report = engine.run("events", &options()).await.unwrap();
    let status = |t: &str| &report.task(t).expect(t).status;
    match status("broken") {
        // Named plainly: the task, and the cause.
        TaskStatus::Failed(e) => {
            let text = e.full_message();
            assert!(
                text.starts_with("task `broken` failed while running"),
                "{text}"
            );
            assert!(text.contains("Divide by zero"), "{text}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(status("after_broken"), TaskStatus::Skipped));
    // daily_active_users reads only events_by_day, which succeeded.
    assert!(matches!(
        status("events_by_day"),
        TaskStatus::Succeeded(Some(_))
    ));
    assert!(matches!(
        status("daily_active_users"),
        TaskStatus::Succeeded(Some(_))
    ));
    assert!(!report.succeeded());
    // The pipeline did not run completely: its metrics are not computed.
    assert!(report.metrics.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_example_project_runs_as_one_dag() {
    let project = TempProject::new();
    let out = project.quern(&["run", "--ds", "2024-03-01"]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    for task in [
        "events/daily_active_users",
        "reporting/odds_ratio",
        "scoring/churn_scores",
    ] {
        assert!(text.contains(task), "{text}");
    }
    assert!(text.contains("metric  events/active_users = "), "{text}");
    let engine = project.engine("local");
    for p in ["events", "reporting", "forecast", "scoring"] {
        let history = engine.status(p, 5).await.unwrap();
        assert_eq!(history.runs.len(), 1, "{p}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn fail_fast_stops_the_run_and_cancels_running_writes_before_their_commit() {
    let project = TempProject::new();
    project.write(
        "sql/events/broken.sql",
        "SELECT n / (n - n) AS ratio FROM (VALUES (1), (2)) AS t(n)",
    );
    // Long enough to still be writing when `broken` fails.
    project.write(
        "sql/events/slow.sql",
        "SELECT value AS n, value * 2 AS m FROM range(0, 300000000)",
    );
    let engine = Engine::builder(Project::load(project.path()).unwrap())
        .with_environment("local")
        .with_max_concurrent_tasks(8)
        .build()
        .unwrap();
    let report = engine
        .run("events", &options().with_fail_fast(true))
        .await
        .unwrap();
    let status = |t: &str| &report.task(t).expect(t).status;
    assert!(matches!(status("broken"), TaskStatus::Failed(_)));
    assert!(
        matches!(status("slow"), TaskStatus::Cancelled),
        "{:?}",
        status("slow")
    );
    assert!(!report.succeeded());
    // Nothing of the cancelled write was committed.
    let log = project.path().join("warehouse/events/slow/_delta_log");
    let commits = std::fs::read_dir(&log).map(|d| d.count()).unwrap_or(0);
    assert_eq!(commits, 0, "{}", log.display());
}

#[test]
fn on_a_terminal_run_and_backfill_show_a_live_display() {
    let project = TempProject::new();
    // `script` gives the command a terminal (util-linux, on every Debian machine).
    let quern = env!("CARGO_BIN_EXE_quern");
    let command = format!(
        "{quern} --project {} backfill events --from 2024-03-01 --to 2024-03-02",
        project.path().display()
    );
    let out = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env_remove("QUERN_ENV")
        .output()
        .expect("script runs");
    assert!(out.status.success(), "{}", stderr(&out));
    let screen = stdout(&out);
    // The bar of days, a line per finished task, and the summary after.
    assert!(screen.contains("days "), "{screen}");
    assert!(screen.contains("events/events_by_day  ok"), "{screen}");
    assert!(screen.contains("2 succeeded, 0 failed"), "{screen}");
    // Not on a terminal: the plain lines only.
    let out = project.quern(&[
        "backfill",
        "events",
        "--from",
        "2024-03-03",
        "--to",
        "2024-03-03",
    ]);
    let text = stdout(&out);
    assert!(
        !text.contains("days ") && text.contains("day 2024-03-03  ok"),
        "{text}"
    );
}
