//! Discovery: a project folder's environments, macros, pipelines and task files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::config::{
    Dialect, Environment, MetricConfig, PipelineConfig, PipelineName, ProjectConfig, TaskConfig,
    TaskId, TaskName,
};
use crate::error::{Error, Result};

/// The program of a command task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `sql/<pipeline>/<task>.py` (relative to the project), run with the
    /// environment's `[python] interpreter`.
    Python {
        /// The script.
        script: PathBuf,
    },
    /// `command = ["program", "arg", …]` in `pipeline.toml`.
    Program {
        /// The program and its arguments.
        argv: Vec<String>,
    },
}

/// One task: a templated SELECT in `sql/<pipeline>/<task>.sql`, or a command task (a
/// `.py` file, or `command` in `pipeline.toml`).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Task {
    /// The pipeline it belongs to.
    pub pipeline: PipelineName,
    /// The task's name (its file stem).
    pub name: TaskName,
    /// The template file, relative to the project folder (the script of a `.py`
    /// task, `pipeline.toml` for a `command`).
    pub file: PathBuf,
    /// The template's text (empty for a command task).
    pub template: String,
    /// Its settings from `pipeline.toml` (defaults when it has no entry).
    pub config: TaskConfig,
    /// The SQL dialect it is written in (its pipeline's).
    pub dialect: Dialect,
    /// The program, for a command task.
    pub command: Option<Command>,
    /// A command task's declared upstream tasks (`depends_on`).
    pub depends_on: Vec<TaskId>,
}

/// A pipeline: a folder `sql/<pipeline>/` of task files and a `pipeline.toml`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Pipeline {
    /// The pipeline's name (its folder name, and its SQL schema).
    pub name: PipelineName,
    /// The folder.
    pub dir: PathBuf,
    /// `pipeline.toml`'s description.
    pub description: Option<String>,
    /// `pipeline.toml`'s tags (every task has them).
    pub tags: Vec<String>,
    /// The SQL dialect of its tasks and metrics (`dialect` in `pipeline.toml`, else
    /// the project's in `quern.toml`, else `datafusion`).
    pub dialect: Dialect,
    /// The tasks, by name.
    pub tasks: BTreeMap<TaskName, Task>,
    /// The metrics of `[metrics.<name>]`, by name.
    pub metrics: BTreeMap<TaskName, Metric>,
}

/// A metric of a pipeline (`[metrics.<name>]` in `pipeline.toml`).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Metric {
    /// The pipeline.
    pub pipeline: PipelineName,
    /// The metric's name.
    pub name: TaskName,
    /// Where it is written: `sql/<pipeline>/pipeline.toml#metrics.<name>` (its
    /// template name, shown in errors).
    pub file: PathBuf,
    /// Its query and thresholds.
    pub config: MetricConfig,
    /// The SQL dialect of its query (its pipeline's).
    pub dialect: Dialect,
}

impl Task {
    /// The task's id in the project.
    pub fn id(&self) -> TaskId {
        TaskId::new(self.pipeline.clone(), self.name.clone())
    }

    /// The `pipeline.toml` that configures the task (relative to the project).
    pub fn config_file(&self) -> PathBuf {
        match &self.command {
            Some(Command::Program { .. }) => self.file.clone(),
            _ => self.file.with_file_name("pipeline.toml"),
        }
    }

    /// Whether the task is a program rather than SQL.
    pub fn is_command(&self) -> bool {
        self.command.is_some()
    }

    /// Whether the task writes a table: an SQL task that is not a view, or a command
    /// task that produces one.
    pub fn writes_table(&self) -> bool {
        match self.command {
            Some(_) => self.config.produces.is_some(),
            None => self.config.materialized.writes(),
        }
    }

    /// Whether the task, or its pipeline (`pipeline_tags`), is tagged `tag`.
    pub(crate) fn has_tag(&self, pipeline_tags: &[String], tag: &str) -> bool {
        self.config
            .tags
            .iter()
            .chain(pipeline_tags)
            .any(|t| t == tag)
    }
}

impl Pipeline {
    /// The task called `name`, or an error listing the pipeline's tasks.
    pub fn task(&self, name: &str) -> Result<&Task> {
        self.tasks.get(name).ok_or_else(|| Error::UnknownTask {
            pipeline: self.name.to_string(),
            task: name.to_string(),
            context: None,
            known: self.tasks.keys().map(ToString::to_string).collect(),
        })
    }
}

/// A macro file in `sql/macros/`, imported into every task template.
#[derive(Debug, Clone)]
pub(crate) struct MacroFile {
    /// The file, relative to the project folder.
    pub file: PathBuf,
    /// The file's text.
    pub template: String,
}

