//! SQL dialects: a `spark` pipeline beside `datafusion` ones in one project, reading
//! their tables; `quern query --dialect`; a function of the other dialect, an unknown
//! dialect name and a bad time zone are errors saying where and what to do.

use crate::common::{stderr, stdout, TempProject};

/// The example project with a `datafusion` pipeline `base` and a `spark` pipeline
/// `ported` that reads it.
fn two_dialects() -> TempProject {
    let project = TempProject::new();
    project.write("sql/base/pipeline.toml", "");
    project.write(
        "sql/base/nums.sql",
        "SELECT 7 AS n, 'x' AS s, concat('a', NULL) AS skipped, DATE '2016-07-30' AS day",
    );
    project.write("sql/ported/pipeline.toml", "dialect = \"spark\"\n");
    project.write(
        "sql/ported/spark_semantics.sql",
        "-- Spark's semantics, on a table of a datafusion pipeline.\n\
         SELECT n / 2 AS half, n DIV 2 AS whole, concat(s, NULL) AS nulled,\n\
         \x20      date_format(day, 'dd/MM/yyyy') AS written, 'a\\tb' AS escaped\n\
         FROM {{ ref('base', 'nums') }}",
    );
    project
}

#[test]
fn a_spark_pipeline_reads_a_datafusion_pipelines_table() {
    let project = two_dialects();
    let out = project.quern(&["run", "--ds", "2024-03-01"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let base = project.query_csv("SELECT n, skipped FROM base.nums");
    // DataFusion's concat skips a NULL.
    assert_eq!(base, "n,skipped\n7,a\n");
    let ported = project.query_csv(
        "SELECT half, whole, nulled IS NULL AS nulled, written, escaped FROM ported.spark_semantics",
    );
    assert_eq!(
        ported,
        "half,whole,nulled,written,escaped\n3.5,3,true,30/07/2016,a\tb\n"
    );
}

#[test]
fn query_takes_a_dialect() {
    let project = TempProject::new();
    let sql = "SELECT 3 / 2 AS x, concat('a', NULL) AS c";
    let out = project.quern(&["query", "--format", "csv", sql]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "x,c\n1,a\n");
    let out = project.quern(&["query", "--format", "csv", "--dialect", "spark", sql]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "x,c\n1.5,\n");
    // quern.toml sets the project's default.
    project.write("quern.toml", "dialect = \"spark\"\n");
    let out = project.quern(&["query", "--format", "csv", sql]);
    assert_eq!(stdout(&out), "x,c\n1.5,\n", "{}", stderr(&out));
    let out = project.quern(&["query", "--dialect", "hive", sql]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("unknown SQL dialect `hive`"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn spark_rounds_decimals_exactly() {
    let project = TempProject::new();
    // `2.25` is a DECIMAL in Spark, `2.25e0` a DOUBLE (which rounds 2.675 down).
    let sql = "SELECT round(x, 1) AS r, bround(x, 1) AS b, round(x, -1) AS tens, \
               round(x, 5) AS same FROM VALUES (2.25), (-2.35), (2.675), (15.00) AS t(x)";
    let out = project.quern(&["query", "--format", "csv", "--dialect", "spark", sql]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "r,b,tens,same\n2.3,2.2,0,2.250\n-2.4,-2.4,0,-2.350\n2.7,2.7,0,2.675\n15.0,15.0,20,15.000\n"
    );
    let out = project.quern(&[
        "query",
        "--dialect",
        "spark",
        "SELECT round(x, n) FROM VALUES (2.5, 0) AS t(x, n)",
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("round of a DECIMAL takes a constant number of decimals"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn spark_intervals_are_typed_and_keep_date_arithmetic() {
    let project = TempProject::new();
    // Year-month literals are Spark's YEAR-MONTH INTERVAL (Arrow's Interval(YearMonth)),
    // day-time ranges DataFusion's intervals; dates and timestamps move by both.
    let sql = "SELECT DATE '2021-01-31' + INTERVAL '1' MONTH AS a, \
               DATE '2021-01-31' - interval 1 year AS b, \
               DATE '2021-01-31' - INTERVAL 7 DAYS AS c, \
               TIMESTAMP '2021-01-31 10:00:00' - INTERVAL '1 02:00:00' DAY TO SECOND AS d, \
               TIMESTAMP '2021-01-31 10:00:00' + INTERVAL '1-2' YEAR TO MONTH AS e";
    let out = project.quern(&["query", "--format", "csv", "--dialect", "spark", sql]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "a,b,c,d,e\n2021-02-28,2020-01-31,2021-01-24,2021-01-30T08:00:00,2022-03-31T10:00:00\n"
    );
    // A percentile of day-time intervals is one; one with months is an error.
    let sql =
        "SELECT percentile_approx(col, 0.5) FROM VALUES (make_interval(0, 1, 0, 1)) AS t(col)";
    let out = project.quern(&["query", "--dialect", "spark", sql]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("percentile of an interval with months (1 months)"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_function_of_the_other_dialect_says_which_has_it() {
    let project = two_dialects();
    // bround is Spark's, not DataFusion's.
    project.write("sql/base/nums.sql", "SELECT 7 AS n,\n  bround(2.5, 0) AS r");
    let out = project.quern(&["plan", "base", "--ds", "2024-03-01"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("sql/base/nums.sql:2: task `nums` failed to plan"),
        "{err}"
    );
    assert!(
        err.contains("`bround` is not a function of the `datafusion` dialect, but of `spark`"),
        "{err}"
    );
    // make_array is DataFusion's; Spark writes array(…).
    project.write(
        "sql/ported/spark_semantics.sql",
        "SELECT\n  make_array(1, 2) AS xs",
    );
    let out = project.quern(&["plan", "ported", "--ds", "2024-03-01"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("sql/ported/spark_semantics.sql:2"), "{err}");
    assert!(
        err.contains("`make_array` is not a function of the `spark` dialect, but of `datafusion`"),
        "{err}"
    );
    let out = project.quern(&["query", "SELECT bround(2.5, 0)"]);
    assert!(stderr(&out).contains("`bround` is not a function of the `datafusion` dialect"));
}

#[test]
fn an_unknown_dialect_or_time_zone_is_a_config_error() {
    let project = two_dialects();
    project.write("sql/ported/pipeline.toml", "dialect = \"hive\"\n");
    let out = project.quern(&["plan", "--ds", "2024-03-01"]);
    let err = stderr(&out);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("sql/ported/pipeline.toml:1: key `dialect`: unknown SQL dialect `hive`; the dialects are `datafusion` (the default) and `spark`"),
        "{err}"
    );
    project.write("sql/ported/pipeline.toml", "dialect = \"spark\"\n");
    project.write("quern.toml", "dialect = \"presto\"\n");
    let err = stderr(&project.quern(&["plan", "--ds", "2024-03-01"]));
    assert!(
        err.contains("quern.toml:1: key `dialect`: unknown SQL dialect `presto`"),
        "{err}"
    );
    std::fs::remove_file(project.path().join("quern.toml")).unwrap();
    let env = project.read("environments/local.toml");
    project.write(
        "environments/local.toml",
        &env.replace("[engine]\n", "[engine]\ntime_zone = \"Mars/Olympus\"\n"),
    );
    let err = stderr(&project.quern(&["plan", "--ds", "2024-03-01"]));
    assert!(
        err.contains(
            "environments/local.toml: key `engine.time_zone`: `Mars/Olympus` is not a time zone"
        ),
        "{err}"
    );
}
