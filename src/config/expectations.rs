//! Expectations as `pipeline.toml` declares them (`[[tasks.<task>.expect]]`): one
//! kind of check, a severity and an optional name. `checks` compiles them against a
//! task's output.

use serde::Deserialize;

/// What a violated expectation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Write every row and record how many violate the expectation.
    #[default]
    Warn,
    /// Write only the rows that meet it and record how many were dropped.
    Drop,
    /// Write nothing: the task fails, naming the expectation and showing offending rows.
    Fail,
}

impl Severity {
    /// The name used in `pipeline.toml`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warn => "warn",
            Severity::Drop => "drop",
            Severity::Fail => "fail",
        }
    }
}

/// `accepted_values = { column = "…", values = […] }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AcceptedValues {
    pub column: String,
    pub values: Vec<toml::Value>,
}

/// `row_count = { min = …, max = … }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RowCount {
    #[serde(default)]
    pub min: Option<u64>,
    #[serde(default)]
    pub max: Option<u64>,
}

/// One `[[tasks.<task>.expect]]` entry: exactly one of the kinds, a severity and a name.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExpectationConfig {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub severity: Severity,
    #[serde(default)]
    pub not_null: Option<Vec<String>>,
    #[serde(default)]
    pub unique: Option<Vec<String>>,
    #[serde(default)]
    pub accepted_values: Option<AcceptedValues>,
    #[serde(default)]
    pub row_count: Option<RowCount>,
    #[serde(default)]
    pub sql: Option<String>,
}

impl ExpectationConfig {
    /// Checks the entry's shape; the message is for `tasks.<task>.expect[i]`.
    pub(crate) fn validate(&self) -> Result<(), &'static str> {
        let kinds = [
            self.not_null.is_some(),
            self.unique.is_some(),
            self.accepted_values.is_some(),
            self.row_count.is_some(),
            self.sql.is_some(),
        ];
        if kinds.iter().filter(|k| **k).count() != 1 {
            return Err("give exactly one of not_null, unique, accepted_values, row_count, sql");
        }
        if self.row_count.is_some() && self.severity == Severity::Drop {
            return Err("a row_count expectation cannot drop rows; use warn or fail");
        }
        for cols in [&self.not_null, &self.unique].into_iter().flatten() {
            if cols.is_empty() {
                return Err("list at least one column");
            }
        }
        Ok(())
    }

    /// The name shown in reports: the given one, or one made from the kind.
    pub(crate) fn display_name(&self) -> String {
        if let Some(n) = &self.name {
            return n.clone();
        }
        if let Some(c) = &self.not_null {
            return format!("not_null({})", c.join(", "));
        }
        if let Some(c) = &self.unique {
            return format!("unique({})", c.join(", "));
        }
        if let Some(a) = &self.accepted_values {
            return format!("accepted_values({})", a.column);
        }
        if self.row_count.is_some() {
            return "row_count".into();
        }
        format!("sql({})", self.sql.clone().unwrap_or_default())
    }
}
