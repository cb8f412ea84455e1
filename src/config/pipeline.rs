//! `sql/<pipeline>/pipeline.toml`: the pipeline's description and per-task settings.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};

/// How a task's result is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Materialization {
    /// Replace the whole table on every run.
    #[default]
    Table,
    /// Add the task's rows to the table.
    Append,
    /// Dynamic partition overwrite: the partitions present in the task's output replace
    /// the same partitions in the table; every other partition is left alone.
    Partition,
    /// Upsert on `unique_key`: rows whose key is in the table update it, the others
    /// are inserted; with `delete_when`, matched rows meeting it are deleted.
    Merge,
    /// Not written; downstream tasks read the task's query inline.
    View,
    /// A command task: a program, which writes its own table if it produces one. Not
    /// written in `pipeline.toml`: a `.py` file or `command` makes a task one.
    #[serde(skip)]
    Command,
}

/// What a write does when the task's output has columns the table lacks (or lacks
/// some of the table's): `on_schema_change` in `pipeline.toml`. A column whose type
/// changed always fails before writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnSchemaChange {
    /// Fail before writing, listing the differing columns.
    #[default]
    Fail,
    /// Add the new columns to the table (older rows read them as NULL); columns the
    /// output lacks are written as NULL.
    AppendNewColumns,
}

impl Materialization {
    /// The name used in `pipeline.toml`.
    pub fn as_str(self) -> &'static str {
        match self {
            Materialization::Table => "table",
            Materialization::Append => "append",
            Materialization::Partition => "partition",
            Materialization::Merge => "merge",
            Materialization::View => "view",
            Materialization::Command => "command",
        }
    }

    /// Whether quern writes the task's Delta table (a command task writes its own).
    pub fn writes(self) -> bool {
        !matches!(self, Materialization::View | Materialization::Command)
    }
}

/// Settings of one task in `pipeline.toml` (`[tasks.<name>]`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct TaskConfig {
    /// How the result is written; `table` when absent.
    #[serde(default)]
    pub materialized: Materialization,
    /// The Delta partition columns (required for `partition`).
    #[serde(default)]
    pub partition_by: Vec<String>,
    /// The key columns of a `merge`.
    #[serde(default)]
    pub unique_key: Vec<String>,
    /// For `merge`: an SQL condition over the task's output row, named `source`, and
    /// the table's row, named `target`; matched rows meeting it are deleted and
    /// unmatched rows meeting it are not inserted (e.g. `"source.is_deleted"`).
    #[serde(default)]
    pub delete_when: Option<String>,
    /// What to do when the output's columns differ from the table's.
    #[serde(default)]
    pub on_schema_change: OnSchemaChange,
    /// Expectations on the output (`[[tasks.<task>.expect]]`).
    #[serde(default)]
    pub(crate) expect: Vec<super::ExpectationConfig>,
    /// A free-text description shown by `plan` and `dag`.
    #[serde(default)]
    pub description: Option<String>,
    /// Tags for `--select tag:<name>` (besides the pipeline's own tags).
    #[serde(default)]
    pub tags: Vec<String>,
    /// How many times a transient failure is retried (default: the pipeline's, else 0).
    #[serde(default)]
    pub retries: Option<u32>,
    /// The wait before the first retry, doubled for each next one, with jitter
    /// (default: the pipeline's, else 10s).
    #[serde(default, deserialize_with = "duration")]
    pub retry_delay: Option<Duration>,
    /// The environments the task runs in (default: all). On the others it is not part
    /// of the DAG; a task reading its table reads the table as it is.
    #[serde(default)]
    pub envs: Vec<String>,
    /// A command task: the program and its arguments, run from the project folder.
    /// (`sql/<pipeline>/<task>.py` is a command task too, run with `[python]`.)
    #[serde(default)]
    pub command: Option<Vec<String>>,
    /// A command task's upstream tasks, `task` or `pipeline/task`: it runs after they
    /// committed and is given their tables' URIs.
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// What a command task writes: `"table"` (the task's own Delta table, at
    /// `QUERN_OUTPUT_URI`, with `columns`).
    #[serde(default)]
    pub produces: Option<Produces>,
    /// The columns of a command task's table, as SQL types: `["id BIGINT", "p DOUBLE"]`.
    #[serde(default)]
    pub columns: Vec<String>,
    /// The registered model a command task registers a new version of in MLflow.
    #[serde(default)]
    pub registers: Option<String>,
    /// A command task is killed (with its process group) after this long.
    #[serde(default, deserialize_with = "duration")]
    pub timeout: Option<Duration>,
    /// Whether a command task's non-zero exit is retried (with `retries`).
    #[serde(default)]
    pub retry_on_exit: bool,
}

