//! The command-line arguments (clap) and how each command's result is printed.

mod json;
mod output;
mod progress;
mod values;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use std::io::Write;

use quern::testing::TestRunner;
use quern::{BackfillOptions, Engine, Project, RunDate, RunOptions, Selector};

/// quern: Jinja-templated SQL pipelines planned by DataFusion into Delta Lake tables.
#[derive(Debug, Parser)]
#[command(name = "quern", version, about)]
pub struct Cli {
    /// The project folder (holding sql/ and environments/).
    #[arg(long, global = true, default_value = ".")]
    project: PathBuf,
    /// The environment (environments/<NAME>.toml) [default: local]. For `test`: only
    /// that environment's tests and golden files (default: all).
    #[arg(long = "env", global = true, env = "QUERN_ENV")]
    env: Option<String>,
    /// Newline-delimited JSON on stdout, one object per event (plan, run, backfill,
    /// test, status, dag); the schema is in the README.
    #[arg(long, global = true)]
    pub json: bool,
    /// How run and backfill show progress: auto (live on a terminal) or plain.
    #[arg(long, global = true, value_enum, default_value_t = progress::Progress::Auto)]
    progress: progress::Progress,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Args)]
struct DateVars {
    /// The run date, YYYY-MM-DD (default: today, UTC).
    #[arg(long)]
    ds: Option<String>,
    /// Override a var: --var name=value (repeatable).
    #[arg(long = "var", value_name = "NAME=VALUE")]
    vars: Vec<String>,
    /// The data interval's start, when it is not the day of --ds (an RFC 3339
    /// timestamp on that day, as Airflow's data_interval_start).
    #[arg(long, value_name = "TIMESTAMP", requires = "data_interval_end")]
    data_interval_start: Option<String>,
    /// The data interval's end (exclusive).
    #[arg(long, value_name = "TIMESTAMP", requires = "data_interval_start")]
    data_interval_end: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the rendered SQL of a pipeline's tasks, or of one task (pipeline/task).
    Render {
        /// <pipeline> or <pipeline>/<task>.
        target: String,
        #[command(flatten)]
        date_vars: DateVars,
    },
    /// Plan a pipeline, or the whole project: tasks in run order with their output
    /// schemas. Writes nothing.
    Plan {
        /// The pipeline (default: every pipeline of the project, as one DAG).
        pipeline: Option<String>,
        #[command(flatten)]
        date_vars: DateVars,
        /// Tasks to plan: task (pipeline/task in the project), pipeline, tag:NAME; +
        /// before for upstream, after for downstream (comma-separated, repeatable).
        #[arg(long, value_delimiter = ',')]
        select: Vec<String>,
    },
    /// Run a pipeline, or the whole project: plan every task, then write each to its
    /// Delta table.
    Run {
        /// The pipeline (default: every pipeline of the project, as one DAG).
        pipeline: Option<String>,
        #[command(flatten)]
        date_vars: DateVars,
        /// Tasks to run: task (pipeline/task in the project), pipeline, tag:NAME; +
        /// before for upstream, after for downstream (comma-separated, repeatable).
        #[arg(long, value_delimiter = ',')]
        select: Vec<String>,
        /// Stop at the first failed task: start no other, and stop the running ones
        /// before they commit.
        #[arg(long)]
        fail_fast: bool,
        /// Do not retry failed tasks (their `retries`): for a scheduler that retries
        /// the task itself, as the DAGs of `quern airflow` do.
        #[arg(long)]
        no_retries: bool,
    },
    /// Run a pipeline, or the whole project, for each day of a range in date order.
    /// Days a run of the same selection already succeeded on are skipped, so running
    /// the same backfill again resumes it.
    Backfill(BackfillArgs),
    /// Show the dependency graph of a pipeline, or of the project (pipelines as
    /// clusters).
    Dag {
        /// The pipeline (default: the whole project).
        pipeline: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = DagFormat::Text)]
        format: DagFormat,
        #[command(flatten)]
        date_vars: DateVars,
    },
    /// Show a pipeline's latest runs and metric values from the run log.
    Status {
        /// The pipeline.
        pipeline: String,
        /// How many runs to show.
        #[arg(long, default_value_t = 10)]
        limit: usize,
    },
    /// Run the pipeline tests: row tests in sql/<pipeline>/tests/*.toml and golden
    /// rendered SQL per environment. In-process; reads and writes no table.
    Test {
        /// <pipeline> or <pipeline>/<task> (default: every pipeline).
        target: Option<String>,
        /// Rewrite the golden SQL files with the current rendering.
        #[arg(long)]
        update: bool,
    },
    /// Write the Airflow DAG file of a pipeline, or of the whole project: a
    /// BashOperator per task running `quern run` for the Airflow run's {{ ds }}, with
    /// quern's dependencies, retries and retry delays.
    Airflow(AirflowArgs),
    /// List the environment's model functions: where each resolved to (registry
    /// version), its inputs, what it returns and how it is evaluated.
    Models,
    /// Run a Ballista scheduler for distributed runs: environments with
    /// `[engine] ballista = "df://HOST:PORT"` send their queries to it, and it runs them
    /// on its `quern executor`s. Stops on SIGTERM or Ctrl-C.
    Scheduler {
        /// The address to listen on, for clients and executors.
        #[arg(long, default_value = "0.0.0.0:50050")]
        bind: std::net::SocketAddr,
        /// How long an executor may go silent before its tasks run on the others
        /// (e.g. 30s, 2m).
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        executor_timeout: std::time::Duration,
    },
    /// Run a Ballista executor for a scheduler, for the environment (--env) of the
    /// project: it reads the environment's buckets with this process's storage secrets
    /// and loads its models. Stops on SIGTERM or Ctrl-C.
    Executor {
        /// The scheduler, HOST:PORT.
        #[arg(long, value_name = "HOST:PORT")]
        scheduler: String,
        /// Where it serves its tasks' results (Arrow Flight), to other executors and to
        /// clients.
        #[arg(long, default_value = "0.0.0.0:50051")]
        bind: std::net::SocketAddr,
        /// The port the scheduler sends tasks to [default: the port after --bind's].
        #[arg(long)]
        grpc_port: Option<u16>,
        /// How many tasks it runs at once [default: its cores].
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
        concurrent_tasks: Option<u16>,
        /// Where it keeps shuffle files [default: a folder under the temp folder].
        #[arg(long)]
        work_dir: Option<PathBuf>,
    },
    /// Run ad-hoc SQL over the environment's tables (pipeline.task) and sources.
    Query {
        /// The SQL query.
        sql: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = QueryFormat::Table)]
        format: QueryFormat,
        /// The query's SQL dialect: `datafusion` or `spark` (default: the project's,
        /// `dialect` in quern.toml, else datafusion).
        #[arg(long)]
        dialect: Option<quern::Dialect>,
    },
}

