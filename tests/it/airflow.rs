//! `quern airflow`: the DAG files generated from quern's DAG, snapshot-tested, then
//! loaded by real Apache Airflow (scripts/test installs it in its own venv) with no
//! import error, and run with `airflow dags test` on a temporary project with the real
//! quern binary, after which the Delta tables hold the day's rows.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::{stderr, stdout, TempProject};

/// The `airflow` program of the venv scripts/test installs (or `$QUERN_AIRFLOW`).
fn airflow_bin() -> PathBuf {
    let bin = std::env::var("QUERN_AIRFLOW").unwrap_or_else(|_| "airflow".into());
    PathBuf::from(bin)
}

/// `airflow <args>` with its home, database and dags folder in `home`.
fn airflow(home: &Path, dags: &Path, args: &[&str]) -> Output {
    Command::new(airflow_bin())
        .args(args)
        .env("AIRFLOW_HOME", home)
        .env("AIRFLOW__CORE__DAGS_FOLDER", dags)
        .env("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
        .env_remove("QUERN_ENV")
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} ({e}); scripts/test installs Apache Airflow, or set QUERN_AIRFLOW",
                airflow_bin().display()
            )
        })
}

/// `quern airflow` in `project` with `args`, its text with the project path replaced.
fn generate(project: &TempProject, args: &[&str]) -> String {
    let mut all = vec!["airflow", "--ds", "2024-03-01"];
    all.extend_from_slice(args);
    let out = project.quern(&all);
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out).replace(&project.path().display().to_string(), "<project>")
}

#[test]
fn generated_dag_files_are_deterministic() {
    let project = TempProject::new();
    let first = generate(&project, &["--dag-id", "quern_example"]);
    assert_eq!(first, generate(&project, &["--dag-id", "quern_example"]));
    insta::assert_snapshot!("airflow_project_tasks", first);
    let scoring = generate(
        &project,
        &["scoring", "--env", "alpha", "--schedule", "0 6 * * *"],
    );
    insta::assert_snapshot!("airflow_scoring_alpha", scoring);
    let pipelines = generate(&project, &["--granularity", "pipeline", "--catchup"]);
    assert!(pipelines.contains("catchup=True"), "{pipelines}");
    assert!(
        pipelines.contains(
            "bash_command=QUERN + \" \" + QUERN_ARGS + \" run events --ds {{ ds }} --no-retries\""
        ),
        "{pipelines}"
    );
}

#[test]
fn a_pipeline_file_waits_for_its_upstream_pipelines() {
    let project = TempProject::new();
    project.write(
        "sql/weekly/active_countries.sql",
        "SELECT country, count(*) AS days FROM {{ ref('events', 'daily_active_users') }} GROUP BY country",
    );
    project.write(
        "sql/weekly/pipeline.toml",
        "retries = 2\nretry_delay = \"5m\"\n",
    );
    let text = generate(&project, &["weekly"]);
    insta::assert_snapshot!("airflow_weekly_sensor", text);
    // Bad options are usage errors.
    let out = project.quern(&["airflow", "--dag-id", "no spaces"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("an Airflow DAG id is"),
        "{}",
        stderr(&out)
    );
    let out = project.quern(&["airflow", "nope"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn airflow_imports_the_files_and_runs_a_day_with_quern() {
    let project = TempProject::new();
    let home = tempfile::tempdir().unwrap();
    let dags = home.path().join("dags");
    let quern = env!("CARGO_BIN_EXE_quern");
    // Every form of file: the project's, each pipeline's, per pipeline.
    let mut files = vec![vec!["--dag-id", "quern_example"]];
    for p in ["events", "forecast", "reporting", "scoring"] {
        files.push(vec![p]);
    }
    files.push(vec![
        "--granularity",
        "pipeline",
        "--dag-id",
        "quern_by_pipeline",
    ]);
    for args in &files {
        let mut all = vec!["airflow", "--quern", quern, "--out"];
        let out_dir = dags.display().to_string();
        all.push(&out_dir);
        all.extend_from_slice(args);
        let out = project.quern(&all);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let out = airflow(home.path(), &dags, &["db", "migrate"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Airflow's own parser: every file loads, with no import error.
    const CHECK: &str = r#"
import sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(sys.argv[1])
for f, e in bag.import_errors.items():
    print("IMPORT ERROR", f, e)
print("DAGS", " ".join(sorted(bag.dag_ids)))
"#;
    let python = airflow_bin().with_file_name("python");
    let out = Command::new(&python)
        .args(["-c", CHECK])
        .arg(&dags)
        .env("AIRFLOW_HOME", home.path())
        .output()
        .unwrap();
    let listing = stdout(&out);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!listing.contains("IMPORT ERROR"), "{listing}");
    assert!(
        listing.contains("DAGS quern_by_pipeline quern_events quern_example quern_forecast quern_reporting quern_scoring\n"),
        "{listing}"
    );

    // One day of the project's DAG, each task a `quern run` of the real binary.
    let out = airflow(
        home.path(),
        &dags,
        &["dags", "test", "quern_example", "2024-03-01"],
    );
    let log = format!("{}{}", stdout(&out), stderr(&out));
    assert!(out.status.success(), "{log}");
    assert!(log.contains("state=success"), "{log}");
    assert!(
        log.contains("run events --select daily_active_users --ds 2024-03-01 --no-retries"),
        "{log}"
    );
    assert_eq!(
        project.query_csv("SELECT count(*) AS n FROM events.daily_active_users"),
        "n\n4\n"
    );
    assert_eq!(
        project.query_csv(
            "SELECT count(*) AS n FROM scoring.churn_scores WHERE scored_on = DATE '2024-03-01'"
        ),
        "n\n240\n"
    );
    // Each Airflow task was one quern run of one task, logged as such.
    let runs = project.query_csv(
        "SELECT count(*) AS n FROM _quern.runs WHERE selection = 'events --select daily_active_users'",
    );
    assert_eq!(runs, "n\n1\n");
}
