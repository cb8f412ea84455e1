//! Reading Delta tables: a table that another writer made (Python's deltalake) reads
//! through quern's Parquet scan of its snapshot — columns in the table's order, typed
//! partition values (NULL and ones that need escaping in paths included), files
//! skipped by the log's statistics, and timestamp bounds the log truncates.

use crate::common::{stderr, stdout, TempProject};

/// Two commits, partitioned by the table's first column `city`, one of them NULL and
/// one with a space; `ts` has sub-millisecond parts, which the log's statistics
/// truncate to the millisecond.
const WRITE: &str = r#"
import os, sys, datetime as dt, pyarrow as pa, deltalake
ts = lambda us: dt.datetime(2024, 3, 1, tzinfo=dt.timezone.utc) + dt.timedelta(microseconds=us)
schema = pa.schema([("city", pa.string()), ("id", pa.int64()), ("ts", pa.timestamp("us", "UTC"))])
first = pa.table({"city": ["Paris", "New York", None], "id": [1, 2, 3],
                  "ts": [ts(1_000), ts(2_000), ts(3_000)]}, schema=schema)
second = pa.table({"city": ["Paris", "Lyon"], "id": [4, 5],
                   "ts": [ts(4_000), ts(5_700)]}, schema=schema)
deltalake.write_deltalake(sys.argv[1], first, partition_by=["city"])
deltalake.write_deltalake(sys.argv[1], second, partition_by=["city"], mode="append")
sys.stdout.flush()
os._exit(0)
"#;

fn project_with_table() -> TempProject {
    let project = TempProject::with_task("[tasks.dim]", "SELECT 1 AS id");
    project.python_writes_dim(WRITE);
    project
}

/// A project whose pipeline `joins` has a table task per (name, SQL), run once.
fn joins_tables(tables: &[(&str, &str)]) -> TempProject {
    let project = TempProject::new();
    let tasks: String = tables
        .iter()
        .map(|(name, _)| format!("[tasks.{name}]\nmaterialized = \"table\"\n"))
        .collect();
    project.write("sql/joins/pipeline.toml", &tasks);
    for (name, sql) in tables {
        project.write(&format!("sql/joins/{name}.sql"), sql);
    }
    let out = project.quern(&["run", "joins", "--ds", "2024-03-01"]);
    assert!(out.status.success(), "{}", stderr(&out));
    project
}

fn query(project: &TempProject, sql: &str) -> String {
    let out = project.quern(&["query", "--format", "csv", sql]);
    assert!(out.status.success(), "{sql}: {}", stderr(&out));
    stdout(&out)
}

#[test]
fn a_delta_table_reads_as_a_parquet_scan_of_its_snapshot() {
    let project = project_with_table();
    assert_eq!(
        query(&project, "SELECT * FROM events.dim ORDER BY id"),
        "city,id,ts\n\
         Paris,1,2024-03-01T00:00:00.001Z\n\
         New York,2,2024-03-01T00:00:00.002Z\n\
         ,3,2024-03-01T00:00:00.003Z\n\
         Paris,4,2024-03-01T00:00:00.004Z\n\
         Lyon,5,2024-03-01T00:00:00.005700Z\n"
    );
    // A partition value that needs escaping in the file's path, and the NULL one.
    assert_eq!(
        query(
            &project,
            "SELECT id FROM events.dim WHERE city = 'New York' OR city IS NULL ORDER BY id"
        ),
        "id\n2\n3\n"
    );
    // The log keeps 00:00:00.005 as the largest ts of Lyon's file; the row at .0057
    // is still found.
    assert_eq!(
        query(
            &project,
            "SELECT id FROM events.dim WHERE ts > TIMESTAMP '2024-03-01T00:00:00.0055Z'"
        ),
        "id\n5\n"
    );
    // The plan is DataFusion's Parquet scan, and the log's statistics leave only the
    // one file that can hold a matching row.
    let plan = query(&project, "EXPLAIN SELECT id FROM events.dim WHERE id >= 5");
    assert!(plan.contains("DataSourceExec"), "{plan}");
    assert!(plan.contains("file_type=parquet"), "{plan}");
    assert!(!plan.contains("DeltaScan"), "{plan}");
    assert!(plan.contains("city=Lyon"), "{plan}");
    assert!(!plan.contains("city=Paris"), "{plan}");
    // Row counts come from the log: a count needs no file read.
    let plan = query(&project, "EXPLAIN SELECT count(*) FROM events.dim");
    assert!(!plan.contains("DataSourceExec"), "{plan}");
    assert_eq!(
        query(&project, "SELECT count(*) AS n FROM events.dim"),
        "n\n5\n"
    );
}