/// `quern backfill`'s arguments.
#[derive(Debug, clap::Args)]
struct BackfillArgs {
    /// The pipeline (default: every pipeline of the project, as one DAG).
    pipeline: Option<String>,
    /// The first day, YYYY-MM-DD.
    #[arg(long)]
    from: String,
    /// The last day (inclusive), YYYY-MM-DD.
    #[arg(long)]
    to: String,
    /// Override a var: --var name=value (repeatable).
    #[arg(long = "var", value_name = "NAME=VALUE")]
    vars: Vec<String>,
    /// Tasks to run, as for `run`.
    #[arg(long, value_delimiter = ',')]
    select: Vec<String>,
    /// Run up to N days at once (only when every selected task is a partition,
    /// view or append).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    parallel: u16,
    /// Run the days that already succeeded too.
    #[arg(long)]
    force: bool,
    /// Go on after a failed day (default: stop, leaving the days after it).
    #[arg(long = "continue")]
    keep_going: bool,
    /// Within a day, stop at the first failed task (as `run --fail-fast`).
    #[arg(long)]
    fail_fast: bool,
}

/// `quern airflow`'s arguments.
#[derive(Debug, clap::Args)]
struct AirflowArgs {
    /// The pipeline (default: every pipeline of the project, in one DAG).
    pipeline: Option<String>,
    /// The DAG's schedule: a preset such as @daily or @hourly, or a cron expression.
    #[arg(long, default_value = "@daily")]
    schedule: String,
    /// An Airflow task per quern task, or per pipeline.
    #[arg(long, value_enum, default_value_t = AirflowGranularity::Task)]
    granularity: AirflowGranularity,
    /// Write <dag_id>.py into this folder (Airflow's dags folder) instead of stdout.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// The DAG's start_date, YYYY-MM-DD.
    #[arg(long, default_value = "2024-01-01")]
    start_date: String,
    /// Let Airflow run the days since start_date that have not run (catchup=True).
    #[arg(long)]
    catchup: bool,
    /// How many runs of the DAG may be active at once.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    max_active_runs: u32,
    /// The quern program on the Airflow workers.
    #[arg(long, default_value = "quern")]
    quern: String,
    /// The DAG's id (default: quern_<pipeline>, or quern_<project folder>).
    #[arg(long)]
    dag_id: Option<String>,
    #[command(flatten)]
    date_vars: DateVars,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum AirflowGranularity {
    Task,
    Pipeline,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum DagFormat {
    Text,
    Mermaid,
    Dot,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum QueryFormat {
    Table,
    Csv,
    Json,
}

fn options(date_vars: &DateVars, select: &[String]) -> Result<RunOptions> {
    let ds = match &date_vars.ds {
        Some(text) => text.parse::<RunDate>()?,
        None => RunDate::today(),
    };
    let mut options = RunOptions::new(ds);
    for assignment in &date_vars.vars {
        options.vars.parse_assignment(assignment)?;
    }
    for s in select {
        options = options.with_select(s.parse::<Selector>()?);
    }
    if let (Some(start), Some(end)) = (&date_vars.data_interval_start, &date_vars.data_interval_end)
    {
        options.data_interval = Some(quern::DataInterval::parse(start, end, ds)?);
    }
    Ok(options)
}

/// `text` as a date, or a usage error naming the argument `what`.
fn date(text: &str, what: &'static str) -> Result<RunDate> {
    text.parse::<RunDate>().map_err(|e| match e {
        quern::Error::InvalidArgument { message, .. } => quern::Error::InvalidArgument {
            what,
            value: text.to_string(),
            message,
        }
        .into(),
        other => other.into(),
    })
}

fn project(cli: &Cli) -> Result<Project> {
    Project::load(&cli.project)
        .with_context(|| format!("cannot load the project in {}", cli.project.display()))
}

/// The engine for `--env` (else `$QUERN_ENV`, else the default environment).
fn engine(cli: &Cli) -> Result<Engine> {
    let mut builder = Engine::builder(project(cli)?);
    if let Some(env) = &cli.env {
        builder = builder.with_environment(env.clone());
    }
    Ok(builder.build()?)
}

/// `quern backfill`: a run per day, a line per day, then the summary.
async fn backfill(cli: &Cli, engine: &Engine, args: &BackfillArgs) -> Result<ExitCode> {
    let (from, to) = (&args.from, &args.to);
    let (first, last) = (date(from, "--from")?, date(to, "--to")?);
    let date_vars = DateVars {
        ds: Some(from.clone()),
        vars: args.vars.clone(),
        data_interval_start: None,
        data_interval_end: None,
    };
    let options = options(&date_vars, &args.select)?
        .with_fail_fast(args.fail_fast)
        .with_cancel(cancel_on_signal());
    let days = BackfillOptions::new(first, last)
        .with_parallel(usize::from(args.parallel))
        .with_force(args.force)
        .with_keep_going(args.keep_going);
    let count = (last.date() - first.date()).num_days().max(0) as u64 + 1;
    let display = progress::Display::new(cli.json, cli.progress, Some(count));
    let report = engine
        .backfill(args.pipeline.as_deref(), &options, &days, &display)
        .await;
    display.finish();
    let report = report?;
    if cli.json {
        json::emit(&json::backfill(&report, from, to));
    } else {
        output::backfill(&mut std::io::stdout(), &report, from, to)?;
    }
    Ok(match report.succeeded() {
        true => ExitCode::SUCCESS,
        false => ExitCode::from(1),
    })
}

/// `quern render`: the rendered SQL of a pipeline's tasks, or of one.
fn render(engine: &Engine, target: &str, date_vars: &DateVars) -> Result<()> {
    let mut out = std::io::stdout();
    let options = options(date_vars, &[])?;
    let (pipeline, task) = match target.split_once('/') {
        Some((p, t)) => (p, Some(t)),
        None => (target, None),
    };
    if let Some(t) = task {
        let task = engine.project().pipeline(pipeline)?.task(t)?;
        if let Some(command) = &task.command {
            // A command task has no SQL: say what it runs instead.
            writeln!(out, "-- command task {pipeline}/{t}: {command:?}")?;
            return Ok(());
        }
    }
    let rendered = engine.render(pipeline, &options)?;
    output::render(&mut out, &rendered, task)?;
    Ok(())
}

/// `quern airflow`: the DAG file, into `--out` or on stdout.
fn airflow(cli: &Cli, engine: &Engine, args: &AirflowArgs) -> Result<()> {
    let mut out = std::io::stdout();
    let run = options(&args.date_vars, &[])?;
    let mut airflow = quern::AirflowOptions::new(date(&args.start_date, "--start-date")?);
    airflow.schedule = args.schedule.clone();
    airflow.granularity = match args.granularity {
        AirflowGranularity::Task => quern::Granularity::Task,
        AirflowGranularity::Pipeline => quern::Granularity::Pipeline,
    };
    airflow.catchup = args.catchup;
    airflow.max_active_runs = args.max_active_runs;
    airflow.quern = args.quern.clone();
    airflow.dag_id = args.dag_id.clone();
    let file = engine.airflow_dag(args.pipeline.as_deref(), &run, &airflow)?;
    match &args.out {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let path = dir.join(&file.file_name);
            std::fs::write(&path, &file.text)
                .with_context(|| format!("cannot write {}", path.display()))?;
            if cli.json {
                json::emit(&serde_json::json!({
                    "event": "airflow_dag", "dag_id": file.dag_id,
                    "file": path.display().to_string(),
                }));
            } else {
                writeln!(out, "wrote {} (DAG {})", path.display(), file.dag_id)?;
            }
        }
        None => write!(out, "{}", file.text)?,
    }
    Ok(())
}

/// A flag set at the first SIGTERM or SIGINT (a scheduler stopping the task, Ctrl-C):
/// the run then starts no other task, stops its writes before they commit and kills
/// its running programs, and ends reporting them cancelled. A second signal exits at
/// once.
fn cancel_on_signal() -> Arc<AtomicBool> {
    use tokio::signal::unix::{signal, SignalKind};
    let flag = Arc::new(AtomicBool::new(false));
    let set = flag.clone();
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return flag;
    };
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        eprintln!(
            "quern: stopping the run: running tasks are cancelled (a second signal exits at once)"
        );
        set.store(true, Ordering::Relaxed);
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        std::process::exit(130);
    });
    flag
}

