//! Rendering task templates with minijinja: the render context (`env`, `ds`, …), the
//! functions `ref`, `source` and `var`, the SQL quoting filters, and macros from
//! `sql/macros/`.
//!
//! Vars never reach the SQL unquoted by accident: the output formatter refuses a string
//! that is the value of a var (from the environment or `--var`) and asks for
//! `| sql_string` (a quoted literal) or `| sql_ident` (a quoted identifier). Strings
//! written in the templates themselves, such as SQL fragments passed to macros, are
//! trusted and pasted as they are.

mod airflow;
mod context;

pub use airflow::DataInterval;
mod filters;

pub use context::{RunDate, Vars};

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use minijinja::value::{Object, Value};
use minijinja::{AutoEscape, Environment as Jinja, ErrorKind, State, UndefinedBehavior};

use crate::config::{Environment, PipelineName, TaskName};
use crate::error::{Error, Result};
use crate::pipeline::{Metric, Project, Task};

const PIPELINE_KEY: &str = "__quern_pipeline";
const DEPS_KEY: &str = "__quern_deps";

/// A task's template rendered for one environment and run date.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RenderedTask {
    /// The pipeline.
    pub pipeline: PipelineName,
    /// The task.
    pub task: TaskName,
    /// The template file.
    pub file: PathBuf,
    /// The rendered SQL.
    pub sql: String,
    /// The SQL dialect it is written in.
    pub dialect: crate::config::Dialect,
    /// The tasks named by `ref()`, as (pipeline, task).
    pub refs: BTreeSet<(PipelineName, TaskName)>,
    /// The source tables named by `source()`, as (source, table).
    pub sources: BTreeSet<(String, String)>,
}

/// What `ref()` and `source()` recorded during one render.
#[derive(Debug, Default)]
struct RenderDeps {
    refs: Mutex<BTreeSet<(PipelineName, TaskName)>>,
    sources: Mutex<BTreeSet<(String, String)>>,
}

impl Object for RenderDeps {}

/// Renders the tasks of a project for one environment, run date and set of vars.
pub struct Renderer {
    jinja: Jinja<'static>,
    root: PathBuf,
    ds: RunDate,
    interval: Option<DataInterval>,
    env_name: String,
}

impl std::fmt::Debug for Renderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Renderer")
            .field("env", &self.env_name)
            .field("ds", &self.ds)
            .finish_non_exhaustive()
    }
}

impl Renderer {
    /// Prepares rendering of `project`'s tasks for `env` on `ds`, with `vars` overriding
    /// the environment's `[vars]`. Macro files are compiled here, so a syntax error in
    /// a macro is reported even before a task is rendered.
    pub fn new(project: &Project, env: &Environment, ds: RunDate, vars: &Vars) -> Result<Self> {
        let mut jinja = Jinja::new();
        jinja.set_undefined_behavior(UndefinedBehavior::Strict);
        jinja.set_debug(true);
        jinja.set_keep_trailing_newline(false);
        jinja.set_auto_escape_callback(|_| AutoEscape::Custom("sql"));
        jinja.set_formatter(filters::formatter(env, vars));
        filters::register(&mut jinja);

        let tasks: Arc<BTreeMap<PipelineName, BTreeSet<TaskName>>> = Arc::new(
            project
                .pipelines()
                .iter()
                .map(|(name, p)| (name.clone(), p.tasks.keys().cloned().collect()))
                .collect(),
        );
        jinja.add_function("ref", make_ref(tasks));
        jinja.add_function("source", make_source(env));
        jinja.add_function("var", make_var(env, vars));
        jinja.add_function("ds_add", airflow::ds_add);

        let mut imports = String::new();
        for m in project.macros() {
            let name = template_name(project.root(), &m.file);
            jinja
                .add_template_owned(name.clone(), m.template.clone())
                .map_err(|e| render_error(project.root(), &m.file, e))?;
            let tmpl = jinja
                .get_template(&name)
                .map_err(|e| render_error(project.root(), &m.file, e))?;
            let captured = tmpl
                .render_captured(minijinja::context! {})
                .map_err(|e| render_error(project.root(), &m.file, e))?;
            let names: Vec<String> = captured
                .state()
                .exports()
                .into_iter()
                .map(str::to_string)
                .collect();
            if !names.is_empty() {
                imports.push_str(&format!(
                    "{{% from {name:?} import {} %}}",
                    names.join(", ")
                ));
            }
        }
        for pipeline in project.pipelines().values() {
            for task in pipeline.tasks.values() {
                // The import prefix has no newline, so template lines keep their numbers.
                let name = template_name(project.root(), &task.file);
                jinja
                    .add_template_owned(name, format!("{imports}{}", task.template))
                    .map_err(|e| render_error(project.root(), &task.file, e))?;
            }
            for metric in pipeline.metrics.values() {
                let name = template_name(project.root(), &metric.file);
                jinja
                    .add_template_owned(name, format!("{imports}{}", metric.config.sql))
                    .map_err(|e| render_error(project.root(), &metric.file, e))?;
            }
        }
        Ok(Renderer {
            jinja,
            root: project.root().to_path_buf(),
            ds,
            interval: None,
            env_name: env.name.clone(),
        })
    }