/// A table with column mapping (`name` mode): its Parquet file names the column
/// `col-1`, the log maps it to `id`. Python's deltalake does not write such tables, so
/// the log is written here by hand, as Spark would.
pub(crate) const COLUMN_MAPPED: &str = r#"
import json, os, sys, pyarrow as pa, pyarrow.parquet as pq
root = sys.argv[1]
os.makedirs(f"{root}/_delta_log")
pq.write_table(pa.table({"col-1": pa.array([7, 8], pa.int64())}), f"{root}/part-0.parquet")
field = {"name": "id", "type": "long", "nullable": True,
         "metadata": {"delta.columnMapping.id": 1, "delta.columnMapping.physicalName": "col-1"}}
actions = [
    {"protocol": {"minReaderVersion": 2, "minWriterVersion": 5}},
    {"metaData": {"id": "6f1e4a5c-0000-4000-8000-000000000001",
                  "format": {"provider": "parquet", "options": {}},
                  "schemaString": json.dumps({"type": "struct", "fields": [field]}),
                  "partitionColumns": [],
                  "configuration": {"delta.columnMapping.mode": "name",
                                    "delta.columnMapping.maxColumnId": "1"},
                  "createdTime": 1700000000000}},
    {"add": {"path": "part-0.parquet", "partitionValues": {},
             "size": os.path.getsize(f"{root}/part-0.parquet"),
             "modificationTime": 1700000000000, "dataChange": True,
             "stats": json.dumps({"numRecords": 2, "minValues": {"col-1": 7},
                                  "maxValues": {"col-1": 8}, "nullCount": {"col-1": 0}})}},
]
with open(f"{root}/_delta_log/00000000000000000000.json", "w") as f:
    f.write("\n".join(json.dumps(a) for a in actions) + "\n")
"#;

#[test]
fn a_table_with_column_mapping_reads_through_delta_rs() {
    let project = TempProject::with_task("[tasks.dim]", "SELECT 1 AS id");
    project.python_writes_dim(COLUMN_MAPPED);
    let out = project
        .command(&[
            "query",
            "--format",
            "csv",
            "SELECT id FROM events.dim ORDER BY id",
        ])
        .env("QUERN_LOG", "quern=debug")
        .output()
        .expect("quern runs");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "id\n7\n8\n");
    assert!(stderr(&out).contains("column mapping"), "{}", stderr(&out));
}

/// A join's runtime filter reaches the Delta scan of its probe side: with 20 of the
/// 20 000 keys on the build side, the 200 000 fact rows are cut to 200 right above the
/// scan, before the aggregate by key (TPC-H Q17's shape), and the answer is the one
/// computed by hand.
#[test]
fn a_selective_join_filters_the_rows_of_the_delta_table_it_probes() {
    let project = joins_tables(&[
        (
            "facts",
            "SELECT value % 20000 AS k, value AS v FROM generate_series(0, 199999)",
        ),
        (
            "dims",
            "SELECT value AS k, value % 1000 = 0 AS rare FROM generate_series(0, 19999)",
        ),
    ]);
    let sql = "SELECT CAST(sum(a.s) AS BIGINT) AS total FROM \
        (SELECT k, sum(v) AS s FROM joins.facts GROUP BY k) a \
        JOIN joins.dims d ON a.k = d.k WHERE d.rare";
    let expected: i64 = (0..20)
        .map(|i| (0..10).map(|j| i * 1000 + 20000 * j).sum::<i64>())
        .sum();
    assert_eq!(query(&project, sql), format!("total\n{expected}\n"));
    let plan = query(&project, &format!("EXPLAIN ANALYZE {sql}"));
    let filter = plan
        .lines()
        .find(|l| l.contains("RuntimeFilterExec"))
        .unwrap_or_else(|| panic!("no runtime filter in\n{plan}"));
    assert!(filter.contains("output_rows=200,"), "{filter}");
    assert!(
        filter.contains("runtime_filter_rows_in=200.0 K"),
        "{filter}"
    );
}