/// A quern project: `environments/` and `sql/` under one folder.
#[derive(Debug, Clone)]
pub struct Project {
    root: PathBuf,
    pipelines: BTreeMap<PipelineName, Pipeline>,
    macros: Vec<MacroFile>,
    environments: Vec<String>,
    dialect: Dialect,
}

impl Project {
    /// Reads the project in `root`: every pipeline folder under `sql/`, its task files
    /// and `pipeline.toml`, and the macro files. Environments are read when asked for.
    pub fn load(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref();
        let root = std::fs::canonicalize(root).map_err(|e| Error::io(root, e))?;
        let mut environments = Vec::new();
        let env_dir = root.join("environments");
        if env_dir.is_dir() {
            for file in sorted_entries(&env_dir)? {
                if file.extension().is_some_and(|e| e == "toml") {
                    environments.push(file_stem(&file));
                }
            }
        }
        let project_file = root.join("quern.toml");
        let dialect = ProjectConfig::load_as(&project_file, Path::new("quern.toml"))?
            .dialect
            .unwrap_or_default();
        let sql_dir = root.join("sql");
        let mut pipelines = BTreeMap::new();
        let mut macros = Vec::new();
        for entry in sorted_entries(&sql_dir)? {
            if !entry.is_dir() {
                continue;
            }
            let dir_name = file_name(&entry);
            if dir_name == "macros" {
                for file in sorted_entries(&entry)? {
                    if file.extension().is_some_and(|e| e == "sql") {
                        let template = crate::config::read_file(&file)?;
                        let file = relative(&root, &file);
                        macros.push(MacroFile { file, template });
                    }
                }
                continue;
            }
            let name = PipelineName::try_new(dir_name).map_err(|source| Error::Name {
                file: entry.clone(),
                what: "pipeline folder".into(),
                source,
            })?;
            let pipeline = load_pipeline(&root, name.clone(), entry, &environments, dialect)?;
            pipelines.insert(name, pipeline);
        }
        resolve_depends_on(&root, &mut pipelines)?;
        Ok(Project {
            root,
            pipelines,
            macros,
            environments,
            dialect,
        })
    }

    /// The project's SQL dialect (`dialect` in `quern.toml`; default `datafusion`): of
    /// pipelines that set none, and of `quern query` without `--dialect`.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The project folder (canonical).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// All pipelines, by name.
    pub fn pipelines(&self) -> &BTreeMap<PipelineName, Pipeline> {
        &self.pipelines
    }

    /// The pipeline called `name`, or an error listing the project's pipelines.
    pub fn pipeline(&self, name: &str) -> Result<&Pipeline> {
        self.pipelines
            .get(name)
            .ok_or_else(|| Error::UnknownPipeline {
                name: name.to_string(),
                known: self.pipelines.keys().map(ToString::to_string).collect(),
            })
    }

    /// The task `id`, if the project has it.
    pub fn task(&self, id: &TaskId) -> Option<&Task> {
        self.pipelines.get(&id.pipeline)?.tasks.get(&id.task)
    }

    /// The macro files of `sql/macros/`.
    pub(crate) fn macros(&self) -> &[MacroFile] {
        &self.macros
    }

    /// The names of the project's environments (`environments/*.toml`), sorted.
    pub fn environment_names(&self) -> &[String] {
        &self.environments
    }

    /// Reads `environments/<name>.toml`.
    pub fn environment(&self, name: &str) -> Result<Environment> {
        let file = self.root.join("environments").join(format!("{name}.toml"));
        if !self.environments.iter().any(|e| e == name) {
            return Err(Error::UnknownEnvironment {
                name: name.to_string(),
                file,
                known: self.environments.clone(),
            });
        }
        let env = Environment::load_as(&file, &relative(&self.root, &file))?;
        for source in env.sources.keys() {
            if self.pipelines.contains_key(source.as_str()) {
                return Err(Error::Config {
                    file: file.clone(),
                    key: format!("sources.{source}"),
                    message: format!(
                        "source `{source}` has the name of a pipeline; both would be the SQL schema `{source}`. Rename the source"
                    ),
                });
            }
        }
        Ok(env)
    }
}

