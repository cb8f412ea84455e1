//! Bad input: each case names the file (and line where there is one), exits non-zero,
//! and leaves every table as it was.

use rstest::rstest;

use crate::common::{stderr, TempProject};

const DAU: &str = "sql/events/daily_active_users.sql";

/// A project where the events pipeline has run once for 2024-03-01.
fn project_with_tables() -> TempProject {
    let project = TempProject::new();
    let out = project.quern(&["run", "events", "--ds", "2024-03-01"]);
    assert!(out.status.success(), "{}", stderr(&out));
    project
}

#[rstest]
#[case::template_syntax(DAU, "SELECT 1 AS x\n{% if %}", &[], 1, "sql/events/daily_active_users.sql:2: syntax error")]
#[case::undefined_variable(DAU, "SELECT 1 AS x\nFROM {{ no_such_thing }}", &[], 1, "sql/events/daily_active_users.sql:2: undefined value in `no_such_thing`")]
#[case::unknown_ref(DAU, "SELECT *\nFROM {{ ref('event_by_day') }}", &[], 1, "sql/events/daily_active_users.sql:2: invalid operation: ref() names unknown task `event_by_day`")]
#[case::unknown_source(DAU, "SELECT *\nFROM {{ source('raw', 'clicks') }}", &[], 1, "source('raw', 'clicks') is not declared in environments/local.toml")]
#[case::unquoted_var(DAU, "SELECT * FROM {{ ref('events_by_day') }}\nWHERE country = {{ var('campaign') }}", &[], 1, "sql/events/daily_active_users.sql:2: invalid operation: the var value \"spring_sale\" would be pasted into SQL unquoted")]
#[case::table_without_ref(DAU, "SELECT * FROM events.events_by_day", &[], 1, "task `daily_active_users` reads table `events.events_by_day`, which is neither a ref() nor a declared source; write {{ ref('events_by_day') }}")]
#[case::undeclared_table(DAU, "SELECT * FROM staging.users", &[], 1, "reads table `staging.users`, which is neither a ref() nor a declared source")]
#[case::cycle("sql/events/clean_events.sql", "SELECT * FROM {{ ref('daily_active_users') }}", &[], 1, "pipeline `events` has a dependency cycle: ")]
#[case::sql_syntax(DAU, "SELECT event_date,\n  country\nFROM {{ ref('events_by_day') }}\nWHERE )", &[], 1, "sql/events/daily_active_users.sql:4: task `daily_active_users`: sql parser error")]
#[case::unknown_column(DAU, "SELECT no_such_column FROM {{ ref('events_by_day') }}", &[], 1, "No field named no_such_column")]
#[case::type_error(DAU, "SELECT event_date + event_ts AS nonsense FROM {{ ref('events_by_day') }}", &[], 1, "sql/events/daily_active_users.sql: task `daily_active_users` failed to plan")]
#[case::two_statements(DAU, "SELECT 1 AS a; DROP TABLE x", &[], 1, "a task is exactly one SELECT")]
#[case::missing_env_var("environments/local.toml", "[warehouse]\nroot = \"${QUERN_TEST_UNSET_ROOT}/warehouse\"\n[sources.raw]\nevents = { uri = \"sql/events/seeds/raw_events.csv\", format = \"csv\" }\ncountries = { uri = \"sql/events/seeds/countries.csv\", format = \"csv\" }\n[vars]\nexcluded_event_types = [\"debug\"]\nmin_events = 1\n", &[], 1, "environments/local.toml: key `warehouse.root`: environment variable `QUERN_TEST_UNSET_ROOT` is not set")]
#[case::malformed_env_toml("environments/local.toml", "[warehouse]\nroot = \"warehouse\"\n[sources.raw]\nevents = { uri = \"x.csv\", format = \"csv\" \n", &[], 1, "environments/local.toml:4")]
#[case::unknown_env_key("environments/local.toml", "[warehouse]\nroot = \"warehouse\"\nroots = []\n", &[], 1, "environments/local.toml:3: unknown field `roots`")]
#[case::malformed_pipeline_toml("sql/events/pipeline.toml", "[tasks.events_by_day]\nmaterialized = \"partitioned\"\n", &[], 1, "pipeline.toml:2: unknown variant `partitioned`")]
#[case::partition_column_missing("sql/events/pipeline.toml", "[tasks.events_by_day]\nmaterialized = \"partition\"\npartition_by = [\"day\"]\n", &[], 1, "partition column `day` (partition_by in pipeline.toml) is not in the output")]
#[case::partition_by_every_column(DAU, "SELECT DISTINCT event_date FROM {{ ref('events_by_day') }}", &[], 1, "every column of the output is a partition column")]
#[case::retries_not_a_number("sql/events/pipeline.toml", "[tasks.events_by_day]\nmaterialized = \"partition\"\npartition_by = [\"event_date\"]\nretries = \"three\"\n", &[], 1, "sql/events/pipeline.toml:4")]
#[case::bad_retry_delay("sql/events/pipeline.toml", "retry_delay = \"soon\"\n", &[], 1, "`soon` is not a duration")]
#[case::bad_tag("sql/events/pipeline.toml", "tags = [\"Daily\"]\n", &[], 1, "sql/events/pipeline.toml: key `tags`: tag `Daily` must be lower-case")]
#[case::unknown_environment("", "", &["--env", "staging"], 2, "unknown environment `staging`")]
#[case::bad_ds("", "", &["--ds", "2024-02-30"], 2, "invalid --ds `2024-02-30`: expected a date written YYYY-MM-DD")]
#[case::bad_var("", "", &["--var", "novalue"], 2, "invalid --var `novalue`: expected name=value")]
fn bad_input_is_reported_and_nothing_is_written(
    #[case] file: &str,
    #[case] text: &str,
    #[case] extra: &[&str],
    #[case] code: i32,
    #[case] needle: &str,
) {
    let project = project_with_tables();
    let before = project.warehouse_state();
    if !file.is_empty() {
        project.write(file, text);
    }
    let mut args = vec!["run", "events"];
    if !extra.contains(&"--ds") {
        args.extend(["--ds", "2024-03-02"]);
    }
    if extra.first() == Some(&"--env") {
        args.splice(0..0, extra.iter().copied());
    } else {
        args.extend(extra.iter().copied());
    }
    let out = project.quern(&args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(code), "{err}");
    assert!(err.contains(needle), "expected {needle:?} in:\n{err}");
    assert_eq!(project.warehouse_state(), before, "a table changed:\n{err}");
}

