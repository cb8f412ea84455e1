//! Command tasks: a program in the DAG (`sql/<pipeline>/<task>.py`, run with the
//! environment's interpreter, or `command = […]` in `pipeline.toml`). Planning checks
//! its program and declared dependencies and gives downstream SQL its declared
//! columns; running it passes the run's dates, its upstream tables' URIs, the storage
//! options and MLflow's address in its environment, streams its output, kills its
//! whole process group at its timeout, then checks what it said it would do: commit a
//! new version of its table with the declared columns, or register a new version of
//! a model, whose model functions are then resolved again for the rest of the run.

use std::collections::{BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::time::Duration;

use datafusion::arrow::datatypes::SchemaRef;
use tokio::io::{AsyncBufReadExt, BufReader};
use url::Url;

use crate::config::{Environment, ModelUri, TaskId};
use crate::delta::WriteOutcome;
use crate::error::{Error, Result};
use crate::pipeline::{Command, Task};
use crate::template::{DataInterval, RunDate};

/// How many lines of a program's output are kept for its error and the run log.
const TAIL_LINES: usize = 30;
/// Longer lines are cut to this many bytes in the tail.
const TAIL_LINE_BYTES: usize = 400;

/// Why a command task failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// The program could not be started.
    #[error("cannot start `{program}`")]
    Spawn {
        /// The program.
        program: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The program exited with a non-zero status, or was killed by a signal.
    #[error("the program {status}")]
    Exit {
        /// `exited with status 3`, `was killed by signal 9`.
        status: String,
    },
    /// The program ran past the task's `timeout` and was killed with its process group.
    #[error("the program ran past its timeout of {} and was killed with its process group", humantime::format_duration(*timeout))]
    Timeout {
        /// The task's timeout.
        timeout: Duration,
    },
    /// The run was cancelled (`--fail-fast`) and the program killed.
    #[error("cancelled: the run was stopped (another task failed with --fail-fast, or quern was interrupted) and the program killed")]
    Cancelled,
    /// The task declares `produces = "table"` but no new version was committed.
    #[error("it declares produces = \"table\" but committed no new version of {uri} (still {})", version.map_or("no table".to_string(), |v| format!("version {v}")))]
    NoCommit {
        /// The table.
        uri: String,
        /// Its version before and after the program ran.
        version: Option<u64>,
    },
    /// The committed table's columns are not the declared ones.
    #[error("the table it committed at {uri} does not have the columns pipeline.toml declares ({declared}): {found}")]
    Columns {
        /// The table.
        uri: String,
        /// How its columns differ.
        found: String,
        /// The columns declared.
        declared: String,
    },
    /// The task declares `registers` but the model got no new version.
    #[error("it declares registers = \"{model}\" but registered model `{model}` got no new version in MLflow (latest: {})", latest.map_or("none".to_string(), |v| format!("version {v}")))]
    NoNewVersion {
        /// The registered model.
        model: String,
        /// Its latest version, before and after.
        latest: Option<u64>,
    },
}

/// A command task, planned: everything but the secrets, which are resolved when it
/// starts.
#[derive(Debug, Clone)]
pub(crate) struct PlannedCommand {
    /// The program (found on `PATH` or under the project) and its arguments.
    pub argv: Vec<String>,
    /// Where it runs: the project folder.
    pub cwd: PathBuf,
    /// Its environment, but for the secrets.
    pub vars: Vec<(String, String)>,
    /// The table it produces, with its declared columns.
    pub output: Option<(Url, SchemaRef)>,
    /// The registered model it registers a version of.
    pub registers: Option<String>,
    /// The model functions of the environment that name that model.
    pub refreshes: BTreeSet<String>,
    pub timeout: Option<Duration>,
    pub retry_on_exit: bool,
}

/// The model functions of `env` whose URI names registered model `model`.
pub(crate) fn functions_of_model(env: &Environment, model: &str) -> BTreeSet<String> {
    env.models
        .iter()
        .filter(|(_, m)| match ModelUri::parse(m.uri()) {
            Ok(ModelUri::Alias { name, .. } | ModelUri::Version { name, .. }) => name == model,
            _ => false,
        })
        .map(|(f, _)| f.clone())
        .collect()
}

/// A program as a command names it: a path (relative to the project folder unless
/// absolute) when it has a `/`, else a program on `PATH`.
fn find_program(root: &Path, program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        let path = root.join(program);
        return executable(&path).then_some(path);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| executable(p))
}

