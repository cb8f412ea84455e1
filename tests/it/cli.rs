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

#[test]
fn quern_log_shows_which_write_path_a_partition_task_took() {
    let project = TempProject::new();
    let run = |ds: &str| {
        let out = project
            .command(&["run", "events", "--ds", ds, "--select", "events_by_day"])
            .env("QUERN_LOG", "quern=debug")
            .output()
            .expect("quern runs");
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        stderr(&out)
    };
    let first = run("2024-03-01");
    assert!(
        first.contains("partition write into a new table"),
        "{first}"
    );
    let second = run("2024-03-02");
    assert!(second.contains("partition write in one pass"), "{second}");
    assert!(
        second.contains("events_by_day"),
        "the line names the table: {second}"
    );

    // A filter that does not parse is a usage error, before anything is written.
    let fresh = TempProject::new();
    let out = fresh
        .command(&["run", "events", "--ds", "2024-03-01"])
        .env("QUERN_LOG", "quern=loud")
        .output()
        .expect("quern runs");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("QUERN_LOG"), "{}", stderr(&out));
    assert!(fresh.warehouse_state().is_empty());
}

#[test]
fn quern_log_says_why_a_partition_write_is_not_one_pass() {
    // A table with the change data feed on (made by Python's deltalake) needs the
    // writer to act on it, so the write goes through delta-rs' replaceWhere; the log
    // line says why.
    const WRITE: &str = r#"
import os, sys, pyarrow as pa, deltalake
data = pa.table({"bucket": pa.array([0, 7], pa.int64()), "n": pa.array([0, 7], pa.int64())})
deltalake.write_deltalake(sys.argv[1], data, partition_by=["bucket"],
                          configuration={"delta.enableChangeDataFeed": "true"})
sys.stdout.flush()
os._exit(0)
"#;
    let project = TempProject::with_task(
        "[tasks.dim]\nmaterialized = \"partition\"\npartition_by = [\"bucket\"]",
        "SELECT value % 3 AS bucket, value AS n FROM generate_series(1, 30)",
    );
    project.python_writes_dim(WRITE);

    let out = project
        .command(&["run", "events", "--ds", "2024-03-01", "--select", "dim"])
        .env("QUERN_LOG", "quern=info")
        .output()
        .expect("quern runs");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let log = stderr(&out);
    assert!(log.contains("SELECT DISTINCT and replaceWhere"), "{log}");
    assert!(log.contains("change data feed"), "the reason: {log}");
    // Buckets 0 to 2 replaced, bucket 7 kept.
    let got = project
        .query_csv("SELECT bucket, count(*) AS n FROM events.dim GROUP BY bucket ORDER BY bucket");
    assert_eq!(got.trim(), "bucket,n\n0,10\n1,10\n2,10\n7,1");
}

