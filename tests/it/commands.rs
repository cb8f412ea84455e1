//! Command tasks: programs in the DAG. A Python task writes its declared table with
//! the `deltalake` package and SQL downstream reads it; what a program gets in its
//! environment; its output streamed and kept; and each way one goes wrong (a missing
//! program, an unknown dependency, a non-zero exit, a timeout, a table not committed or
//! of other columns), each failing the task with a message naming it and its file, and
//! with nothing written after it.

use std::path::Path;
use std::time::Duration;

use super::common::{command_at, python, quern_at, stderr, stdout};

/// A project folder with `files` (path, text) and a local environment whose Python is
/// the test venv's.
fn project(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("quern-cmd-")
        .tempdir()
        .expect("temp dir");
    let env = format!(
        "[warehouse]\nroot = \"warehouse\"\n\n[python]\ninterpreter = \"{}\"\n",
        python()
    );
    write(dir.path(), "environments/local.toml", &env);
    for (path, text) in files {
        write(dir.path(), path, text);
    }
    dir
}

fn write(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn query(dir: &Path, sql: &str) -> String {
    let out = quern_at(dir, &["query", sql, "--format", "csv"]);
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
}

/// A Python task writing its table from its upstream table with `deltalake`, and
/// printing what quern gave it.
const SCORE_PY: &str = r#"
import json, os, sys
import pyarrow as pa
from deltalake import DeltaTable, write_deltalake
storage = json.loads(os.environ["QUERN_STORAGE_OPTIONS"])
src = DeltaTable(os.environ["QUERN_TABLE_SHOP__ORDERS"], storage_options=storage or None).to_pyarrow_table()
amount = src.column("amount").to_pylist()
out = pa.table({
    "id": pa.array(src.column("id").to_pylist(), pa.int64()),
    "big": pa.array([a > 5 for a in amount]),
    "ds": pa.array([os.environ["QUERN_DS"]] * len(amount)),
})
write_deltalake(os.environ["QUERN_OUTPUT_URI"], out, mode="overwrite", storage_options=storage or None)
print("env", os.environ["QUERN_ENV"], "ds", os.environ["QUERN_DS"], os.environ["QUERN_DS_NODASH"], "task", os.environ["QUERN_PIPELINE"], os.environ["QUERN_TASK"])
print("wrote", len(amount), "rows", file=sys.stderr)
"#;

const SHOP_TOML: &str = r#"
[tasks.flags]
depends_on = ["orders"]
produces = "table"
columns = ["id BIGINT", "big BOOLEAN", "ds STRING"]
"#;

fn shop() -> tempfile::TempDir {
    project(&[
        (
            "sql/shop/orders.sql",
            "SELECT * FROM (VALUES (1, 9.5), (2, 3.0), (3, 7.5)) AS t(id, amount)",
        ),
        ("sql/shop/flags.py", SCORE_PY),
        (
            "sql/shop/big_orders.sql",
            "SELECT o.id, o.amount FROM {{ ref('orders') }} o JOIN {{ ref('flags') }} f ON f.id = o.id WHERE f.big",
        ),
        ("sql/shop/pipeline.toml", SHOP_TOML),
    ])
}

#[test]
fn a_python_task_writes_its_declared_table_and_sql_reads_it() {
    let dir = shop();
    // The plan knows the program's table before it runs.
    let out = quern_at(dir.path(), &["plan", "shop", "--ds", "2024-03-01"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let plan = stdout(&out);
    assert!(plan.contains("2. flags (command)"), "{plan}");
    assert!(plan.contains("sql/shop/flags.py"), "{plan}");
    assert!(plan.contains("big Boolean"), "{plan}");
    assert!(plan.contains("3. big_orders (table)\n"), "{plan}");

    let out = quern_at(
        dir.path(),
        &["run", "shop", "--ds", "2024-03-01", "--progress", "plain"],
    );
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    // Its output is streamed with the task's name, stdout and stderr alike.
    let err = stderr(&out);
    assert!(
        err.contains("shop/flags | env local ds 2024-03-01 20240301 task shop flags"),
        "{err}"
    );
    assert!(err.contains("shop/flags | wrote 3 rows"), "{err}");
    let summary = stdout(&out);
    assert!(summary.contains("flags       command"), "{summary}");
    assert_eq!(
        query(dir.path(), "SELECT id FROM shop.big_orders ORDER BY id"),
        "id\n1\n3\n"
    );
    // The run log keeps the tail of its output.
    let log = query(
        dir.path(),
        "SELECT status, output FROM _quern.tasks WHERE task = 'flags'",
    );
    assert!(log.contains("succeeded"), "{log}");
    assert!(log.contains("wrote 3 rows"), "{log}");
}

#[test]
fn the_json_stream_carries_the_programs_lines() {
    let dir = shop();
    let out = quern_at(dir.path(), &["--json", "run", "shop", "--ds", "2024-03-01"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let output: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["event"] == "task_output")
        .collect();
    assert!(
        output.iter().any(|l| l["stream"] == "stderr"
            && l["line"] == "wrote 3 rows"
            && l["task"] == "flags"),
        "{output:?}"
    );
}

/// A `command` task: `bash -c <script>`, declared in pipeline.toml only.
fn with_command(script: &str, extra: &str) -> tempfile::TempDir {
    let toml = format!(
        "[tasks.step]\ncommand = [\"bash\", \"-c\", {script:?}]\ndepends_on = [\"first\"]\n{extra}"
    );
    project(&[
        ("sql/p/first.sql", "SELECT 1 AS a"),
        ("sql/p/pipeline.toml", &toml),
    ])
}

#[test]
fn a_failed_exit_fails_the_task_with_its_output_and_skips_what_reads_it() {
    let dir = project(&[
        ("sql/p/first.sql", "SELECT 1 AS a"),
        (
            "sql/p/pipeline.toml",
            "[tasks.step]\ncommand = [\"bash\", \"-c\", \"echo preparing; echo 'no such file: model.bin' >&2; exit 3\"]\ndepends_on = [\"first\"]\nproduces = \"table\"\ncolumns = [\"a BIGINT\"]\n",
        ),
        ("sql/p/after.sql", "SELECT a FROM {{ ref('step') }}"),
    ]);
    let out = quern_at(
        dir.path(),
        &["run", "p", "--ds", "2024-03-01", "--progress", "plain"],
    );
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains(
            "command task `p/step` (sql/p/pipeline.toml): the program exited with status 3"
        ),
        "{text}"
    );
    // Its stdout and stderr are two pipes, read as they come: either line may be first.
    let tail = text
        .split("its output ended with:\n")
        .nth(1)
        .unwrap_or_default();
    let tail: Vec<&str> = tail.lines().take(2).collect();
    assert!(
        tail.contains(&"    preparing") && tail.contains(&"    no such file: model.bin"),
        "{text}"
    );
    assert!(
        text.contains("skipped after  table      (an upstream task failed)"),
        "{text}"
    );
    assert!(!dir.path().join("warehouse/p/after").exists());
}

#[test]
fn a_program_past_its_timeout_is_killed_with_its_process_group() {
    let pid_file = tempfile::NamedTempFile::new().unwrap();
    // The program starts a child that would outlive it, then waits.
    let script = format!(
        "sleep 60 & echo $! > {}; echo started; wait",
        pid_file.path().display()
    );
    let dir = with_command(&script, "timeout = \"1s\"\n");
    let started = std::time::Instant::now();
    let out = quern_at(dir.path(), &["run", "p", "--ds", "2024-03-01"]);
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains("ran past its timeout of 1s and was killed with its process group"),
        "{text}"
    );
    assert!(text.contains("    started"), "{text}");
    let pid = std::fs::read_to_string(pid_file.path()).unwrap();
    let alive = Path::new(&format!("/proc/{}", pid.trim())).exists()
        && !std::fs::read_to_string(format!("/proc/{}/stat", pid.trim()))
            .unwrap_or_default()
            .contains(") Z ");
    assert!(!alive, "the program's child {pid} outlived the timeout");
}

#[test]
fn retry_on_exit_runs_a_failed_program_again() {
    let state = tempfile::tempdir().unwrap();
    let marker = state.path().join("tried");
    // Fails the first time, succeeds the second.
    let script = format!(
        "if [ -e {m} ]; then echo second; else touch {m}; echo first; exit 1; fi",
        m = marker.display()
    );
    let dir = with_command(
        &script,
        "retries = 1\nretry_delay = \"0s\"\nretry_on_exit = true\n",
    );
    let out = quern_at(dir.path(), &["--json", "run", "p", "--ds", "2024-03-01"]);
    assert!(out.status.success(), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(text.contains("\"event\":\"task_retrying\""), "{text}");
    // Without retry_on_exit an exit is not retried.
    std::fs::remove_file(&marker).unwrap();
    let dir = with_command(&script, "retries = 1\nretry_delay = \"0s\"\n");
    let out = quern_at(dir.path(), &["--json", "run", "p", "--ds", "2024-03-01"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(!stdout(&out).contains("task_retrying"));
}

#[test]
fn a_program_that_does_not_do_what_it_declares_fails() {
    // produces = "table" but writes nothing.
    let dir = with_command(
        "echo done",
        "produces = \"table\"\ncolumns = [\"a BIGINT\"]\n",
    );
    let out = quern_at(dir.path(), &["run", "p", "--ds", "2024-03-01"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains("declares produces = \"table\" but committed no new version of file://"),
        "{text}"
    );
    // A table of other columns than declared.
    let py = "import os, pyarrow as pa\nfrom deltalake import write_deltalake\nwrite_deltalake(os.environ['QUERN_OUTPUT_URI'], pa.table({'a': pa.array(['x'])}))\n";
    let dir = project(&[
        ("sql/p/step.py", py),
        (
            "sql/p/pipeline.toml",
            "[tasks.step]\nproduces = \"table\"\ncolumns = [\"a BIGINT\", \"b DOUBLE\"]\n",
        ),
    ]);
    let out = quern_at(dir.path(), &["run", "p", "--ds", "2024-03-01"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains("does not have the columns pipeline.toml declares (a BIGINT, b DOUBLE)"),
        "{text}"
    );
    assert!(text.contains("missing: b"), "{text}");
    assert!(text.contains("of another type: a"), "{text}");
}

#[test]
fn bad_command_tasks_fail_the_plan_with_nothing_written() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[(
                "sql/p/pipeline.toml",
                "[tasks.step]\ncommand = [\"no-such-program-quern\"]\n",
            )],
            "key `tasks.step.command`: `no-such-program-quern` is not a program on PATH",
        ),
        (
            &[(
                "sql/p/pipeline.toml",
                "[tasks.step]\ncommand = [\"bin/missing.sh\"]\n",
            )],
            "`bin/missing.sh` is not an executable file (paths are relative to the project folder)",
        ),
        (
            &[(
                "sql/p/pipeline.toml",
                "[tasks.step]\ncommand = [\"true\"]\ndepends_on = [\"nope\"]\n",
            )],
            "key `tasks.step.depends_on`: `nope`: pipeline `p` has no task `nope`; tasks: first, step",
        ),
        (
            &[(
                "sql/p/pipeline.toml",
                "[tasks.step]\ncommand = [\"true\"]\ndepends_on = [\"q/x\"]\n",
            )],
            "`q/x`: the project has no pipeline `q`",
        ),
        (
            &[(
                "sql/p/pipeline.toml",
                "[tasks.step]\ncommand = [\"true\"]\nproduces = \"table\"\n",
            )],
            "produces = \"table\" needs columns",
        ),
        (
            &[(
                "sql/p/pipeline.toml",
                "[tasks.step]\ncommand = [\"true\"]\nproduces = \"table\"\ncolumns = [\"a WIDGET\"]\n",
            )],
            "key `tasks.step.columns`: column type `WIDGET` of `a` does not parse as an SQL type",
        ),
        (
            &[(
                "sql/p/pipeline.toml",
                "[tasks.step]\ncommand = [\"true\"]\nmaterialized = \"append\"\n",
            )],
            "`materialized` applies to SQL tasks",
        ),
        (
            &[(
                "sql/p/pipeline.toml",
                "[tasks.first]\ntimeout = \"1m\"\n",
            )],
            "key `tasks.first.timeout`: `timeout` applies to command tasks",
        ),
        (
            &[(
                "sql/p/pipeline.toml",
                "[tasks.step]\ncommand = [\"true\"]\nenvs = [\"staging\"]\n",
            )],
            "key `tasks.step.envs`: the project has no environment `staging`",
        ),
        (
            &[
                ("sql/p/step.py", "print('hi')"),
                ("sql/p/step.sql", "SELECT 1 AS a"),
            ],
            "a task is one file",
        ),
        (
            &[(
                "sql/p/pipeline.toml",
                "[tasks.step]\ncommand = [\"true\"]\nregisters = \"churn\"\n",
            )],
            "environment `local` has no [mlflow] to register the model in",
        ),
        (
            &[(
                "sql/p/reader.sql",
                "SELECT * FROM {{ ref('step') }}",
            ), (
                "sql/p/pipeline.toml",
                "[tasks.step]\ncommand = [\"true\"]\n",
            )],
            "`p/step` is a command task that writes no table",
        ),
    ];
    for (files, expected) in cases {
        let mut all = vec![("sql/p/first.sql", "SELECT 1 AS a")];
        all.extend_from_slice(files);
        let dir = project(&all);
        let out = quern_at(dir.path(), &["run", "p", "--ds", "2024-03-01"]);
        let text = format!("{}{}", stdout(&out), stderr(&out));
        assert_eq!(out.status.code(), Some(1), "{expected}: {text}");
        assert!(text.contains(expected), "expected `{expected}` in:\n{text}");
        assert!(
            !dir.path().join("warehouse/p").exists(),
            "{expected}: something was written"
        );
    }
    // An interpreter that is not there: the environment file and key.
    let dir = project(&[("sql/p/step.py", "print('hi')")]);
    write(
        dir.path(),
        "environments/local.toml",
        "[warehouse]\nroot = \"warehouse\"\n[python]\ninterpreter = \"python-quern-missing\"\n",
    );
    let out = quern_at(dir.path(), &["plan", "p"]);
    let text = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("environments/local.toml: key `python.interpreter`: `python-quern-missing` (which runs sql/p/step.py) is not a program on PATH"),
        "{text}"
    );
}

#[test]
fn a_task_limited_to_other_environments_is_not_in_the_dag() {
    let dir = project(&[
        ("sql/p/first.sql", "SELECT 1 AS a"),
        (
            "sql/p/pipeline.toml",
            "[tasks.step]\ncommand = [\"false\"]\nenvs = [\"prod\"]\n",
        ),
        ("environments/prod.toml", "[warehouse]\nroot = \"w-prod\"\n"),
    ]);
    let out = quern_at(dir.path(), &["run", "p", "--ds", "2024-03-01"]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(!stdout(&out).contains("step"), "{}", stdout(&out));
    let out = quern_at(dir.path(), &["--env", "prod", "dag", "p"]);
    assert!(stdout(&out).contains("step"), "{}", stdout(&out));
}

/// Reads its upstream table on S3 and writes its own there, with the storage options
/// quern passes (the endpoint and the credentials, resolved from `${…}`).
const S3_PY: &str = r#"
import json, os
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable, write_deltalake
storage = json.loads(os.environ["QUERN_STORAGE_OPTIONS"])
assert os.environ["QUERN_OUTPUT_URI"].startswith("s3://quern-wh/warehouse/export/"), os.environ["QUERN_OUTPUT_URI"]
users = DeltaTable(os.environ["QUERN_TABLE_EVENTS__DAILY_ACTIVE_USERS"], storage_options=storage).to_pyarrow_table()
out = pa.table({"country": users.column("country"), "doubled": pc.multiply(users.column("active_users"), 2)})
write_deltalake(os.environ["QUERN_OUTPUT_URI"], out, mode="overwrite", storage_options=storage)
print("exported", out.num_rows, "countries")
"#;

#[test]
fn a_python_task_reads_and_writes_delta_on_s3_with_the_storage_options() {
    use crate::s3::{quern_s3, query_s3, s3_project, upload_seeds, Moto, SECRET};
    let moto = Moto::start();
    upload_seeds(&moto);
    moto.create_bucket("quern-wh");
    let project = s3_project(moto.port, "quern-wh");
    let env = project.read("environments/s3.toml");
    project.write(
        "environments/s3.toml",
        &format!("{env}\n[python]\ninterpreter = \"{}\"\n", python()),
    );
    project.write("sql/export/by_country.py", S3_PY);
    project.write(
        "sql/export/pipeline.toml",
        "[tasks.by_country]\ndepends_on = [\"events/daily_active_users\"]\nproduces = \"table\"\ncolumns = [\"country STRING\", \"doubled BIGINT\"]\n",
    );
    project.write(
        "sql/export/total.sql",
        "SELECT sum(doubled) AS total FROM {{ ref('by_country') }}",
    );
    // The upstream pipeline first: a pipeline's run reads other pipelines' tables.
    let out = quern_s3(&project, &["run", "events", "--ds", "2024-03-01"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = quern_s3(
        &project,
        &["--progress", "plain", "run", "export", "--ds", "2024-03-01"],
    );
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(out.status.success(), "{text}");
    assert!(!text.contains(SECRET), "the secret was printed:\n{text}");
    assert!(text.contains("export/by_country | exported"), "{text}");
    let users = query_s3(
        &project,
        "SELECT sum(active_users) * 2 AS total FROM events.daily_active_users",
    );
    assert_eq!(query_s3(&project, "SELECT total FROM export.total"), users);
    assert!(moto
        .keys("quern-wh", "warehouse/export/by_country/_delta_log/")
        .iter()
        .any(|k| k.ends_with("00000000000000000000.json")),);
    // The plan and its JSON name the program, never the options.
    let out = quern_s3(&project, &["--json", "plan", "export"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stdout(&out).contains(SECRET));
}

#[test]
fn sigterm_cancels_the_run_and_kills_running_programs() {
    let pid_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::remove_file(pid_file.path()).unwrap();
    let script = format!("sleep 60 & echo $! > {}; wait", pid_file.path().display());
    let dir = with_command(&script, "");
    let child = command_at(
        dir.path(),
        &["run", "p", "--ds", "2024-03-01", "--progress", "plain"],
    )
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    let started = std::time::Instant::now();
    while std::fs::read_to_string(pid_file.path()).map_or(true, |p| p.trim().is_empty()) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the program did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // What a scheduler does to stop a task.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let out = child.wait_with_output().unwrap();
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("cancel  step"), "{text}");
    assert!(
        stderr(&out).contains("quern: stopping the run"),
        "{}",
        stderr(&out)
    );
    let pid = std::fs::read_to_string(pid_file.path()).unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).unwrap_or_default();
    assert!(
        stat.is_empty() || stat.contains(") Z "),
        "the program's child {pid} outlived quern"
    );
}