    /// Renders with `interval` as the run's data interval (Airflow's
    /// `data_interval_start`/`_end`, and `ts`, `logical_date` at its start) instead of
    /// the day `[ds, next_ds)`.
    #[must_use]
    pub fn with_data_interval(mut self, interval: Option<DataInterval>) -> Self {
        self.interval = interval;
        self
    }

    /// The run date.
    pub fn ds(&self) -> RunDate {
        self.ds
    }

    /// Renders one SQL task (a command task has no template: an error).
    pub fn render(&self, task: &Task) -> Result<RenderedTask> {
        if task.is_command() {
            return Err(Error::InvalidArgument {
                what: "task",
                value: format!("{}/{}", task.pipeline, task.name),
                message: format!(
                    "a command task ({}) has no SQL to render",
                    task.file.display()
                ),
            });
        }
        self.render_template(&task.pipeline, &task.name, &task.file, task.dialect)
    }

    /// Renders one metric's query.
    pub fn render_metric(&self, metric: &Metric) -> Result<RenderedTask> {
        self.render_template(&metric.pipeline, &metric.name, &metric.file, metric.dialect)
    }

    fn render_template(
        &self,
        pipeline: &PipelineName,
        task_name: &TaskName,
        file: &Path,
        dialect: crate::config::Dialect,
    ) -> Result<RenderedTask> {
        let task = RenderTarget {
            pipeline,
            name: task_name,
            file,
        };
        let name = template_name(&self.root, task.file);
        let tmpl = self
            .jinja
            .get_template(&name)
            .map_err(|e| render_error(&self.root, task.file, e))?;
        let ctx = minijinja::context! {
            env => Value::from_safe_string(self.env_name.clone()),
            __quern_pipeline => task.pipeline.as_str(),
            ..airflow::context(self.ds, self.interval.as_ref())
        };
        let captured = tmpl
            .render_captured(ctx)
            .map_err(|e| render_error(&self.root, task.file, e))?;
        let (refs, sources) = match captured.state().get_temp(DEPS_KEY) {
            Some(v) => match v.downcast_object_ref::<RenderDeps>() {
                Some(deps) => (lock(&deps.refs).clone(), lock(&deps.sources).clone()),
                None => Default::default(),
            },
            None => Default::default(),
        };
        let mut sql = captured.into_output();
        let trimmed = sql.trim_end().len();
        sql.truncate(trimmed);
        Ok(RenderedTask {
            pipeline: task.pipeline.clone(),
            task: task.name.clone(),
            file: task.file.to_path_buf(),
            sql,
            dialect,
            refs,
            sources,
        })
    }
}

/// What is being rendered: a task or a metric.
struct RenderTarget<'a> {
    pipeline: &'a PipelineName,
    name: &'a TaskName,
    file: &'a Path,
}

fn lock<T: Clone>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn deps(state: &State) -> Arc<RenderDeps> {
    state.get_or_set_temp_object(DEPS_KEY, RenderDeps::default)
}

fn fail(message: String) -> minijinja::Error {
    minijinja::Error::new(ErrorKind::InvalidOperation, message)
}

type RefFn = dyn Fn(&State, String, Option<String>) -> Result<Value, minijinja::Error>
    + Send
    + Sync
    + 'static;

