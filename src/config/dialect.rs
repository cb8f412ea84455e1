//! The SQL dialect a pipeline's tasks are written in (`dialect = "spark"` in
//! `pipeline.toml`, `quern query --dialect`): how its SQL is parsed and which functions
//! its queries call.

use serde::{Deserialize, Deserializer};

/// The SQL dialect of a pipeline's tasks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Dialect {
    /// DataFusion's SQL and functions (the default).
    #[default]
    Datafusion,
    /// Spark SQL: Spark's parser rules (backticks, `DIV`, lambdas, backslash escapes in
    /// string literals), Spark's functions and semantics (`/` never truncates).
    Spark,
}

impl Dialect {
    /// The dialect's name as written in `pipeline.toml`.
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Datafusion => "datafusion",
            Dialect::Spark => "spark",
        }
    }

    /// The other dialect (for "function f exists in dialect X" hints).
    pub(crate) fn other(self) -> Dialect {
        match self {
            Dialect::Datafusion => Dialect::Spark,
            Dialect::Spark => Dialect::Datafusion,
        }
    }
}

impl std::fmt::Display for Dialect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Dialect {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "datafusion" => Ok(Dialect::Datafusion),
            "spark" => Ok(Dialect::Spark),
            _ => Err(format!(
                "unknown SQL dialect `{s}`; the dialects are `datafusion` (the default) and `spark`"
            )),
        }
    }
}

/// Read from the `dialect` key of `pipeline.toml` and `quern.toml`: an unknown name is
/// an error naming the key and the dialects there are.
impl<'de> Deserialize<'de> for Dialect {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse()
            .map_err(|e| serde::de::Error::custom(format!("key `dialect`: {e}")))
    }
}