/// `HOST:PORT` of `quern executor --scheduler`.
fn scheduler_address(text: &str) -> Result<(String, u16)> {
    let invalid = |message: &str| quern::Error::InvalidArgument {
        what: "--scheduler",
        value: text.to_string(),
        message: message.to_string(),
    };
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| invalid("write the scheduler's HOST:PORT, e.g. scheduler.internal:50050"))?;
    let port = port
        .parse()
        .map_err(|_| invalid("the port is not a number from 1 to 65535"))?;
    if host.is_empty() {
        return Err(invalid("names no host").into());
    }
    Ok((
        host.trim_matches(|c| c == '[' || c == ']').to_string(),
        port,
    ))
}

/// Whether the command is a long-running cluster role, which logs at `info` unless
/// `QUERN_LOG` says otherwise.
impl Cli {
    pub fn is_cluster_role(&self) -> bool {
        matches!(
            self.command,
            Command::Scheduler { .. } | Command::Executor { .. }
        )
    }
}

/// `quern test`: the pipeline tests, in process.
async fn test(cli: &Cli, target: Option<&str>, update: bool) -> Result<ExitCode> {
    let mut runner = TestRunner::new(project(cli)?).with_update(update);
    if let Some(t) = target {
        runner = runner.with_filter(t);
    }
    if let Some(env) = &cli.env {
        runner = runner.with_env(env.clone());
    }
    let report = runner.run().await?;
    if cli.json {
        json::test(&report);
    } else {
        writeln!(std::io::stdout(), "{report}")?;
    }
    Ok(if report.failed() > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// With `--json`: the `error` event of a command that failed.
pub fn emit_failure(err: &anyhow::Error, exit_code: u8) {
    json::emit(&json::failure(err, exit_code));
}

/// `quern run`: plans the pipeline (or the project), then runs it with progress.
async fn run(cli: &Cli, engine: &Engine) -> Result<ExitCode> {
    let Command::Run {
        pipeline,
        date_vars,
        select,
        fail_fast,
        no_retries,
    } = &cli.command
    else {
        unreachable!("only `quern run` is run")
    };
    let options = options(date_vars, select)?
        .with_fail_fast(*fail_fast)
        .with_retries(!*no_retries)
        .with_cancel(cancel_on_signal());
    let plan = match pipeline {
        Some(p) => engine.plan(p, &options).await?,
        None => engine.plan_project(&options).await?,
    };
    let display = progress::Display::new(cli.json, cli.progress, None);
    let report = engine.execute_observed(plan, &display).await;
    display.finish();
    if !cli.json {
        output::report(&mut std::io::stdout(), &report)?;
    }
    Ok(match report.succeeded() {
        true => ExitCode::SUCCESS,
        false => ExitCode::from(1),
    })
}

/// `quern scheduler` and `quern executor`: serve the cluster role until stopped.
async fn serve(cli: &Cli) -> Result<()> {
    match &cli.command {
        Command::Scheduler {
            bind,
            executor_timeout,
        } => {
            let options =
                quern::SchedulerOptions::new(*bind).with_executor_timeout(*executor_timeout);
            quern::serve_scheduler(options).await?;
        }
        Command::Executor {
            scheduler,
            bind,
            grpc_port,
            concurrent_tasks,
            work_dir,
        } => {
            let (host, port) = scheduler_address(scheduler)?;
            let mut options = quern::ExecutorOptions::new(host, port, *bind);
            if let Some(n) = concurrent_tasks {
                options = options.with_concurrent_tasks(usize::from(*n));
            }
            if let Some(p) = grpc_port {
                options = options.with_grpc_port(*p);
            }
            if let Some(dir) = work_dir {
                options = options.with_work_dir(dir);
            }
            engine(cli)?.serve_executor(options).await?;
        }
        _ => unreachable!("only the cluster roles are served"),
    }
    Ok(())
}

/// Runs the command; `Ok` carries the exit code of a command that ran to its end.
pub async fn execute(cli: Cli) -> Result<ExitCode> {
    // `query` allows huge pages once its tables are open and its plan is made; every
    // other command runs with them from here.
    if !matches!(cli.command, Command::Query { .. }) {
        crate::huge_pages::allow();
    }
    let mut out = std::io::stdout();
    if let Command::Test { target, update } = &cli.command {
        return test(&cli, target.as_deref(), *update).await;
    }
    if cli.is_cluster_role() {
        serve(&cli).await?;
        return Ok(ExitCode::SUCCESS);
    }
    let engine = engine(&cli)?;
    match &cli.command {
        Command::Test { .. } | Command::Scheduler { .. } | Command::Executor { .. } => {
            unreachable!("handled above")
        }
        Command::Render { target, date_vars } => render(&engine, target, date_vars)?,
        Command::Plan {
            pipeline,
            date_vars,
            select,
        } => {
            let options = options(date_vars, select)?;
            let plan = match pipeline {
                Some(p) => engine.plan(p, &options).await?,
                None => engine.plan_project(&options).await?,
            };
            if cli.json {
                json::emit(&json::plan(&plan));
            } else {
                output::plan(&mut out, &plan)?;
            }
        }
        Command::Run { .. } => return run(&cli, &engine).await,
        Command::Backfill(args) => return backfill(&cli, &engine, args).await,
        Command::Dag {
            pipeline,
            format,
            date_vars,
        } => {
            let options = options(date_vars, &[])?;
            let dag = match pipeline {
                Some(p) => engine.dag(p, &options)?,
                None => engine.project_dag(&options)?,
            };
            match format {
                _ if cli.json => json::emit(&json::dag(&dag)),
                DagFormat::Text => output::dag_text(&mut out, &dag)?,
                DagFormat::Mermaid => output::dag_mermaid(&mut out, &dag)?,
                DagFormat::Dot => output::dag_dot(&mut out, &dag)?,
            }
        }
        Command::Status { pipeline, limit } => {
            let history = engine.status(pipeline, *limit).await?;
            if cli.json {
                json::emit(&json::status(pipeline, &history));
            } else {
                output::status(&mut out, pipeline, &history)?;
            }
        }
        Command::Airflow(args) => airflow(&cli, &engine, args)?,
        Command::Models => {
            let models = engine.models().await?;
            output::models(&mut out, engine.environment(), &models)?;
        }
        Command::Query {
            sql,
            format,
            dialect,
        } => {
            let dialect = dialect.unwrap_or(engine.project().dialect());
            let planned = engine.query_in(sql, dialect).await?;
            // Its tables are open: the query's own memory may use huge pages.
            crate::huge_pages::allow();
            let batches = planned.collect().await?;
            match format {
                QueryFormat::Table => output::table(&mut out, &batches)?,
                QueryFormat::Csv => output::csv(&mut out, &batches)?,
                QueryFormat::Json => output::json(&mut out, &batches)?,
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