/// What a command task produces besides its side effects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Produces {
    /// The task's own Delta table.
    Table,
}

/// The keys of `[tasks.<name>]` that only a command task takes, with whether `config`
/// sets each.
fn command_keys(config: &TaskConfig) -> [(&'static str, bool); 7] {
    [
        ("command", config.command.is_some()),
        ("depends_on", !config.depends_on.is_empty()),
        ("produces", config.produces.is_some()),
        ("columns", !config.columns.is_empty()),
        ("registers", config.registers.is_some()),
        ("timeout", config.timeout.is_some()),
        ("retry_on_exit", config.retry_on_exit),
    ]
}

/// The keys of `[tasks.<name>]` that only an SQL task takes, with whether `config`
/// sets each.
fn sql_keys(config: &TaskConfig) -> [(&'static str, bool); 6] {
    [
        (
            "materialized",
            config.materialized != Materialization::Table,
        ),
        ("partition_by", !config.partition_by.is_empty()),
        ("unique_key", !config.unique_key.is_empty()),
        ("delete_when", config.delete_when.is_some()),
        (
            "on_schema_change",
            config.on_schema_change != OnSchemaChange::Fail,
        ),
        ("expect", !config.expect.is_empty()),
    ]
}

impl TaskConfig {
    /// Checks the keys of a command task (`command` true) or an SQL task against what
    /// each takes; `Err((key, message))`.
    pub(crate) fn check_kind(&self, command: bool) -> std::result::Result<(), (String, String)> {
        if command {
            if let Some((key, _)) = sql_keys(self).into_iter().find(|(_, set)| *set) {
                let message = if key == "expect" {
                    "a command task's table is checked against `columns`; put expectations on an SQL task that reads it".to_string()
                } else {
                    format!("`{key}` applies to SQL tasks; a command task writes its own table (produces = \"table\")")
                };
                return Err((key.to_string(), message));
            }
            if self
                .command
                .as_ref()
                .is_some_and(|c| c.is_empty() || c[0].trim().is_empty())
            {
                return Err((
                    "command".into(),
                    "names no program: write command = [\"program\", \"arg\", …]".into(),
                ));
            }
            match (self.produces, self.columns.is_empty()) {
                (Some(Produces::Table), true) => {
                    return Err(("columns".into(), "produces = \"table\" needs columns = [\"name TYPE\", …], so that downstream SQL plans before the program runs".into()))
                }
                (None, false) => {
                    return Err(("columns".into(), "`columns` declares a produced table: add produces = \"table\"".into()))
                }
                _ => {}
            }
            if self.registers.as_ref().is_some_and(|r| r.trim().is_empty()) {
                return Err(("registers".into(), "names no registered model".into()));
            }
            if self.timeout.is_some_and(|t| t.is_zero()) {
                return Err(("timeout".into(), "must be longer than zero".into()));
            }
        } else if let Some((key, _)) = command_keys(self).into_iter().find(|(_, set)| *set) {
            let hint = if key == "depends_on" {
                "; an SQL task's dependencies are its ref() calls"
            } else {
                ""
            };
            return Err((
                key.to_string(),
                format!("`{key}` applies to command tasks (a .py file or `command`){hint}"),
            ));
        }
        Ok(())
    }

    /// Whether the task runs in environment `env`.
    pub fn runs_in(&self, env: &str) -> bool {
        self.envs.is_empty() || self.envs.iter().any(|e| e == env)
    }

    /// The retries of a transient failure.
    pub fn retries(&self) -> u32 {
        self.retries.unwrap_or(0)
    }

    /// The wait before the first retry.
    pub fn retry_delay(&self) -> Duration {
        self.retry_delay.unwrap_or(Duration::from_secs(10))
    }
}

/// A duration written as humantime reads it: `"10s"`, `"2m"`, `"1h 30m"`.
fn duration<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Duration>, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(&text).map(Some).map_err(|e| {
        serde::de::Error::custom(format!(
            "`{text}` is not a duration ({e}); write e.g. \"10s\", \"2m\" or \"1h 30m\""
        ))
    })
}

/// The whole of `pipeline.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// A free-text description of the pipeline.
    #[serde(default)]
    pub description: Option<String>,
    /// Tags of every task of the pipeline, for `--select tag:<name>`.
    #[serde(default)]
    pub tags: Vec<String>,
    /// The retries of its tasks that set none.
    #[serde(default)]
    pub retries: Option<u32>,
    /// The SQL dialect of its tasks (default: the project's, else `datafusion`).
    #[serde(default)]
    pub dialect: Option<super::Dialect>,
    /// The retry delay of its tasks that set none.
    #[serde(default, deserialize_with = "duration")]
    pub retry_delay: Option<Duration>,
    /// Per-task settings; a task without an entry is a `table`.
    #[serde(default)]
    pub tasks: BTreeMap<String, TaskConfig>,
    /// Metrics computed after every successful run (`[metrics.<name>]`).
    #[serde(default)]
    pub metrics: BTreeMap<String, MetricConfig>,
}