/// The dates of a run as a program reads them.
pub(crate) fn date_vars(ds: RunDate, interval: Option<&DataInterval>) -> Vec<(String, String)> {
    let (start, end) = match interval {
        Some(i) => (i.start, i.end),
        None => {
            let day = ds.date().and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
            (day, day + chrono::Duration::days(1))
        }
    };
    let rfc3339 =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    vec![
        ("QUERN_DS".into(), ds.ds()),
        ("QUERN_DS_NODASH".into(), ds.ds_nodash()),
        ("QUERN_PREV_DS".into(), ds.prev_ds()),
        ("QUERN_NEXT_DS".into(), ds.next_ds()),
        ("QUERN_DATA_INTERVAL_START".into(), rfc3339(start)),
        ("QUERN_DATA_INTERVAL_END".into(), rfc3339(end)),
    ]
}

/// The environment variable that holds upstream task `id`'s table URI.
pub(crate) fn table_var(id: &TaskId) -> String {
    format!(
        "QUERN_TABLE_{}__{}",
        id.pipeline.as_str().to_ascii_uppercase(),
        id.task.as_str().to_ascii_uppercase()
    )
}

/// What planning a command task needs from the planner.
pub(crate) struct CommandContext<'a> {
    pub root: &'a Path,
    pub env: &'a Environment,
    pub dates: &'a [(String, String)],
}

/// Plans command task `task`: finds its program, and names its upstream tables
/// (`tables`: each declared upstream task that writes one, with its URI) and its
/// output. An error names the task's file and key.
pub(crate) fn plan(
    cx: &CommandContext<'_>,
    task: &Task,
    tables: Vec<(TaskId, Url)>,
    output: Option<(Url, SchemaRef)>,
) -> Result<PlannedCommand> {
    let (env, root) = (cx.env, cx.root);
    let config_file = match &task.command {
        Some(Command::Python { script }) => script.with_file_name("pipeline.toml"),
        _ => task.file.clone(),
    };
    let argv = match &task.command {
        Some(Command::Python { script }) => {
            let interpreter = &env.python.interpreter;
            let found = find_program(root, interpreter).ok_or_else(|| Error::Config {
                file: env.file.clone(),
                key: "python.interpreter".into(),
                message: format!(
                    "`{interpreter}` (which runs {}) is not {}",
                    script.display(),
                    if interpreter.contains('/') {
                        "an executable file under the project folder"
                    } else {
                        "a program on PATH; install it or name a path"
                    }
                ),
            })?;
            if !root.join(script).is_file() {
                return Err(Error::Config {
                    file: script.clone(),
                    key: task.name.to_string(),
                    message: "the script does not exist".into(),
                });
            }
            vec![
                found.display().to_string(),
                root.join(script).display().to_string(),
            ]
        }
        Some(Command::Program { argv }) => {
            let program = &argv[0];
            let found = find_program(root, program).ok_or_else(|| Error::Config {
                file: config_file.clone(),
                key: format!("tasks.{}.command", task.name),
                message: format!(
                    "`{program}` is not {}",
                    if program.contains('/') {
                        "an executable file (paths are relative to the project folder)"
                    } else {
                        "a program on PATH"
                    }
                ),
            })?;
            std::iter::once(found.display().to_string())
                .chain(argv[1..].iter().cloned())
                .collect()
        }
        None => unreachable!("plan is called for command tasks"),
    };
    if task.config.registers.is_some() && env.mlflow.is_none() {
        return Err(Error::Config {
            file: config_file,
            key: format!("tasks.{}.registers", task.name),
            message: format!(
                "environment `{}` has no [mlflow] to register the model in; add [mlflow] to {}, or limit the task to other environments with envs = [...]",
                env.name,
                env.file.display()
            ),
        });
    }
    let mut vars = vec![
        ("QUERN_ENV".to_string(), env.name.clone()),
        ("QUERN_PROJECT".to_string(), root.display().to_string()),
        ("QUERN_PIPELINE".to_string(), task.pipeline.to_string()),
        ("QUERN_TASK".to_string(), task.name.to_string()),
    ];
    vars.extend(cx.dates.iter().cloned());
    for (id, url) in &tables {
        vars.push((table_var(id), url.to_string()));
    }
    if let Some((url, _)) = &output {
        vars.push(("QUERN_OUTPUT_URI".into(), url.to_string()));
    }
    let refreshes = task
        .config
        .registers
        .as_deref()
        .map(|m| functions_of_model(env, m))
        .unwrap_or_default();
    Ok(PlannedCommand {
        argv,
        cwd: root.to_path_buf(),
        vars,
        output,
        registers: task.config.registers.clone(),
        refreshes,
        timeout: task.config.timeout,
        retry_on_exit: task.config.retry_on_exit,
    })
}

/// The last lines a program printed.
#[derive(Debug, Default)]
pub(crate) struct Tail(VecDeque<String>);

