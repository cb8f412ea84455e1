//! Expectations on a task's output, evaluated while it is written: warn, drop, fail.

use quern::{RunDate, RunOptions, Severity, TaskStatus};

use crate::common::{stderr, stdout, TempProject};

const DATA: &str = "SELECT * FROM (VALUES (1, 'a', 'click', 10), (2, NULL, 'click', 5), (3, 'c', 'weird', -1), (3, 'd', 'click', 7)) AS t(id, user_id, kind, amount)";

fn project(expectations: &str) -> TempProject {
    let project = TempProject::new();
    project.write(
        "sql/events/pipeline.toml",
        &format!(
            "{}\n[tasks.checked]\nmaterialized = \"table\"\n{expectations}\n",
            project.read("sql/events/pipeline.toml")
        ),
    );
    project.write("sql/events/checked.sql", DATA);
    project
}

fn options() -> RunOptions {
    RunOptions::new("2024-03-01".parse::<RunDate>().unwrap())
        .with_select("checked".parse().unwrap())
}

const ALL_KINDS: &str = r#"
[[tasks.checked.expect]]
not_null = ["user_id"]
severity = "drop"

[[tasks.checked.expect]]
accepted_values = { column = "kind", values = ["click", "view"] }

[[tasks.checked.expect]]
name = "non-negative amount"
sql = "amount >= 0"
severity = "warn"

[[tasks.checked.expect]]
unique = ["id"]

[[tasks.checked.expect]]
row_count = { min = 1, max = 10 }
severity = "fail"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warn_and_drop_are_counted_in_the_same_pass_as_the_write() {
    let project = project(ALL_KINDS);
    let engine = project.engine("local");
    let report = engine.run("events", &options()).await.unwrap();
    assert!(report.succeeded(), "{:?}", report.first_error());
    let task = report.task("checked").unwrap();
    let rows = match &task.status {
        TaskStatus::Succeeded(Some(w)) => w.rows,
        other => panic!("{other:?}"),
    };
    assert_eq!(rows, 3, "the row without a user is dropped");
    let got: Vec<(&str, Severity, u64)> = task
        .expectations
        .iter()
        .map(|e| (e.name.as_str(), e.severity, e.violations))
        .collect();
    assert_eq!(
        got,
        [
            ("not_null(user_id)", Severity::Drop, 1),
            ("accepted_values(kind)", Severity::Warn, 1),
            ("non-negative amount", Severity::Warn, 1),
            ("unique(id)", Severity::Warn, 1),
            ("row_count", Severity::Fail, 0),
        ]
    );
    let ids = engine
        .query("SELECT count(*) AS n, sum(id) AS s FROM events.checked")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let text = quern::datafusion::arrow::util::pretty::pretty_format_batches(&ids)
        .unwrap()
        .to_string();
    assert!(text.contains("| 3 | 7 |"), "{text}");

    let out = project.quern(&["run", "events", "--ds", "2024-03-01", "--select", "checked"]);
    let text = stdout(&out);
    assert!(
        text.contains("expect not_null(user_id) (drop): 1 row(s) dropped"),
        "{text}"
    );
    assert!(
        text.contains("expect unique(id) (warn): 1 row(s) violate it (written)"),
        "{text}"
    );
    assert!(text.contains("expect row_count (fail): met"), "{text}");
}

#[test]
fn a_failing_expectation_writes_nothing_and_shows_the_rows() {
    let project = project("[[tasks.checked.expect]]\nname = \"non-negative amount\"\nsql = \"amount >= 0\"\nseverity = \"fail\"\n");
    let out = project.quern(&["run", "events", "--ds", "2024-03-01", "--select", "checked"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains(
            "expectation `non-negative amount` (fail) of task `checked` is violated by 1 row(s)"
        ),
        "{text}"
    );
    assert!(text.contains("| 3  | c       | weird | -1     |"), "{text}");
    assert!(
        project.warehouse_state().is_empty(),
        "nothing may be written"
    );

    let project = project_with_count_limit();
    let out = project.quern(&["run", "events", "--ds", "2024-03-01", "--select", "checked"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out)
            .contains("expectation `row_count` (fail) of task `checked`: 4 rows, outside ..2"),
        "{}",
        stdout(&out)
    );
    assert!(project.warehouse_state().is_empty());
}

fn project_with_count_limit() -> TempProject {
    project("[[tasks.checked.expect]]\nrow_count = { max = 2 }\nseverity = \"fail\"\n")
}

#[test]
fn bad_expectations_are_reported_before_anything_runs() {
    let cases = [
        (
            "[[tasks.checked.expect]]\nnot_null = [\"nope\"]\n",
            "expectation `not_null(nope)`: the output has no column `nope`",
        ),
        (
            "[[tasks.checked.expect]]\nsql = \"amount + 1\"\n",
            "expectation `sql(amount + 1)` is Int64, not a condition",
        ),
        (
            "[[tasks.checked.expect]]\nnot_null = [\"id\"]\nunique = [\"id\"]\n",
            "sql/events/pipeline.toml: key `tasks.checked.expect[0]`: give exactly one of",
        ),
        (
            "[[tasks.checked.expect]]\nrow_count = { min = 1 }\nseverity = \"drop\"\n",
            "cannot drop rows",
        ),
    ];
    for (toml, needle) in cases {
        let project = project(toml);
        let out = project.quern(&["run", "events", "--ds", "2024-03-01", "--select", "checked"]);
        assert_eq!(out.status.code(), Some(1), "{toml}");
        assert!(
            stderr(&out).contains(needle),
            "{needle:?} not in {}",
            stderr(&out)
        );
        assert!(project.warehouse_state().is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_partition_run_is_still_judged() {
    // The example's daily_active_users warns when a day has no activity, also when
    // the table exists and the run writes nothing.
    let project = TempProject::new();
    let engine = project.engine("local");
    for _ in 0..2 {
        let options = RunOptions::new("2024-03-09".parse::<RunDate>().unwrap());
        let report = engine.run("events", &options).await.unwrap();
        assert!(report.succeeded(), "{:?}", report.first_error());
        let e = &report.task("daily_active_users").unwrap().expectations;
        let activity = e.iter().find(|e| e.name == "some activity").unwrap();
        assert_eq!((activity.violations, activity.is_row_count), (1, true));
    }
}
