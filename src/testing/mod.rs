//! Pipeline tests, runnable from `quern test` and from an embedder's `#[test]`.
//!
//! Two kinds of test:
//!
//! - **Row tests** in `sql/<pipeline>/tests/*.toml`: a task is rendered for an
//!   environment, `ds` and vars, its inputs are replaced by the given rows (in-memory
//!   tables), and it runs on the same engine as production. The output is compared
//!   with the expected rows, or the error with `expect_error`. Nothing is read from or
//!   written to a warehouse, S3 or the environment's sources.
//! - **Golden SQL**: each task's rendered SQL for each environment is compared with
//!   `sql/<pipeline>/tests/golden/<env>/<task>.sql` (rendered for `ds` =
//!   [`GOLDEN_DS`]), normalized through sqlparser. [`TestRunner::with_update`]
//!   rewrites the golden files.
//!
//! ```no_run
//! # async fn example() -> quern::Result<()> {
//! use quern::testing::TestRunner;
//! use quern::Project;
//!
//! let report = TestRunner::new(Project::load(".")?)
//!     .with_filter("reporting/odds_ratio")
//!     .run()
//!     .await?;
//! report.assert_passed(); // panics with every failure's diff
//! # Ok(())
//! # }
//! ```

mod compare;
mod data;
mod golden;
mod spec;

pub use golden::GOLDEN_DS;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::TableReference;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::pipeline::{extract_relations, ParsedTask, Pipeline, Project, Task};
use crate::template::{Renderer, RunDate, Vars};

use compare::{Comparison, Row};
use spec::{TestFile, TestSpec};

/// The outcome of one test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The test passed.
    Passed,
    /// The test failed; the text says how (a diff of rows or of SQL).
    Failed(String),
}

/// One test's result.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TestResult {
    /// `<file> › <test name>` for a row test, `golden <pipeline>/<task>@<env>` for SQL.
    pub name: String,
    /// What happened.
    pub outcome: Outcome,
}

impl TestResult {
    fn passed(name: String) -> Self {
        TestResult {
            name,
            outcome: Outcome::Passed,
        }
    }

    fn failed(name: String, why: String) -> Self {
        TestResult {
            name,
            outcome: Outcome::Failed(why),
        }
    }

    /// Whether the test passed.
    pub fn passed_ok(&self) -> bool {
        self.outcome == Outcome::Passed
    }
}

/// The results of a test run.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct TestReport {
    /// Every test, in the order they ran.
    pub results: Vec<TestResult>,
}

impl TestReport {
    /// How many passed.
    pub fn passed(&self) -> usize {
        self.results.iter().filter(|r| r.passed_ok()).count()
    }

    /// How many failed.
    pub fn failed(&self) -> usize {
        self.results.len() - self.passed()
    }

    /// Panics with the whole report when a test failed: for use in `#[test]`.
    #[track_caller]
    pub fn assert_passed(&self) {
        if self.failed() > 0 {
            panic!("pipeline tests failed:\n{self}");
        }
    }
}

impl fmt::Display for TestReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for r in &self.results {
            match &r.outcome {
                Outcome::Passed => writeln!(f, "ok      {}", r.name)?,
                Outcome::Failed(why) => {
                    writeln!(f, "FAILED  {}", r.name)?;
                    for line in why.lines() {
                        writeln!(f, "        {line}")?;
                    }
                }
            }
        }
        write!(f, "{} passed, {} failed", self.passed(), self.failed())
    }
}

/// Runs a project's pipeline tests; see the [module docs](self).
#[derive(Debug)]
#[must_use]
pub struct TestRunner {
    project: Arc<Project>,
    pipeline: Option<String>,
    task: Option<String>,
    env: Option<String>,
    update: bool,
}

impl TestRunner {
    /// Every test of every pipeline of `project`.
    pub fn new(project: Project) -> Self {
        TestRunner {
            project: Arc::new(project),
            pipeline: None,
            task: None,
            env: None,
            update: false,
        }
    }

    /// Only `pipeline` or `pipeline/task`.
    pub fn with_filter(mut self, target: &str) -> Self {
        match target.split_once('/') {
            Some((p, t)) => {
                self.pipeline = Some(p.to_string());
                self.task = Some(t.to_string());
            }
            None => self.pipeline = Some(target.to_string()),
        }
        self
    }