fn make_ref(tasks: Arc<BTreeMap<PipelineName, BTreeSet<TaskName>>>) -> Box<RefFn> {
    Box::new(
        move |state: &State, first: String, second: Option<String>| {
            let (pipeline, task) = match second {
                Some(task) => (first, task),
                None => {
                    let current = state
                    .lookup(PIPELINE_KEY)
                    .and_then(|v| v.as_str().map(str::to_string))
                    .ok_or_else(|| {
                        fail(format!(
                            "ref('{first}') needs the pipeline here; write ref('<pipeline>', '{first}')"
                        ))
                    })?;
                    (current, first)
                }
            };
            let Some((pipeline_name, known)) = tasks.get_key_value(pipeline.as_str()) else {
                return Err(fail(format!(
                    "ref() names unknown pipeline `{pipeline}`; known pipelines: {}",
                    tasks
                        .keys()
                        .map(|p| p.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            };
            let Some(task_name) = known.get(task.as_str()) else {
                return Err(fail(format!(
                    "ref() names unknown task `{task}` of pipeline `{pipeline}`; its tasks: {}",
                    known
                        .iter()
                        .map(|t| t.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            };
            lock(&deps(state).refs).insert((pipeline_name.clone(), task_name.clone()));
            Ok(Value::from_safe_string(format!(
                "{pipeline_name}.{task_name}"
            )))
        },
    )
}

type SourceFn =
    dyn Fn(&State, String, String) -> Result<Value, minijinja::Error> + Send + Sync + 'static;

fn make_source(env: &Environment) -> Box<SourceFn> {
    let declared: BTreeMap<String, BTreeSet<String>> = env
        .sources
        .iter()
        .map(|(name, tables)| (name.clone(), tables.keys().cloned().collect()))
        .collect();
    let file = env.file.display().to_string();
    Box::new(move |state: &State, name: String, table: String| {
        let declared_here = declared.get(&name).is_some_and(|t| t.contains(&table));
        if !declared_here {
            return Err(fail(format!(
                "source('{name}', '{table}') is not declared in {file}; add it under [sources.{name}]"
            )));
        }
        lock(&deps(state).sources).insert((name.clone(), table.clone()));
        Ok(Value::from_safe_string(format!("{name}.{table}")))
    })
}

type VarFn =
    dyn Fn(String, Option<Value>) -> Result<Value, minijinja::Error> + Send + Sync + 'static;

fn make_var(env: &Environment, overrides: &Vars) -> Box<VarFn> {
    let mut values: BTreeMap<String, Value> = env
        .vars
        .iter()
        .map(|(k, v)| (k.clone(), Value::from_serialize(v)))
        .collect();
    for (k, v) in overrides.iter() {
        values.insert(k.clone(), Value::from_serialize(v));
    }
    let file = env.file.display().to_string();
    Box::new(move |name: String, default: Option<Value>| {
        match values.get(&name).cloned().or(default) {
            Some(v) => Ok(v),
            None => Err(fail(format!(
                "var('{name}') is not set: add it under [vars] in {file}, pass --var {name}=…, or give a default: var('{name}', …)"
            ))),
        }
    })
}

/// The name a template is registered under: its path relative to the project.
fn template_name(root: &Path, file: &Path) -> String {
    file.strip_prefix(root)
        .unwrap_or(file)
        .to_string_lossy()
        .into_owned()
}

/// Turns a minijinja error into [`Error::Render`] naming the file and line where it
/// happened (the macro file when the error is inside a macro).
fn render_error(root: &Path, file: &Path, err: minijinja::Error) -> Error {
    let _ = root;
    let file = match err.name() {
        Some(name) => PathBuf::from(name),
        None => file.to_path_buf(),
    };
    let mut message = match err.detail() {
        Some(detail) => format!("{}: {detail}", err.kind()),
        None => err.kind().to_string(),
    };
    if let (Some(range), Some(source)) = (err.range(), err.template_source()) {
        if let Some(expr) = source.get(range) {
            message.push_str(&format!(" in `{}`", expr.trim()));
        }
    }
    Error::Render {
        file,
        line: err.line(),
        message,
        template_error: err,
    }
}

#[cfg(test)]
mod tests;
