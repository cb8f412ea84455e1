//! The DAG of tasks — one pipeline's, or the whole project's with the refs between
//! pipelines as edges: topological order, cycle detection and selection (`task`,
//! `pipeline/task`, `pipeline`, `tag:name`, each with `+` for upstream or downstream).

use std::collections::{BTreeMap, BTreeSet};

use crate::config::{PipelineName, TaskId};
use crate::error::{Error, Result};

/// The dependency graph of tasks, from their `ref()`s: one pipeline's tasks (refs to
/// other pipelines are tables read from the warehouse), or every task of the project.
#[derive(Debug, Clone)]
pub struct Dag {
    /// The pipeline, or `None` for the project's DAG.
    pipeline: Option<PipelineName>,
    /// task → the tasks it reads.
    upstream: BTreeMap<TaskId, BTreeSet<TaskId>>,
    /// task → the tasks that read it.
    downstream: BTreeMap<TaskId, BTreeSet<TaskId>>,
    order: Vec<TaskId>,
}

impl Dag {
    /// Builds the DAG from each task's upstream tasks (`pipeline`: the one pipeline the
    /// tasks are of, or `None` for the project); a cycle is an error listing it.
    pub fn new(
        pipeline: Option<PipelineName>,
        upstream: BTreeMap<TaskId, BTreeSet<TaskId>>,
    ) -> Result<Self> {
        let mut downstream: BTreeMap<TaskId, BTreeSet<TaskId>> = upstream
            .keys()
            .map(|t| (t.clone(), BTreeSet::new()))
            .collect();
        for (task, ups) in &upstream {
            for up in ups {
                downstream
                    .entry(up.clone())
                    .or_default()
                    .insert(task.clone());
            }
        }
        // Kahn's algorithm, taking ready tasks in name order so the order is stable.
        let mut pending: BTreeMap<&TaskId, usize> =
            upstream.iter().map(|(t, ups)| (t, ups.len())).collect();
        let mut ready: BTreeSet<&TaskId> = pending
            .iter()
            .filter(|(_, n)| **n == 0)
            .map(|(t, _)| *t)
            .collect();
        let mut order = Vec::with_capacity(upstream.len());
        while let Some(task) = ready.pop_first() {
            pending.remove(task);
            order.push(task.clone());
            for down in &downstream[task] {
                if let Some(n) = pending.get_mut(down) {
                    *n -= 1;
                    if *n == 0 {
                        ready.insert(down);
                    }
                }
            }
        }
        if order.len() < upstream.len() {
            let stuck: BTreeSet<&TaskId> = pending.keys().copied().collect();
            let cycle = find_cycle(&upstream, &stuck);
            let name = |t: &TaskId| match &pipeline {
                Some(p) => t.short(p.as_str()),
                None => t.to_string(),
            };
            return Err(Error::Cycle {
                pipeline: pipeline.as_ref().map(ToString::to_string),
                cycle: cycle.iter().map(|t| name(t)).collect(),
            });
        }
        Ok(Dag {
            pipeline,
            upstream,
            downstream,
            order,
        })
    }

    /// The pipeline this is the DAG of, or `None` for the project's DAG.
    pub fn pipeline(&self) -> Option<&PipelineName> {
        self.pipeline.as_ref()
    }

    /// All tasks in a topological order (upstream first, ties by pipeline and name).
    pub fn order(&self) -> &[TaskId] {
        &self.order
    }

    /// The pipelines with tasks in the DAG, by name.
    pub fn pipelines(&self) -> BTreeSet<&PipelineName> {
        self.upstream.keys().map(|t| &t.pipeline).collect()
    }

    /// The tasks `task` reads directly.
    pub fn upstream_of(&self, task: &TaskId) -> impl Iterator<Item = &TaskId> {
        self.upstream.get(task).into_iter().flatten()
    }

    /// The tasks that read `task` directly.
    pub fn downstream_of(&self, task: &TaskId) -> impl Iterator<Item = &TaskId> {
        self.downstream.get(task).into_iter().flatten()
    }

    /// How `task` is named in this DAG: `task` in a pipeline's, `pipeline/task` in the
    /// project's.
    pub fn name_of(&self, task: &TaskId) -> String {
        match &self.pipeline {
            Some(p) => task.short(p.as_str()),
            None => task.to_string(),
        }
    }

