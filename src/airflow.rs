//! Airflow DAG files generated from quern's DAG: a `BashOperator` per quern task (or
//! per pipeline) that runs `quern run` for the Airflow run's `{{ ds }}`, the
//! dependencies mirrored from quern's DAG (a task upstream in a pipeline that is not
//! in the file is waited for with an `ExternalTaskSensor` on the DAG generated for
//! that pipeline), each task's `retries` and `retry_delay`, and the project and
//! environment as DAG params. The text depends only on the project, the environment
//! and the options, so the file can be regenerated and diffed.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::time::Duration;

use crate::config::{PipelineName, TaskId};
use crate::engine::{Engine, RunOptions};
use crate::error::{Error, Result};
use crate::pipeline::Dag;
use crate::template::RunDate;

/// What an Airflow task runs: one quern task, or a whole pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Granularity {
    /// An Airflow task per quern task (`quern run <p> --select <t>`).
    #[default]
    Task,
    /// An Airflow task per pipeline (`quern run <p>`).
    Pipeline,
}

/// How the DAG file is made.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AirflowOptions {
    /// The DAG's `schedule` (`@daily`, a cron expression…).
    pub schedule: String,
    /// An Airflow task per quern task, or per pipeline.
    pub granularity: Granularity,
    /// The DAG's `start_date`.
    pub start_date: RunDate,
    /// Whether Airflow runs the intervals since `start_date` that have not run.
    pub catchup: bool,
    /// How many runs of the DAG may be active at once.
    pub max_active_runs: u32,
    /// The quern program the Airflow workers run.
    pub quern: String,
    /// The DAG's id (default: `quern_<pipeline>`, or `quern_<project folder>`).
    pub dag_id: Option<String>,
}

impl AirflowOptions {
    /// Daily runs from `start_date`, an Airflow task per quern task, no catchup, one
    /// active run, `quern` from the workers' `PATH`.
    pub fn new(start_date: RunDate) -> Self {
        AirflowOptions {
            schedule: "@daily".into(),
            granularity: Granularity::Task,
            start_date,
            catchup: false,
            max_active_runs: 1,
            quern: "quern".into(),
            dag_id: None,
        }
    }
}

/// A generated DAG file.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DagFile {
    /// The DAG's id.
    pub dag_id: String,
    /// The file name (`<dag_id>.py`).
    pub file_name: String,
    /// The Python source.
    pub text: String,
}

/// One Airflow task of the file: what it runs and what it waits for.
struct Node {
    /// The Airflow task id: `pipeline.task`, or `pipeline`.
    id: String,
    /// The `quern run` arguments after `run`.
    run: String,
    retries: u32,
    retry_delay: Duration,
    doc: Option<String>,
}

