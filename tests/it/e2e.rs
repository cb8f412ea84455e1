//! The example pipelines end to end on a temporary copy of the project: two dates,
//! then the first date again, with exact contents checked against values computed
//! independently from the seeds, idempotent partition reruns, and outputs that open as
//! Delta tables in delta-rs and in Python's `deltalake`.

use std::collections::{BTreeMap, BTreeSet};

use quern::datafusion::arrow::util::display::array_value_to_string;
use quern::{Engine, RunDate, RunOptions, TaskStatus};

use crate::common::{python, TempProject};

async fn rows(engine: &Engine, sql: &str) -> Vec<Vec<String>> {
    let batches = engine.query(sql).await.unwrap().collect().await.unwrap();
    let mut out = Vec::new();
    for b in &batches {
        for r in 0..b.num_rows() {
            out.push(
                b.columns()
                    .iter()
                    .map(|c| array_value_to_string(c, r).unwrap())
                    .collect(),
            );
        }
    }
    out
}

async fn run(engine: &Engine, pipeline: &str, ds: &str) -> quern::RunReport {
    let options = RunOptions::new(ds.parse::<RunDate>().unwrap());
    let report = engine.run(pipeline, &options).await.unwrap();
    assert!(report.succeeded(), "{:?}", report.first_error());
    report
}

fn version(report: &quern::RunReport, task: &str) -> u64 {
    match &report.task(task).unwrap().status {
        TaskStatus::Succeeded(Some(w)) => w.version,
        other => panic!("{task}: {other:?}"),
    }
}

/// The seed events as (date, user, type, country code).
fn seed_events() -> Vec<(String, String, String, String)> {
    let text =
        std::fs::read_to_string(crate::common::repo_root().join("sql/events/seeds/raw_events.csv"))
            .unwrap();
    text.lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (
                f[3][..10].to_string(),
                f[1].to_string(),
                f[2].to_string(),
                f[4].to_string(),
            )
        })
        .collect()
}

fn country_names() -> BTreeMap<String, String> {
    let text =
        std::fs::read_to_string(crate::common::repo_root().join("sql/events/seeds/countries.csv"))
            .unwrap();
    text.lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].to_string(), f[1].to_string())
        })
        .collect()
}