/// The whole of `quern.toml`, the project's own settings (optional).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProjectConfig {
    /// The SQL dialect of pipelines that set none, and of `quern query`.
    #[serde(default)]
    pub dialect: Option<super::Dialect>,
}

impl ProjectConfig {
    /// Reads `path` (shown as `file`); an absent file is the defaults.
    pub(crate) fn load_as(path: &Path, file: &Path) -> Result<Self> {
        if !path.exists() {
            return Ok(Self::default());
        }
        super::parse_toml(file, &super::read_file(path)?)
    }
}

/// A metric: a templated SQL query over the run's tables returning one number, or one
/// number per group (a group column then the number), with thresholds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct MetricConfig {
    /// The query (Jinja, like a task: `ref()`, `ds`, `var()`…).
    pub sql: String,
    /// A free-text description.
    #[serde(default)]
    pub description: Option<String>,
    /// Breached when the value is below this.
    #[serde(default)]
    pub min: Option<f64>,
    /// Breached when the value is above this.
    #[serde(default)]
    pub max: Option<f64>,
    /// Breached when the value fell by more than this percentage from the previous
    /// successful run's value (of the same group).
    #[serde(default)]
    pub max_drop_pct: Option<f64>,
    /// Breached when the value rose by more than this percentage from the previous
    /// successful run's value (of the same group).
    #[serde(default)]
    pub max_rise_pct: Option<f64>,
}

