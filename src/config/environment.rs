//! `environments/<env>.toml`: storage roots, object-store options, sources, vars,
//! models, MLflow and engine settings of one environment.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

/// `[warehouse]`: where the environment's tasks are written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WarehouseSettings {
    /// Task `T` of pipeline `P` is written to `<root>/P/T`. A relative path is relative
    /// to the project folder.
    pub root: String,
    /// Other roots this environment may write; nothing else.
    #[serde(default)]
    pub write_roots: Vec<String>,
}

/// The format of a source table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceFormat {
    /// A Delta table.
    Delta,
    /// A Parquet file or a folder of Parquet files.
    Parquet,
    /// A CSV file with a header line, or a folder of them.
    Csv,
}

/// One table of a source: `[sources.<name>] <table> = { uri = …, format = … }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceTable {
    /// Where the table lives: a local path (relative to the project) or `s3://…`.
    pub uri: String,
    /// The table's format.
    pub format: SourceFormat,
    /// Delta only: read this version of the table.
    #[serde(default)]
    pub version: Option<u64>,
    /// Delta only: read the latest version committed at or before this time (RFC 3339).
    #[serde(default)]
    pub timestamp: Option<String>,
}

/// One entry of `[models]`: a model URI, or a table with the URI and options.
///
/// ```toml
/// [models]
/// churn = "models:/churn@champion"
/// ltv = { uri = "models/ltv.onnx", output = "variable" }
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum ModelSettings {
    /// `name = "uri"`.
    Uri(String),
    /// `name = { uri = "…", output = "…" }`.
    Table(ModelTable),
}

/// The table form of a `[models]` entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelTable {
    /// `models:/name@alias`, `models:/name/version`, `runs:/run_id/path`, or a path to a
    /// `.onnx` file (relative to the project root).
    pub uri: String,
    /// The graph output to score (default: a classifier's probabilities, else the first
    /// floating-point output).
    #[serde(default)]
    pub output: Option<String>,
}

impl ModelSettings {
    /// The model URI.
    pub fn uri(&self) -> &str {
        match self {
            ModelSettings::Uri(uri) | ModelSettings::Table(ModelTable { uri, .. }) => uri,
        }
    }

    /// The output to score, when chosen.
    pub fn output(&self) -> Option<&str> {
        match self {
            ModelSettings::Uri(_) => None,
            ModelSettings::Table(t) => t.output.as_deref(),
        }
    }
}

/// `[mlflow]`: the tracking and registry server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MlflowSettings {
    /// The server's base URL.
    pub uri: String,
    /// A bearer token, usually `"${MLFLOW_TOKEN}"`.
    #[serde(default)]
    pub token: Option<String>,
}

/// `[python]`: how `.py` command tasks are run.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PythonSettings {
    /// The interpreter: a program on `PATH` (default `python3`) or a path, relative to
    /// the project folder when it is not absolute (e.g. a virtualenv's `bin/python`).
    #[serde(default = "default_interpreter")]
    pub interpreter: String,
}

fn default_interpreter() -> String {
    "python3".into()
}

impl Default for PythonSettings {
    fn default() -> Self {
        PythonSettings {
            interpreter: default_interpreter(),
        }
    }
}

