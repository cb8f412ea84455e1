//! Validated names of pipelines and tasks. Both become SQL identifiers (`pipeline.task`),
//! so they are restricted to lower-case ASCII identifiers that need no quoting.

use std::fmt;

/// A pipeline or task name that is not a lower-case SQL identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} name `{name}` must be a lower-case SQL identifier (a-z, 0-9, _; not starting with a digit)")]
pub struct InvalidName {
    /// `pipeline` or `task`.
    pub what: &'static str,
    /// The name as given.
    pub name: String,
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// Validates `name`: lower-case ASCII letters, digits and `_`, not starting with a digit.
            pub fn try_new(name: impl Into<String>) -> Result<Self, InvalidName> {
                let name = name.into();
                if is_identifier(&name) {
                    Ok(Self(name))
                } else {
                    Err(InvalidName { what: $what, name })
                }
            }

            /// The name as a string.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

name_type!(
    /// The name of a pipeline: its folder under `sql/`, and its SQL schema.
    PipelineName,
    "pipeline"
);
name_type!(
    /// The name of a task: its file name without `.sql`, and its SQL table name.
    TaskName,
    "task"
);

/// A task of the project: its pipeline and its name. Shown as `pipeline/task`, the
/// form selectors and `render` take; its table is `pipeline.task`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TaskId {
    /// The pipeline.
    pub pipeline: PipelineName,
    /// The task.
    pub task: TaskName,
}

impl TaskId {
    /// The task `task` of `pipeline`.
    pub fn new(pipeline: PipelineName, task: TaskName) -> Self {
        TaskId { pipeline, task }
    }

    /// `task` when it is in `pipeline`, else `pipeline/task`: how a task is named among
    /// the tasks of one pipeline.
    pub fn short(&self, pipeline: &str) -> String {
        if self.pipeline.as_str() == pipeline {
            self.task.to_string()
        } else {
            self.to_string()
        }
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.pipeline, self.task)
    }
}

/// Whether `tag` can be a tag: lower-case letters, digits, `_` and `-`.
pub(crate) fn is_tag(tag: &str) -> bool {
    !tag.is_empty()
        && tag
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

pub(crate) fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("events", true)]
    #[case("_tmp_1", true)]
    #[case("Events", false)]
    #[case("1events", false)]
    #[case("daily-users", false)]
    #[case("", false)]
    fn names_are_sql_identifiers(#[case] name: &str, #[case] ok: bool) {
        assert_eq!(TaskName::try_new(name).is_ok(), ok);
    }
}