impl PipelineConfig {
    /// Reads `path` (a missing file is an empty configuration), naming it `file` in
    /// messages (the project-relative path).
    pub(crate) fn load_as(path: &Path, file: &Path) -> Result<Self> {
        if !path.exists() {
            return Ok(Self::default());
        }
        let text = super::read_file(path)?;
        let config: Self = super::parse_toml(file, &text)?;
        check_tags(file, "tags", &config.tags)?;
        for (task, t) in &config.tasks {
            let key = |k: &str| format!("tasks.{task}.{k}");
            check_tags(file, &key("tags"), &t.tags)?;
            match t.materialized {
                Materialization::Partition if t.partition_by.is_empty() => {
                    return Err(Error::Config {
                        file: file.to_path_buf(),
                        key: key("partition_by"),
                        message:
                            "materialized = \"partition\" needs partition_by = [\"column\", …]"
                                .into(),
                    })
                }
                Materialization::View if !t.partition_by.is_empty() => {
                    return Err(Error::Config {
                        file: file.to_path_buf(),
                        key: key("partition_by"),
                        message: "a view is not written, so it cannot be partitioned".into(),
                    })
                }
                Materialization::Merge if t.unique_key.is_empty() => {
                    return Err(Error::Config {
                        file: file.to_path_buf(),
                        key: key("unique_key"),
                        message: "materialized = \"merge\" needs unique_key = [\"column\", …]"
                            .into(),
                    })
                }
                _ => {}
            }
            let merge_only = [
                ("unique_key", !t.unique_key.is_empty()),
                ("delete_when", t.delete_when.is_some()),
            ];
            for (name, set) in merge_only {
                if set && t.materialized != Materialization::Merge {
                    return Err(Error::Config {
                        file: file.to_path_buf(),
                        key: key(name),
                        message: format!("`{name}` applies to materialized = \"merge\" only"),
                    });
                }
            }
            if t.materialized == Materialization::View && !t.expect.is_empty() {
                return Err(Error::Config {
                    file: file.to_path_buf(),
                    key: key("expect"),
                    message: "a view is not written, so it has no expectations; put them on a task that reads it".into(),
                });
            }
            let mut names = std::collections::BTreeSet::new();
            for (i, e) in t.expect.iter().enumerate() {
                let at = key(&format!("expect[{i}]"));
                e.validate().map_err(|message| Error::Config {
                    file: file.to_path_buf(),
                    key: at.clone(),
                    message: message.into(),
                })?;
                if !names.insert(e.display_name()) {
                    return Err(Error::Config {
                        file: file.to_path_buf(),
                        key: at,
                        message: format!(
                            "two expectations are named `{}`; give one a name",
                            e.display_name()
                        ),
                    });
                }
            }
            for (name, columns) in [
                ("partition_by", &t.partition_by),
                ("unique_key", &t.unique_key),
            ] {
                if let Some(c) = columns.iter().find(|c| !super::names::is_identifier(c)) {
                    return Err(Error::Config {
                        file: file.to_path_buf(),
                        key: key(name),
                        message: format!("`{c}` is not a lower-case column name"),
                    });
                }
            }
        }
        for name in config.metrics.keys() {
            if !super::names::is_identifier(name) {
                return Err(Error::Config {
                    file: file.to_path_buf(),
                    key: format!("metrics.{name}"),
                    message: "a metric name must be a lower-case identifier".into(),
                });
            }
        }
        Ok(config)
    }
}