impl Engine {
    /// The Airflow DAG file of `pipeline`, or of the whole project (`None`), for this
    /// engine's environment. `run` gives the date the DAG is rendered for (a task's
    /// refs may depend on it) and its vars.
    ///
    /// ```
    /// # fn main() -> quern::Result<()> {
    /// use quern::{AirflowOptions, Engine, Project, RunDate, RunOptions};
    /// let engine = Engine::builder(Project::load(".")?).with_environment("local").build()?;
    /// let run = RunOptions::new("2024-03-01".parse::<RunDate>()?);
    /// let file = engine.airflow_dag(Some("events"), &run, &AirflowOptions::new(run.ds))?;
    /// assert_eq!(file.dag_id, "quern_events");
    /// assert!(file.text.contains("task_id=\"events.daily_active_users\""));
    /// # Ok(())
    /// # }
    /// ```
    pub fn airflow_dag(
        &self,
        pipeline: Option<&str>,
        run: &RunOptions,
        options: &AirflowOptions,
    ) -> Result<DagFile> {
        if let Some(p) = pipeline {
            self.project().pipeline(p)?;
        }
        // The project's DAG: a pipeline's file waits for its upstream tasks elsewhere.
        let dag = self.project_dag(run)?;
        let dag_id = match (&options.dag_id, pipeline) {
            (Some(id), _) => id.clone(),
            (None, Some(p)) => format!("quern_{p}"),
            (None, None) => format!("quern_{}", folder_name(self)),
        };
        if dag_id.is_empty()
            || !dag_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            return Err(Error::InvalidArgument {
                what: "--dag-id",
                value: dag_id,
                message: "an Airflow DAG id is letters, digits, `_`, `-` and `.`".into(),
            });
        }
        let text = self.dag_text(&dag, pipeline, &dag_id, options);
        Ok(DagFile {
            file_name: format!("{dag_id}.py"),
            dag_id,
            text,
        })
    }

    /// The Airflow tasks of `dag` and their edges, as `options.granularity` asks.
    fn nodes(
        &self,
        dag: &Dag,
        pipeline: Option<&str>,
        granularity: Granularity,
    ) -> (BTreeMap<String, Node>, BTreeSet<(String, String)>) {
        let in_file = |id: &TaskId| in_file(self, pipeline, id);
        let project = self.project();
        let mut nodes: BTreeMap<String, Node> = BTreeMap::new();
        let node_of = |id: &TaskId| airflow_id(id, granularity);
        for id in dag.order().iter().filter(|t| in_file(t)) {
            let Some(task) = project.task(id) else {
                continue;
            };
            let (retries, delay) = (task.config.retries(), task.config.retry_delay());
            let node = nodes.entry(node_of(id)).or_insert_with(|| Node {
                id: node_of(id),
                run: match granularity {
                    Granularity::Task => format!("{} --select {}", id.pipeline, id.task),
                    Granularity::Pipeline => id.pipeline.to_string(),
                },
                retries,
                retry_delay: delay,
                doc: match granularity {
                    Granularity::Task => task.config.description.clone(),
                    Granularity::Pipeline => project
                        .pipelines()
                        .get(&id.pipeline)
                        .and_then(|p| p.description.clone()),
                },
            });
            // A pipeline's Airflow task retries as much as its most retried task.
            node.retries = node.retries.max(retries);
            node.retry_delay = node.retry_delay.max(delay);
        }
        let mut edges = BTreeSet::new();
        for id in dag.order().iter().filter(|t| in_file(t)) {
            for up in written_upstream(self, dag, id)
                .iter()
                .filter(|u| in_file(u))
            {
                let (from, to) = (node_of(up), node_of(id));
                if from != to {
                    edges.insert((from, to));
                }
            }
        }
        (nodes, edges)
    }

    fn dag_text(
        &self,
        dag: &Dag,
        pipeline: Option<&str>,
        dag_id: &str,
        options: &AirflowOptions,
    ) -> String {
        let (nodes, edges) = self.nodes(dag, pipeline, options.granularity);
        let external = external_upstream(self, dag, pipeline, options.granularity);
        let env = &self.environment().name;
        let root = self.project().root().display().to_string();
        let what = match pipeline {
            Some(p) => format!("pipeline `{p}`"),
            None => "every pipeline of the project".to_string(),
        };
        let mut out = header(&what, &root, env, pipeline, options, !external.is_empty());
        let w = &mut out;
        let (y, m, d) = {
            use chrono::Datelike;
            let date = options.start_date.date();
            (date.year(), date.month(), date.day())
        };
        let _ = writeln!(w, "with DAG(");
        let _ = writeln!(w, "    dag_id={},", py_str(dag_id));
        let _ = writeln!(
            w,
            "    description={},",
            py_str(&format!("quern: {what} on environment {env}"))
        );
        let _ = writeln!(w, "    schedule={},", py_str(&options.schedule));
        let _ = writeln!(
            w,
            "    start_date=pendulum.datetime({y}, {m}, {d}, tz=\"UTC\"),"
        );
        let _ = writeln!(
            w,
            "    catchup={},",
            if options.catchup { "True" } else { "False" }
        );
        let _ = writeln!(w, "    max_active_runs={},", options.max_active_runs);
        let _ = writeln!(
            w,
            "    params={{\"project\": {}, \"env\": {}}},",
            py_str(&root),
            py_str(env)
        );
        let mut tags = vec!["quern".to_string()];
        match pipeline {
            Some(p) => tags.push(p.to_string()),
            None => tags.extend(dag.pipelines().iter().map(|p| p.to_string())),
        }
        let tags: Vec<String> = tags.iter().map(|t| py_str(t)).collect();
        let _ = writeln!(w, "    tags=[{}],", tags.join(", "));
        let _ = writeln!(w, ") as dag:");
        for node in nodes.values() {
            let _ = writeln!(w, "    {} = BashOperator(", var(&node.id));
            let _ = writeln!(w, "        task_id={},", py_str(&node.id));
            let command = format!("run {} --ds {{{{ ds }}}} --no-retries", node.run);
            let _ = writeln!(
                w,
                "        bash_command=QUERN + \" \" + QUERN_ARGS + {},",
                py_str(&format!(" {command}"))
            );
            let _ = writeln!(w, "        retries={},", node.retries);
            let _ = writeln!(
                w,
                "        retry_delay=timedelta(seconds={}),",
                node.retry_delay.as_secs_f64()
            );
            if let Some(doc) = &node.doc {
                let _ = writeln!(w, "        doc_md={},", py_str(doc));
            }
            let _ = writeln!(w, "    )");
        }
        sensors_and_edges(w, &edges, &external);
        out
    }
}