fn load_pipeline(
    root: &Path,
    name: PipelineName,
    dir: PathBuf,
    environments: &[String],
    project_dialect: Dialect,
) -> Result<Pipeline> {
    let config_file = dir.join("pipeline.toml");
    let shown = relative(root, &config_file);
    let mut config = PipelineConfig::load_as(&config_file, &shown)?;
    let dialect = config.dialect.unwrap_or(project_dialect);
    let mut tasks = task_files(root, &name, &dir, &mut config, &shown)?;
    command_entries(&name, &mut config, &shown, &mut tasks)?;
    for task in tasks.values_mut() {
        task.dialect = dialect;
    }
    check_tasks(&mut tasks, &config, &shown, environments)?;
    if let Some(orphan) = config.tasks.keys().next() {
        return Err(Error::UnknownTask {
            pipeline: name.to_string(),
            task: orphan.clone(),
            context: Some(format!(
                "[tasks.{orphan}] in {} has no file {orphan}.sql or {orphan}.py, and no command",
                relative(root, &config_file).display()
            )),
            known: tasks.keys().map(ToString::to_string).collect(),
        });
    }
    let mut metrics = BTreeMap::new();
    for (metric, metric_config) in config.metrics {
        let metric_name = TaskName::try_new(metric.clone()).map_err(|source| Error::Name {
            file: shown.clone(),
            what: format!("key `metrics.{metric}`"),
            source,
        })?;
        let file = PathBuf::from(format!("{}#metrics.{metric}", shown.display()));
        metrics.insert(
            metric_name.clone(),
            Metric {
                pipeline: name.clone(),
                name: metric_name,
                file,
                config: metric_config,
                dialect,
            },
        );
    }
    Ok(Pipeline {
        name,
        dir,
        description: config.description,
        tags: config.tags,
        dialect,
        tasks,
        metrics,
    })
}

/// The pipeline's task files (`.sql`, and `.py` command tasks), each with its entry
/// of `pipeline.toml` taken from `config`.
fn task_files(
    root: &Path,
    name: &PipelineName,
    dir: &Path,
    config: &mut PipelineConfig,
    shown: &Path,
) -> Result<BTreeMap<TaskName, Task>> {
    let mut tasks: BTreeMap<TaskName, Task> = BTreeMap::new();
    for file in sorted_entries(dir)? {
        let python = file.extension().is_some_and(|e| e == "py");
        if !file.is_file() || !(python || file.extension().is_some_and(|e| e == "sql")) {
            continue;
        }
        let task_name = TaskName::try_new(file_stem(&file)).map_err(|source| Error::Name {
            file: file.clone(),
            what: "task file name".into(),
            source,
        })?;
        if let Some(other) = tasks.get(&task_name) {
            return Err(Error::Config {
                file: relative(root, &file),
                key: task_name.to_string(),
                message: format!(
                    "task `{task_name}` is also {}; a task is one file: rename or remove one",
                    other.file.display()
                ),
            });
        }
        let (template, command) = if python {
            let script = relative(root, &file);
            (String::new(), Some(Command::Python { script }))
        } else {
            (crate::config::read_file(&file)?, None)
        };
        let task_config = config.tasks.remove(task_name.as_str()).unwrap_or_default();
        if task_config.command.is_some() {
            return Err(Error::Config {
                file: shown.to_path_buf(),
                key: format!("tasks.{task_name}.command"),
                message: format!(
                    "task `{task_name}` is the file {}; give it a file or a command, not both",
                    relative(root, &file).display()
                ),
            });
        }
        let task = Task {
            dialect: Dialect::default(),
            pipeline: name.clone(),
            name: task_name.clone(),
            file: relative(root, &file),
            template,
            config: task_config,
            command,
            depends_on: Vec::new(),
        };
        tasks.insert(task_name, task);
    }
    Ok(tasks)
}

/// The tasks that are only a `command` in `pipeline.toml`.
fn command_entries(
    name: &PipelineName,
    config: &mut PipelineConfig,
    shown: &Path,
    tasks: &mut BTreeMap<TaskName, Task>,
) -> Result<()> {
    let commands: Vec<String> = config
        .tasks
        .iter()
        .filter(|(_, t)| t.command.is_some())
        .map(|(n, _)| n.clone())
        .collect();
    for task in commands {
        let task_config = config.tasks.remove(&task).unwrap_or_default();
        let task_name = TaskName::try_new(task.clone()).map_err(|source| Error::Name {
            file: shown.to_path_buf(),
            what: format!("key `tasks.{task}`"),
            source,
        })?;
        let argv = task_config.command.clone().unwrap_or_default();
        tasks.insert(
            task_name.clone(),
            Task {
                dialect: Dialect::default(),
                pipeline: name.clone(),
                name: task_name,
                file: shown.to_path_buf(),
                template: String::new(),
                config: task_config,
                command: Some(Command::Program { argv }),
                depends_on: Vec::new(),
            },
        );
    }
    Ok(())
}