/// The planner gets the log's statistics as each file's: bounds of every column, and
/// the null counts of `long` columns. (delta-rs reads a column's null counts as values
/// of the column's own type, which fails for the others, so they are not asked for.)
#[test]
fn the_logs_statistics_reach_the_planner() {
    let project = joins_tables(&[(
        "numbers",
        "SELECT value AS n, CAST(value AS DOUBLE) / 2 AS half, CAST(value AS VARCHAR) AS s \
         FROM generate_series(1, 10)",
    )]);
    let local = project.read("environments/local.toml");
    project.write(
        "environments/local.toml",
        &format!("{local}\n[engine.datafusion]\n\"explain.show_statistics\" = true\n"),
    );
    let plan = query(&project, "EXPLAIN SELECT n, half, s FROM joins.numbers");
    let stats = plan
        .split("statistics=")
        .nth(1)
        .unwrap_or_else(|| panic!("no statistics in\n{plan}"));
    assert!(stats.starts_with("[Rows=Exact(10)"), "{stats}");
    assert!(
        stats.contains("(Col[0]: Min=Inexact(Int64(1)) Max=Inexact(Int64(10)) Null=Exact(0)"),
        "{stats}"
    );
    assert!(
        stats.contains("(Col[1]: Min=Inexact(Float64(0.5)) Max=Inexact(Float64(5))"),
        "{stats}"
    );
}

/// A CTE referenced twice (TPC-H Q15's shape: each key's total, and the largest of
/// them) is aggregated once: one occurrence scans the Delta table and the other replays
/// its rows. Aggregates that differ only in a filter stay apart. The answers are the
/// ones computed by hand.
#[test]
fn an_aggregate_referenced_twice_is_computed_once() {
    let project = joins_tables(&[(
        "facts",
        "SELECT value % 1000 AS k, value AS v FROM generate_series(0, 199999)",
    )]);
    // Key k's total is 200 k + 1000 (0 + 1 + … + 199).
    let total = |k: i64| 200 * k + 19_900_000;
    let sql = "WITH t AS (SELECT k, sum(v) AS s FROM joins.facts GROUP BY k) \
        SELECT k, s FROM t WHERE s = (SELECT max(s) FROM t)";
    assert_eq!(query(&project, sql), format!("k,s\n999,{}\n", total(999)));
    let plan = query(&project, &format!("EXPLAIN ANALYZE {sql}"));
    let shared = plan
        .lines()
        .filter(|l| l.contains("SharedSubplanExec: computed once for 2 uses"))
        .count();
    assert_eq!(shared, 2, "{plan}");
    let scans = plan
        .lines()
        .filter(|l| l.contains("DataSourceExec") && l.contains("output_rows=200.0 K"))
        .count();
    assert_eq!(scans, 1, "{plan}");

    let sql = "WITH t AS (SELECT k, sum(v) AS s FROM joins.facts GROUP BY k) \
        SELECT (SELECT min(s) FROM t) AS lo, (SELECT max(s) FROM t) AS hi";
    assert_eq!(
        query(&project, sql),
        format!("lo,hi\n{},{}\n", total(0), total(999))
    );
    let sql = "SELECT (SELECT sum(v) FROM joins.facts WHERE k < 10) AS a, \
        (SELECT sum(v) FROM joins.facts WHERE k < 20) AS b";
    let sum_below = |n: i64| (0..n).map(total).sum::<i64>();
    assert_eq!(
        query(&project, sql),
        format!("a,b\n{},{}\n", sum_below(10), sum_below(20))
    );
}

#[test]
fn the_tables_of_a_query_open_together_and_the_first_failure_is_reported() {
    let project = joins_tables(&[
        ("a", "SELECT value AS k, value * 2 AS x FROM range(0, 1000)"),
        ("b", "SELECT value AS k, value * 3 AS y FROM range(0, 1000)"),
        ("c", "SELECT value AS k, value * 5 AS z FROM range(0, 1000)"),
    ]);
    // Three Delta tables, opened at the same time, each registered under its name.
    assert_eq!(
        query(
            &project,
            "SELECT count(*) AS n, sum(x + y + z) AS s FROM joins.c \
             JOIN joins.a ON a.k = c.k JOIN joins.b ON b.k = c.k WHERE c.k % 2 = 0"
        ),
        format!(
            "n,s\n500,{}\n",
            (0..1000).step_by(2).map(|k| k * 10).sum::<i64>()
        )
    );

    // Two sources with no table behind them: the error is always the first one in the
    // order the catalog opens them (by name), whichever finished first.
    project.write(
        "environments/local.toml",
        &format!(
            "{}\n[sources.lake]\nx = {{ uri = \"nowhere/x\", format = \"delta\" }}\n\
             y = {{ uri = \"nowhere/y\", format = \"delta\" }}\n",
            project.read("environments/local.toml")
        ),
    );
    for _ in 0..3 {
        let out = project.quern(&["query", "SELECT * FROM lake.y, lake.x, joins.a"]);
        assert!(!out.status.success());
        let err = stderr(&out);
        assert!(err.contains("sources.lake.x"), "{err}");
        assert!(!err.contains("sources.lake.y"), "{err}");
    }
}