/// `[engine]`: DataFusion and scheduling settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineSettings {
    /// DataFusion's `target_partitions` (parallelism of a query); all cores when absent.
    #[serde(default)]
    pub target_partitions: Option<usize>,
    /// DataFusion's batch size in rows.
    #[serde(default)]
    pub batch_size: Option<usize>,
    /// How many independent tasks of a run may execute at once (default 2).
    #[serde(default)]
    pub max_concurrent_tasks: Option<usize>,
    /// The session time zone (an IANA name such as `"Europe/Paris"`, or an offset such
    /// as `"+02:00"`; default UTC): what timestamps with a time zone are shown and
    /// truncated in, and what Spark's date functions read local times in.
    #[serde(default)]
    pub time_zone: Option<String>,
    /// The memory all of a run's queries share — all of one [`Engine`](crate::Engine)'s,
    /// for a library user (`"4GiB"`; default: three quarters of the machine's or its
    /// cgroup's). Sorts, aggregations and joins past it spill to
    /// disk, or fail naming this key when spilling is off.
    #[serde(default)]
    pub memory_limit: Option<super::memory::MemoryLimit>,
    /// Whether operators past `memory_limit` spill to the OS temp folder (`$TMPDIR`);
    /// default true.
    #[serde(default)]
    pub spill: Option<bool>,
    /// The Parquet codec of the files quern writes (Delta tables and `COPY`):
    /// `"snappy"` (default, as Spark and DuckDB write), `"zstd(3)"`, `"lz4"`,
    /// `"gzip(6)"`, `"brotli(4)"` or `"uncompressed"`.
    #[serde(default)]
    pub compression: Option<String>,
    /// `[engine.datafusion]`: DataFusion settings by name, with or without the
    /// `datafusion.` prefix (`"execution.parquet.pushdown_filters" = true`), applied to
    /// every session after quern's own, as `SET` would.
    #[serde(default)]
    pub datafusion: BTreeMap<String, toml::Value>,
    /// `"df://host:50050"`: run the environment's queries on the Ballista cluster of
    /// this scheduler (`quern scheduler`, with `quern executor`s); writes, expectations
    /// and the run log stay with the client. Embedded (one process) when absent.
    #[serde(default)]
    pub ballista: Option<String>,
}

impl EngineSettings {
    /// `memory_limit` in bytes, when set.
    pub(crate) fn memory_limit_bytes(&self) -> Option<u64> {
        self.memory_limit.map(|m| m.bytes())
    }

    /// The host and port of `ballista`'s scheduler, or why it is not one.
    pub(crate) fn ballista_scheduler(&self) -> Option<std::result::Result<(String, u16), String>> {
        let text = self.ballista.as_deref()?;
        let bad = |why: &str| {
            Err(format!(
                "`{text}` {why}; write the scheduler's address as \"df://host:50050\""
            ))
        };
        Some(match url::Url::parse(text) {
            Err(e) => bad(&format!("is not a URL ({e})")),
            Ok(url) if url.scheme() != "df" => {
                bad(&format!("has scheme `{}`, not df", url.scheme()))
            }
            Ok(url) => match url.host_str().filter(|h| !h.is_empty()) {
                None => bad("names no host"),
                Some(_) if !url.path().trim_matches('/').is_empty() => bad("has a path"),
                Some(host) => Ok((
                    host.trim_matches(|c| c == '[' || c == ']').to_string(),
                    url.port().unwrap_or(50050),
                )),
            },
        })
    }

    /// The settings' values that TOML's types do not check, as (key, what is wrong).
    fn check(&self) -> std::result::Result<(), (&'static str, String)> {
        if let Some(Err(why)) = self.ballista_scheduler() {
            return Err(("engine.ballista", why));
        }
        if let Some(tz) = &self.time_zone {
            if tz
                .parse::<datafusion::arrow::array::timezone::Tz>()
                .is_err()
            {
                return Err((
                    "engine.time_zone",
                    format!("`{tz}` is not a time zone; write an IANA name such as \"Europe/Paris\", or an offset such as \"+02:00\""),
                ));
            }
        }
        if let Some(codec) = &self.compression {
            if let Err(e) =
                datafusion::common::file_options::parquet_writer::parse_compression_string(codec)
            {
                let why = match e {
                    datafusion::error::DataFusionError::Configuration(m) => m,
                    other => other.to_string(),
                };
                return Err((
                    "engine.compression",
                    format!("`{codec}` is not a Parquet codec quern can write: {why}"),
                ));
            }
        }
        let mut options = datafusion::config::ConfigOptions::new();
        for setting in self.datafusion_settings() {
            let (key, value) = setting.map_err(|e| ("engine.datafusion", e))?;
            if let Err(e) = options.set(&key, &value) {
                let why = match e {
                    datafusion::error::DataFusionError::Configuration(m) => m,
                    other => other.to_string(),
                };
                return Err(("engine.datafusion", format!("`{key}` = {value}: {why}")));
            }
        }
        // The Parquet writer would panic on it.
        if options.execution.parquet.max_row_group_size == 0 {
            return Err((
                "engine.datafusion",
                "`datafusion.execution.parquet.max_row_group_size` = 0: a row group holds at least one row".into(),
            ));
        }
        Ok(())
    }

