//! The command-line arguments (clap) and how each command's result is printed.

mod output;

pub use output::distinct_causes;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use quern::{Engine, Project, RunDate, RunOptions, Selector};

/// quern: Jinja-templated SQL pipelines planned by DataFusion into Delta Lake tables.
#[derive(Debug, Parser)]
#[command(name = "quern", version, about)]
pub struct Cli {
    /// The project folder (holding sql/ and environments/).
    #[arg(long, global = true, default_value = ".")]
    project: PathBuf,
    /// The environment (environments/<NAME>.toml).
    #[arg(
        long = "env",
        global = true,
        env = "QUERN_ENV",
        default_value = "local"
    )]
    env: String,
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
    /// Plan a pipeline: tasks in run order with their output schemas. Writes nothing.
    Plan {
        /// The pipeline.
        pipeline: String,
        #[command(flatten)]
        date_vars: DateVars,
        /// Tasks to plan: task, task+ (with downstream), +task (with upstream).
        #[arg(long, value_delimiter = ',')]
        select: Vec<String>,
    },
    /// Run a pipeline: plan every task, then write each to its Delta table.
    Run {
        /// The pipeline.
        pipeline: String,
        #[command(flatten)]
        date_vars: DateVars,
        /// Tasks to run: task, task+ (with downstream), +task (with upstream).
        #[arg(long, value_delimiter = ',')]
        select: Vec<String>,
    },
    /// Show a pipeline's dependency graph.
    Dag {
        /// The pipeline.
        pipeline: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = DagFormat::Text)]
        format: DagFormat,
        #[command(flatten)]
        date_vars: DateVars,
    },
    /// Run ad-hoc SQL over the environment's tables (pipeline.task) and sources.
    Query {
        /// The SQL query.
        sql: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = QueryFormat::Table)]
        format: QueryFormat,
    },
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
    Ok(options)
}

fn engine(cli: &Cli) -> Result<Engine> {
    let project = Project::load(&cli.project)
        .with_context(|| format!("cannot load the project in {}", cli.project.display()))?;
    Ok(Engine::builder(project)
        .with_environment(cli.env.clone())
        .build()?)
}

/// Runs the command; `Ok` carries the exit code of a command that ran to its end.
pub async fn execute(cli: Cli) -> Result<ExitCode> {
    let engine = engine(&cli)?;
    let mut out = std::io::stdout().lock();
    match &cli.command {
        Command::Render { target, date_vars } => {
            let options = options(date_vars, &[])?;
            let (pipeline, task) = match target.split_once('/') {
                Some((p, t)) => (p, Some(t)),
                None => (target.as_str(), None),
            };
            if let Some(t) = task {
                engine.project().pipeline(pipeline)?.task(t)?;
            }
            let rendered = engine.render(pipeline, &options)?;
            output::render(&mut out, &rendered, task)?;
        }
        Command::Plan {
            pipeline,
            date_vars,
            select,
        } => {
            let options = options(date_vars, select)?;
            let plan = engine.plan(pipeline, &options).await?;
            output::plan(&mut out, &plan)?;
        }
        Command::Run {
            pipeline,
            date_vars,
            select,
        } => {
            let options = options(date_vars, select)?;
            let plan = engine.plan(pipeline, &options).await?;
            let report = engine.execute(plan).await;
            output::report(&mut out, &report)?;
            if !report.succeeded() {
                return Ok(ExitCode::from(1));
            }
        }
        Command::Dag {
            pipeline,
            format,
            date_vars,
        } => {
            let options = options(date_vars, &[])?;
            let dag = engine.dag(pipeline, &options)?;
            match format {
                DagFormat::Text => output::dag_text(&mut out, &dag)?,
                DagFormat::Mermaid => output::dag_mermaid(&mut out, &dag)?,
                DagFormat::Dot => output::dag_dot(&mut out, pipeline, &dag)?,
            }
        }
        Command::Query { sql, format } => {
            let batches = engine.query(sql).await?.collect().await?;
            match format {
                QueryFormat::Table => output::table(&mut out, &batches)?,
                QueryFormat::Csv => output::csv(&mut out, &batches)?,
                QueryFormat::Json => output::json(&mut out, &batches)?,
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