    /// The tasks chosen by `selectors`, in topological order; all tasks when empty.
    /// `has_tag(task, tag)` says whether a task (or its pipeline) carries a tag.
    pub(crate) fn select(
        &self,
        selectors: &[Selector],
        has_tag: impl Fn(&TaskId, &str) -> bool,
    ) -> Result<Vec<TaskId>> {
        if selectors.is_empty() {
            return Ok(self.order.clone());
        }
        let mut chosen = BTreeSet::new();
        for sel in selectors {
            let seeds = self.seeds(sel, &has_tag)?;
            for task in seeds {
                if sel.upstream {
                    walk(&task, &self.upstream, &mut chosen);
                }
                if sel.downstream {
                    walk(&task, &self.downstream, &mut chosen);
                }
                chosen.insert(task);
            }
        }
        Ok(self
            .order
            .iter()
            .filter(|t| chosen.contains(*t))
            .cloned()
            .collect())
    }

    /// The tasks a selector names before its `+`s are followed.
    fn seeds(
        &self,
        sel: &Selector,
        has_tag: &impl Fn(&TaskId, &str) -> bool,
    ) -> Result<Vec<TaskId>> {
        let in_pipeline = |p: &str| -> Vec<TaskId> {
            self.order
                .iter()
                .filter(|t| t.pipeline.as_str() == p)
                .cloned()
                .collect()
        };
        let task_of = |pipeline: &str, task: &str| -> Result<TaskId> {
            self.upstream
                .keys()
                .find(|t| t.pipeline.as_str() == pipeline && t.task.as_str() == task)
                .cloned()
                .ok_or_else(|| Error::UnknownTask {
                    pipeline: pipeline.to_string(),
                    task: task.to_string(),
                    context: None,
                    known: in_pipeline(pipeline)
                        .iter()
                        .map(|t| t.task.to_string())
                        .collect(),
                })
        };
        let pipelines: Vec<String> = self.pipelines().iter().map(ToString::to_string).collect();
        match (&sel.target, &self.pipeline) {
            (SelectorTarget::Name(task), Some(p)) => Ok(vec![task_of(p.as_str(), task)?]),
            (SelectorTarget::Name(name), None) => {
                if pipelines.iter().any(|p| p == name) {
                    return Ok(in_pipeline(name));
                }
                if let Some(t) = self.order.iter().find(|t| t.task.as_str() == name) {
                    return Err(Error::InvalidArgument {
                        what: "--select",
                        value: sel.to_string(),
                        message: format!(
                            "the project has no pipeline `{name}`; for the task, select {t}"
                        ),
                    });
                }
                Err(Error::UnknownPipeline {
                    name: name.clone(),
                    known: pipelines,
                })
            }
            (SelectorTarget::Task { pipeline, task }, scope) => {
                if let Some(p) = scope.as_ref().filter(|p| p.as_str() != pipeline) {
                    return Err(Error::InvalidArgument {
                        what: "--select",
                        value: sel.to_string(),
                        message: format!(
                            "this run is of pipeline `{p}`; name no pipeline to select across the project"
                        ),
                    });
                }
                if !pipelines.contains(pipeline) {
                    return Err(Error::UnknownPipeline {
                        name: pipeline.clone(),
                        known: pipelines,
                    });
                }
                Ok(vec![task_of(pipeline, task)?])
            }
            (SelectorTarget::Tag(tag), _) => {
                let tagged: Vec<TaskId> = self
                    .order
                    .iter()
                    .filter(|t| has_tag(t, tag))
                    .cloned()
                    .collect();
                if tagged.is_empty() {
                    return Err(Error::UnknownTag {
                        tag: tag.clone(),
                        known: Vec::new(),
                    });
                }
                Ok(tagged)
            }
        }
    }
}

/// Adds every task reachable from `from` along `edges` to `seen`.
fn walk(from: &TaskId, edges: &BTreeMap<TaskId, BTreeSet<TaskId>>, seen: &mut BTreeSet<TaskId>) {
    let mut stack = vec![from.clone()];
    while let Some(t) = stack.pop() {
        for next in edges.get(&t).into_iter().flatten() {
            if seen.insert(next.clone()) {
                stack.push(next.clone());
            }
        }
    }
}

