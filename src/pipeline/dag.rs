//! The DAG of a pipeline's tasks: topological order, cycle detection and selection
//! (`task`, `task+`, `+task`, `+task+`).

use std::collections::{BTreeMap, BTreeSet};

use crate::config::TaskName;
use crate::error::{Error, Result};

/// The dependency graph of one pipeline's tasks (edges from `ref()` within the pipeline).
#[derive(Debug, Clone)]
pub struct Dag {
    pipeline: String,
    /// task → the tasks it reads.
    upstream: BTreeMap<TaskName, BTreeSet<TaskName>>,
    /// task → the tasks that read it.
    downstream: BTreeMap<TaskName, BTreeSet<TaskName>>,
    order: Vec<TaskName>,
}

impl Dag {
    /// Builds the DAG from each task's upstream tasks; a cycle is an error listing it.
    pub fn new(pipeline: &str, upstream: BTreeMap<TaskName, BTreeSet<TaskName>>) -> Result<Self> {
        let mut downstream: BTreeMap<TaskName, BTreeSet<TaskName>> = upstream
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
        let mut pending: BTreeMap<&TaskName, usize> =
            upstream.iter().map(|(t, ups)| (t, ups.len())).collect();
        let mut ready: BTreeSet<&TaskName> = pending
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
            let stuck: BTreeSet<&TaskName> = pending.keys().copied().collect();
            return Err(Error::Cycle {
                pipeline: pipeline.to_string(),
                cycle: find_cycle(&upstream, &stuck),
            });
        }
        Ok(Dag {
            pipeline: pipeline.to_string(),
            upstream,
            downstream,
            order,
        })
    }

    /// All tasks in a topological order (upstream first, ties by name).
    pub fn order(&self) -> &[TaskName] {
        &self.order
    }

    /// The tasks `task` reads directly.
    pub fn upstream_of(&self, task: &TaskName) -> impl Iterator<Item = &TaskName> {
        self.upstream.get(task).into_iter().flatten()
    }

    /// The tasks that read `task` directly.
    pub fn downstream_of(&self, task: &TaskName) -> impl Iterator<Item = &TaskName> {
        self.downstream.get(task).into_iter().flatten()
    }

    /// The tasks chosen by `selectors`, in topological order; all tasks when empty.
    pub fn select(&self, selectors: &[Selector]) -> Result<Vec<TaskName>> {
        if selectors.is_empty() {
            return Ok(self.order.clone());
        }
        let mut chosen = BTreeSet::new();
        for sel in selectors {
            let Some((task, _)) = self.upstream.get_key_value(sel.task.as_str()) else {
                return Err(Error::UnknownTask {
                    pipeline: self.pipeline.clone(),
                    task: sel.task.clone(),
                    context: None,
                    known: self.order.iter().map(ToString::to_string).collect(),
                });
            };
            chosen.insert(task.clone());
            if sel.upstream {
                self.walk(task, &self.upstream, &mut chosen);
            }
            if sel.downstream {
                self.walk(task, &self.downstream, &mut chosen);
            }
        }
        Ok(self
            .order
            .iter()
            .filter(|t| chosen.contains(*t))
            .cloned()
            .collect())
    }

    fn walk(
        &self,
        from: &TaskName,
        edges: &BTreeMap<TaskName, BTreeSet<TaskName>>,
        seen: &mut BTreeSet<TaskName>,
    ) {
        let mut stack = vec![from.clone()];
        while let Some(t) = stack.pop() {
            for next in edges.get(&t).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    stack.push(next.clone());
                }
            }
        }
    }
}

/// Follows upstream edges among the `stuck` tasks (every one of which lies on or
/// behind a cycle) until a task repeats, and returns that cycle.
fn find_cycle(
    upstream: &BTreeMap<TaskName, BTreeSet<TaskName>>,
    stuck: &BTreeSet<&TaskName>,
) -> Vec<String> {
    let Some(mut current) = stuck.first().copied() else {
        return Vec::new();
    };
    let mut path: Vec<&TaskName> = Vec::new();
    loop {
        if let Some(pos) = path.iter().position(|t| *t == current) {
            // path[pos..] is the cycle walked upstream; show it in data-flow order.
            let mut cycle: Vec<String> =
                path[pos..].iter().rev().map(ToString::to_string).collect();
            cycle.push(cycle[0].clone());
            return cycle;
        }
        path.push(current);
        match upstream[current].iter().find(|u| stuck.contains(u)) {
            Some(next) => current = next,
            None => return path.iter().map(ToString::to_string).collect(),
        }
    }
}

/// A task selector for `run --select`: `task`, `task+` (with downstream), `+task`
/// (with upstream) or `+task+`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    /// The task named.
    pub task: String,
    /// Include every task upstream of it.
    pub upstream: bool,
    /// Include every task downstream of it.
    pub downstream: bool,
}

impl std::str::FromStr for Selector {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let upstream = s.starts_with('+');
        let downstream = s.len() > 1 && s.ends_with('+');
        let task = s.trim_start_matches('+').trim_end_matches('+');
        if task.is_empty() || task.contains('+') {
            return Err(Error::InvalidArgument {
                what: "--select",
                value: s.to_string(),
                message: "expected task, task+, +task or +task+".into(),
            });
        }
        Ok(Selector {
            task: task.to_string(),
            upstream,
            downstream,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(n: &str) -> TaskName {
        TaskName::try_new(n).unwrap()
    }

    fn dag(edges: &[(&str, &[&str])]) -> Result<Dag> {
        let upstream = edges
            .iter()
            .map(|(task, ups)| (t(task), ups.iter().map(|u| t(u)).collect()))
            .collect();
        Dag::new("p", upstream)
    }

    fn names(v: &[TaskName]) -> Vec<&str> {
        v.iter().map(|t| t.as_str()).collect()
    }

    #[test]
    fn orders_upstream_first() {
        let d = dag(&[("c", &["a", "b"]), ("a", &[]), ("b", &["a"]), ("d", &[])]).unwrap();
        assert_eq!(names(d.order()), ["a", "b", "c", "d"]);
    }

    #[test]
    fn selects_with_upstream_and_downstream() {
        let d = dag(&[("a", &[]), ("b", &["a"]), ("c", &["b"]), ("x", &[])]).unwrap();
        let sel = |s: &str| d.select(&[s.parse().unwrap()]).unwrap();
        assert_eq!(names(&sel("b")), ["b"]);
        assert_eq!(names(&sel("b+")), ["b", "c"]);
        assert_eq!(names(&sel("+b")), ["a", "b"]);
        assert_eq!(names(&sel("+b+")), ["a", "b", "c"]);
        assert!(d.select(&["nope".parse().unwrap()]).is_err());
        assert!("+".parse::<Selector>().is_err());
        assert!("a+b".parse::<Selector>().is_err());
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
    }
}
