//! Concurrent writers, a writer killed mid-write and a write that runs out of room, on
//! local disk and on S3.

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{stderr, stdout, TempProject};
use crate::s3::{s3_project, upload_seeds, Moto, SECRET};

const TASKS: &str = r#"
[tasks.daily]
materialized = "partition"
partition_by = ["day"]

[tasks.log]
materialized = "append"

[tasks.big]
materialized = "table"
"#;

fn add_tasks(project: &TempProject) {
    project.write(
        "sql/events/pipeline.toml",
        &format!("{}\n{TASKS}", project.read("sql/events/pipeline.toml")),
    );
    project.write(
        "sql/events/daily.sql",
        "SELECT value AS n, DATE '{{ ds }}' AS day FROM range(0, 1000)",
    );
    project.write(
        "sql/events/log.sql",
        "SELECT DATE '{{ ds }}' AS day, {{ var('writer', 0) }} AS writer",
    );
    project.write(
        "sql/events/big.sql",
        "SELECT value AS id, value % 7 AS k, CAST(value AS DOUBLE) * 0.5 AS x FROM range(0, {{ var('n', 1000) }})",
    );
}

/// Starts every `args` at once as a separate `quern` process; all must succeed.
fn run_at_once(project: &TempProject, env: &[(&str, &str)], runs: Vec<Vec<String>>) {
    let children: Vec<_> = runs
        .iter()
        .map(|args| {
            Command::new(env!("CARGO_BIN_EXE_quern"))
                .arg("--project")
                .arg(project.path())
                .args(args)
                .envs(env.iter().copied())
                .env_remove("QUERN_ENV")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("quern starts")
        })
        .collect();
    for (child, args) in children.into_iter().zip(&runs) {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}:\n{}\n{}",
            stdout(&out),
            stderr(&out)
        );
        assert!(!stdout(&out).contains(SECRET) && !stderr(&out).contains(SECRET));
    }
}

fn concurrent_writers(
    project: &TempProject,
    env_args: &[&str],
    env: &[(&str, &str)],
    query: impl Fn(&str) -> String,
) {
    let base = |ds: &str, task: &str, writer: usize| {
        let mut v: Vec<String> = env_args.iter().map(|s| s.to_string()).collect();
        v.extend(["run", "events", "--ds", ds, "--select", task, "--var"].map(String::from));
        v.push(format!("writer={writer}"));
        v
    };
    // Create both tables, then four writers of each kind at once.
    run_at_once(project, env, vec![base("2024-01-01", "daily", 0)]);
    run_at_once(project, env, vec![base("2024-01-01", "log", 0)]);
    let days = ["2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05"];
    let mut runs: Vec<Vec<String>> = days.iter().map(|d| base(d, "daily", 0)).collect();
    runs.extend(days.iter().enumerate().map(|(i, d)| base(d, "log", i + 1)));
    run_at_once(project, env, runs);

    assert_eq!(
        query("SELECT count(DISTINCT day) AS days, count(*) AS n FROM events.daily"),
        "days,n\n5,5000\n"
    );
    assert_eq!(
        query("SELECT count(*) AS n, count(DISTINCT writer) AS writers FROM events.log"),
        "n,writers\n5,5\n"
    );
}

#[test]
fn concurrent_writers_on_local_disk_all_land() {
    let project = TempProject::new();
    add_tasks(&project);
    concurrent_writers(&project, &[], &[], |sql| project.query_csv(sql));
    // Delta history: the create plus four commits on each table.
    let logs = |t: &str| {
        std::fs::read_dir(
            project
                .path()
                .join(format!("warehouse/events/{t}/_delta_log")),
        )
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".json")
        })
        .count()
    };
    assert_eq!(logs("daily"), 5);
    assert_eq!(logs("log"), 5);
}

#[test]
fn concurrent_writers_on_s3_all_land() {
    let moto = Moto::start();
    upload_seeds(&moto);
    moto.create_bucket("quern-wh");
    let project = s3_project(moto.port, "quern-wh");
    add_tasks(&project);
    let env = [
        ("QUERN_TEST_S3_KEY", "testing"),
        ("QUERN_TEST_S3_SECRET", SECRET),
    ];
    concurrent_writers(&project, &["--env", "s3"], &env, |sql| {
        crate::s3::query_s3(&project, sql)
    });
    let keys = moto.keys("quern-wh", "warehouse/events/daily/_delta_log/");
    assert_eq!(
        keys.iter().filter(|k| k.ends_with(".json")).count(),
        5,
        "{keys:?}"
    );
}

#[test]
fn a_writer_killed_mid_write_leaves_the_previous_version() {
    let project = TempProject::new();
    add_tasks(&project);
    let run = |n: &str| {
        project.quern(&[
            "run",
            "events",
            "--ds",
            "2024-01-01",
            "--select",
            "big",
            "--var",
            &format!("n={n}"),
        ])
    };
    let out = run("1000");
    assert!(out.status.success(), "{}", stderr(&out));
    let table = project.path().join("warehouse/events/big");
    let files_before: Vec<_> = std::fs::read_dir(&table)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();

    // A large write, killed once it has started writing data files.
    let mut child = project
        .command(&[
            "run",
            "events",
            "--ds",
            "2024-01-01",
            "--select",
            "big",
            "--var",
            "n=400000000",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        let new_files = std::fs::read_dir(&table)
            .unwrap()
            .flatten()
            .filter(|e| !files_before.contains(&e.file_name()))
            .count();
        if new_files > 0 {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the write finished before it could be killed"
        );
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no data file appeared"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let count = |p: &TempProject| p.query_csv("SELECT count(*) AS n FROM events.big");
    assert_eq!(
        count(&project),
        "n\n1000\n",
        "the table must still read as version 0"
    );
    let logs: Vec<_> = std::fs::read_dir(table.join("_delta_log"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(
        logs.iter()
            .filter(|f| f.to_string_lossy().ends_with(".json"))
            .count(),
        1,
        "{logs:?}"
    );

    // A rerun completes with the right contents.
    let out = run("2500");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(count(&project), "n\n2500\n");
    let sum = project.query_csv("SELECT sum(id) AS s FROM events.big");
    assert_eq!(sum, format!("s\n{}\n", 2499 * 2500 / 2));
}

#[test]
fn a_write_out_of_room_fails_with_its_error_and_no_panic_and_leaves_the_table() {
    let project = TempProject::new();
    add_tasks(&project);
    let run = |n: &'static str| {
        [
            "run",
            "events",
            "--ds",
            "2024-01-01",
            "--select",
            "big",
            "--var",
            n,
        ]
    };
    let out = project.quern(&run("n=1000"));
    assert!(out.status.success(), "{}", stderr(&out));

    // Files of at most 256 KiB (the run log's fit, the table's data files do not),
    // with SIGXFSZ ignored so that a longer write fails with EFBIG, as a full disk
    // fails with ENOSPC.
    let mut command = project.command(&run("n=2000000"));
    // SAFETY: setrlimit and signal are async-signal-safe, and touch only the child.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 256 * 1024,
                rlim_max: 256 * 1024,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        });
    }
    let out = command.output().unwrap();
    let (said, err) = (stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(1), "{said}\n{err}");
    assert!(said.contains("File too large"), "{said}\n{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(
        project.query_csv("SELECT count(*) AS n FROM events.big"),
        "n\n1000\n",
        "the table reads as before"
    );
}