/// Tags are what `--select tag:<name>` matches: lower-case words.
fn check_tags(file: &Path, key: &str, tags: &[String]) -> Result<()> {
    match tags.iter().find(|t| !super::names::is_tag(t)) {
        Some(bad) => Err(Error::Config {
            file: file.to_path_buf(),
            key: key.to_string(),
            message: format!(
                "tag `{bad}` must be lower-case letters, digits, `_` or `-` (it is selected with --select tag:{bad})"
            ),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<PipelineConfig> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pipeline.toml");
        std::fs::write(&file, text).unwrap();
        PipelineConfig::load_as(&file, &file)
    }

    #[test]
    fn reads_materializations() {
        let c = load(
            "description = \"d\"\n[tasks.a]\nmaterialized = \"partition\"\npartition_by = [\"ds\"]\n[tasks.b]\nmaterialized = \"view\"\n",
        )
        .unwrap();
        assert_eq!(c.tasks["a"].materialized, Materialization::Partition);
        assert_eq!(c.tasks["b"].materialized, Materialization::View);
        let c = load(
            "tags = [\"daily\"]\nretries = 2\n[tasks.a]\ntags = [\"core\", \"p-1\"]\nretry_delay = \"1m 30s\"\n",
        )
        .unwrap();
        assert_eq!(c.retries, Some(2));
        assert_eq!(c.tasks["a"].retry_delay(), Duration::from_secs(90));
        assert_eq!(
            c.tasks["a"].retries(),
            0,
            "filled from the pipeline when loaded"
        );
        assert_eq!(c.tags, ["daily"]);
        assert_eq!(c.tasks["a"].tags, ["core", "p-1"]);
    }

    #[test]
    fn command_and_sql_tasks_take_their_own_keys() {
        let c = load(
            "[tasks.train]\ndepends_on = [\"features\"]\nregisters = \"churn\"\ntimeout = \"30m\"\nenvs = [\"prod\"]\n[tasks.export]\ncommand = [\"bash\", \"x.sh\"]\nproduces = \"table\"\ncolumns = [\"id BIGINT\"]\n",
        )
        .unwrap();
        let train = &c.tasks["train"];
        assert!(train.check_kind(true).is_ok());
        assert_eq!(train.timeout, Some(Duration::from_secs(1800)));
        assert!(train.runs_in("prod") && !train.runs_in("local"));
        let (key, message) = train.check_kind(false).unwrap_err();
        assert_eq!(key, "depends_on");
        assert!(message.contains("ref()"), "{message}");
        assert!(c.tasks["export"].check_kind(true).is_ok());
        let c = load("[tasks.a]\nproduces = \"table\"\n[tasks.b]\ncolumns = [\"a INT\"]\n[tasks.c]\ncommand = []\n[tasks.d]\nmaterialized = \"append\"\n").unwrap();
        assert_eq!(c.tasks["a"].check_kind(true).unwrap_err().0, "columns");
        assert_eq!(c.tasks["b"].check_kind(true).unwrap_err().0, "columns");
        assert_eq!(c.tasks["c"].check_kind(true).unwrap_err().0, "command");
        assert_eq!(c.tasks["d"].check_kind(true).unwrap_err().0, "materialized");
        let e = load("[tasks.a]\nproduces = \"view\"\n").unwrap_err();
        assert!(matches!(e, Error::Toml { line: Some(2), .. }), "{e:?}");
        let e = load("[tasks.a]\nmaterialized = \"command\"\n").unwrap_err();
        assert!(matches!(e, Error::Toml { line: Some(2), .. }), "{e:?}");
    }

    #[test]
    fn rejects_bad_settings() {
        let e = load("[tasks.a]\nmaterialized = \"partition\"\n").unwrap_err();
        assert!(e.to_string().contains("tasks.a.partition_by"), "{e}");
        let e = load("[tasks.a]\nmaterialized = \"merge_into\"\n").unwrap_err();
        assert!(matches!(e, Error::Toml { line: Some(2), .. }), "{e:?}");
        let e = load("[tasks.a]\nmaterialised = \"table\"\n").unwrap_err();
        assert!(
            e.to_string().contains("unknown field `materialised`"),
            "{e}"
        );
        let e = load("[tasks.a]\ntags = [\"Daily\"]\n").unwrap_err();
        assert!(e.to_string().contains("tasks.a.tags"), "{e}");
        let e = load("[tasks.a]\nretries = \"three\"\n").unwrap_err();
        assert!(matches!(e, Error::Toml { line: Some(2), .. }), "{e:?}");
        let e = load("[tasks.a]\nretries = -1\n").unwrap_err();
        assert!(matches!(e, Error::Toml { line: Some(2), .. }), "{e:?}");
        let e = load("retry_delay = \"ten seconds\"\n").unwrap_err();
        assert!(e.to_string().contains("is not a duration"), "{e}");
        let e = load("tags = \"daily\"\n").unwrap_err();
        assert!(matches!(e, Error::Toml { line: Some(1), .. }), "{e:?}");
    }
}
