//! The library's error type: one variant per stage that failed, each carrying what a
//! user needs to fix it (file and line, task, table URI).

use std::path::PathBuf;

use datafusion::error::DataFusionError;
use deltalake::DeltaTableError;

/// The result type of every fallible quern operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong between loading a project and committing a table.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read or a folder listed.
    #[error("cannot read {}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// A TOML file does not parse or has unknown keys or wrong types.
    #[error("{}{}: {message}", file.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Toml {
        /// The TOML file.
        file: PathBuf,
        /// The 1-based line of the problem, when known.
        line: Option<usize>,
        /// What is wrong.
        message: String,
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
        /// minijinja's description of the problem.
        message: String,
        /// The underlying template error (its text is `message`).
        template_error: minijinja::Error,
    },

    /// The rendered SQL does not parse, or is not a single query.
    #[error("{}{}: task `{task}`: {message}", file.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Parse {
        /// The task.
        task: String,
        /// The task's template file.
        file: PathBuf,
        /// The line in the rendered SQL, when the parser reports one.
        line: Option<usize>,
        /// What is wrong.
        message: String,
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
    #[error("pipeline `{pipeline}` has a dependency cycle: {}", cycle.join(" -> "))]
    Cycle {
        /// The pipeline.
        pipeline: String,
        /// The tasks of the cycle, the first repeated at the end.
        cycle: Vec<String>,
    },

    /// DataFusion could not plan a task (unknown column, type error, missing table…).
    #[error("{}{}: task `{task}` failed to plan", file.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Plan {
        /// The task.
        task: String,
        /// The task's template file.
        file: PathBuf,
        /// The line of the rendered SQL DataFusion points at, when it does.
        line: Option<usize>,
        /// DataFusion's error.
        #[source]
        source: Box<DataFusionError>,
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

    /// An ad-hoc query (`quern query`) failed.
    #[error("query failed")]
    Query {
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

    /// Talking to the MLflow server failed.
    #[error(transparent)]
    Mlflow(#[from] crate::mlflow::MlflowError),
}

impl Error {
    /// Whether this error is a usage error (exit code 2 in the CLI) rather than a
    /// pipeline or data error (exit code 1).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            Error::UnknownEnvironment { .. }
                | Error::UnknownPipeline { .. }
                | Error::InvalidArgument { .. }
        ) || matches!(self, Error::UnknownTask { context: None, .. })
    }

    /// A planning error of `task`, with the line DataFusion's diagnostic points at.
    pub(crate) fn plan(
        task: impl Into<String>,
        file: impl Into<PathBuf>,
        source: DataFusionError,
    ) -> Self {
        let line = source
            .diagnostic()
            .and_then(|d| d.span)
            .map(|span| span.start.line as usize)
            .filter(|l| *l > 0);
        Error::Plan {
            task: task.into(),
            file: file.into(),
            line,
            source: Box::new(source),
        }
    }

    pub(crate) fn query(source: DataFusionError) -> Self {
        Error::Query {
            source: Box::new(source),
        }
    }

    /// The message and every cause, joined by `: ` (for logs, alerts and test reports).
    pub fn full_message(&self) -> String {
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        text
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