/// Every line of `out`'s stdout, parsed as JSON.
fn json_lines(out: &std::process::Output) -> Vec<serde_json::Value> {
    stdout(out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn events(lines: &[serde_json::Value]) -> Vec<&str> {
    lines.iter().map(|v| v["event"].as_str().unwrap()).collect()
}

#[test]
fn json_output_is_one_parseable_event_per_line() {
    let project = TempProject::new();
    let out = project.quern(&["run", "events", "--ds", "2024-03-01", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = json_lines(&out);
    let names = events(&lines);
    assert_eq!(names.first(), Some(&"run_started"));
    assert_eq!(names.last(), Some(&"run_finished"));
    assert_eq!(names.iter().filter(|e| **e == "task_started").count(), 3);
    let dau = lines
        .iter()
        .find(|v| v["event"] == "task_finished" && v["task"] == "daily_active_users")
        .unwrap();
    assert_eq!(dau["status"], "succeeded");
    assert_eq!(dau["rows"], 4);
    assert_eq!(dau["pipeline"], "events");
    assert!(dau["seconds"].as_f64().unwrap() >= 0.0);
    assert_eq!(dau["expectations"].as_array().unwrap().len(), 2);
    let done = lines.last().unwrap();
    assert_eq!(done["status"], "succeeded");
    assert_eq!(done["tasks_ok"], 3);
    assert_eq!(done["metrics"][0]["metric"], "active_users");

    for (args, event) in [
        (vec!["plan", "events", "--ds", "2024-03-01"], "plan"),
        (
            vec![
                "plan",
                "--ds",
                "2024-03-01",
                "--select",
                "+scoring/churn_scores",
            ],
            "plan",
        ),
        (vec!["dag"], "dag"),
        (vec!["status", "events"], "status"),
        (vec!["test", "events"], "tests_finished"),
        (
            vec![
                "backfill",
                "events",
                "--from",
                "2024-03-01",
                "--to",
                "2024-03-02",
            ],
            "backfill_finished",
        ),
    ] {
        let out = project.quern(&[&args[..], &["--json"]].concat());
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        let lines = json_lines(&out);
        assert_eq!(events(&lines).last(), Some(&event), "{args:?}");
    }
    let out = project.quern(&["plan", "--json", "--select", "+scoring/churn_scores"]);
    let plan = &json_lines(&out)[0];
    assert!(plan["pipeline"].is_null());
    assert!(plan["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["pipeline"] == "scoring"));
    let out = project.quern(&[
        "backfill",
        "events",
        "--from",
        "2024-03-01",
        "--to",
        "2024-03-02",
        "--json",
    ]);
    let lines = json_lines(&out);
    assert_eq!(
        lines.last().unwrap()["skipped"],
        serde_json::json!(["2024-03-01", "2024-03-02"])
    );

    // Errors are events too, with the file and line, and the usual exit codes.
    let out = project.quern(&["plan", "nope", "--json"]);
    assert_eq!(out.status.code(), Some(2));
    let error = &json_lines(&out)[0];
    assert_eq!(
        (error["event"].as_str(), error["exit_code"].as_i64()),
        (Some("error"), Some(2))
    );
    project.write(
        "sql/events/daily_active_users.sql",
        "SELECT event_date,\n  no_such_column\nFROM {{ ref('events_by_day') }}",
    );
    let out = project.quern(&["run", "events", "--ds", "2024-03-01", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let error = json_lines(&out).pop().unwrap();
    assert_eq!(error["file"], "sql/events/daily_active_users.sql");
    assert_eq!(error["line"], 2);
    assert!(
        error["causes"][0]
            .as_str()
            .unwrap()
            .contains("no_such_column"),
        "{error}"
    );
}

/// Nested values, NULLs inside them and maps with keys that are not strings: what
/// Spark- and Delta-written tables hold.
const NESTED: &str = "SELECT MAP {'a': 1, 'b': NULL} AS m, MAP {1: 'x', 2: NULL} AS im, \
    named_struct('a', 1, 'b', CAST(NULL AS INT)) AS s, \
    [named_struct('k', MAP {DATE '2024-03-01': 1.5})] AS l, CAST(NULL AS INT) AS n, \
    [1, NULL, 3] AS arr, '' AS e";

#[test]
fn query_explains_a_query_and_analyzes_it() {
    let project = TempProject::new();
    let sql = "SELECT country_code, count(*) AS n FROM raw.countries GROUP BY country_code";
    let out = project.quern(&["query", "--format", "csv", &format!("EXPLAIN {sql}")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let plan = stdout(&out);
    assert!(plan.starts_with("plan_type,plan\n"), "{plan}");
    assert!(plan.contains("AggregateExec"), "{plan}");
    // ANALYZE runs it: each operator with its rows and time.
    let out = project.quern(&[
        "query",
        "--format",
        "csv",
        &format!("explain analyze {sql}"),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let analyzed = stdout(&out);
    assert!(analyzed.contains("output_rows="), "{analyzed}");
    assert!(analyzed.contains("elapsed_compute="), "{analyzed}");
    // Only a query is explained.
    let out = project.quern(&["query", "EXPLAIN DROP TABLE raw.countries"]);
    assert!(!out.status.success());
    // A Delta table reads as DataFusion's Parquet scan of its files, with the session's
    // Parquet settings: filters are not pushed into the decoder (DataFusion's default
    // `pushdown_filters = false`) but evaluated above the scan.
    let run = project.quern(&["run", "events", "--ds", "2024-03-01"]);
    assert!(run.status.success(), "{}", stderr(&run));
    let sql = "EXPLAIN SELECT count(*) FROM events.events_by_day WHERE event_id > 1";
    let out = project.quern(&["query", "--format", "csv", sql]);
    assert!(out.status.success(), "{}", stderr(&out));
    let plan = stdout(&out);
    assert!(plan.contains("DataSourceExec"), "{plan}");
    assert!(!plan.contains("DeltaScanExec"), "{plan}");
    assert!(plan.contains("FilterExec"), "{plan}");
}

#[test]
fn query_prints_every_value_in_every_format() {
    let project = TempProject::new();
    let query = |format: &str| {
        let out = project.quern(&["query", NESTED, "--format", format]);
        assert!(out.status.success(), "{format}: {}", stderr(&out));
        stdout(&out)
    };
    assert_eq!(
        query("json"),
        "[{\"m\":{\"a\":1,\"b\":null},\"im\":{\"1\":\"x\",\"2\":null},\"s\":{\"a\":1,\"b\":null},\
         \"l\":[{\"k\":{\"2024-03-01\":1.5}}],\"n\":null,\"arr\":[1,null,3],\"e\":\"\"}]\n"
    );
    assert_eq!(
        query("csv"),
        "m,im,s,l,n,arr,e\n\
         \"{\"\"a\"\":1,\"\"b\"\":null}\",\"{\"\"1\"\":\"\"x\"\",\"\"2\"\":null}\",\"{\"\"a\"\":1,\"\"b\"\":null}\",\
         \"[{\"\"k\"\":{\"\"2024-03-01\"\":1.5}}]\",,\"[1,null,3]\",\n"
    );
    let table = query("table");
    assert!(
        table.contains("| {a: 1, b: NULL} | {1: x, 2: NULL} |"),
        "{table}"
    );
    assert!(table.contains("| NULL | [1, NULL, 3] |"), "{table}");
}

#[test]
fn a_delta_table_written_by_python_with_an_integer_keyed_map_prints_as_json_and_csv() {
    let project = TempProject::new();
    let table = project.path().join("sql/events/seeds/attributes");
    const WRITE: &str = r#"
import sys, pyarrow as pa
from deltalake import write_deltalake
t = pa.table({
    "id": pa.array([1, 2], pa.int64()),
    "attrs": pa.array([[(7, "seven"), (8, None)], None], pa.map_(pa.int32(), pa.string())),
})
write_deltalake(sys.argv[1], t)
"#;
    let out = std::process::Command::new(crate::common::python())
        .args(["-c", WRITE])
        .arg(&table)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let env = project.read("environments/local.toml").replace(
        "[sources.raw]\n",
        "[sources.raw]\nattributes = { uri = \"sql/events/seeds/attributes\", format = \"delta\" }\n",
    );
    project.write("environments/local.toml", &env);
    let sql = "SELECT id, attrs FROM raw.attributes ORDER BY id";
    let json = stdout(&project.quern(&["query", sql, "--format", "json"]));
    assert_eq!(
        json,
        "[{\"id\":1,\"attrs\":{\"7\":\"seven\",\"8\":null}},{\"id\":2,\"attrs\":null}]\n"
    );
    let csv = stdout(&project.quern(&["query", sql, "--format", "csv"]));
    assert_eq!(
        csv,
        "id,attrs\n1,\"{\"\"7\"\":\"\"seven\"\",\"\"8\"\":null}\"\n2,\n"
    );
}

#[test]
fn a_reader_that_stops_early_ends_quern_quietly() {
    use std::io::BufRead;
    use std::os::unix::process::ExitStatusExt;
    let project = TempProject::new();
    let mut child = project
        .command(&[
            "query",
            "SELECT * FROM generate_series(1, 2000000)",
            "--format",
            "csv",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert_eq!(first, "value\n");
    // The reader is gone (like `| head -1`).
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.signal(), Some(libc::SIGPIPE), "{:?}", out.status);
    assert_eq!(stderr(&out), "");
}