/// The sensors waiting for other pipelines' DAGs (one per upstream Airflow task of
/// `external`), then every edge.
fn sensors_and_edges(
    w: &mut String,
    edges: &BTreeSet<(String, String)>,
    external: &BTreeSet<External>,
) {
    let sensors: BTreeMap<&String, &PipelineName> = external
        .iter()
        .map(|e| (&e.upstream, &e.pipeline))
        .collect();
    for (sensor, upstream_pipeline) in sensors {
        let _ = writeln!(
            w,
            "    {} = ExternalTaskSensor(",
            var(&format!("wait.{sensor}"))
        );
        let _ = writeln!(
            w,
            "        task_id={},",
            py_str(&format!("wait_for.{sensor}"))
        );
        let external_dag = format!("quern_{upstream_pipeline}");
        let _ = writeln!(w, "        external_dag_id={},", py_str(&external_dag));
        let _ = writeln!(w, "        external_task_id={},", py_str(sensor));
        let _ = writeln!(w, "        mode=\"reschedule\",");
        let _ = writeln!(w, "        timeout=24 * 3600,");
        let _ = writeln!(w, "    )");
    }
    if !edges.is_empty() || !external.is_empty() {
        let _ = writeln!(w);
    }
    for (from, to) in edges {
        let _ = writeln!(w, "    {} >> {}", var(from), var(to));
    }
    for e in external {
        let _ = writeln!(
            w,
            "    {} >> {}",
            var(&format!("wait.{}", e.upstream)),
            var(&e.downstream)
        );
    }
}

/// The file's comments, imports and the quern command line every task shares.
fn header(
    what: &str,
    root: &str,
    env: &str,
    pipeline: Option<&str>,
    options: &AirflowOptions,
    sensors: bool,
) -> String {
    let granularity = match options.granularity {
        Granularity::Task => "task",
        Granularity::Pipeline => "pipeline",
    };
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(
            w,
            "# Generated by `quern airflow` from quern's DAG of {what}; regenerate it rather than edit it:"
        );
    let _ = writeln!(
            w,
            "#   quern --project {root} --env {env} airflow{} --granularity {granularity} --schedule {} --out <dags folder>",
            pipeline.map(|p| format!(" {p}")).unwrap_or_default(),
            shell_word(&options.schedule),
        );
    let _ = writeln!(
            w,
            "# Each task runs `quern run` for the Airflow run's {{{{ ds }}}}; Airflow retries a failed task (its\n# retries and retry_delay come from pipeline.toml) and quern does not retry within the run\n# (--no-retries). quern's runs are idempotent per ds, so a retry or a rerun of a day is safe."
        );
    let _ = writeln!(w, "from datetime import timedelta\n\nimport pendulum\n");
    let _ = writeln!(w, "try:\n    from airflow.sdk import DAG\nexcept ImportError:  # Airflow 2\n    from airflow import DAG");
    let _ = writeln!(
        w,
        "try:\n    from airflow.providers.standard.operators.bash import BashOperator"
    );
    if sensors {
        let _ = writeln!(
            w,
            "    from airflow.providers.standard.sensors.external_task import ExternalTaskSensor"
        );
    }
    let _ = writeln!(
        w,
        "except ImportError:  # Airflow 2\n    from airflow.operators.bash import BashOperator"
    );
    if sensors {
        let _ = writeln!(
            w,
            "    from airflow.sensors.external_task import ExternalTaskSensor"
        );
    }
    let quern_args = "--project '{{ params.project }}' --env '{{ params.env }}' --progress plain";
    let _ = writeln!(w, "\nQUERN = {}", py_str(&options.quern));
    let _ = writeln!(w, "QUERN_ARGS = {}\n", py_str(quern_args));
    out
}

