//! Distributed runs: a real `quern scheduler` and two `quern executor` processes on
//! loopback ports, and environments pointing at them (`[engine] ballista`). Every
//! example pipeline must write the same tables as the embedded run.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{python, stderr, stdout, TempProject};
use crate::s3::{free_port, upload_seeds, wait_for_port, Moto, SECRET};

/// A scheduler and its executors, stopped when dropped; their logs are kept in a
/// folder of their own.
struct Cluster {
    port: u16,
    scheduler: Child,
    executors: Vec<Child>,
    logs: tempfile::TempDir,
}

impl Cluster {
    /// Starts a scheduler, writes environment `env` of `project` (`base`'s, writing
    /// under `root` when given, sending its queries to the scheduler), and starts
    /// `executors` executors of it, each running one task at a time, with `secrets` in
    /// their environment only; returns once every executor has registered.
    fn start(
        project: &TempProject,
        (base, env, root): (&str, &str, Option<&str>),
        executors: usize,
        secrets: &[(&str, &str)],
    ) -> Self {
        let logs = tempfile::Builder::new()
            .prefix("quern-cluster-")
            .tempdir()
            .unwrap();
        let port = free_port();
        let scheduler = spawn(
            project.command(&[
                "scheduler",
                "--bind",
                &format!("127.0.0.1:{port}"),
                "--executor-timeout",
                "8s",
            ]),
            &logs.path().join("scheduler.log"),
            &[("QUERN_LOG", "info,ballista_scheduler=debug")],
        );
        wait_for_port(port);
        let mut cluster = Cluster {
            port,
            scheduler,
            executors: Vec::new(),
            logs,
        };
        cluster.environment(project, base, env, root);
        for _ in 0..executors {
            cluster.add_executor(project, env, secrets);
        }
        cluster.wait_for_log("scheduler", "Received register executor request", executors);
        cluster
    }

    /// Starts an executor of environment `env` of `project`, running one task at a time,
    /// with `secrets` in its environment; its log is `executor-<n>`.
    fn add_executor(&mut self, project: &TempProject, env: &str, secrets: &[(&str, &str)]) {
        let i = self.executors.len();
        let (flight, grpc) = (free_port(), free_port());
        let work = self.logs.path().join(format!("work-{i}"));
        let executor = spawn(
            project.command(&[
                "--env",
                env,
                "executor",
                "--scheduler",
                &format!("127.0.0.1:{}", self.port),
                "--bind",
                &format!("127.0.0.1:{flight}"),
                "--grpc-port",
                &grpc.to_string(),
                "--concurrent-tasks",
                "1",
                "--work-dir",
                &work.display().to_string(),
            ]),
            &self.log_path(&format!("executor-{i}")),
            secrets,
        );
        self.executors.push(executor);
    }

