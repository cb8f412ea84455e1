//! Golden rendered SQL: each task's SQL for each environment, committed under
//! `sql/<pipeline>/tests/golden/<env>/<task>.sql` and compared after normalizing
//! through sqlparser, so whitespace and layout changes do not count.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use datafusion::sql::sqlparser::parser::Parser;

use super::{Outcome, TestResult};
use crate::config::Dialect;
use crate::error::{Error, Result};
use crate::pipeline::{Pipeline, Project};
use crate::template::{RunDate, Vars};
use crate::Renderer;

/// The run date golden files are rendered for.
pub const GOLDEN_DS: &str = "2024-01-01";

/// The golden file of `task` for `env`, relative to the project.
pub(crate) fn golden_path(pipeline: &Pipeline, env: &str, task: &str) -> PathBuf {
    PathBuf::from("sql")
        .join(pipeline.name.as_str())
        .join("tests/golden")
        .join(env)
        .join(format!("{task}.sql"))
}

/// Checks (or, with `update`, rewrites) the golden files of `pipeline` for `env`.
pub(crate) fn check(
    project: &Project,
    pipeline: &Pipeline,
    env_name: &str,
    task_filter: Option<&str>,
    update: bool,
) -> Result<Vec<TestResult>> {
    let env = project.environment(env_name)?;
    let ds: RunDate = GOLDEN_DS.parse()?;
    let renderer = Renderer::new(project, &env, ds, &Vars::new())?;
    let mut results = Vec::new();
    let mut expected_files = BTreeSet::new();
    // A command task has no SQL to snapshot.
    for task in pipeline.tasks.values().filter(|t| !t.is_command()) {
        if task_filter.is_some_and(|t| t != task.name.as_str()) {
            continue;
        }
        let rel = golden_path(pipeline, env_name, task.name.as_str());
        let path = project.root().join(&rel);
        expected_files.insert(path.clone());
        let name = format!("golden {}/{}@{env_name}", pipeline.name, task.name);
        let rendered = match renderer.render(task) {
            Ok(r) => r.sql,
            Err(e) => {
                results.push(TestResult::failed(name, format!("does not render: {e}")));
                continue;
            }
        };
        if update {
            write(&path, &format!("{rendered}\n"))?;
            results.push(TestResult::passed(name));
            continue;
        }
        let outcome = match std::fs::read_to_string(&path) {
            Err(_) => Outcome::Failed(format!(
                "no golden file {}; run `quern test --update` and commit it",
                rel.display()
            )),
            Ok(golden) if normalize(&golden, task.dialect) == normalize(&rendered, task.dialect) => {
                Outcome::Passed
            }
            Ok(golden) => Outcome::Failed(format!(
                "rendered SQL differs from {} (- golden, + rendered); run `quern test --update` if the change is intended:\n{}",
                rel.display(),
                line_diff(golden.trim_end(), &rendered)
            )),
        };
        results.push(TestResult { name, outcome });
    }
    // Golden files of tasks that no longer exist.
    if task_filter.is_none() {
        let dir = project
            .root()
            .join("sql")
            .join(pipeline.name.as_str())
            .join("tests/golden")
            .join(env_name);
        if let Ok(entries) = std::fs::read_dir(&dir) {
            let mut stale: Vec<PathBuf> = entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.extension().is_some_and(|e| e == "sql") && !expected_files.contains(p)
                })
                .collect();
            stale.sort();
            for path in stale {
                let rel = path
                    .strip_prefix(project.root())
                    .unwrap_or(&path)
                    .to_path_buf();
                if update {
                    std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
                } else {
                    results.push(TestResult::failed(
                        format!("golden {}", rel.display()),
                        "golden file of a task that does not exist; run `quern test --update` to remove it".into(),
                    ));
                }
            }
        }
    }
    Ok(results)
}

fn write(path: &Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    if std::fs::read_to_string(path).is_ok_and(|old| old == text) {
        return Ok(());
    }
    std::fs::write(path, text).map_err(|e| Error::io(path, e))
}

/// SQL in sqlparser's canonical form; text that does not parse is compared with its
/// whitespace collapsed.
fn normalize(sql: &str, dialect: Dialect) -> String {
    match Parser::parse_sql(crate::pipeline::sql_dialect(dialect), sql) {
        Ok(statements) => statements
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(";\n"),
        Err(_) => sql.split_whitespace().collect::<Vec<_>>().join(" "),
    }
}

fn line_diff(old: &str, new: &str) -> String {
    let diff = similar::TextDiff::from_lines(old, new);
    let mut out = String::new();
    for change in diff.iter_all_changes() {
        let sign = match change.tag() {
            similar::ChangeTag::Delete => "-",
            similar::ChangeTag::Insert => "+",
            similar::ChangeTag::Equal => " ",
        };
        out.push_str(&format!("    {sign} {}", change));
        if !out.ends_with('\n') {
            out.push('\n');
        }
    }
    out.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitespace_and_keyword_case_do_not_count() {
        assert_eq!(
            normalize("select a,\n  b from   t where x = 1", Dialect::Datafusion),
            normalize("SELECT a, b FROM t WHERE x = 1", Dialect::Datafusion)
        );
        assert_ne!(
            normalize("SELECT a FROM t", Dialect::Spark),
            normalize("SELECT b FROM t", Dialect::Spark)
        );
    }
}