    /// Only row tests for environment `env` and golden files of `env`.
    pub fn with_env(mut self, env: impl Into<String>) -> Self {
        self.env = Some(env.into());
        self
    }

    /// Rewrite the golden SQL files instead of comparing them.
    pub fn with_update(mut self, update: bool) -> Self {
        self.update = update;
        self
    }

    /// Runs the tests. A malformed test file is an error naming it; a failing test is a
    /// [`Outcome::Failed`] in the report.
    pub async fn run(&self) -> Result<TestReport> {
        let project = &self.project;
        let pipelines: Vec<&Pipeline> = match &self.pipeline {
            Some(name) => vec![project.pipeline(name)?],
            None => project.pipelines().values().collect(),
        };
        if let (Some(task), Some(p)) = (&self.task, pipelines.first()) {
            p.task(task)?;
        }
        if let Some(env) = &self.env {
            project.environment(env)?;
        }
        let mut report = TestReport::default();
        let mut engines: BTreeMap<String, Engine> = BTreeMap::new();
        for pipeline in pipelines {
            for file in test_files(project, pipeline)? {
                let results = run_file(
                    project,
                    pipeline,
                    &file,
                    self.task.as_deref(),
                    self.env.as_deref(),
                    &mut engines,
                )
                .await?;
                report.results.extend(results);
            }
            let envs: Vec<String> = match &self.env {
                Some(e) => vec![e.clone()],
                None => project.environment_names().to_vec(),
            };
            for env in envs {
                report.results.extend(golden::check(
                    project,
                    pipeline,
                    &env,
                    self.task.as_deref(),
                    self.update,
                )?);
            }
        }
        Ok(report)
    }
}

/// Runs every test of the test file at `path` (relative to the project folder, e.g.
/// `sql/reporting/tests/odds_ratio.toml`) and returns the report.
pub async fn run_test_file(project: Project, path: impl AsRef<Path>) -> Result<TestReport> {
    let path = path.as_ref();
    let pipeline_name = path
        .strip_prefix("sql")
        .ok()
        .and_then(|p| p.components().next())
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .ok_or_else(|| Error::InvalidArgument {
            what: "test file",
            value: path.display().to_string(),
            message: "expected sql/<pipeline>/tests/<file>.toml".into(),
        })?;
    let pipeline = project.pipeline(&pipeline_name)?;
    let file = project.root().join(path);
    let results = run_file(&project, pipeline, &file, None, None, &mut BTreeMap::new()).await?;
    Ok(TestReport { results })
}

/// Runs the tests of one test file (`file` is absolute) for which `task` and `env`, when
/// given, match; engines are made once per environment and kept in `engines`.
async fn run_file(
    project: &Project,
    pipeline: &Pipeline,
    file: &Path,
    task: Option<&str>,
    env: Option<&str>,
    engines: &mut BTreeMap<String, Engine>,
) -> Result<Vec<TestResult>> {
    let shown = file.strip_prefix(project.root()).unwrap_or(file);
    let tests = TestFile::load(file, shown)?;
    let mut results = Vec::new();
    for (i, spec) in tests.test.iter().enumerate() {
        if task.is_some_and(|t| t != spec.task) {
            continue;
        }
        let spec_env = spec
            .env
            .clone()
            .unwrap_or_else(|| crate::config::DEFAULT_ENVIRONMENT.into());
        if env.is_some_and(|e| e != spec_env) {
            continue;
        }
        let engine = match engines.get(&spec_env) {
            Some(e) => e.clone(),
            None => {
                let e = Engine::builder(project.clone())
                    .with_environment(spec_env.clone())
                    .build()?;
                engines.insert(spec_env, e.clone());
                e
            }
        };
        let label = spec
            .name
            .clone()
            .unwrap_or_else(|| format!("{} #{}", spec.task, i + 1));
        let case = Case {
            engine: &engine,
            pipeline,
            spec,
            file: shown,
            dir: file.parent().unwrap_or(project.root()),
            label: &label,
        };
        let outcome = case.run().await?;
        results.push(TestResult {
            name: format!("{} › {label}", shown.display()),
            outcome,
        });
    }
    Ok(results)
}