    fn log_path(&self, name: &str) -> PathBuf {
        self.logs.path().join(format!("{name}.log"))
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.log_path(name)).unwrap_or_default()
    }

    /// Waits until `name`'s log holds `text` at least `times` times.
    fn wait_for_log(&self, name: &str, text: &str, times: usize) {
        let start = Instant::now();
        while self.log(name).matches(text).count() < times {
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "{name} did not log {text:?} {times} times:\n{}",
                self.log(name)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// An environment file like `base`'s, writing under `root` and sending its queries
    /// to this cluster.
    fn environment(&self, project: &TempProject, base: &str, name: &str, root: Option<&str>) {
        environment(project, (base, name, root), self.port);
    }
}

/// Environment `name`, like `base`'s, writing under `root` when given and sending its
/// queries to the scheduler on `port`.
fn environment(project: &TempProject, (base, name, root): (&str, &str, Option<&str>), port: u16) {
    let mut text = project.read(&format!("environments/{base}.toml"));
    if let Some(root) = root {
        text = text
            .lines()
            .map(|l| match l.starts_with("root = ") {
                true => format!("root = \"{root}\""),
                false => l.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n");
    }
    let engine = format!("[engine]\nballista = \"df://127.0.0.1:{port}\"\n");
    text = if text.contains("[engine]\n") {
        text.replace("[engine]\n", &engine)
    } else {
        format!("{text}\n{engine}")
    };
    project.write(&format!("environments/{name}.toml"), &text);
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in self.executors.iter_mut().chain([&mut self.scheduler]) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn spawn(mut command: Command, log: &Path, env: &[(&str, &str)]) -> Child {
    let file = std::fs::File::create(log).unwrap();
    command
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .expect("quern starts")
}

fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        stdout(out),
        stderr(out)
    );
}

/// Every task table under `a` holds the same rows as the one under `b` (as multisets,
/// floats within 1e-9), read by another Delta reader (deltalake).
fn assert_same_tables(a: &Path, b: &Path) {
    let script = r#"
import math, os, sys, deltalake
a, b = sys.argv[1], sys.argv[2]
def rows(path, cols):
    table = deltalake.DeltaTable(path).to_pyarrow_table().select(cols)
    key = lambda r: tuple(repr(round(v, 6)) if isinstance(v, float) else repr(v) for v in r)
    return sorted((tuple(r[c] for c in cols) for r in table.to_pylist()), key=key)
def same(x, y):
    if isinstance(x, float) and isinstance(y, float):
        return math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-9) or (math.isnan(x) and math.isnan(y))
    return x == y
tables = 0
for p in sorted(os.listdir(a)):
    if p.startswith('_'):
        continue
    for t in sorted(os.listdir(os.path.join(a, p))):
        cols = sorted(deltalake.DeltaTable(os.path.join(a, p, t)).schema().to_arrow().names)
        ra, rb = rows(os.path.join(a, p, t), cols), rows(os.path.join(b, p, t), cols)
        assert len(ra) == len(rb), f"{p}.{t}: {len(ra)} rows, {len(rb)} distributed"
        for x, y in zip(ra, rb):
            assert all(same(u, v) for u, v in zip(x, y)), f"{p}.{t}: {x} != {y}"
        tables += 1
print(tables, flush=True)
# pyarrow's threads can abort the interpreter's teardown ("terminate called without an
# active exception"); the answer is printed by now.
os._exit(0)
"#;
    let out = Command::new(python())
        .args(["-c", script])
        .arg(a)
        .arg(b)
        .output()
        .expect("python runs");
    assert_ok(&out);
    assert!(
        stdout(&out).trim().parse::<usize>().unwrap() >= 8,
        "compared {} tables",
        stdout(&out)
    );
}

#[test]
fn every_example_pipeline_runs_on_the_cluster_and_matches_the_embedded_run() {
    let project = TempProject::new();
    let cluster = Cluster::start(&project, ("local", "dist", Some("warehouse-dist")), 2, &[]);
    for ds in ["2024-03-01", "2024-03-02"] {
        for pipeline in ["events", "reporting", "forecast", "scoring"] {
            assert_ok(&project.quern(&["run", pipeline, "--ds", ds]));
            let out = project.quern(&["--env", "dist", "run", pipeline, "--ds", ds]);
            assert_ok(&out);
        }
    }
    assert_same_tables(
        &project.path().join("warehouse"),
        &project.path().join("warehouse-dist"),
    );

    // The reads ran on the executors, both of them, and the model and the aggregate
    // functions with them.
    let scheduler = cluster.log("scheduler");
    assert!(
        scheduler.matches("Job submitted").count() >= 10,
        "{scheduler}"
    );
    assert!(
        scheduler.contains("churn("),
        "the scoring ran elsewhere:\n{scheduler}"
    );
    assert!(scheduler.contains("odds_ratio("), "{scheduler}");
    for i in 0..2 {
        let log = cluster.log(&format!("executor-{i}"));
        assert!(
            log.contains("Finished task"),
            "executor {i} ran nothing:\n{log}"
        );
    }

    // Ad-hoc queries and the pipeline tests work the same on the distributed environment.
    let sql = "SELECT country, sum(active_users) AS n FROM events.daily_active_users GROUP BY 1 ORDER BY 1";
    let local = project.quern(&["query", sql, "--format", "csv"]);
    let dist = project.quern(&["--env", "dist", "query", sql, "--format", "csv"]);
    assert_ok(&dist);
    assert_eq!(stdout(&local), stdout(&dist));
    assert!(stdout(&dist).lines().count() > 2, "{}", stdout(&dist));
    // The local environment's row tests and golden SQL, made the distributed
    // environment's: the same cases pass (CSV fixtures are read on the executors).
    let local = project.quern(&["--env", "local", "test"]);
    assert_ok(&local);
    tests_for(&project, "local", "dist");
    let tests = project.quern(&["--env", "dist", "test"]);
    assert_ok(&tests);
    assert_eq!(stdout(&tests), stdout(&local).replace("@local", "@dist"));
}

/// Makes the row tests of environment `from` (those naming none) and its golden SQL
/// files those of environment `to`.
fn tests_for(project: &TempProject, from: &str, to: &str) {
    for pipeline in std::fs::read_dir(project.path().join("sql")).unwrap() {
        let tests = pipeline.unwrap().path().join("tests");
        let Ok(files) = std::fs::read_dir(&tests) else {
            continue;
        };
        for file in files.map(|f| f.unwrap().path()) {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            if file.extension().is_some_and(|e| e == "toml") && text.contains("[[test]]\n") {
                let cases: Vec<String> = text
                    .split("[[test]]\n")
                    .map(|case| match case.lines().any(|l| l.starts_with("env = ")) {
                        true => case.to_string(),
                        false => format!("env = \"{to}\"\n{case}"),
                    })
                    .collect();
                let first = text.split("[[test]]\n").next().unwrap_or_default();
                let rest = cases[1..].join("[[test]]\n");
                std::fs::write(&file, format!("{first}[[test]]\n{rest}")).unwrap();
            }
        }
        let golden = tests.join("golden");
        if let Ok(sqls) = std::fs::read_dir(golden.join(from)) {
            std::fs::create_dir_all(golden.join(to)).unwrap();
            for sql in sqls.map(|f| f.unwrap().path()) {
                std::fs::copy(&sql, golden.join(to).join(sql.file_name().unwrap())).unwrap();
            }
        }
    }
}

#[test]
fn executors_read_s3_with_their_own_secrets_and_the_scheduler_never_sees_them() {
    let moto = Moto::start();
    upload_seeds(&moto);
    moto.create_bucket("quern-wh");
    let project = crate::s3::s3_project(moto.port, "quern-wh");
    let secrets = [
        ("QUERN_TEST_S3_KEY", "testing"),
        ("QUERN_TEST_S3_SECRET", SECRET),
    ];
    let cluster = Cluster::start(
        &project,
        ("s3", "s3dist", Some("s3://quern-wh/warehouse-dist")),
        2,
        &secrets,
    );
    for pipeline in ["events", "reporting"] {
        let out =
            crate::s3::s3_command(&project, "s3dist", &["run", pipeline, "--ds", "2024-03-01"])
                .output()
                .unwrap();
        assert_ok(&out);
    }
    let sql = "SELECT event_date, count(*) AS n FROM events.events_by_day GROUP BY 1 ORDER BY 1";
    let dist = crate::s3::s3_command(&project, "s3dist", &["query", sql, "--format", "csv"])
        .output()
        .unwrap();
    assert_ok(&dist);
    assert_ok(&project.quern(&["run", "events", "--ds", "2024-03-01"]));
    assert_eq!(stdout(&dist), project.query_csv(sql));

    // The executors read the S3 files; what the scheduler received (logged at debug:
    // every job's plan and settings) holds no secret.
    let scheduler = cluster.log("scheduler");
    for read in [
        "events/raw_events.csv",
        "warehouse-dist/events/events_by_day/",
    ] {
        assert!(
            scheduler.contains(read),
            "{read} was not read on the cluster:\n{scheduler}"
        );
    }
    assert!(!scheduler.contains(SECRET), "the scheduler saw the secret");
    for i in 0..2 {
        assert!(!cluster.log(&format!("executor-{i}")).contains(SECRET));
    }
}

#[test]
fn an_executor_killed_mid_job_leaves_no_half_written_table_and_a_rerun_succeeds() {
    let project = TempProject::new();
    project.write(
        "sql/load/pipeline.toml",
        "[tasks.numbers]\nmaterialized = \"table\"\n\n[tasks.sorted]\nmaterialized = \"table\"\n",
    );
    project.write(
        "sql/load/numbers.sql",
        "SELECT value AS id, value % 1000 AS k, (value * 7919) % 1000003 AS x FROM range(0, 3000000)",
    );
    project.write(
        "sql/load/sorted.sql",
        "SELECT k, x, id, row_number() OVER (PARTITION BY k ORDER BY x, id) AS rank FROM {{ ref('numbers') }}",
    );
    let mut cluster = Cluster::start(&project, ("local", "dist", Some("warehouse-dist")), 2, &[]);
    assert_ok(&project.quern(&["--env", "dist", "run", "load", "--select", "numbers"]));
    let table = project.path().join("warehouse-dist/load/sorted");

    let run = project
        .command(&["--env", "dist", "run", "load", "--select", "sorted"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Killed once the job's tasks run.
    cluster.wait_for_log("executor-0", "Execute task", 1);
    cluster.executors[0].kill().unwrap();
    let _ = cluster.executors[0].wait();
    let out = run.wait_with_output().unwrap();
    if out.status.success() {
        // Ballista ran the lost tasks again on the other executor.
        assert!(table.join("_delta_log").is_dir());
    } else {
        // Or the run failed, saying which task, and wrote nothing.
        assert!(
            stderr(&out).contains("sorted") || stdout(&out).contains("sorted"),
            "{}",
            stderr(&out)
        );
        assert!(
            !table.join("_delta_log").is_dir(),
            "a failed run left a table"
        );
        assert_ok(&project.quern(&["--env", "dist", "run", "load", "--select", "sorted"]));
    }
    let sql = "SELECT count(*) AS n, count(DISTINCT id) AS ids, max(rank) AS top FROM load.sorted";
    let counted = project.quern(&["--env", "dist", "query", sql, "--format", "csv"]);
    assert_eq!(stdout(&counted), "n,ids,top\n3000000,3000000,3000\n");
}

#[test]
fn a_scheduler_address_that_does_not_parse_is_a_config_error_naming_the_file_and_key() {
    let project = TempProject::new();
    for (address, says) in [
        ("\"http://127.0.0.1:50050\"", "has scheme `http`, not df"),
        ("\"df://\"", "names no host"),
        ("\"df://127.0.0.1:50050/jobs\"", "has a path"),
        (
            "\"127.0.0.1:50050\"",
            "write the scheduler's address as \"df://host:50050\"",
        ),
    ] {
        let engine = format!("[engine]\nballista = {address}");
        crate::compression::assert_bad_engine_setting(&project, &engine, "engine.ballista", says);
    }
}

#[test]
fn a_scheduler_that_does_not_answer_fails_the_task_naming_it_and_writes_nothing() {
    let project = TempProject::new();
    let port = free_port();
    environment(&project, ("local", "gone", Some("warehouse-gone")), port);
    let out = project.quern(&["--env", "gone", "run", "events", "--ds", "2024-03-01"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert!(said.contains(&format!("127.0.0.1:{port}")), "{said}");
    assert!(
        !project
            .path()
            .join("warehouse-gone/events/raw_events/_delta_log")
            .exists(),
        "{said}"
    );
}

#[test]
fn the_scheduler_and_the_executors_stop_cleanly_on_sigterm() {
    let project = TempProject::new();
    let mut cluster = Cluster::start(&project, ("local", "dist", None), 1, &[]);
    for child in cluster.executors.iter_mut().chain([&mut cluster.scheduler]) {
        let term = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(term.success());
        let start = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "still running");
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(status.success(), "{status}");
    }
    assert!(cluster
        .log("scheduler")
        .contains("quern scheduler stopping"));
}

#[test]
fn a_model_that_differs_on_an_executor_fails_the_task_naming_it_and_writes_nothing() {
    let project = TempProject::new();
    // The executor serves a checkout whose model file is not the one the client planned
    // with.
    let elsewhere = TempProject::new();
    let mut model = std::fs::read(elsewhere.path().join("models/churn.onnx")).unwrap();
    model.extend_from_slice(b"\0");
    std::fs::write(elsewhere.path().join("models/churn.onnx"), model).unwrap();
    let mut cluster = Cluster::start(&project, ("local", "dist", Some("warehouse-dist")), 0, &[]);
    environment(
        &elsewhere,
        ("local", "dist", Some("warehouse-dist")),
        cluster.port,
    );
    cluster.add_executor(&elsewhere, "dist", &[]);
    cluster.wait_for_log("scheduler", "Received register executor request", 1);
    let out = project.quern(&["--env", "dist", "run", "scoring", "--ds", "2024-03-01"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let said = stdout(&out);
    assert!(said.contains("FAILED  churn_scores"), "{said}");
    assert!(
        said.contains("churn.onnx") && said.contains("SHA-256"),
        "{said}"
    );
    let table = project
        .path()
        .join("warehouse-dist/scoring/churn_scores/_delta_log");
    assert!(!table.exists(), "{said}");
}

#[test]
fn a_table_with_column_mapping_reads_on_the_client_and_gives_the_same_rows() {
    let project = TempProject::with_task("[tasks.dim]", "SELECT 1 AS id");
    project.python_writes_dim(crate::scan::COLUMN_MAPPED);
    let _cluster = Cluster::start(&project, ("local", "dist", None), 1, &[]);
    let out = project
        .command(&[
            "--env",
            "dist",
            "query",
            "--format",
            "csv",
            "SELECT id FROM events.dim ORDER BY id",
        ])
        .env("QUERN_LOG", "quern=debug")
        .output()
        .unwrap();
    assert_ok(&out);
    assert_eq!(stdout(&out), "id\n7\n8\n");
    assert!(stderr(&out).contains("column mapping"), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("is read on the client"),
        "{}",
        stderr(&out)
    );
}
