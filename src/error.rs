//! The library's error type: one variant per stage that failed, each carrying what a
//! user needs to fix it (file and line, task, table URI) and the error that caused it
//! as its `#[source]`. Stages with failures of their own (storage, MLflow, models,
//! alerts, metrics, planning) have their own error types, converted into [`Error`].
//! This module may name every stage's error type; every stage may use it.

use std::path::PathBuf;

use datafusion::error::DataFusionError;
use deltalake::DeltaTableError;

/// The result type of every fallible quern operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What kind of failure an [`Error`] is, whatever stage raised it. The CLI maps it to
/// an exit code: [`ErrorKind::Usage`] is 2, every other kind 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The command was asked for something that does not exist or is malformed: an
    /// unknown environment, pipeline or task, a bad `--ds`, `--var` or selector.
    Usage,
    /// A project file is wrong: TOML, configuration values, templates, SQL, tests.
    Project,
    /// A task or metric does not plan, or would write where it must not.
    Plan,
    /// A task failed while running (bad data, a failed expectation).
    Data,
    /// Reading or writing storage failed (Delta, object stores, local files).
    Storage,
    /// An external service failed: the model registry, MLflow, alert targets.
    Service,
}

/// Everything that can go wrong between loading a project and committing a table.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read or written, or a folder listed.
    #[error("cannot read {}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// A TOML file does not parse or has unknown keys or wrong types.
    #[error("{}{}: {}", file.display(), line.map(|l| format!(":{l}")).unwrap_or_default(), source.message().trim_end())]
    Toml {
        /// The TOML file.
        file: PathBuf,
        /// The 1-based line of the problem, when known.
        line: Option<usize>,
        /// The TOML parser's error.
        #[source]
        source: Box<toml::de::Error>,
    },

    /// A configuration value is invalid (a missing `${VAR}`, a bad URI, an unknown
    /// materialization option…).
    #[error("{}: key `{key}`: {message}", file.display())]
    Config {
        /// The file holding the key.
        file: PathBuf,
        /// The dotted key, e.g. `storage.aws_endpoint`.
        key: String,
        /// What is wrong and what to do.
        message: String,
    },

    /// A configured location or object store cannot be used (a malformed URL, an
    /// unknown storage option, a store that cannot be built).
    #[error("{}: key `{key}`: {source}", file.display())]
    Storage {
        /// The environment file holding the key.
        file: PathBuf,
        /// The dotted key, e.g. `sources.raw.events` or `warehouse.root`.
        key: String,
        /// What is wrong with it.
        #[source]
        source: Box<crate::catalog::StorageError>,
    },

    /// A pipeline folder, task file or metric has a name that is not an identifier.
    #[error("{}: {what}: {source}", file.display())]
    Name {
        /// The folder or file.
        file: PathBuf,
        /// What was named, e.g. `task file name` or `metrics.<name>`.
        what: String,
        /// The name and the rule it breaks.
        #[source]
        source: crate::config::InvalidName,
    },

    /// The environment named on the command line or in `QUERN_ENV` has no file.
    #[error("unknown environment `{name}`: no file {}; known environments: {}", file.display(), known.join(", "))]
    UnknownEnvironment {
        /// The requested name.
        name: String,
        /// The file that was looked for.
        file: PathBuf,
        /// The environments the project has.
        known: Vec<String>,
    },

    /// The named pipeline has no folder under `sql/`.
    #[error("unknown pipeline `{name}`; known pipelines: {}", known.join(", "))]
    UnknownPipeline {
        /// The requested name.
        name: String,
        /// The pipelines the project has.
        known: Vec<String>,
    },

    /// A task was named (in a selector, `pipeline.toml` or a command) that the pipeline does not have.
    #[error("pipeline `{pipeline}` has no task `{task}`{}; its tasks: {}", context.as_deref().map(|c| format!(" ({c})")).unwrap_or_default(), known.join(", "))]
    UnknownTask {
        /// The pipeline.
        pipeline: String,
        /// The requested task.
        task: String,
        /// Where the name was found, e.g. a file.
        context: Option<String>,
        /// The tasks the pipeline has.
        known: Vec<String>,
    },

    /// `--select tag:<name>` names a tag no task or pipeline has.
    #[error("no task or pipeline has tag `{tag}`; tags in the project: {}", if known.is_empty() { "none (set tags = [\"…\"] in pipeline.toml)".to_string() } else { known.join(", ") })]
    UnknownTag {
        /// The tag.
        tag: String,
        /// The tags the project has.
        known: Vec<String>,
    },

    /// A usage error in an argument: a bad `--ds`, a bad `--var`, a bad selector.
    #[error("invalid {what} `{value}`: {message}")]
    InvalidArgument {
        /// Which argument.
        what: &'static str,
        /// The value given.
        value: String,
        /// What is expected.
        message: String,
    },

    /// A template failed to compile or render.
    #[error("{}{}: {message}", file.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Render {
        /// The template file (a task or a macro file).
        file: PathBuf,
        /// The 1-based line, when minijinja knows it.
        line: Option<usize>,
        /// What went wrong, and the expression it happened in when minijinja knows it.
        message: String,
        /// minijinja's error.
        #[source]
        template_error: minijinja::Error,
    },

    /// The rendered SQL does not parse, or is not a single query.
    #[error("{}{}: task `{task}`: {problem}", file.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Parse {
        /// The task.
        task: String,
        /// The task's template file.
        file: PathBuf,
        /// The line in the rendered SQL, when the parser reports one.
        line: Option<usize>,
        /// What is wrong.
        #[source]
        problem: ParseProblem,
    },

    /// The SQL reads a table that is neither a `ref()` nor a declared source.
    #[error("{}: task `{task}` reads table `{table}`, which is neither a ref() nor a declared source; {hint}", file.display())]
    UndeclaredTable {
        /// The task.
        task: String,
        /// The task's template file.
        file: PathBuf,
        /// The table as written in the SQL.
        table: String,
        /// What to do about it.
        hint: String,
    },

    /// The tasks' refs form a cycle.
    #[error("{} has a dependency cycle: {}", pipeline.as_deref().map(|p| format!("pipeline `{p}`")).unwrap_or_else(|| "the project".into()), cycle.join(" -> "))]
    Cycle {
        /// The pipeline, or `None` for a cycle of the project's DAG (across pipelines).
        pipeline: Option<String>,
        /// The tasks of the cycle, the first repeated at the end (`pipeline/task` in
        /// the project's DAG).
        cycle: Vec<String>,
    },

    /// A task (or metric) could not be planned: an unknown column, a type error, a
    /// table that does not exist yet, an output Delta cannot store…
    #[error("{}{}: task `{task}` failed to plan", file.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Plan {
        /// The task.
        task: String,
        /// The task's template file.
        file: PathBuf,
        /// The line of the rendered SQL DataFusion points at, when it does.
        line: Option<usize>,
        /// Why.
        #[source]
        source: Box<PlanError>,
    },

    /// A task failed while executing; its table is left at its previous version.
    #[error("task `{task}` failed while running; table {uri} is left at its previous version")]
    Execute {
        /// The task.
        task: String,
        /// The task's table.
        uri: String,
        /// The underlying error.
        #[source]
        source: Box<DataFusionError>,
    },

    /// Reading or committing a Delta table failed.
    #[error("Delta table {uri}: {action} failed")]
    Delta {
        /// The table URI.
        uri: String,
        /// What quern was doing (open, write, commit…).
        action: &'static str,
        /// delta-rs' error.
        #[source]
        source: Box<DeltaTableError>,
    },

    /// A table could not be read through DataFusion.
    #[error("cannot read table {uri}")]
    Read {
        /// The table URI.
        uri: String,
        /// DataFusion's error.
        #[source]
        source: Box<DataFusionError>,
    },

    /// A declared source table could not be read.
    #[error("{}: key `{key}`: cannot read {uri}", file.display())]
    Source {
        /// The environment file declaring it.
        file: PathBuf,
        /// `sources.<name>.<table>`.
        key: String,
        /// Where it was read.
        uri: String,
        /// DataFusion's error.
        #[source]
        source: Box<DataFusionError>,
    },

    /// An ad-hoc query ([`Engine::query`](crate::Engine::query), `quern query`) failed.
    #[error("query failed")]
    Query {
        /// DataFusion's error.
        #[source]
        source: Box<DataFusionError>,
    },

    /// A DataFusion session could not be set up for quern's own work (registering a
    /// table, building a plan quern makes itself): a bug in quern rather than in the
    /// project, reported with what quern was doing.
    #[error("internal error while {action}")]
    Session {
        /// What quern was doing.
        action: String,
        /// DataFusion's error.
        #[source]
        source: Box<DataFusionError>,
    },

    /// A task's output columns differ from its table's, and the task does not allow
    /// that (or a column changed type, which is never allowed).
    #[error("task `{task}`: its output does not fit table {uri}:{}{}{}{}", 
        if added.is_empty() { String::new() } else { format!(" new columns {};", added.join(", ")) },
        if removed.is_empty() { String::new() } else { format!(" missing columns {};", removed.join(", ")) },
        if changed.is_empty() { String::new() } else { format!(" changed types {};", changed.join(", ")) },
        if changed.is_empty() {
            " set on_schema_change = \"append_new_columns\" for the task in pipeline.toml to change the table's columns"
        } else {
            " a column's type cannot change in place: cast it back, or write a new table"
        })]
    SchemaChange {
        /// The task.
        task: String,
        /// The table.
        uri: String,
        /// Output columns the table lacks.
        added: Vec<String>,
        /// Table columns the output lacks.
        removed: Vec<String>,
        /// Columns whose type changed.
        changed: Vec<String>,
    },

    /// A pipeline test file is malformed or does not fit its task.
    #[error("{}: test `{test}`: {message}", file.display())]
    TestFile {
        /// The test file.
        file: PathBuf,
        /// The test's name (or its position in the file).
        test: String,
        /// What is wrong and what to do.
        message: String,
    },

    /// A write target lies outside the roots the environment may write.
    #[error("task `{task}` would write {uri}, outside the roots environment `{env}` may write ({})", allowed.join(", "))]
    ForbiddenWrite {
        /// The task.
        task: String,
        /// The environment.
        env: String,
        /// The table URI.
        uri: String,
        /// The roots this environment may write.
        allowed: Vec<String>,
    },

    /// A model function's model could not be resolved, downloaded or loaded (an
    /// unreachable registry, an unknown alias, a corrupt file, an unsupported operator).
    #[error("model function `{function}` = \"{uri}\" ({}): {source}", file.display())]
    Model {
        /// The SQL function name.
        function: String,
        /// The model URI as configured.
        uri: String,
        /// The environment file that configures it.
        file: PathBuf,
        /// What is wrong and what to do (its text ends the message).
        #[source]
        source: Box<crate::models::ModelError>,
    },

    /// A metric of a pipeline could not be computed after its run (the written data
    /// stays).
    #[error("metric {metric}: {}", file.display())]
    Metric {
        /// The metric.
        metric: String,
        /// The file defining it (`pipeline.toml` or the metric's SQL file).
        file: PathBuf,
        /// Why.
        #[source]
        source: crate::checks::MetricError,
    },

    /// Talking to the MLflow server failed.
    #[error(transparent)]
    Mlflow(#[from] crate::mlflow::MlflowError),

    /// A command task failed: its program could not start, exited non-zero, ran past
    /// its timeout, or did not do what `pipeline.toml` says it does.
    #[error("command task `{task}` ({}): {source}{}", file.display(),
        if tail.is_empty() { String::new() } else { format!("\n  its output ended with:\n    {}", tail.replace('\n', "\n    ")) })]
    Command {
        /// The task, as `pipeline/task`.
        task: String,
        /// Its script, or the `pipeline.toml` that gives its command.
        file: PathBuf,
        /// The last lines the program printed.
        tail: String,
        /// Whether a failed exit may be retried (`retry_on_exit`).
        retry: bool,
        /// What went wrong.
        #[source]
        source: Box<crate::engine::CommandError>,
    },

    /// A model the run's SQL calls does not resolve, and a command task of the run
    /// registers it.
    #[error("{source}; task `{task}` registers this model in this run, but the model must resolve when the run is planned: run `{task}` alone first (select it: --select {task})")]
    ModelRegisteredInRun {
        /// The command task.
        task: String,
        /// The resolution error.
        #[source]
        source: Box<Error>,
    },

    /// A cluster role (`quern scheduler`, `quern executor`) could not start or stopped
    /// with an error.
    #[error("quern {role} on {address} failed")]
    Cluster {
        /// `scheduler` or `executor`.
        role: &'static str,
        /// The address it serves on.
        address: String,
        /// Ballista's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The run log under `<warehouse>/_quern/` could not be read or appended to.
    #[error("run log table {table}: {action} failed")]
    RunLog {
        /// The log table (`runs`, `tasks`, `metrics`…).
        table: &'static str,
        /// What quern was doing.
        action: &'static str,
        /// Why.
        #[source]
        source: Box<Error>,
    },
}