/// An Airflow task of another pipeline's DAG that a task of a pipeline's file waits
/// for.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct External {
    /// Its Airflow task id (also the sensor's name).
    upstream: String,
    /// Its pipeline (whose DAG is `quern_<pipeline>`).
    pipeline: PipelineName,
    /// The Airflow task of this file that waits for it.
    downstream: String,
}

/// The tasks of other pipelines that tasks of `pipeline` read, in the project's DAG.
fn external_upstream(
    engine: &Engine,
    dag: &Dag,
    pipeline: Option<&str>,
    granularity: Granularity,
) -> BTreeSet<External> {
    let Some(name) = pipeline else {
        return BTreeSet::new();
    };
    let mut out = BTreeSet::new();
    for id in dag.order().iter().filter(|t| in_file(engine, pipeline, t)) {
        let upstream = written_upstream(engine, dag, id);
        for up in upstream.iter().filter(|u| u.pipeline.as_str() != name) {
            out.insert(External {
                upstream: airflow_id(up, granularity),
                pipeline: up.pipeline.clone(),
                downstream: airflow_id(id, granularity),
            });
        }
    }
    out
}

/// The Airflow task id of quern task `id`: `pipeline.task`, or `pipeline`.
fn airflow_id(id: &TaskId, granularity: Granularity) -> String {
    match granularity {
        Granularity::Task => format!("{}.{}", id.pipeline, id.task),
        Granularity::Pipeline => id.pipeline.to_string(),
    }
}

/// The Python variable of Airflow task `id`.
fn var(id: &str) -> String {
    format!("t_{}", id.replace('.', "__"))
}

/// Whether task `id` is an Airflow task of the file of `pipeline` (of the project's,
/// with `None`): a task of it that is not a view.
fn in_file(engine: &Engine, pipeline: Option<&str>, id: &TaskId) -> bool {
    pipeline.is_none_or(|p| id.pipeline.as_str() == p) && !is_view(engine, id)
}

/// Whether task `id` is a view: not run on its own, but inlined into the tasks that
/// read it, so it is no Airflow task.
fn is_view(engine: &Engine, id: &TaskId) -> bool {
    engine
        .project()
        .task(id)
        .is_some_and(|t| t.config.materialized == crate::config::Materialization::View)
}

/// The tasks `id` waits for: its upstream tasks, through the views it reads.
fn written_upstream(engine: &Engine, dag: &Dag, id: &TaskId) -> BTreeSet<TaskId> {
    let mut out = BTreeSet::new();
    let mut stack: Vec<&TaskId> = dag.upstream_of(id).collect();
    while let Some(up) = stack.pop() {
        if is_view(engine, up) {
            stack.extend(dag.upstream_of(up));
        } else {
            out.insert(up.clone());
        }
    }
    out
}

fn folder_name(engine: &Engine) -> String {
    let name = engine
        .project()
        .root()
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "project".into());
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `text` as a Python string literal (a JSON string is one).
fn py_str(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".into())
}

/// `text` quoted for a shell comment line when it has spaces or specials.
fn shell_word(text: &str) -> String {
    if text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "@/_-.".contains(c))
    {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}
