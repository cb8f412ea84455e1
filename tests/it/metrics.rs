//! Metrics with thresholds, judged against the previous successful run, and the run
//! log that records every run (`quern status`).

use quern::{RunDate, RunOptions};

use crate::common::{stderr, stdout, TempProject};

fn options(ds: &str) -> RunOptions {
    RunOptions::new(ds.parse::<RunDate>().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_compare_with_the_previous_run_and_the_log_keeps_history() {
    let project = TempProject::new();
    // A tighter drop limit than the example's, so that day 2 (11 users after 15) breaches.
    project.write(
        "sql/events/pipeline.toml",
        &project
            .read("sql/events/pipeline.toml")
            .replace("max_drop_pct = 50", "max_drop_pct = 20"),
    );
    let engine = project.engine("local");
    let mut seen = Vec::new();
    for ds in ["2024-03-01", "2024-03-02", "2024-03-03"] {
        let report = engine.run("events", &options(ds)).await.unwrap();
        assert!(
            report.succeeded(),
            "{:?} {:?}",
            report.first_error(),
            report.metric_errors
        );
        assert!(report.log_error.is_none(), "{:?}", report.log_error);
        assert_eq!(report.metrics.len(), 1);
        let m = &report.metrics[0];
        seen.push((m.value, m.previous, m.breach.clone()));
    }
    assert_eq!(seen[0], (Some(15.0), None, None));
    assert_eq!(seen[1].0, Some(11.0));
    assert_eq!(seen[1].1, Some(15.0));
    assert!(
        seen[1]
            .2
            .as_deref()
            .unwrap()
            .contains("fell 26.7% from the previous run's 15 (limit 20%)"),
        "{seen:?}"
    );
    assert_eq!(
        (seen[2].0, seen[2].1, seen[2].2.clone()),
        (Some(16.0), Some(11.0), None)
    );

    let history = engine.status("events", 10).await.unwrap();
    assert_eq!(history.runs.len(), 3);
    assert_eq!(history.runs[0].ds, "2024-03-03");
    assert_eq!(history.runs[1].breaches, 1);
    let values: Vec<Option<f64>> = history.metrics["active_users"]
        .iter()
        .map(|p| p.value)
        .collect();
    assert_eq!(values, [Some(16.0), Some(11.0), Some(15.0)]);

    let out = project.quern(&["status", "events", "--limit", "2"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        text.contains("ds 2024-03-03  succeeded") && !text.contains("ds 2024-03-01"),
        "{text}"
    );
    assert!(
        text.contains("active_users: 2024-03-03: 16, 2024-03-02: 11 (breach)"),
        "{text}"
    );

    // Another reader sees the run log as ordinary Delta tables.
    let log = project.path().join("warehouse/_quern/tasks/_delta_log");
    assert!(log.is_dir());
}

#[test]
fn a_metric_breach_is_reported_but_does_not_fail_the_run() {
    let project = TempProject::new();
    project.write(
        "sql/events/pipeline.toml",
        &project
            .read("sql/events/pipeline.toml")
            .replace("min = 1\n", "min = 100\n"),
    );
    let out = project.quern(&["run", "events", "--ds", "2024-03-01"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("BREACH  metric active_users = 15: 15 is below the minimum 100"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn bad_metrics_are_clear_errors_and_never_lose_data() {
    // The wrong shape is found when the run is planned: nothing is written.
    let project = TempProject::new();
    project.write(
        "sql/events/pipeline.toml",
        &format!("{}\n[metrics.wide]\nsql = \"SELECT country, active_users, events FROM {{{{ ref('daily_active_users') }}}}\"\n", project.read("sql/events/pipeline.toml")),
    );
    let out = project.quern(&["run", "events", "--ds", "2024-03-01"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("sql/events/pipeline.toml#metrics.wide: task `wide` failed to plan"),
        "{err}"
    );
    assert!(err.contains("this one returns 3 column(s)"), "{err}");
    assert!(project.warehouse_state().is_empty());

    // No rows is only known after the run: the run fails, its tables are written.
    let project = TempProject::new();
    project.write(
        "sql/events/pipeline.toml",
        &format!("{}\n[metrics.nothing]\nsql = \"SELECT active_users FROM {{{{ ref('daily_active_users') }}}} WHERE false\"\n", project.read("sql/events/pipeline.toml")),
    );
    let out = project.quern(&["run", "events", "--ds", "2024-03-01"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.contains("FAILED  metric nothing: sql/events/pipeline.toml#metrics.nothing: the metric query returned no rows"), "{text}");
    assert!(
        !project.warehouse_state().is_empty(),
        "the run's data stays"
    );
    assert_eq!(
        project.query_csv("SELECT count(*) AS n FROM events.daily_active_users"),
        "n\n4\n"
    );
}