    /// `[engine.datafusion]` as DataFusion's full setting names and values in text, or
    /// why a value cannot be one (an array or a table).
    pub(crate) fn datafusion_settings(
        &self,
    ) -> impl Iterator<Item = std::result::Result<(String, String), String>> + '_ {
        self.datafusion.iter().map(|(key, value)| {
            let name = match key.starts_with("datafusion.") {
                true => key.clone(),
                false => format!("datafusion.{key}"),
            };
            let text = match value {
                toml::Value::String(s) => Ok(s.clone()),
                toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_) => {
                    Ok(value.to_string())
                }
                other => Err(format!(
                    "`{key}` = {other}: give a string, a number or a boolean"
                )),
            };
            text.map(|t| (name, t))
        })
    }

    /// The Parquet codec quern writes with, as DataFusion spells it.
    pub(crate) fn compression(&self) -> &str {
        self.compression.as_deref().unwrap_or("snappy")
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EnvironmentFile {
    warehouse: WarehouseSettings,
    #[serde(default)]
    storage: BTreeMap<String, String>,
    #[serde(default)]
    sources: BTreeMap<String, BTreeMap<String, SourceTable>>,
    #[serde(default)]
    vars: BTreeMap<String, toml::Value>,
    #[serde(default)]
    models: BTreeMap<String, ModelSettings>,
    #[serde(default)]
    mlflow: Option<MlflowSettings>,
    #[serde(default)]
    engine: EngineSettings,
    #[serde(default)]
    python: PythonSettings,
    #[serde(default)]
    alerts: Vec<super::AlertConfig>,
}

/// One environment of a project, as written in its file (`${VAR}` values unresolved).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Environment {
    /// The environment's name (the file stem).
    pub name: String,
    /// The file it was read from.
    pub file: PathBuf,
    /// `[warehouse]`.
    pub(crate) warehouse: WarehouseSettings,
    /// `[storage]`: object_store / delta-rs options for `s3://` URIs.
    pub(crate) storage: BTreeMap<String, String>,
    /// `[sources.<name>]`: source name → table name → table.
    pub(crate) sources: BTreeMap<String, BTreeMap<String, SourceTable>>,
    /// `[vars]`: values for `var('name')`.
    pub(crate) vars: BTreeMap<String, toml::Value>,
    /// `[models]`: SQL function name → model.
    pub(crate) models: BTreeMap<String, ModelSettings>,
    /// `[mlflow]`.
    pub(crate) mlflow: Option<MlflowSettings>,
    /// `[engine]`.
    pub(crate) engine: EngineSettings,
    /// `[python]`.
    pub(crate) python: PythonSettings,
    /// `[[alerts]]`: where failures, breaches and violated expectations are told.
    pub(crate) alerts: Vec<super::AlertConfig>,
}

/// Checks `[engine]` and `[python]`; `Err((key, message))`.
fn check_settings(parsed: &EnvironmentFile) -> std::result::Result<(), (&'static str, String)> {
    parsed.engine.check()?;
    if let Some(n) = parsed.engine.max_concurrent_tasks.filter(|n| *n == 0) {
        return Err((
            "engine.max_concurrent_tasks",
            format!("must be at least 1, not {n}"),
        ));
    }
    if parsed.python.interpreter.trim().is_empty() {
        return Err((
            "python.interpreter",
            "is empty; name a program such as \"python3\" or a path to one".into(),
        ));
    }
    Ok(())
}

impl Environment {
    /// Reads and validates `file`; the environment's name is the file stem.
    pub fn load(file: &Path) -> Result<Self> {
        Self::load_as(file, file)
    }

