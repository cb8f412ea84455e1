//! Test files: `sql/<pipeline>/tests/*.toml`, each holding one or more `[[test]]`
//! tables.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

/// The whole of a test file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TestFile {
    #[serde(default)]
    pub test: Vec<TestSpec>,
}

/// One `[[test]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TestSpec {
    /// A name shown in the report; the task's name when absent.
    #[serde(default)]
    pub name: Option<String>,
    /// The task under test.
    pub task: String,
    /// The environment to render for (default `local`). Nothing of it is read but its
    /// vars, sources' names and settings: tests never touch storage.
    #[serde(default)]
    pub env: Option<String>,
    /// The run date: a TOML date (`2024-03-01`) or a string.
    #[serde(default)]
    pub ds: Option<toml::Value>,
    /// Var overrides.
    #[serde(default)]
    pub vars: BTreeMap<String, toml::Value>,
    /// Rows for each table the task reads.
    #[serde(default)]
    pub given: Vec<GivenTable>,
    /// The rows the task must produce.
    #[serde(default)]
    pub expect: Option<Expect>,
    /// A substring of the error the task must raise.
    #[serde(default)]
    pub expect_error: Option<String>,
}

/// `[[test.given]]`: the rows of one table the task reads.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GivenTable {
    /// The table as the SQL names it: `pipeline.task` for a ref, `source.table` for a
    /// source.
    pub table: String,
    /// Column names with SQL types, in order: `["user_id STRING", "ds DATE"]`. Columns
    /// not listed get a type inferred from their values.
    #[serde(default)]
    pub columns: Vec<String>,
    /// Inline rows, one TOML table per row; a missing key is NULL.
    #[serde(default)]
    pub rows: Vec<toml::Table>,
    /// A CSV file with a header line, relative to the test file.
    #[serde(default)]
    pub csv: Option<PathBuf>,
}

/// `[test.expect]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Expect {
    /// The expected rows; a missing key is NULL.
    #[serde(default)]
    pub rows: Vec<toml::Table>,
    /// A CSV file of the expected rows, relative to the test file.
    #[serde(default)]
    pub csv: Option<PathBuf>,
    /// The output's columns, when the rows alone do not say (e.g. a column that is
    /// NULL in every row). Default: every key of the rows.
    #[serde(default)]
    pub columns: Vec<String>,
    /// Compare rows in order (default: as a multiset).
    #[serde(default)]
    pub ordered: bool,
    /// Floats compare equal within `tolerance * max(1, |expected|)` (default 1e-9).
    #[serde(default)]
    pub tolerance: Option<f64>,
}

impl TestFile {
    pub(crate) fn load(path: &Path, shown: &Path) -> Result<Self> {
        let text = crate::config::read_file(path)?;
        let file: TestFile = crate::config::parse_toml(shown, &text)?;
        for (i, t) in file.test.iter().enumerate() {
            let err = |message: String| Error::TestFile {
                file: shown.to_path_buf(),
                test: t.name.clone().unwrap_or_else(|| format!("#{}", i + 1)),
                message,
            };
            match (&t.expect, &t.expect_error) {
                (None, None) => return Err(err("give `expect` rows or `expect_error`".into())),
                (Some(_), Some(_)) => {
                    return Err(err(
                        "give either `expect` or `expect_error`, not both".into()
                    ))
                }
                _ => {}
            }
            for g in &t.given {
                if g.csv.is_some() && !g.rows.is_empty() {
                    return Err(err(format!(
                        "given table `{}` has both `rows` and `csv`; give one",
                        g.table
                    )));
                }
            }
            if let Some(e) = &t.expect {
                if e.csv.is_some() && !e.rows.is_empty() {
                    return Err(err("`expect` has both `rows` and `csv`; give one".into()));
                }
            }
        }
        Ok(file)
    }
}
