//! The real `quern` binary: output, exit codes and that `plan` writes nothing.

use crate::common::{stderr, stdout, TempProject};

#[test]
fn run_plan_dag_query_and_render() {
    let project = TempProject::new();

    let plan = project.quern(&["plan", "events", "--ds", "2024-03-01"]);
    assert!(plan.status.success(), "{}", stderr(&plan));
    let text = stdout(&plan);
    assert!(
        text.contains("2. events_by_day (partition by event_date)"),
        "{text}"
    );
    assert!(text.contains("event_date Date32"), "{text}");
    assert!(project.warehouse_state().is_empty(), "plan wrote something");

    let run = project.quern(&["run", "events", "--ds", "2024-03-01"]);
    assert!(run.status.success(), "{}", stderr(&run));
    let text = stdout(&run);
    assert!(
        text.contains("events_by_day") && text.contains("rows  v0"),
        "{text}"
    );
    assert!(text.contains("3 ok, 0 failed, 0 skipped"), "{text}");

    let q = project.quern(&[
        "query",
        "SELECT count(*) AS n FROM events.daily_active_users",
        "--format",
        "csv",
    ]);
    assert!(q.status.success(), "{}", stderr(&q));
    assert_eq!(stdout(&q), "n\n4\n");
    let q = project.quern(&[
        "query",
        "SELECT country_code FROM raw.countries ORDER BY 1 LIMIT 1",
        "--format",
        "json",
    ]);
    assert_eq!(stdout(&q).trim(), r#"[{"country_code":"BR"}]"#);

    let dag = project.quern(&["dag", "events", "--format", "mermaid"]);
    assert_eq!(
        stdout(&dag),
        "graph LR\n    clean_events\n    events_by_day\n    daily_active_users\n    clean_events --> events_by_day\n    events_by_day --> daily_active_users\n"
    );
    let dot = project.quern(&["dag", "events", "--format", "dot"]);
    assert!(stdout(&dot).contains("\"events_by_day\" -> \"daily_active_users\";"));

    let render = project.quern(&[
        "--env",
        "prod",
        "render",
        "events/daily_active_users",
        "--ds",
        "2024-03-05",
        "--var",
        "min_events=5",
    ]);
    assert!(render.status.success(), "{}", stderr(&render));
    let sql = stdout(&render);
    assert!(
        sql.contains("event_date = DATE '2024-03-05'") && sql.contains("events >= 5"),
        "{sql}"
    );
}

#[test]
fn exit_codes_distinguish_usage_from_pipeline_errors() {
    let project = TempProject::new();
    let usage = [
        vec!["status"],
        vec!["run", "--select", "tag:nope"],
        vec!["run", "--select", "events/nope+"],
        vec!["run", "events", "--ds", "2024-13-01"],
        vec!["--env", "staging", "plan", "events"],
        vec!["plan", "nope"],
        vec!["run", "events", "--select", "nope"],
        vec!["render", "events/nope"],
        vec!["dag", "events", "--format", "svg"],
    ];
    for args in usage {
        let out = project.quern(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(!stderr(&out).is_empty());
    }
    project.write(
        "sql/events/daily_active_users.sql",
        "SELECT no_such_column FROM {{ ref('events_by_day') }}",
    );
    let out = project.quern(&["run", "events", "--ds", "2024-03-01"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(project.warehouse_state().is_empty());
}