/// Checks each task's keys against its kind and its `envs` against the project's
/// environments, and gives it the pipeline's retry policy when it has none.
fn check_tasks(
    tasks: &mut BTreeMap<TaskName, Task>,
    config: &PipelineConfig,
    shown: &Path,
    environments: &[String],
) -> Result<()> {
    for task in tasks.values_mut() {
        let key = |k: &str| format!("tasks.{}.{k}", task.name);
        let config_err = |key: String, message: String| Error::Config {
            file: shown.to_path_buf(),
            key,
            message,
        };
        task.config
            .check_kind(task.is_command())
            .map_err(|(k, message)| config_err(key(&k), message))?;
        if task.is_command() {
            task.config.materialized = crate::config::Materialization::Command;
        }
        if let Some(env) = task.config.envs.iter().find(|e| !environments.contains(e)) {
            return Err(config_err(
                key("envs"),
                format!(
                    "the project has no environment `{env}`; environments: {}",
                    environments.join(", ")
                ),
            ));
        }
        // A task without its own retry policy takes the pipeline's.
        task.config.retries = task.config.retries.or(config.retries);
        task.config.retry_delay = task.config.retry_delay.or(config.retry_delay);
    }
    Ok(())
}

/// Resolves every command task's `depends_on` (`task` in its pipeline, or
/// `pipeline/task`) to task ids; an unknown task, or a view (which has no table to
/// read), is an error naming `pipeline.toml` and the key.
fn resolve_depends_on(root: &Path, pipelines: &mut BTreeMap<PipelineName, Pipeline>) -> Result<()> {
    let mut resolved = Vec::new();
    for p in pipelines.values() {
        for t in p.tasks.values() {
            let mut ids = Vec::new();
            for dep in &t.config.depends_on {
                let file = relative(root, &p.dir.join("pipeline.toml"));
                let key = format!("tasks.{}.depends_on", t.name);
                let (pipeline, task) = dep.split_once('/').unwrap_or((p.name.as_str(), dep));
                let Some(up) = pipelines.get(pipeline) else {
                    return Err(Error::Config {
                        file,
                        key,
                        message: format!(
                            "`{dep}`: the project has no pipeline `{pipeline}`; pipelines: {}",
                            pipelines
                                .keys()
                                .map(|k| k.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    });
                };
                let Some(upstream) = up.tasks.get(task) else {
                    return Err(Error::Config {
                        file,
                        key,
                        message: format!(
                            "`{dep}`: pipeline `{pipeline}` has no task `{task}`; tasks: {}",
                            up.tasks
                                .keys()
                                .map(|k| k.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    });
                };
                if upstream.config.materialized == crate::config::Materialization::View {
                    return Err(Error::Config {
                        file,
                        key,
                        message: format!(
                            "`{dep}` is a view, which is not written, so a program cannot read it; make it materialized = \"table\""
                        ),
                    });
                }
                ids.push(upstream.id());
            }
            if !ids.is_empty() {
                resolved.push((t.id(), ids));
            }
        }
    }
    for (id, ids) in resolved {
        if let Some(t) = pipelines
            .get_mut(&id.pipeline)
            .and_then(|p| p.tasks.get_mut(&id.task))
        {
            t.depends_on = ids;
        }
    }
    Ok(())
}

/// `path` relative to the project root: the form shown in messages.
fn relative(root: &Path, path: &Path) -> PathBuf {
    path.strip_prefix(root).unwrap_or(path).to_path_buf()
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let read = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut entries = Vec::new();
    for entry in read {
        entries.push(entry.map_err(|e| Error::io(dir, e))?.path());
    }
    entries.sort();
    Ok(entries)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn file_stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, text: &str) {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn discovers_pipelines_tasks_and_macros() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "environments/local.toml",
            "[warehouse]\nroot = \"w\"\n",
        );
        write(
            dir.path(),
            "sql/macros/m.sql",
            "{% macro x() %}1{% endmacro %}",
        );
        write(dir.path(), "sql/p/a.sql", "SELECT 1 AS a");
        write(dir.path(), "sql/p/b.sql", "SELECT a FROM {{ ref('a') }}");
        write(dir.path(), "sql/p/seeds/s.csv", "a\n1\n");
        write(
            dir.path(),
            "sql/p/pipeline.toml",
            "[tasks.b]\nmaterialized = \"append\"\n",
        );
        let project = Project::load(dir.path()).unwrap();
        let p = project.pipeline("p").unwrap();
        assert_eq!(p.tasks.len(), 2);
        assert_eq!(p.task("b").unwrap().config.materialized.as_str(), "append");
        assert_eq!(project.macros().len(), 1);
        assert_eq!(project.environment_names(), ["local"]);
        assert!(matches!(
            project.pipeline("q"),
            Err(Error::UnknownPipeline { .. })
        ));
        assert!(matches!(
            project.environment("prod"),
            Err(Error::UnknownEnvironment { .. })
        ));
    }

    #[test]
    fn a_task_setting_without_a_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "sql/p/a.sql", "SELECT 1 AS a");
        write(
            dir.path(),
            "sql/p/pipeline.toml",
            "[tasks.c]\nmaterialized = \"append\"\n",
        );
        let err = Project::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("[tasks.c]") && err.contains("c.sql"), "{err}");
    }
}
