//! Backfills and idempotent re-runs: an `append` re-run for a day appends nothing (a
//! Delta transaction id in the table's log), a backfill killed with SIGKILL and run
//! again ends with the tables of an uninterrupted one, a failed day stops the backfill
//! unless `--continue`, and bad ranges are usage errors that write nothing.

use std::time::{Duration, Instant};

use quern::{RunDate, RunOptions, TaskStatus};

use super::common::{stderr, stdout, TempProject};

/// The example project with an `append` task in the events pipeline.
fn with_append() -> TempProject {
    let project = TempProject::new();
    project.write(
        "sql/events/daily_log.sql",
        "SELECT DATE '{{ ds }}' AS day, count(*) AS events\nFROM {{ ref('events_by_day') }}\nWHERE event_date = DATE '{{ ds }}'",
    );
    let toml = project.read("sql/events/pipeline.toml");
    project.write(
        "sql/events/pipeline.toml",
        &format!("{toml}\n[tasks.daily_log]\nmaterialized = \"append\"\n"),
    );
    project
}

fn options(ds: &str) -> RunOptions {
    RunOptions::new(ds.parse::<RunDate>().unwrap())
}

/// Every row of `table`, as sorted CSV lines.
fn rows(project: &TempProject, table: &str) -> Vec<String> {
    let csv = project.query_csv(&format!("SELECT * FROM {table}"));
    let mut lines: Vec<String> = csv.lines().map(str::to_string).collect();
    lines.sort();
    lines
}

#[tokio::test(flavor = "multi_thread")]
async fn an_append_rerun_for_the_same_ds_appends_nothing() {
    let project = with_append();
    let engine = project.engine("local");
    let first = engine.run("events", &options("2024-03-01")).await.unwrap();
    assert!(first.succeeded(), "{:?}", first.first_error());
    let again = engine.run("events", &options("2024-03-01")).await.unwrap();
    match &again.task("daily_log").unwrap().status {
        TaskStatus::Succeeded(Some(w)) => {
            assert!(w.already_appended, "{w:?}");
            assert_eq!(w.rows, 0);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        rows(&project, "events.daily_log").len(),
        2,
        "a header and one day"
    );
    engine.run("events", &options("2024-03-02")).await.unwrap();
    assert_eq!(rows(&project, "events.daily_log").len(), 3);
    // The guarantee is in the table's own log: a txn action per task and day.
    let log = project.path().join("warehouse/events/daily_log/_delta_log");
    let text: String = std::fs::read_dir(log)
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect();
    assert!(text.contains("\"txn\""), "{text}");
    assert!(text.contains("quern/events/daily_log/2024-03-01"), "{text}");
}

#[test]
fn a_killed_backfill_run_again_ends_with_the_tables_of_an_uninterrupted_one() {
    let args = [
        "backfill",
        "events",
        "--from",
        "2024-03-01",
        "--to",
        "2024-03-07",
    ];
    let whole = with_append();
    let out = whole.quern(&args);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("7 succeeded, 0 failed, 0 skipped, 0 left"));

    let killed = with_append();
    let mut child = killed
        .command(&args)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once two days are in the run log (each day adds a commit to `runs`).
    let runs_log = killed.path().join("warehouse/_quern/runs/_delta_log");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let commits = std::fs::read_dir(&runs_log)
            .map(|d| {
                d.flatten()
                    .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                    .count()
            })
            .unwrap_or(0);
        if commits >= 2 || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert!(!status.success(), "the backfill was killed before it ended");

    let out = killed.quern(&args);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(
        text.contains("0 failed") && !text.contains(" 0 skipped"),
        "{text}"
    );
    for table in [
        "events.events_by_day",
        "events.daily_active_users",
        "events.daily_log",
    ] {
        assert_eq!(rows(&killed, table), rows(&whole, table), "{table}");
    }
    assert_eq!(
        rows(&whole, "events.daily_log").len(),
        8,
        "a header and 7 days"
    );
}

#[test]
fn a_failed_day_stops_the_backfill_unless_continue() {
    let project = TempProject::new();
    // Fails at run time on 2024-03-03 only.
    project.write(
        "sql/events/fragile.sql",
        "SELECT DATE '{{ ds }}' AS day, CASE WHEN DATE '{{ ds }}' = DATE '2024-03-03' THEN n / (n - n) ELSE n END AS x\nFROM (VALUES (1)) AS t(n)",
    );
    let toml = project.read("sql/events/pipeline.toml");
    project.write(
        "sql/events/pipeline.toml",
        &format!(
            "{toml}\n[tasks.fragile]\nmaterialized = \"partition\"\npartition_by = [\"day\"]\n"
        ),
    );
    let args = [
        "backfill",
        "events",
        "--from",
        "2024-03-01",
        "--to",
        "2024-03-05",
    ];
    let out = project.quern(&args);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}{}", stderr(&out));
    assert!(
        text.contains("2 succeeded, 1 failed, 0 skipped, 2 left"),
        "{text}"
    );
    assert!(text.contains("day 2024-03-03  FAILED"), "{text}");
    assert!(text.contains("task fragile: "), "{text}");
    assert!(text.contains("left: 2024-03-04, 2024-03-05"), "{text}");

    let out = project.quern(&[&args[..], &["--continue"]].concat());
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("2 succeeded, 1 failed, 2 skipped, 0 left"),
        "{text}"
    );
    assert!(text.contains("skipped: 2024-03-01, 2024-03-02"), "{text}");
}

#[test]
fn bad_ranges_and_unsafe_parallel_days_are_usage_errors_that_write_nothing() {
    let project = TempProject::new();
    project.write(
        "sql/events/snapshot.sql",
        "SELECT count(*) AS n FROM {{ ref('events_by_day') }}",
    );
    for (args, says) in [
        (
            vec![
                "backfill",
                "events",
                "--from",
                "2024-03-05",
                "--to",
                "2024-03-01",
            ],
            "--from is after --to",
        ),
        (
            vec![
                "backfill",
                "events",
                "--from",
                "2024-02-30",
                "--to",
                "2024-03-01",
            ],
            "invalid --from `2024-02-30`",
        ),
        (
            vec![
                "backfill",
                "--from",
                "2024-03-01",
                "--to",
                "2024-03-02",
                "--parallel",
                "2",
            ],
            "task events/snapshot is materialized = \"table\"",
        ),
        (
            vec![
                "backfill",
                "events",
                "--from",
                "2024-03-01",
                "--to",
                "2024-03-02",
                "--parallel",
                "0",
            ],
            "--parallel",
        ),
        (
            vec![
                "backfill",
                "events",
                "--from",
                "2024-03-01",
                "--to",
                "2024-03-02",
                "--select",
                "nope",
            ],
            "has no task `nope`",
        ),
    ] {
        let out = project.quern(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    }
    assert!(
        !project.path().join("warehouse").exists(),
        "nothing is written"
    );
}