/// Follows upstream edges among the `stuck` tasks (every one of which lies on or
/// behind a cycle) until a task repeats, and returns that cycle.
fn find_cycle<'a>(
    upstream: &'a BTreeMap<TaskId, BTreeSet<TaskId>>,
    stuck: &BTreeSet<&'a TaskId>,
) -> Vec<&'a TaskId> {
    let Some(mut current) = stuck.first().copied() else {
        return Vec::new();
    };
    let mut path: Vec<&TaskId> = Vec::new();
    loop {
        if let Some(pos) = path.iter().position(|t| *t == current) {
            // path[pos..] is the cycle walked upstream; show it in data-flow order.
            let mut cycle: Vec<&TaskId> = path[pos..].iter().rev().copied().collect();
            cycle.push(cycle[0]);
            return cycle;
        }
        path.push(current);
        match upstream[current].iter().find(|u| stuck.contains(u)) {
            Some(next) => current = next,
            None => return path,
        }
    }
}

/// What a selector names.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SelectorTarget {
    /// A bare name: a task of the pipeline being run, or a whole pipeline when the
    /// run is of the project.
    Name(String),
    /// `pipeline/task`.
    Task {
        /// The pipeline.
        pipeline: String,
        /// The task.
        task: String,
    },
    /// `tag:name`: every task tagged `name`, or in a pipeline tagged `name`.
    Tag(String),
}

/// A selector for `--select`: `task`, `pipeline/task`, `pipeline` (in a run of the
/// project) or `tag:name`, with a leading `+` for everything upstream and a trailing
/// `+` for everything downstream (`+task+`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Selector {
    /// What it names.
    pub target: SelectorTarget,
    /// Include every task upstream of it.
    pub upstream: bool,
    /// Include every task downstream of it.
    pub downstream: bool,
}

impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let up = if self.upstream { "+" } else { "" };
        let down = if self.downstream { "+" } else { "" };
        match &self.target {
            SelectorTarget::Name(n) => write!(f, "{up}{n}{down}"),
            SelectorTarget::Task { pipeline, task } => write!(f, "{up}{pipeline}/{task}{down}"),
            SelectorTarget::Tag(t) => write!(f, "{up}tag:{t}{down}"),
        }
    }
}