/// Expected events_by_day rows and daily active users per country for `day`, computed
/// from the seeds in plain Rust (min_events = 1 in the local environment).
fn expected_events(day: &str) -> (usize, BTreeMap<String, usize>) {
    let names = country_names();
    let kept: Vec<_> = seed_events()
        .into_iter()
        .filter(|(d, user, kind, _)| {
            d == day && !user.is_empty() && kind != "debug" && kind != "heartbeat"
        })
        .collect();
    let mut users: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (_, user, _, cc) in &kept {
        users
            .entry(names[cc].clone())
            .or_default()
            .insert(user.clone());
    }
    (
        kept.len(),
        users.into_iter().map(|(c, u)| (c, u.len())).collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_pipeline_over_two_days_and_a_rerun() {
    let project = TempProject::new();
    let engine = project.engine("local");

    let first = run(&engine, "events", "2024-03-01").await;
    assert_eq!(version(&first, "events_by_day"), 0);
    let day1 = rows(
        &engine,
        "SELECT * FROM events.events_by_day ORDER BY event_id",
    )
    .await;
    let dau1 = rows(
        &engine,
        "SELECT * FROM events.daily_active_users ORDER BY country",
    )
    .await;

    run(&engine, "events", "2024-03-02").await;
    let rerun = run(&engine, "events", "2024-03-01").await;
    assert_eq!(version(&rerun, "events_by_day"), 2);

    for day in ["2024-03-01", "2024-03-02"] {
        let (events, dau) = expected_events(day);
        let got = rows(
            &engine,
            &format!("SELECT count(*) FROM events.events_by_day WHERE event_date = DATE '{day}'"),
        )
        .await;
        assert_eq!(got, [[events.to_string()]], "{day}");
        let got: BTreeMap<String, usize> = rows(
            &engine,
            &format!("SELECT country, active_users FROM events.daily_active_users WHERE event_date = DATE '{day}'"),
        )
        .await
        .into_iter()
        .map(|r| (r[0].clone(), r[1].parse().unwrap()))
        .collect();
        assert_eq!(got, dau, "{day}");
    }
    // The rerun replaced day 1 with exactly the same rows and left day 2 alone.
    let again = rows(
        &engine,
        "SELECT * FROM events.events_by_day WHERE event_date = DATE '2024-03-01' ORDER BY event_id",
    )
    .await;
    assert_eq!(again, day1);
    let dau_again = rows(&engine, "SELECT * FROM events.daily_active_users WHERE event_date = DATE '2024-03-01' ORDER BY country").await;
    assert_eq!(dau_again, dau1);
    let total = rows(&engine, "SELECT count(*) FROM events.events_by_day").await;
    let expected_total = expected_events("2024-03-01").0 + expected_events("2024-03-02").0;
    assert_eq!(total, [[expected_total.to_string()]]);

    // The table is a Delta table partitioned by day, readable by Python's deltalake.
    let table = project.path().join("warehouse/events/events_by_day");
    assert!(table.join("event_date=2024-03-01").is_dir());
    assert!(table.join("event_date=2024-03-02").is_dir());
    let script = format!(
        "import os, sys, deltalake\nt = deltalake.DeltaTable({:?})\nprint(t.version(), t.to_pyarrow_table().num_rows, t.metadata().partition_columns)\nsys.stdout.flush()\nos._exit(0)",
        table.display().to_string()
    );
    // The deltalake wheel can abort in its thread pools' teardown at interpreter exit
    // ("terminate called without an active exception") after a correct read, more
    // often with RUST_BACKTRACE set: the script leaves with os._exit after printing.
    let out = std::process::Command::new(python())
        .args(["-c", &script])
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "Python deltalake could not read the table (scripts/test installs it; set QUERN_PYTHON to an interpreter that has it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("2 {expected_total} ['event_date']")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reporting_odds_ratio_matches_the_hand_computed_2x2_table() {
    let project = TempProject::new();
    let engine = project.engine("local");
    run(&engine, "reporting", "2024-03-01").await;
    run(&engine, "reporting", "2024-03-02").await;
    run(&engine, "reporting", "2024-03-01").await;

    let got = rows(&engine, "SELECT ds, exposed_converted, exposed_not_converted, unexposed_converted, unexposed_not_converted, odds_ratio, ci_low, ci_high FROM reporting.odds_ratio ORDER BY ds").await;
    assert_eq!(got.len(), 2);
    for (row, (ds, [a, b, c, d])) in got.iter().zip([
        ("2024-03-01", [6.0, 14.0, 3.0, 27.0]),
        ("2024-03-02", [5.0, 5.0, 5.0, 15.0]),
    ]) {
        assert_eq!(row[0], ds);
        let cells: Vec<f64> = row[1..5].iter().map(|v| v.parse().unwrap()).collect();
        assert_eq!(cells, [a, b, c, d]);
        let or: f64 = (a * d) / (b * c);
        let se = (1.0 / a + 1.0 / b + 1.0 / c + 1.0 / d).sqrt();
        let [o, lo, hi]: [f64; 3] = [5, 6, 7].map(|i| row[i].parse().unwrap());
        assert!((o - or).abs() < 1e-12, "{o} vs {or}");
        assert!((lo - (or.ln() - 1.959963984540054 * se).exp()).abs() < 1e-9);
        assert!((hi - (or.ln() + 1.959963984540054 * se).exp()).abs() < 1e-9);
    }
    let daily = rows(&engine, "SELECT ds, campaign, users, conversions, exposed_users FROM reporting.campaign_daily ORDER BY ds, campaign").await;
    assert_eq!(
        daily,
        [
            ["2024-03-01", "newsletter", "20", "6", "10"],
            ["2024-03-01", "spring_sale", "50", "9", "20"],
            ["2024-03-02", "newsletter", "20", "3", "10"],
            ["2024-03-02", "spring_sale", "30", "10", "10"],
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_var_changes_the_result() {
    let project = TempProject::new();
    let engine = project.engine("local");
    let options = RunOptions::new("2024-03-01".parse::<RunDate>().unwrap())
        .with_var("campaign", "newsletter");
    let report = engine.run("reporting", &options).await.unwrap();
    assert!(report.succeeded());
    let got = rows(&engine, "SELECT campaign, exposed_converted, exposed_not_converted, unexposed_converted, unexposed_not_converted FROM reporting.odds_ratio").await;
    assert_eq!(got, [["newsletter", "2", "8", "4", "6"]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_and_append_materializations() {
    let project = TempProject::new();
    project.write(
        "sql/events/pipeline.toml",
        &format!(
            "{}\n[tasks.event_counts]\nmaterialized = \"append\"\n[tasks.type_counts]\nmaterialized = \"table\"\n",
            project.read("sql/events/pipeline.toml")
        ),
    );
    project.write(
        "sql/events/event_counts.sql",
        "SELECT DATE '{{ ds }}' AS ds, count(*) AS events FROM {{ ref('events_by_day') }} WHERE event_date = DATE '{{ ds }}'",
    );
    project.write(
        "sql/events/type_counts.sql",
        "SELECT event_type, count(*) AS events FROM {{ ref('events_by_day') }} GROUP BY event_type",
    );
    let engine = project.engine("local");
    run(&engine, "events", "2024-03-01").await;
    run(&engine, "events", "2024-03-02").await;
    // append keeps both days; table is the whole upstream table each time.
    let counts = rows(&engine, "SELECT count(*) FROM events.event_counts").await;
    assert_eq!(counts, [["2"]]);
    let total = rows(&engine, "SELECT sum(events) FROM events.type_counts").await;
    let all = rows(&engine, "SELECT count(*) FROM events.events_by_day").await;
    assert_eq!(total, all);

    // --select: only the selected task is written.
    let before = project.warehouse_state();
    let options = RunOptions::new("2024-03-03".parse::<RunDate>().unwrap())
        .with_select("event_counts".parse().unwrap());
    let report = engine.run("events", &options).await.unwrap();
    assert!(report.succeeded());
    assert_eq!(report.tasks.len(), 1);
    let changed: Vec<_> = project
        .warehouse_state()
        .into_iter()
        .filter(|f| !before.contains(f))
        .collect();
    assert!(
        changed
            .iter()
            .all(|f| f.starts_with("events/event_counts/")),
        "{changed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_overwrite_replaces_exactly_the_partitions_in_the_output() {
    let project = TempProject::new();
    project.write(
        "sql/events/pipeline.toml",
        &format!(
            "{}\n[tasks.daily]\nmaterialized = \"partition\"\npartition_by = [\"day\", \"kind\"]\n",
            project.read("sql/events/pipeline.toml")
        ),
    );
    // The output covers the run day and the day before, for two kinds; the value
    // says which run wrote the row.
    project.write(
        "sql/events/daily.sql",
        "SELECT * FROM (VALUES\n  (DATE '{{ prev_ds }}', 'a', '{{ ds }}'), (DATE '{{ ds }}', 'a', '{{ ds }}'), (DATE '{{ ds }}', 'b', '{{ ds }}')\n) AS t(day, kind, written_by)",
    );
    let engine = project.engine("local");
    let select = |ds: &str| {
        RunOptions::new(ds.parse::<RunDate>().unwrap()).with_select("daily".parse().unwrap())
    };
    for ds in ["2024-03-02", "2024-03-03"] {
        let report = engine.run("events", &select(ds)).await.unwrap();
        assert!(report.succeeded(), "{:?}", report.first_error());
    }
    let got = rows(
        &engine,
        "SELECT day, kind, written_by FROM events.daily ORDER BY day, kind",
    )
    .await;
    assert_eq!(
        got,
        [
            ["2024-03-01", "a", "2024-03-02"],
            ["2024-03-02", "a", "2024-03-03"],
            ["2024-03-02", "b", "2024-03-02"],
            ["2024-03-03", "a", "2024-03-03"],
            ["2024-03-03", "b", "2024-03-03"],
        ]
    );
}

/// Every file under `dir`, relative to it, sorted.
fn files_under(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_rerun_replaces_the_partitions_it_wrote_even_from_volatile_values() {
    // Half of the rows fall in buckets 0 to 4 on every run, the other half in buckets
    // drawn at random: a rerun replaces exactly the buckets its rows fell in, which
    // only a write that reads its input once can know. (A timestamp without time zone
    // gives the table the `timestampNtz` writer feature.) The third day
    // fails part-way (a division by zero) and must leave the table and its folder
    // as they were.
    let project = TempProject::with_task(
        "[tasks.dim]\nmaterialized = \"partition\"\npartition_by = [\"bucket\"]",
        "SELECT CASE WHEN n % 2 = 0 THEN n % 5 ELSE 5 + CAST(floor(random() * 1e9) AS BIGINT) END AS bucket,\n\
         n, '{{ ds }}' AS written_by, CAST('{{ ds }} 10:00:00' AS TIMESTAMP) AS seen_at\n\
         FROM (SELECT value{% if ds == '2024-03-03' %} / (value - 150){% endif %} AS n FROM generate_series(1, 200))",
    );
    let engine = project.engine("local");
    for ds in ["2024-03-01", "2024-03-02"] {
        let report = engine.run("events", &select(ds, "dim")).await.unwrap();
        assert!(report.succeeded(), "{ds}: {:?}", report.first_error());
    }
    let got = rows(
        &engine,
        "SELECT written_by, count(*), count(DISTINCT bucket) FROM events.dim GROUP BY written_by ORDER BY written_by",
    )
    .await;
    let second = got
        .iter()
        .find(|r| r[0] == "2024-03-02")
        .expect("day 2's rows");
    assert_eq!(second[1], "200", "{got:?}");
    let mixed = rows(
        &engine,
        "SELECT bucket FROM events.dim GROUP BY bucket HAVING count(DISTINCT written_by) > 1",
    )
    .await;
    assert!(mixed.is_empty(), "buckets holding both days: {mixed:?}");
    let fixed = rows(
        &engine,
        "SELECT DISTINCT written_by FROM events.dim WHERE bucket < 5",
    )
    .await;
    assert_eq!(fixed, [["2024-03-02"]]);
    let first = got
        .iter()
        .find(|r| r[0] == "2024-03-01")
        .expect("day 1's rows");
    assert_eq!(
        first[1], "100",
        "day 1's rows in random buckets stay: {got:?}"
    );

    let table = project.path().join("warehouse/events/dim");
    let before = files_under(&table);
    let report = engine
        .run("events", &select("2024-03-03", "dim"))
        .await
        .unwrap();
    assert!(!report.succeeded());
    let error = format!("{:?}", report.first_error());
    assert!(error.contains("DivideByZero"), "{error}");
    assert_eq!(files_under(&table), before, "the failed write left files");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_rerun_writes_each_partition_from_one_writer() {
    // The rows come from two input partitions (a UNION ALL), each holding every
    // bucket. Over the existing table the write streams into one file writer per
    // session partition; unless the rows are hash-partitioned by the bucket on the
    // way there, each writer gets rows of every bucket and a bucket ends in two files.
    let project = TempProject::with_task(
        "[tasks.dim]\nmaterialized = \"partition\"\npartition_by = [\"bucket\"]",
        "SELECT value % 3 AS bucket, value AS n, '{{ ds }}' AS written_by FROM generate_series(1, 300)\n\
         UNION ALL\n\
         SELECT value % 3 AS bucket, value AS n, '{{ ds }}' AS written_by FROM generate_series(301, 600)",
    );
    let engine = project.engine("local");
    for ds in ["2024-03-01", "2024-03-02"] {
        let report = engine.run("events", &select(ds, "dim")).await.unwrap();
        assert!(report.succeeded(), "{ds}: {:?}", report.first_error());
    }
    let table = project.path().join("warehouse/events/dim");
    let url = url::Url::from_directory_path(&table).unwrap();
    let table = deltalake::open_table(url).await.unwrap();
    let mut per_bucket = BTreeMap::<String, usize>::new();
    for uri in table.get_file_uris().unwrap() {
        let bucket = uri.split('/').find(|p| p.starts_with("bucket=")).unwrap();
        *per_bucket.entry(bucket.to_owned()).or_default() += 1;
    }
    let expected: BTreeMap<String, usize> = (0..3).map(|b| (format!("bucket={b}"), 1)).collect();
    assert_eq!(per_bucket, expected, "live files per partition");
    let got = rows(&engine, "SELECT DISTINCT written_by FROM events.dim").await;
    assert_eq!(got, [["2024-03-02"]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_task_writes_with_a_writer_per_partition_in_one_commit() {
    // Two input partitions (a UNION ALL): each streams into its own file writer, so a
    // new table starts with two files, created with them in one commit, and a rerun
    // replaces both in one commit. Day 3 fails part-way: nothing is left of it.
    let project = TempProject::with_task(
        "[tasks.dim]\nmaterialized = \"table\"",
        "-- A CASE over a string concatenation yields Utf8View arrays under a Utf8 column.\n\
         SELECT value AS n, '{{ ds }}' AS written_by,\n\
         CASE WHEN value % 97 = 0 THEN '' ELSE 'u' || CAST(value AS VARCHAR) END AS label\n\
         FROM generate_series(1, 300)\n\
         UNION ALL\n\
         SELECT value{% if ds == '2024-03-03' %} / (value - 450){% endif %} AS n, '{{ ds }}' AS written_by,\n\
         CASE WHEN value % 97 = 0 THEN '' ELSE 'u' || CAST(value AS VARCHAR) END AS label\n\
         FROM generate_series(301, 600)",
    );
    let engine = project.engine("local");
    let path = project.path().join("warehouse/events/dim");
    let url = url::Url::from_directory_path(&path).unwrap();
    for (version, ds) in ["2024-03-01", "2024-03-02"].into_iter().enumerate() {
        let report = engine.run("events", &select(ds, "dim")).await.unwrap();
        assert!(report.succeeded(), "{ds}: {:?}", report.first_error());
        let table = deltalake::open_table(url.clone()).await.unwrap();
        assert_eq!(table.version(), Some(version as u64), "{ds}: one commit");
        assert_eq!(
            table.get_file_uris().unwrap().count(),
            2,
            "{ds}: live files"
        );
        let got = rows(
            &engine,
            "SELECT written_by, count(*) FROM events.dim GROUP BY 1",
        )
        .await;
        assert_eq!(got, [[ds, "600"]]);
    }
    let before = files_under(&path);
    let report = engine
        .run("events", &select("2024-03-03", "dim"))
        .await
        .unwrap();
    assert!(!report.succeeded());
    assert_eq!(files_under(&path), before, "the failed write left files");

    // A new table whose first write fails is not created at all.
    std::fs::remove_dir_all(&path).unwrap();
    let report = engine
        .run("events", &select("2024-03-03", "dim"))
        .await
        .unwrap();
    assert!(!report.succeeded());
    let left = if path.exists() {
        files_under(&path)
    } else {
        Vec::new()
    };
    assert!(left.is_empty(), "a failed first write left {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_writes_with_a_writer_per_partition_once_per_day() {
    // Each day's append adds two files (one per input partition) in one commit that
    // records the day's transaction; the same day again appends nothing.
    let project = TempProject::with_task(
        "[tasks.dim]\nmaterialized = \"append\"",
        "SELECT value AS n, '{{ ds }}' AS written_by FROM generate_series(1, 300)\n\
         UNION ALL\n\
         SELECT value AS n, '{{ ds }}' AS written_by FROM generate_series(301, 600)",
    );
    let engine = project.engine("local");
    let url = url::Url::from_directory_path(project.path().join("warehouse/events/dim")).unwrap();
    for (ds, version, files) in [
        ("2024-03-01", 0, 2),
        ("2024-03-02", 1, 4),
        ("2024-03-02", 1, 4),
    ] {
        let report = engine.run("events", &select(ds, "dim")).await.unwrap();
        assert!(report.succeeded(), "{ds}: {:?}", report.first_error());
        let table = deltalake::open_table(url.clone()).await.unwrap();
        assert_eq!(table.version(), Some(version), "{ds}");
        assert_eq!(
            table.get_file_uris().unwrap().count(),
            files,
            "{ds}: live files"
        );
    }
    let got = rows(
        &engine,
        "SELECT written_by, count(*) FROM events.dim GROUP BY 1 ORDER BY 1",
    )
    .await;
    assert_eq!(got, [["2024-03-01", "600"], ["2024-03-02", "600"]]);
}

fn select(ds: &str, task: &str) -> RunOptions {
    RunOptions::new(ds.parse::<RunDate>().unwrap()).with_select(task.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_upserts_on_the_key_and_deletes_flagged_rows() {
    // Day 1 creates u1 and u2; day 2 updates u2, adds u3 and deletes u1.
    let project = TempProject::with_task(
        "[tasks.dim]\nmaterialized = \"merge\"\nunique_key = [\"user_id\"]\ndelete_when = \"source.deleted\"",
        "SELECT * FROM (VALUES\n{% if ds == '2024-03-01' %}('u1', 'a', false), ('u2', 'b', false)\n{% else %}('u2', 'bb', false), ('u3', 'c', false), ('u1', 'a', true), ('u9', 'x', true)\n{% endif %}) AS t(user_id, name, deleted)",
    );
    let engine = project.engine("local");
    for ds in ["2024-03-01", "2024-03-02"] {
        let report = engine.run("events", &select(ds, "dim")).await.unwrap();
        assert!(report.succeeded(), "{:?}", report.first_error());
    }
    let got = rows(
        &engine,
        "SELECT user_id, name, deleted FROM events.dim ORDER BY user_id",
    )
    .await;
    assert_eq!(got, [["u2", "bb", "false"], ["u3", "c", "false"]]);
    // Rerunning day 2 changes nothing.
    engine
        .run("events", &select("2024-03-02", "dim"))
        .await
        .unwrap();
    let again = rows(
        &engine,
        "SELECT user_id, name, deleted FROM events.dim ORDER BY user_id",
    )
    .await;
    assert_eq!(again, got);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_changes_fail_before_writing_unless_allowed() {
    let sql_v1 = "SELECT 1 AS id, 'a' AS name, DATE '{{ ds }}' AS ds";
    let project = TempProject::with_task("[tasks.dim]\nmaterialized = \"append\"", sql_v1);
    let engine = project.engine("local");
    assert!(engine
        .run("events", &select("2024-03-01", "dim"))
        .await
        .unwrap()
        .succeeded());
    let before = project.warehouse_state();

    // A new column: refused, listing it, and nothing written.
    project.write(
        "sql/events/dim.sql",
        "SELECT 2 AS id, 'b' AS name, DATE '{{ ds }}' AS ds, 0.5 AS score",
    );
    let engine = project.engine("local");
    let err = engine
        .run("events", &select("2024-03-02", "dim"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("new columns score (double)"), "{err}");
    assert!(
        err.contains("on_schema_change = \"append_new_columns\""),
        "{err}"
    );
    assert_eq!(project.warehouse_state(), before);

    // A changed type: refused even when evolution is allowed.
    project.write(
        "sql/events/pipeline.toml",
        &project.read("sql/events/pipeline.toml").replace(
            "materialized = \"append\"",
            "materialized = \"append\"\non_schema_change = \"append_new_columns\"",
        ),
    );
    project.write(
        "sql/events/dim.sql",
        "SELECT 'x' AS id, 'b' AS name, DATE '{{ ds }}' AS ds",
    );
    let engine = project.engine("local");
    let err = engine
        .run("events", &select("2024-03-02", "dim"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("changed types id: long in the table, string in the output"),
        "{err}"
    );
    assert_eq!(project.warehouse_state(), before);

    // With evolution allowed, the column is added; older rows read it as NULL.
    project.write(
        "sql/events/dim.sql",
        "SELECT 2 AS id, 'b' AS name, DATE '{{ ds }}' AS ds, 0.5 AS score",
    );
    let engine = project.engine("local");
    let report = engine
        .run("events", &select("2024-03-02", "dim"))
        .await
        .unwrap();
    assert!(report.succeeded(), "{:?}", report.first_error());
    let got = rows(
        &engine,
        "SELECT id, name, score FROM events.dim ORDER BY id",
    )
    .await;
    assert_eq!(got, [["1", "a", ""], ["2", "b", "0.5"]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sources_pinned_delta_versions_and_hive_partitioned_parquet() {
    let project = TempProject::new();
    let engine = project.engine("local");
    run(&engine, "events", "2024-03-01").await;
    run(&engine, "events", "2024-03-02").await;

    // A Parquet folder partitioned hive-style by dt, written by DataFusion.
    let hive = project.path().join("ext/hive");
    let ctx = quern::datafusion::prelude::SessionContext::new();
    ctx.sql(&format!(
        "COPY (SELECT * FROM (VALUES (1, '2024-03-01'), (2, '2024-03-01'), (3, '2024-03-02')) AS t(id, dt)) TO '{}/' STORED AS PARQUET PARTITIONED BY (dt)",
        hive.display()
    ))
    .await
    .unwrap()
    .collect()
    .await
    .unwrap();
    assert!(hive.join("dt=2024-03-02").is_dir());

    project.write(
        "environments/local.toml",
        &format!(
            "{}\n[sources.ext]\nevents_v0 = {{ uri = \"warehouse/events/events_by_day\", format = \"delta\", version = 0 }}\nevents_now = {{ uri = \"warehouse/events/events_by_day\", format = \"delta\" }}\nevents_at = {{ uri = \"warehouse/events/events_by_day\", format = \"delta\", timestamp = \"2100-01-01T00:00:00Z\" }}\nhive = {{ uri = \"ext/hive/\", format = \"parquet\" }}\n",
            project.read("environments/local.toml")
        ),
    );
    let engine = project.engine("local");
    let (day1, day2) = (
        expected_events("2024-03-01").0,
        expected_events("2024-03-02").0,
    );
    assert_eq!(
        rows(&engine, "SELECT count(*) FROM ext.events_v0").await,
        [[day1.to_string()]]
    );
    assert_eq!(
        rows(&engine, "SELECT count(*) FROM ext.events_now").await,
        [[(day1 + day2).to_string()]]
    );
    assert_eq!(
        rows(
            &engine,
            "SELECT dt, count(*) FROM ext.hive GROUP BY dt ORDER BY dt"
        )
        .await,
        [["2024-03-01", "2"], ["2024-03-02", "1"]]
    );

    // A pin on a format that has no versions is a configuration error.
    project.write(
        "environments/local.toml",
        &project.read("environments/local.toml").replace(
            "format = \"parquet\" }",
            "format = \"parquet\", version = 1 }",
        ),
    );
    let err = quern::Project::load(project.path())
        .unwrap()
        .environment("local")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("sources.ext.hive") && err.contains("Delta sources only"),
        "{err}"
    );
}