impl Tail {
    fn push(&mut self, line: &str) {
        if self.0.len() == TAIL_LINES {
            self.0.pop_front();
        }
        let mut cut = line.len().min(TAIL_LINE_BYTES);
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        self.0.push_back(line[..cut].to_string());
    }

    /// The lines, joined with newlines.
    pub(crate) fn text(&self) -> String {
        self.0.iter().cloned().collect::<Vec<_>>().join("\n")
    }
}

/// The secrets a program gets, resolved when it starts: the storage options (JSON,
/// for a Python `deltalake` reader) and MLflow's address and token, as quern's own
/// MLflow client resolves them.
pub(crate) fn secret_vars(
    env: &Environment,
    storage: &crate::delta::StorageOptions,
) -> Result<Vec<(String, String)>> {
    let options: std::collections::BTreeMap<_, _> = storage.iter().collect();
    let mut vars = vec![(
        "QUERN_STORAGE_OPTIONS".to_string(),
        serde_json::to_string(&options).unwrap_or_else(|_| "{}".into()),
    )];
    if let Some(client) = crate::mlflow::Client::for_env(env)? {
        vars.push(("MLFLOW_TRACKING_URI".into(), client.base().to_string()));
        if let Some(token) = client.token() {
            vars.push(("MLFLOW_TRACKING_TOKEN".into(), token.to_string()));
        }
    }
    Ok(vars)
}

/// What running a program needs from the run.
pub(crate) struct Launch<'a> {
    /// [`secret_vars`], resolved by the caller.
    pub secrets: Vec<(String, String)>,
    pub run_id: &'a str,
    pub cancel: &'a std::sync::atomic::AtomicBool,
    /// Called with each line it prints (`true` for stderr).
    pub on_line: &'a (dyn Fn(bool, &str) + Sync),
}

/// Runs the program to its end: its output streamed to `on_line` and kept in `tail`;
/// killed with its process group at its timeout or when the run is cancelled.
pub(crate) async fn execute(
    cmd: &PlannedCommand,
    launch: &Launch<'_>,
    tail: &mut Tail,
) -> std::result::Result<(), CommandError> {
    let mut child = tokio::process::Command::new(&cmd.argv[0])
        .args(&cmd.argv[1..])
        .current_dir(&cmd.cwd)
        .envs(cmd.vars.iter().cloned())
        .envs(launch.secrets.iter().cloned())
        .env("QUERN_RUN_ID", launch.run_id)
        // Python prints as it goes rather than when its buffer fills.
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a timeout kills what it started too.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| CommandError::Spawn {
            program: cmd.argv[0].clone(),
            source,
        })?;
    let group = child.id().map(|id| id as i32);
    let kill_group = || {
        if let Some(pgid) = group {
            // SAFETY: killpg only sends a signal to the group the program leads.
            unsafe {
                libc::killpg(pgid, libc::SIGKILL);
            }
        }
    };
    let mut out = child.stdout.take().map(|s| BufReader::new(s).lines());
    let mut err = child.stderr.take().map(|s| BufReader::new(s).lines());
    let deadline = cmd.timeout.map(|t| tokio::time::Instant::now() + t);
    let far = tokio::time::Instant::now() + Duration::from_secs(100 * 365 * 86400);
    let timer = tokio::time::sleep_until(deadline.unwrap_or(far));
    tokio::pin!(timer);
    let mut poll = tokio::time::interval(Duration::from_millis(100));
    let mut status = None;
    loop {
        if status.is_some() && out.is_none() && err.is_none() {
            break;
        }
        tokio::select! {
            line = next_line(&mut out), if out.is_some() => match line {
                Some(l) => { tail.push(&l); (launch.on_line)(false, &l) }
                None => out = None,
            },
            line = next_line(&mut err), if err.is_some() => match line {
                Some(l) => { tail.push(&l); (launch.on_line)(true, &l) }
                None => err = None,
            },
            s = child.wait(), if status.is_none() => {
                status = Some(s.map_err(|source| CommandError::Spawn { program: cmd.argv[0].clone(), source })?);
                // What it started may still hold the pipes: they close with the group.
                kill_group();
            },
            _ = &mut timer => {
                kill_group();
                let _ = child.wait().await;
                return Err(CommandError::Timeout { timeout: cmd.timeout.unwrap_or_default() });
            },
            _ = poll.tick() => if launch.cancel.load(Ordering::Relaxed) {
                kill_group();
                let _ = child.wait().await;
                return Err(CommandError::Cancelled);
            },
        }
    }
    let status = status.expect("the loop ends once the program exited");
    if status.success() {
        return Ok(());
    }
    use std::os::unix::process::ExitStatusExt;
    let status = match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        _ => format!("ended with {status}"),
    };
    Err(CommandError::Exit { status })
}