    /// Reads `path`, naming it `file` in messages (the project-relative path).
    pub(crate) fn load_as(path: &Path, file: &Path) -> Result<Self> {
        let text = super::read_file(path)?;
        let parsed: EnvironmentFile = super::parse_toml(file, &text)?;
        let name = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let config_err = |key: String, message: String| Error::Config {
            file: file.to_path_buf(),
            key,
            message,
        };
        for (source, tables) in &parsed.sources {
            if !super::names::is_identifier(source) {
                return Err(config_err(
                    format!("sources.{source}"),
                    "a source name must be a lower-case SQL identifier".into(),
                ));
            }
            for (table, spec) in tables {
                if !super::names::is_identifier(table) {
                    return Err(config_err(
                        format!("sources.{source}.{table}"),
                        "a source table name must be a lower-case SQL identifier".into(),
                    ));
                }
                let pinned = spec.version.is_some() || spec.timestamp.is_some();
                if pinned && spec.format != SourceFormat::Delta {
                    return Err(config_err(
                        format!("sources.{source}.{table}"),
                        "`version` and `timestamp` apply to Delta sources only".into(),
                    ));
                }
                if spec.version.is_some() && spec.timestamp.is_some() {
                    return Err(config_err(
                        format!("sources.{source}.{table}"),
                        "give `version` or `timestamp`, not both".into(),
                    ));
                }
                if let Some(ts) = &spec.timestamp {
                    if chrono::DateTime::parse_from_rfc3339(ts).is_err() {
                        return Err(config_err(
                            format!("sources.{source}.{table}.timestamp"),
                            format!("`{ts}` is not an RFC 3339 time such as 2024-03-01T00:00:00Z"),
                        ));
                    }
                }
            }
        }
        for (var, value) in &parsed.vars {
            if matches!(value, toml::Value::Datetime(_)) {
                return Err(config_err(
                    format!("vars.{var}"),
                    "dates are not supported as vars; write the date as a string".into(),
                ));
            }
        }
        check_settings(&parsed).map_err(|(key, message)| config_err(key.into(), message))?;
        for (name, model) in &parsed.models {
            let valid = name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !valid {
                return Err(config_err(
                    format!("models.{name}"),
                    "a model function name is lower-case letters, digits and _, starting with a letter".into(),
                ));
            }
            if let Err(e) = super::ModelUri::parse(model.uri()) {
                return Err(config_err(format!("models.{name}"), e.to_string()));
            }
        }
        if parsed.python.interpreter.trim().is_empty() {
            return Err(config_err(
                "python.interpreter".into(),
                "is empty; name a program such as \"python3\" or a path to one".into(),
            ));
        }
        for (i, alert) in parsed.alerts.iter().enumerate() {
            alert
                .validate()
                .map_err(|message| config_err(format!("alerts[{i}]"), message.into()))?;
        }
        Ok(Environment {
            name,
            file: file.to_path_buf(),
            warehouse: parsed.warehouse,
            storage: parsed.storage,
            sources: parsed.sources,
            vars: parsed.vars,
            models: parsed.models,
            mlflow: parsed.mlflow,
            engine: parsed.engine,
            python: parsed.python,
            alerts: parsed.alerts,
        })
    }

    /// The source table `source.table`, if declared.
    pub(crate) fn source(&self, source: &str, table: &str) -> Option<&SourceTable> {
        self.sources.get(source)?.get(table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Environment> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("alpha.toml");
        std::fs::write(&file, text).unwrap();
        Environment::load(&file)
    }

    #[test]
    fn reads_the_documented_keys() {
        let env = load(
            r#"
[warehouse]
root = "s3://acme-alpha/warehouse"
write_roots = []
[storage]
aws_region = "eu-west-1"
aws_endpoint = "${S3_ENDPOINT}"
[sources.events]
raw = { uri = "s3://acme-raw/events", format = "delta" }
[vars]
lookback_days = 7
[models]
churn = "models:/churn@champion"
[mlflow]
uri = "https://mlflow.example.com"
token = "${MLFLOW_TOKEN}"
[engine]
target_partitions = 8
"#,
        )
        .unwrap();
        assert_eq!(env.name, "alpha");
        assert_eq!(env.storage["aws_endpoint"], "${S3_ENDPOINT}");
        assert_eq!(
            env.source("events", "raw").unwrap().format,
            SourceFormat::Delta
        );
        assert_eq!(env.engine.target_partitions, Some(8));
    }

    #[test]
    fn unknown_keys_are_errors_with_a_line() {
        let err = load("[warehouse]\nroot = \"w\"\n[wearhouse]\nroot = \"x\"\n").unwrap_err();
        assert!(matches!(err, Error::Toml { line: Some(3), .. }), "{err:?}");
        assert!(err.to_string().contains("alpha.toml:3"), "{err}");
        let err = load(
            "[warehouse]\nroot = \"w\"\n[sources.e]\nraw = { uri = \"x\", format = \"orc\" }\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("alpha.toml:4"), "{err}");
    }
}
