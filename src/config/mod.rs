//! Environments (`environments/<env>.toml`) and pipeline files (`sql/<p>/pipeline.toml`)
//! read into typed structs. Unknown keys are errors; `${VAR}` values are kept as
//! written and resolved only when a connection is made (see [`resolve_env_vars`]).

mod alerts;
mod dialect;
mod environment;
mod expectations;
mod memory;
mod model_uri;
mod names;
mod pipeline;

pub(crate) use alerts::{AlertConfig, AlertEvent, AlertKind};
pub use dialect::Dialect;
pub use environment::Environment;
pub(crate) use environment::{SourceFormat, SourceTable};
pub(crate) use expectations::ExpectationConfig;
pub use expectations::Severity;
pub(crate) use memory::{default_memory_limit, format_bytes};
pub use model_uri::{ModelUri, ModelUriError};
pub(crate) use names::{is_identifier, is_tag};
pub use names::{InvalidName, PipelineName, TaskId, TaskName};
pub use pipeline::{Materialization, MetricConfig, OnSchemaChange, Produces, TaskConfig};
pub(crate) use pipeline::{PipelineConfig, ProjectConfig};

use std::path::Path;

/// The environment used when none is named (by `--env`, `QUERN_ENV`, a test's `env`):
/// a warehouse on local disk, no cloud account needed.
pub const DEFAULT_ENVIRONMENT: &str = "local";

use crate::error::{Error, Result};

/// Replaces every `${NAME}` in `value` with the process environment's `NAME`.
///
/// A missing variable is an error naming `file` and `key`, so a user knows which
/// setting needs it. `$$` is not special; a `$` not followed by `{` is kept as is.
pub fn resolve_env_vars(value: &str, file: &Path, key: &str) -> Result<String> {
    resolve_with(value, file, key, |name| std::env::var(name).ok())
}

/// [`resolve_env_vars`] with the variables read through `lookup`, so tests need not
/// change the process environment that other tests read.
fn resolve_with(
    value: &str,
    file: &Path,
    key: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(Error::Config {
                file: file.to_path_buf(),
                key: key.to_string(),
                message: format!("unterminated `${{` in `{value}`"),
            });
        };
        let name = &after[..end];
        match lookup(name) {
            Some(v) => out.push_str(&v),
            None => {
                return Err(Error::Config {
                    file: file.to_path_buf(),
                    key: key.to_string(),
                    message: format!(
                        "environment variable `{name}` is not set; export it before running quern"
                    ),
                })
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Parses a TOML document into `T`, turning a syntax error or an unknown key into an
/// [`Error::Toml`] with the file and line.
pub(crate) fn parse_toml<T: serde::de::DeserializeOwned>(file: &Path, text: &str) -> Result<T> {
    toml::from_str(text).map_err(|e| {
        let line = e
            .span()
            .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1);
        Error::Toml {
            file: file.to_path_buf(),
            line,
            source: Box::new(e),
        }
    })
}

/// Reads a file into a string with an [`Error::Io`] naming it.
pub(crate) fn read_file(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_present_and_reports_missing_variables() {
        let lookup = |name: &str| {
            (name == "QUERN_TEST_PRESENT").then(|| "http://127.0.0.1:9000".to_string())
        };
        let file = Path::new("environments/alpha.toml");
        assert_eq!(
            resolve_with(
                "${QUERN_TEST_PRESENT}/x",
                file,
                "storage.aws_endpoint",
                lookup
            )
            .unwrap(),
            "http://127.0.0.1:9000/x"
        );
        assert_eq!(resolve_with("plain$", file, "k", lookup).unwrap(), "plain$");
        let err = resolve_with(
            "${QUERN_TEST_ABSENT_VAR}",
            file,
            "storage.aws_endpoint",
            lookup,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("environments/alpha.toml"), "{err}");
        assert!(err.contains("storage.aws_endpoint"), "{err}");
        assert!(err.contains("QUERN_TEST_ABSENT_VAR"), "{err}");
    }

    #[test]
    fn toml_errors_carry_the_line() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct T {
            a: i64,
        }
        let err = parse_toml::<T>(Path::new("x.toml"), "a = 1\nb = 2\n").unwrap_err();
        assert!(matches!(err, Error::Toml { line: Some(2), .. }), "{err:?}");
        let err = parse_toml::<T>(Path::new("x.toml"), "a = \n").unwrap_err();
        assert!(matches!(err, Error::Toml { line: Some(1), .. }), "{err:?}");
    }
}