/// Why the rendered SQL of a task did not parse into one query.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ParseProblem {
    /// sqlparser's error.
    #[error(transparent)]
    Syntax(#[from] datafusion::sql::sqlparser::parser::ParserError),
    /// Another error from DataFusion's SQL front end.
    #[error(transparent)]
    DataFusion(#[from] DataFusionError),
    /// The text is not one statement.
    #[error("{0}")]
    NotOneQuery(&'static str),
}

/// Why a task or metric did not plan.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// DataFusion's planner refused the SQL (an unknown column, a type error…).
    #[error(transparent)]
    DataFusion(#[from] DataFusionError),
    /// The task reads a table outside the run that is not in the warehouse yet.
    #[error("table {table} does not exist yet at {uri}; {hint}")]
    MissingTable {
        /// `pipeline.task`.
        table: String,
        /// Where it was looked for.
        uri: String,
        /// What to do.
        hint: String,
    },
    /// The output is not what its materialization, expectations or metric need.
    #[error("{0}")]
    Output(String),
    /// The query calls a function of the other SQL dialect.
    #[error("`{function}` is not a function of the `{dialect}` dialect, but of `{other}`: write the pipeline in `{other}` (`dialect = \"{other}\"` in its pipeline.toml), or call a `{dialect}` function")]
    WrongDialect {
        /// The function, as called.
        function: String,
        /// The dialect the query is in.
        dialect: crate::config::Dialect,
        /// The dialect that has the function.
        other: crate::config::Dialect,
    },
    /// An expectation does not compile against the task's output.
    #[error(transparent)]
    Expectation(#[from] crate::checks::ExpectationError),
    /// A metric query's output is not one number or a group and a number.
    #[error(transparent)]
    Metric(#[from] crate::checks::MetricError),
    /// The output has a column type a Delta table cannot store.
    #[error("the output has a type Delta cannot store")]
    DeltaType(#[source] DeltaTableError),
    /// The existing table's schema could not be read to compare it with the output.
    #[error("cannot read the schema of table {uri}")]
    TableSchema {
        /// The table.
        uri: String,
        /// delta-rs' error.
        #[source]
        source: DeltaTableError,
    },
}

impl Error {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::UnknownEnvironment { .. }
            | Error::UnknownPipeline { .. }
            | Error::UnknownTag { .. }
            | Error::InvalidArgument { .. }
            | Error::UnknownTask { context: None, .. } => ErrorKind::Usage,
            Error::Toml { .. }
            | Error::Config { .. }
            | Error::UnknownTask { .. }
            | Error::Render { .. }
            | Error::Parse { .. }
            | Error::UndeclaredTable { .. }
            | Error::Cycle { .. }
            | Error::TestFile { .. }
            | Error::Name { .. } => ErrorKind::Project,
            Error::Plan { .. }
            | Error::SchemaChange { .. }
            | Error::ForbiddenWrite { .. }
            | Error::Query { .. } => ErrorKind::Plan,
            Error::Execute { .. } | Error::Metric { .. } | Error::Session { .. } => ErrorKind::Data,
            Error::Io { .. }
            | Error::Storage { .. }
            | Error::Delta { .. }
            | Error::Read { .. }
            | Error::Source { .. }
            | Error::RunLog { .. } => ErrorKind::Storage,
            Error::Model { .. }
            | Error::Mlflow(_)
            | Error::ModelRegisteredInRun { .. }
            | Error::Cluster { .. } => ErrorKind::Service,
            Error::Command { .. } => ErrorKind::Data,
        }
    }

    /// Whether the failure may pass when the task runs again, so a task's `retries`
    /// apply: a command task's failed exit or timeout with `retry_on_exit`, the object store answered 5xx or timed out (after its own retries), a
    /// connection broke, or a Delta commit lost to concurrent commits delta-rs could
    /// not reconcile. Never a plan or project error, a failed expectation or an error
    /// in the data (a division by zero), which would fail the same way again.
    pub fn is_transient(&self) -> bool {
        use deltalake::kernel::transaction::TransactionError;
        use std::io::ErrorKind as Io;
        if let Error::Command { retry, source, .. } = self {
            use crate::engine::CommandError;
            return *retry
                && matches!(
                    **source,
                    CommandError::Exit { .. } | CommandError::Timeout { .. }
                );
        }
        if !matches!(self.kind(), ErrorKind::Storage | ErrorKind::Data) {
            return false;
        }
        let mut next: Option<&(dyn std::error::Error + 'static)> = Some(self);
        while let Some(e) = next {
            if let Some(store) = e.downcast_ref::<object_store::Error>() {
                // 5xx and timeouts end as Generic; 403, 404, bad paths have their own.
                return matches!(
                    store,
                    object_store::Error::Generic { .. } | object_store::Error::JoinError { .. }
                );
            }
            // A lost commit; any other transaction error is judged by its causes (an
            // object-store error among them), further down the chain.
            let lost_commit = matches!(
                e.downcast_ref::<DeltaTableError>(),
                Some(DeltaTableError::VersionAlreadyExists(_))
                    | Some(DeltaTableError::Transaction {
                        source: TransactionError::VersionAlreadyExists(_)
                            | TransactionError::CommitConflict(_)
                            | TransactionError::MaxCommitAttempts(_)
                    })
            );
            if lost_commit {
                return true;
            }
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                if matches!(
                    io.kind(),
                    Io::TimedOut
                        | Io::ConnectionReset
                        | Io::ConnectionAborted
                        | Io::ConnectionRefused
                        | Io::BrokenPipe
                        | Io::Interrupted
                ) {
                    return true;
                }
            }
            next = e.source();
        }
        false
    }

    /// The file the error is in (a template, SQL, TOML or environment file,
    /// relative to the project), when it has one.
    pub fn file(&self) -> Option<&std::path::Path> {
        match self {
            Error::Io { path: file, .. }
            | Error::Toml { file, .. }
            | Error::Config { file, .. }
            | Error::Storage { file, .. }
            | Error::Name { file, .. }
            | Error::UnknownEnvironment { file, .. }
            | Error::Render { file, .. }
            | Error::Parse { file, .. }
            | Error::UndeclaredTable { file, .. }
            | Error::Plan { file, .. }
            | Error::Source { file, .. }
            | Error::TestFile { file, .. }
            | Error::Model { file, .. }
            | Error::Command { file, .. }
            | Error::Metric { file, .. } => Some(file),
            _ => None,
        }
    }

    /// The line of [`Error::file`] the error is on, when known.
    pub fn line(&self) -> Option<usize> {
        match self {
            Error::Toml { line, .. }
            | Error::Render { line, .. }
            | Error::Parse { line, .. }
            | Error::Plan { line, .. } => *line,
            _ => None,
        }
    }

    /// Whether this error is a usage error (exit code 2 in the CLI) rather than a
    /// pipeline or data error (exit code 1).
    pub fn is_usage(&self) -> bool {
        self.kind() == ErrorKind::Usage
    }

    /// A planning error of `task`, with the line DataFusion's diagnostic points at.
    pub(crate) fn plan(
        task: impl Into<String>,
        file: impl Into<PathBuf>,
        source: impl Into<PlanError>,
    ) -> Self {
        let source = source.into();
        let line = match &source {
            PlanError::DataFusion(e) => e
                .diagnostic()
                .and_then(|d| d.span)
                .map(|span| span.start.line as usize)
                .filter(|l| *l > 0),
            _ => None,
        };
        Error::Plan {
            task: task.into(),
            file: file.into(),
            line,
            source: Box::new(source),
        }
    }

    /// A task of `file` calls `function`, which only the other dialect has: the error
    /// points at the line of the rendered SQL that first calls it.
    pub(crate) fn wrong_dialect(
        task: impl Into<String>,
        file: impl Into<PathBuf>,
        sql: &str,
        (function, dialect, other): (String, crate::config::Dialect, crate::config::Dialect),
    ) -> Self {
        let line = sql
            .to_lowercase()
            .lines()
            .position(|l| {
                l.match_indices(function.as_str()).any(|(i, _)| {
                    let before = l[..i].chars().next_back();
                    let after = l[i + function.len()..].trim_start();
                    !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
                        && after.starts_with('(')
                })
            })
            .map(|l| l + 1);
        Error::Plan {
            task: task.into(),
            file: file.into(),
            line,
            source: Box::new(PlanError::WrongDialect {
                function,
                dialect,
                other,
            }),
        }
    }

    pub(crate) fn query(source: DataFusionError) -> Self {
        Error::Query {
            source: Box::new(source),
        }
    }

    /// quern's own use of a session failed while doing `action`.
    pub(crate) fn session(action: impl Into<String>, source: DataFusionError) -> Self {
        Error::Session {
            action: action.into(),
            source: Box::new(source),
        }
    }

    /// The message and every cause it does not already say, joined by `: ` (for
    /// logs, alerts and test reports).
    pub fn full_message(&self) -> String {
        std::iter::once(self.to_string())
            .chain(distinct_causes(self))
            .collect::<Vec<_>>()
            .join(": ")
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// The causes of `err` worth showing after its message, outermost first: each cause's
/// text unless the message before it already says it (a wrapper that prints its
/// cause, or minijinja's text with the template location the message starts with).
/// `quern` prints them as `caused by:` lines.
pub fn distinct_causes(err: &(dyn std::error::Error + 'static)) -> Vec<String> {
    let mut out = Vec::new();
    let mut last = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        let core = text
            .rsplit_once(" (in ")
            .map_or(text.as_str(), |(said, _)| said);
        if !last.contains(core) {
            out.push(text.clone());
        }
        last = text;
        source = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delta(source: DeltaTableError) -> Error {
        Error::Delta {
            uri: "s3://b/t/".into(),
            action: "write",
            source: Box::new(source),
        }
    }

    #[test]
    fn only_failures_that_may_pass_on_a_rerun_are_transient() {
        let store = |source: object_store::Error| delta(DeltaTableError::ObjectStore { source });
        let unavailable = object_store::Error::Generic {
            store: "S3",
            source: "HTTP 503 after 0 retries".into(),
        };
        assert!(store(unavailable).is_transient());
        let denied = object_store::Error::PermissionDenied {
            path: "t".into(),
            source: "403".into(),
        };
        assert!(!store(denied).is_transient());
        let divide = Error::Execute {
            task: "t".into(),
            uri: "file:///t/".into(),
            source: Box::new(DataFusionError::ArrowError(
                Box::new(datafusion::arrow::error::ArrowError::DivideByZero),
                None,
            )),
        };
        assert!(!divide.is_transient());
        let plan = Error::plan("t", "t.sql", DataFusionError::Plan("no column".into()));
        assert!(!plan.is_transient());
        let broken = Error::Execute {
            task: "t".into(),
            uri: "file:///t/".into(),
            source: Box::new(DataFusionError::IoError(std::io::Error::from(
                std::io::ErrorKind::ConnectionReset,
            ))),
        };
        assert!(broken.is_transient());
    }
}
