//! The DAG of a run for an environment: its SQL tasks rendered, its command tasks,
//! and the edges between them (refs, `depends_on`, and a command task that registers
//! a model to the tasks calling it).

use std::collections::{BTreeMap, BTreeSet};

use super::Engine;
use crate::config::{PipelineName, TaskId};
use crate::error::Result;
use crate::pipeline::{extract_relations, Dag, Pipeline, Project, Selector, Task};
use crate::template::RenderedTask;

/// The DAG of `rendered` SQL tasks and `commands`: a ref to a task among them is an
/// edge, so is a command task's `depends_on`, and so is a command task that registers
/// a model (`registers`) to each task calling a model function of that registered
/// model (`calls`: each SQL task's called functions). `pipeline` names the one
/// pipeline they are of, or is `None` for the project.
pub(super) fn dag_of(
    engine: &Engine,
    pipeline: Option<&PipelineName>,
    rendered: &[RenderedTask],
    commands: &[&Task],
    calls: &BTreeMap<TaskId, BTreeSet<String>>,
) -> Result<Dag> {
    let nodes: BTreeSet<TaskId> = rendered
        .iter()
        .map(|r| TaskId::new(r.pipeline.clone(), r.task.clone()))
        .chain(commands.iter().map(|c| c.id()))
        .collect();
    let mut upstream: BTreeMap<TaskId, BTreeSet<TaskId>> = rendered
        .iter()
        .map(|r| {
            let ups = r
                .refs
                .iter()
                .map(|(p, t)| TaskId::new(p.clone(), t.clone()))
                .filter(|id| nodes.contains(id))
                .collect();
            (TaskId::new(r.pipeline.clone(), r.task.clone()), ups)
        })
        .collect();
    for c in commands {
        let ups = c.depends_on.iter().filter(|id| nodes.contains(id)).cloned();
        upstream.insert(c.id(), ups.collect());
    }
    let env = engine.environment();
    for c in commands {
        let Some(model) = &c.config.registers else {
            continue;
        };
        let functions = super::command::functions_of_model(env, model);
        for (task, called) in calls {
            if task != &c.id() && called.iter().any(|f| functions.contains(f)) {
                upstream.entry(task.clone()).or_default().insert(c.id());
            }
        }
    }
    Dag::new(pipeline.cloned(), upstream)
}

/// The functions each rendered task calls (a task that does not parse calls none:
/// planning reports it), for [`dag_of`]'s edges from the `commands` that register a
/// model: none to parse for when no command task registers one.
pub(super) fn calls_of(
    rendered: &[RenderedTask],
    commands: &[&Task],
) -> BTreeMap<TaskId, BTreeSet<String>> {
    if commands.iter().all(|c| c.config.registers.is_none()) {
        return BTreeMap::new();
    }
    rendered
        .iter()
        .map(|r| {
            let functions = extract_relations(r.task.as_str(), &r.file, &r.sql, r.dialect)
                .map(|p| p.functions)
                .unwrap_or_default();
            (TaskId::new(r.pipeline.clone(), r.task.clone()), functions)
        })
        .collect()
}

/// How the run log names what a run is of: `pipeline` or `*`, then the selectors,
/// sorted, after ` --select `.
pub(super) fn selection_key(pipeline: Option<&str>, select: &[Selector]) -> String {
    let mut selectors: Vec<String> = select.iter().map(ToString::to_string).collect();
    selectors.sort();
    selectors.dedup();
    let scope = pipeline.unwrap_or("*");
    if selectors.is_empty() {
        scope.to_string()
    } else {
        format!("{scope} --select {}", selectors.join(","))
    }
}

/// Every SQL task of `pipelines` that runs in environment `env`, rendered.
pub(super) fn render_tasks(
    renderer: &crate::template::Renderer,
    pipelines: &[&Pipeline],
    env: &str,
) -> Result<Vec<RenderedTask>> {
    pipelines
        .iter()
        .flat_map(|p| p.tasks.values())
        .filter(|t| !t.is_command() && t.config.runs_in(env))
        .map(|task| renderer.render(task))
        .collect()
}

/// Every command task of `pipelines` that runs in environment `env`.
pub(super) fn command_tasks<'p>(pipelines: &[&'p Pipeline], env: &str) -> Vec<&'p Task> {
    pipelines
        .iter()
        .flat_map(|p| p.tasks.values())
        .filter(|t| t.is_command() && t.config.runs_in(env))
        .collect()
}

/// The pipelines a plan covers: `pipeline`, or every pipeline of the project.
pub(super) fn scope<'p>(project: &'p Project, pipeline: Option<&str>) -> Result<Vec<&'p Pipeline>> {
    Ok(match pipeline {
        Some(name) => vec![project.pipeline(name)?],
        None => project.pipelines().values().collect(),
    })
}
