//! `[engine] memory_limit` and `spill`: a query needing more memory than the limit
//! spills and gets the right answer; with spilling off it fails naming the limit, its
//! file and what to change, and a task writes nothing; a bad limit is a config error.
//! A join to a small CSV hashes the CSV, not the other side.

use std::sync::Arc;

use datafusion::physical_plan::{collect, ExecutionPlan};

use crate::common::{stderr, stdout, TempProject};

/// An aggregation of 4 M rows into 1 M groups: its hash tables need more than 32 MiB.
const BIG_AGGREGATION: &str = "SELECT count(*) AS groups, sum(n) AS rows, sum(total) AS total \
     FROM (SELECT k, count(*) AS n, sum(v) AS total \
           FROM (SELECT value % 1000000 AS k, value AS v FROM generate_series(1, 4000000)) \
           GROUP BY k)";

const ANSWER: &str = "groups,rows,total\n1000000,4000000,8000002000000\n";

/// The project with environments `tight` (32 MiB, spilling) and `nospill` (32 MiB,
/// spilling off), both on two partitions.
fn tight_project() -> TempProject {
    let project = TempProject::new();
    for (env, spill) in [("tight", ""), ("nospill", "spill = false\n")] {
        project.write(
            &format!("environments/{env}.toml"),
            &format!(
                "[warehouse]\nroot = \"warehouse-{env}\"\n\n[engine]\nmemory_limit = \"32MiB\"\ntarget_partitions = 2\n{spill}"
            ),
        );
    }
    project
}

/// How many times the operators of `plan` spilled.
fn spills(plan: &Arc<dyn ExecutionPlan>) -> usize {
    let own = plan
        .metrics()
        .and_then(|m| m.spill_count())
        .unwrap_or_default();
    own + plan.children().into_iter().map(spills).sum::<usize>()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_bigger_than_the_limit_spills_and_is_right() {
    let project = tight_project();
    let out = project.quern(&[
        "--env",
        "tight",
        "query",
        "--format",
        "csv",
        BIG_AGGREGATION,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), ANSWER);
    // The same through the library, counting the spills.
    let engine = project.engine("tight");
    let df = engine.query(BIG_AGGREGATION).await.expect("plans");
    let ctx = df.task_ctx();
    let plan = df.create_physical_plan().await.expect("a physical plan");
    let batches = collect(plan.clone(), Arc::new(ctx)).await.expect("runs");
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
    assert!(
        spills(&plan) > 0,
        "the aggregation fit in 32 MiB: grow the query"
    );
}

#[test]
fn without_spilling_the_query_fails_naming_the_limit_and_the_task_writes_nothing() {
    let project = tight_project();
    let out = project.quern(&["--env", "nospill", "query", BIG_AGGREGATION]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("needs more memory than engine.memory_limit = \"32 MiB\" in environments/nospill.toml and spilling is off (engine.spill = false)"),
        "{err}"
    );
    // A task: the run fails and its table is not created.
    project.write("sql/heavy/pipeline.toml", "");
    project.write("sql/heavy/groups.sql", BIG_AGGREGATION);
    let out = project.quern(&["--env", "nospill", "run", "heavy", "--ds", "2024-03-01"]);
    assert!(!out.status.success());
    let report = stdout(&out);
    assert!(
        report.contains("task `groups` failed while running"),
        "{report}"
    );
    assert!(report.contains("engine.memory_limit"), "{report}");
    // No table and no data files (the writer may have made the empty folder).
    let table = project.path().join("warehouse-nospill/heavy/groups");
    let written = std::fs::read_dir(&table).map_or(0, |d| d.count());
    assert_eq!(written, 0, "{} holds files", table.display());
    // With spilling on, the same task writes the answer.
    let out = project.quern(&["--env", "tight", "run", "heavy", "--ds", "2024-03-01"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = project.quern(&[
        "--env",
        "tight",
        "query",
        "--format",
        "csv",
        "SELECT * FROM heavy.groups",
    ]);
    assert_eq!(stdout(&out), ANSWER, "{}", stderr(&out));
}

#[test]
fn a_bad_memory_limit_is_a_config_error_naming_the_file_and_key() {
    let project = TempProject::new();
    for (limit, says) in [
        ("\"lots\"", "`lots` is not a size"),
        ("\"4 parsecs\"", "is not a unit"),
        ("\"1MiB\"", "is below the smallest limit, 32 MiB"),
    ] {
        project.write(
            "environments/bad.toml",
            &format!("[warehouse]\nroot = \"warehouse\"\n\n[engine]\nmemory_limit = {limit}\n"),
        );
        let out = project.quern(&["--env", "bad", "render", "events"]);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("environments/bad.toml:5: key `engine.memory_limit`"),
            "{err}"
        );
        assert!(err.contains(says), "{err}");
    }
}

#[test]
fn a_join_to_a_small_csv_builds_its_hash_table_from_the_csv() {
    // `raw.events LEFT JOIN raw.countries`: the CSV files' sizes tell the planner the
    // countries are the small side, so the join hashes them (a right join with the
    // countries on the build side) instead of holding all of the events.
    let project = TempProject::new();
    let out = project.quern(&[
        "query",
        "EXPLAIN SELECT e.event_id, c.country_name FROM raw.events AS e \
         LEFT JOIN raw.countries AS c ON e.country_code = c.country_code",
    ]);
    let plan = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let join = plan
        .lines()
        .find(|l| l.contains("HashJoinExec"))
        .unwrap_or_else(|| panic!("no hash join in {plan}"));
    assert!(join.contains("mode=CollectLeft, join_type=Right"), "{join}");
    let build_side = plan
        .lines()
        .skip_while(|l| !l.contains("HashJoinExec"))
        .find(|l| l.contains("DataSourceExec"))
        .unwrap();
    assert!(build_side.contains("countries.csv"), "{plan}");
}