async fn next_line<R: tokio::io::AsyncBufRead + Unpin>(
    lines: &mut Option<tokio::io::Lines<R>>,
) -> Option<String> {
    match lines {
        // An unreadable stream (not UTF-8 throughout) ends the program's output.
        Some(l) => l.next_line().await.ok().flatten(),
        None => std::future::pending().await,
    }
}

/// The version of the table at `url`, or `None` when there is none.
pub(crate) async fn table_version(
    url: &Url,
    storage: &crate::delta::StorageOptions,
) -> Result<Option<u64>> {
    Ok(crate::delta::open(url, storage)
        .await?
        .and_then(|t| t.version()))
}

/// Checks the table a program committed: a version after `before`, with the declared
/// columns (compared as Delta types; nullability is the program's). Returns the table
/// and the outcome to report.
pub(crate) async fn check_output(
    task: &super::PlannedTask,
    url: &Url,
    declared: &SchemaRef,
    storage: &crate::delta::StorageOptions,
    before: Option<u64>,
) -> Result<std::result::Result<(deltalake::DeltaTable, WriteOutcome), CommandError>> {
    let table = crate::delta::open(url, storage).await?;
    let version = table.as_ref().and_then(|t| t.version());
    let (Some(table), Some(v)) = (table, version) else {
        return Ok(Err(CommandError::NoCommit {
            uri: url.to_string(),
            version: before,
        }));
    };
    if before.is_some_and(|b| v <= b) {
        return Ok(Err(CommandError::NoCommit {
            uri: url.to_string(),
            version: before,
        }));
    }
    let diff = crate::delta::schema_diff(&table, url, declared)
        .map_err(|e| Error::plan(task.task.as_str(), task.file.clone(), e))?;
    if !diff.is_empty() {
        let mut found = Vec::new();
        for (what, columns) in [
            ("not declared", &diff.removed),
            ("missing", &diff.added),
            ("of another type", &diff.changed),
        ] {
            if !columns.is_empty() {
                found.push(format!("{what}: {}", columns.join(", ")));
            }
        }
        return Ok(Err(CommandError::Columns {
            uri: url.to_string(),
            found: found.join("; "),
            declared: task.config.columns.join(", "),
        }));
    }
    let outcome = WriteOutcome {
        version: v,
        rows: 0,
        files_added: 0,
        files_removed: 0,
        already_appended: false,
    };
    Ok(Ok((table, outcome)))
}

/// The latest version of registered model `model`, or `None` when it has none.
pub(crate) async fn latest_version(env: &Environment, model: &str) -> Result<Option<u64>> {
    let Some(client) = crate::mlflow::Client::for_env(env)? else {
        return Ok(None);
    };
    match client
        .get("registered-models/get", &[("name", model)])
        .await
    {
        Ok(v) => Ok(v["registered_model"]["latest_versions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|mv| mv["version"].as_str()?.parse::<u64>().ok())
            .max()),
        Err(e) if e.is_not_found() || e.error_code() == Some("RESOURCE_DOES_NOT_EXIST") => Ok(None),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_keeps_the_last_lines_cut_on_char_boundaries() {
        let mut tail = Tail::default();
        for i in 0..40 {
            tail.push(&format!("line {i}"));
        }
        let text = tail.text();
        assert!(
            text.starts_with("line 10\n") && text.ends_with("line 39"),
            "{text}"
        );
        let mut tail = Tail::default();
        tail.push(&"é".repeat(300));
        assert!(tail.text().len() <= TAIL_LINE_BYTES);
    }

    #[test]
    fn upstream_tables_are_named_by_pipeline_and_task() {
        let id = TaskId::new(
            crate::config::PipelineName::try_new("scoring").unwrap(),
            crate::config::TaskName::try_new("customer_features").unwrap(),
        );
        assert_eq!(table_var(&id), "QUERN_TABLE_SCORING__CUSTOMER_FEATURES");
    }

    #[test]
    fn the_day_is_the_data_interval_by_default() {
        let vars = date_vars("2024-03-01".parse().unwrap(), None);
        let get = |k: &str| vars.iter().find(|(n, _)| n == k).unwrap().1.clone();
        assert_eq!(get("QUERN_DS_NODASH"), "20240301");
        assert_eq!(get("QUERN_DATA_INTERVAL_START"), "2024-03-01T00:00:00Z");
        assert_eq!(get("QUERN_DATA_INTERVAL_END"), "2024-03-02T00:00:00Z");
    }
}