#[test]
fn a_task_failing_at_run_time_leaves_its_table_and_skips_downstream() {
    let project = project_with_tables();
    // Plans fine (the cast is valid for the planner) but fails on the first row.
    project.write(
        "sql/events/events_by_day.sql",
        &project
            .read("sql/events/events_by_day.sql")
            .replace("e.event_id,", "CAST(e.user_id AS BIGINT) AS event_id,"),
    );
    let before = project.warehouse_state();
    let out = project.quern(&["run", "events", "--ds", "2024-03-02"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = crate::common::stdout(&out);
    assert!(text.contains("FAILED  events_by_day"), "{text}");
    assert!(text.contains("skipped daily_active_users"), "{text}");
    assert!(text.contains("1 ok, 1 failed, 1 skipped"), "{text}");
    assert_eq!(project.warehouse_state(), before);
}

#[test]
fn error_messages_read_well() {
    let project = TempProject::new();
    project.write(
        DAU,
        "SELECT event_date,\n  no_such_column\nFROM {{ ref('events_by_day') }}",
    );
    let out = project.quern(&["plan", "events", "--ds", "2024-03-01"]);
    let err = stderr(&out).replace(&project.path().display().to_string(), "[project]");
    insta::assert_snapshot!(err);
}

#[test]
fn an_environment_cannot_write_under_another_environments_root() {
    let project = TempProject::new();
    // alpha's root copied by mistake into the prod bucket, under prod's root.
    let alpha = project.read("environments/alpha.toml").replace(
        "root = \"s3://acme-alpha/warehouse\"",
        "root = \"s3://acme-prod/warehouse/alpha\"",
    );
    project.write("environments/alpha.toml", &alpha);
    let out = project.quern(&["--env", "alpha", "run", "events", "--ds", "2024-03-01"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("task `events_by_day` would write s3://acme-prod/warehouse/alpha/events/events_by_day/, outside the roots environment `alpha` may write"),
        "{err}"
    );
    assert!(
        err.contains("never under environment `prod`'s root s3://acme-prod/warehouse/"),
        "{err}"
    );

    // A write root outside the warehouse is refused too, whatever the selection.
    let local = project
        .read("environments/local.toml")
        .replace("root = \"warehouse\"", "root = \"../elsewhere\"");
    project.write("environments/local.toml", &local);
    let prod = project
        .read("environments/prod.toml")
        .replace("s3://acme-prod/warehouse", "../elsewhere");
    project.write("environments/prod.toml", &prod);
    let out = project.quern(&[
        "run",
        "events",
        "--ds",
        "2024-03-01",
        "--select",
        "daily_active_users",
    ]);
    assert!(
        stderr(&out).contains("task `daily_active_users` would write"),
        "{}",
        stderr(&out)
    );
    assert!(!project.path().join("../elsewhere").exists());
}