impl std::str::FromStr for Selector {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let invalid = |message: &str| Error::InvalidArgument {
            what: "--select",
            value: s.to_string(),
            message: message.to_string(),
        };
        let upstream = s.starts_with('+');
        let body = s.strip_prefix('+').unwrap_or(s);
        let downstream = body.ends_with('+');
        let body = body.strip_suffix('+').unwrap_or(body);
        let name_ok = |n: &str| crate::config::TaskName::try_new(n).is_ok();
        let target = if let Some(tag) = body.strip_prefix("tag:") {
            if !crate::config::is_tag(tag) {
                return Err(invalid("a tag is lower-case letters, digits, `_` or `-`"));
            }
            SelectorTarget::Tag(tag.to_string())
        } else if let Some((pipeline, task)) = body.split_once('/') {
            if !name_ok(pipeline) || !name_ok(task) {
                return Err(invalid("expected pipeline/task, with lower-case names"));
            }
            SelectorTarget::Task {
                pipeline: pipeline.to_string(),
                task: task.to_string(),
            }
        } else if name_ok(body) {
            SelectorTarget::Name(body.to_string())
        } else {
            return Err(invalid(
                "expected task, pipeline/task, pipeline or tag:name, with + before for upstream and after for downstream (+task+)",
            ));
        };
        Ok(Selector {
            target,
            upstream,
            downstream,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TaskName;

    fn id(n: &str) -> TaskId {
        let (p, t) = n.split_once('/').unwrap_or(("p", n));
        TaskId::new(
            PipelineName::try_new(p).unwrap(),
            TaskName::try_new(t).unwrap(),
        )
    }

    fn dag_in(pipeline: Option<&str>, edges: &[(&str, &[&str])]) -> Result<Dag> {
        let upstream = edges
            .iter()
            .map(|(task, ups)| (id(task), ups.iter().map(|u| id(u)).collect()))
            .collect();
        Dag::new(
            pipeline.map(|p| PipelineName::try_new(p).unwrap()),
            upstream,
        )
    }

    fn dag(edges: &[(&str, &[&str])]) -> Result<Dag> {
        dag_in(Some("p"), edges)
    }

    fn names(v: &[TaskId]) -> Vec<String> {
        v.iter().map(|t| t.short("p")).collect()
    }

    fn no_tags(_: &TaskId, _: &str) -> bool {
        false
    }

    #[test]
    fn orders_upstream_first() {
        let d = dag(&[("c", &["a", "b"]), ("a", &[]), ("b", &["a"]), ("d", &[])]).unwrap();
        assert_eq!(names(d.order()), ["a", "b", "c", "d"]);
    }

    #[test]
    fn selects_with_upstream_and_downstream() {
        let d = dag(&[("a", &[]), ("b", &["a"]), ("c", &["b"]), ("x", &[])]).unwrap();
        let sel = |s: &str| d.select(&[s.parse().unwrap()], no_tags).unwrap();
        assert_eq!(names(&sel("b")), ["b"]);
        assert_eq!(names(&sel("b+")), ["b", "c"]);
        assert_eq!(names(&sel("+b")), ["a", "b"]);
        assert_eq!(names(&sel("+b+")), ["a", "b", "c"]);
        assert_eq!(names(&sel("p/b+")), ["b", "c"]);
        assert!(d.select(&["nope".parse().unwrap()], no_tags).is_err());
        let other = d.select(&["q/b".parse().unwrap()], no_tags).unwrap_err();
        assert!(
            other.is_usage() && other.to_string().contains("pipeline `p`"),
            "{other}"
        );
        assert!("+".parse::<Selector>().is_err());
        assert!("a+b".parse::<Selector>().is_err());
        assert!("a/b/c".parse::<Selector>().is_err());
        assert!("tag:".parse::<Selector>().is_err());
        assert_eq!("+p/a+".parse::<Selector>().unwrap().to_string(), "+p/a+");
    }

    #[test]
    fn selects_pipelines_and_tags_across_the_project() {
        let d = dag_in(
            None,
            &[
                ("s/a", &[]),
                ("s/b", &[]),
                ("i/c", &["s/a"]),
                ("m/d", &["i/c", "s/b"]),
                ("m/e", &[]),
            ],
        )
        .unwrap();
        let tags = |t: &TaskId, tag: &str| tag == "daily" && t.pipeline.as_str() == "i";
        // In DAG order (ties by pipeline, then task); compared as sets.
        let sel = |s: &str| {
            let v = d.select(&[s.parse().unwrap()], tags).unwrap();
            let mut names: Vec<String> = v.iter().map(ToString::to_string).collect();
            names.sort();
            names
        };
        assert_eq!(sel("s"), ["s/a", "s/b"]);
        assert_eq!(sel("s+"), ["i/c", "m/d", "s/a", "s/b"]);
        assert_eq!(sel("+m/d"), ["i/c", "m/d", "s/a", "s/b"]);
        assert_eq!(sel("i/c+"), ["i/c", "m/d"]);
        assert_eq!(sel("tag:daily+"), ["i/c", "m/d"]);
        let order: Vec<String> = d.order().iter().map(ToString::to_string).collect();
        let at = |n: &str| order.iter().position(|o| o == n).unwrap();
        assert!(at("s/a") < at("i/c") && at("i/c") < at("m/d") && at("s/b") < at("m/d"));
        let err = d.select(&["c".parse().unwrap()], tags).unwrap_err();
        assert!(
            err.is_usage() && err.to_string().contains("select i/c"),
            "{err}"
        );
        let err = d
            .select(&["tag:weekly".parse().unwrap()], tags)
            .unwrap_err();
        assert!(matches!(err, Error::UnknownTag { .. }), "{err:?}");
        let err = d.select(&["x/c".parse().unwrap()], tags).unwrap_err();
        assert!(matches!(err, Error::UnknownPipeline { .. }), "{err:?}");
    }

    #[test]
    fn a_cycle_is_listed() {
        let err = dag(&[("a", &["c"]), ("b", &["a"]), ("c", &["b"]), ("d", &["a"])]).unwrap_err();
        match err {
            Error::Cycle { cycle, .. } => {
                assert_eq!(cycle.len(), 4, "{cycle:?}");
                assert_eq!(cycle.first(), cycle.last());
                let mut members: Vec<_> = cycle[..3].to_vec();
                members.sort();
                assert_eq!(members, ["a", "b", "c"]);
            }
            other => panic!("{other:?}"),
        }
        let err = dag(&[("a", &["a"])]).unwrap_err();
        assert!(err.to_string().contains("a -> a"), "{err}");
        let err = dag_in(None, &[("p/a", &["q/b"]), ("q/b", &["p/a"])]).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("the project has a dependency cycle: "),
            "{text}"
        );
        assert!(
            text.contains("p/a -> q/b") || text.contains("q/b -> p/a"),
            "{text}"
        );
    }
}