fn test_files(project: &Project, pipeline: &Pipeline) -> Result<Vec<PathBuf>> {
    let dir = project
        .root()
        .join("sql")
        .join(pipeline.name.as_str())
        .join("tests");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(Vec::new());
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.map(|e| e.path()).map_err(|err| Error::io(&dir, err)))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    Ok(files)
}

/// One row test being run.
struct Case<'a> {
    engine: &'a Engine,
    pipeline: &'a Pipeline,
    spec: &'a TestSpec,
    file: &'a Path,
    dir: &'a Path,
    label: &'a str,
}

impl Case<'_> {
    fn bad_file(&self, message: String) -> Error {
        Error::TestFile {
            file: self.file.to_path_buf(),
            test: self.label.to_string(),
            message,
        }
    }

    async fn run(&self) -> Result<Outcome> {
        let task = self.task()?;
        let (ds, vars) = (self.ds()?, self.vars());
        let ctx = self.engine.session();
        let renderer = Renderer::new(self.engine.project(), self.engine.environment(), ds, &vars);
        let prepared = async {
            let rendered = renderer?.render(task)?;
            let parsed =
                extract_relations(task.name.as_str(), &task.file, &rendered.sql, task.dialect)?;
            self.engine.register_models(&ctx, &parsed.functions).await?;
            Ok::<_, Error>((parsed, rendered.sql))
        };
        let (parsed, rendered_sql) = match prepared.await {
            Ok(p) => p,
            Err(e) => return Ok(self.error_outcome(&e)),
        };
        self.register_given(&ctx, &parsed).await?;
        let result = async {
            let plan = crate::functions::state_for(ctx.state(), parsed.dialect)
                .statement_to_plan(parsed.statement.clone())
                .await?;
            let df = datafusion::prelude::DataFrame::new(ctx.state(), plan);
            let schema = Arc::new(df.schema().as_arrow().clone());
            let batches = df.collect().await?;
            Ok::<_, datafusion::error::DataFusionError>((schema, batches))
        }
        .await;
        match result {
            Ok((schema, batches)) => self.compare(&ctx, &schema, &batches).await,
            Err(e) => {
                let (name, file) = (task.name.as_str(), task.file.as_path());
                let error = crate::functions::wrong_dialect(
                    &ctx.state(),
                    &parsed,
                    name,
                    file,
                    &rendered_sql,
                )
                .unwrap_or_else(|| Error::plan(name, file, e));
                Ok(self.error_outcome(&error))
            }
        }
    }

    /// The task the test runs.
    fn task(&self) -> Result<&Task> {
        let spec = self.spec;
        if let Some(t) = self
            .pipeline
            .tasks
            .get(spec.task.as_str())
            .filter(|t| t.is_command())
        {
            return Err(self.bad_file(format!(
                "task `{}` is a command task ({}); pipeline tests run SQL tasks on given rows: test the program with its own tests, and the SQL tasks reading its table with `given` rows",
                spec.task,
                t.file.display()
            )));
        }
        self.pipeline.tasks.get(spec.task.as_str()).ok_or_else(|| {
            self.bad_file(format!(
                "pipeline `{}` has no task `{}`; its tasks: {}",
                self.pipeline.name,
                spec.task,
                self.pipeline
                    .tasks
                    .keys()
                    .map(|t| t.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
    }

    /// The test's `ds` ([`GOLDEN_DS`] when absent).
    fn ds(&self) -> Result<RunDate> {
        match &self.spec.ds {
            None => GOLDEN_DS.parse(),
            Some(toml::Value::String(s)) => {
                s.parse().map_err(|e: Error| self.bad_file(e.to_string()))
            }
            Some(toml::Value::Datetime(d)) if d.time.is_none() => d
                .to_string()
                .parse()
                .map_err(|e: Error| self.bad_file(e.to_string())),
            Some(other) => Err(self.bad_file(format!("ds = {other} is not a date"))),
        }
    }

    fn vars(&self) -> Vars {
        let mut vars = Vars::new();
        for (k, v) in &self.spec.vars {
            vars = vars.with(k.clone(), v.clone());
        }
        vars
    }

    /// Registers each given table as a fixture through the catalog. Each given table
    /// must be one the task reads; each table it reads must be given.
    async fn register_given(&self, ctx: &SessionContext, parsed: &ParsedTask) -> Result<()> {
        let spec = self.spec;
        let reads: BTreeSet<String> = parsed.relations.iter().map(ToString::to_string).collect();
        let mut given_names = BTreeSet::new();
        for g in &spec.given {
            let name = TableReference::from(g.table.as_str()).to_string();
            if !reads.contains(&name) {
                return Err(self.bad_file(format!(
                    "given table `{}` is not read by task `{}`; it reads: {}",
                    g.table,
                    spec.task,
                    if reads.is_empty() {
                        "no table".to_string()
                    } else {
                        reads.iter().cloned().collect::<Vec<_>>().join(", ")
                    }
                )));
            }
            let declared = crate::catalog::parse_columns(ctx, &g.columns)
                .await
                .map_err(|m| self.bad_file(format!("given `{}`: {m}", g.table)))?;
            let (schema, batches) = match &g.csv {
                Some(csv) => data::csv_batches(ctx, &self.dir.join(csv), &declared).await,
                None => data::rows_batch(&declared, &g.rows).map(|b| (b.schema(), vec![b])),
            }
            .map_err(|m| self.bad_file(format!("given `{}`: {m}", g.table)))?;
            let table = MemTable::try_new(schema, vec![batches])
                .map_err(|e| self.bad_file(e.to_string()))?;
            let reference = TableReference::from(g.table.as_str());
            crate::catalog::register_provider(ctx, reference, Arc::new(table))?;
            given_names.insert(name);
        }
        if let Some(missing) = reads.iter().find(|r| !given_names.contains(*r)) {
            return Err(self.bad_file(format!(
                "task `{}` reads `{missing}`, but the test gives no rows for it; add [[test.given]] table = \"{missing}\"",
                spec.task
            )));
        }
        Ok(())
    }

    /// Compares the task's output with the expected rows.
    async fn compare(
        &self,
        ctx: &SessionContext,
        schema: &SchemaRef,
        batches: &[RecordBatch],
    ) -> Result<Outcome> {
        let Some(expect) = &self.spec.expect else {
            let want = self.spec.expect_error.as_deref().unwrap_or_default();
            return Ok(Outcome::Failed(format!(
                "expected an error containing {want:?}, but the task succeeded"
            )));
        };
        let expected = self.expected_rows(ctx, expect).await?;
        let mut columns: BTreeSet<String> = expect.columns.iter().cloned().collect();
        if columns.is_empty() {
            columns = expected.iter().flat_map(|r| r.keys().cloned()).collect();
        }
        if expected.is_empty() && expect.columns.is_empty() {
            columns = schema.fields().iter().map(|f| f.name().clone()).collect();
        }
        let actual = data::batch_rows(batches).map_err(|m| self.bad_file(m))?;
        let comparison = Comparison {
            schema,
            columns: &columns,
            ordered: expect.ordered,
            tolerance: expect.tolerance.unwrap_or(1e-9),
        };
        Ok(match comparison.diff(&expected, &actual) {
            None => Outcome::Passed,
            Some(diff) => Outcome::Failed(diff),
        })
    }

    /// The expected rows: from the test's CSV file or its inline rows.
    async fn expected_rows(&self, ctx: &SessionContext, expect: &spec::Expect) -> Result<Vec<Row>> {
        if let Some(csv) = &expect.csv {
            let (_, b) = data::csv_batches(ctx, &self.dir.join(csv), &[])
                .await
                .map_err(|m| self.bad_file(format!("expect: {m}")))?;
            return data::batch_rows(&b).map_err(|m| self.bad_file(m));
        }
        expect
            .rows
            .iter()
            .enumerate()
            .map(|(i, row)| {
                row.iter()
                    .map(|(k, v)| {
                        data::scalar(v).map(|s| (k.clone(), s)).map_err(|m| {
                            self.bad_file(format!("expect row {}: column `{k}`: {m}", i + 1))
                        })
                    })
                    .collect::<Result<Row>>()
            })
            .collect()
    }

    /// The outcome of a test whose task raised `err`.
    fn error_outcome(&self, err: &Error) -> Outcome {
        let text = err.full_message();
        match &self.spec.expect_error {
            Some(want) if text.contains(want.as_str()) => Outcome::Passed,
            Some(want) => Outcome::Failed(format!(
                "expected an error containing {want:?}, got: {text}"
            )),
            None => Outcome::Failed(format!("the task failed: {text}")),
        }
    }
}
