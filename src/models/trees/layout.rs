//! Reading a tree ensemble's attributes into checked trees, and laying them out as
//! perfect binary trees: the split and leaf tables the portable walk and the vector
//! kernels read.

use std::collections::BTreeMap;

use super::simd::Simd;
use super::tables::Tables;
use super::{Aggregate, ClassifierRules, Mode, Node, TreeEnsemble};
use crate::models::error::OnnxError;
use crate::models::transform::PostTransform;

/// Deepest tree laid out as a perfect tree (2^12 leaves).
pub(super) const MAX_PERFECT_DEPTH: usize = 12;

/// The attributes of a tree-ensemble node, read by the caller from the ONNX node.
pub(crate) struct TreeAttributes<'a> {
    pub op: &'a str,
    pub nodes_treeids: &'a [i64],
    pub nodes_nodeids: &'a [i64],
    pub nodes_featureids: &'a [i64],
    pub nodes_values: Vec<f64>,
    pub nodes_modes: Vec<String>,
    pub nodes_truenodeids: &'a [i64],
    pub nodes_falsenodeids: &'a [i64],
    pub nodes_missing_value_tracks_true: &'a [i64],
    /// `target_*` (regressor) or `class_*` (classifier).
    pub leaf_treeids: &'a [i64],
    pub leaf_nodeids: &'a [i64],
    pub leaf_ids: &'a [i64],
    pub leaf_weights: Vec<f64>,
    pub base_values: Vec<f64>,
    pub post_transform: PostTransform,
    pub aggregate_function: String,
    /// Regressor: `n_targets`; classifier: the number of class labels.
    pub n_outputs: usize,
    pub is_classifier: bool,
}

/// Trees laid out as perfect binary trees in heap order.
#[derive(Debug, Clone)]
pub(super) struct Perfect {
    pub(super) depth: usize,
    /// Per tree, `2^depth - 1` split features and thresholds (`x <= t` goes left).
    pub(super) features: Vec<u32>,
    pub(super) thresholds: Vec<f64>,
    /// Per tree, `2^depth` leaves × `n_outputs` values.
    pub(super) leaves: Vec<f64>,
    /// The single-precision tables of the vector kernels (and their bins), built once
    /// here, when the trees are at most 6 deep with one output and every split and
    /// leaf value is exactly a float (as ONNX's `nodes_values` and weights are).
    pub(super) simd: Option<Simd>,
}

impl TreeEnsemble {
    /// Reads the node and leaf tables; errors name the inconsistency.
    pub(crate) fn new(a: TreeAttributes<'_>) -> Result<Self, OnnxError> {
        a.check_lengths()?;
        let aggregate = a.aggregate()?;
        let NodeTable {
            tree_index,
            mut trees,
            max_feature,
        } = a.read_nodes()?;
        let LeafWeights {
            weights,
            used,
            all_positive,
        } = a.attach_weights(&tree_index, &mut trees)?;
        let checked = check_trees(a.op, trees)?;
        let classifier = a.is_classifier.then(|| ClassifierRules {
            n_labels: a.n_outputs,
            single_score: a.n_outputs == 2 && !used[1],
            weights_all_positive: all_positive,
        });
        // A binary classifier whose weights are all for class 0 accumulates one score.
        let single_score = classifier.as_ref().is_some_and(|c| c.single_score);
        let mut ensemble = TreeEnsemble {
            n_outputs: if single_score { 1 } else { a.n_outputs },
            n_features: max_feature + 1,
            aggregate,
            base_values: a.base_values,
            post: a.post_transform,
            classifier,
            trees: checked,
            weights,
            perfect: None,
        };
        if let Some(c) = &ensemble.classifier {
            if c.n_labels == 2 && c.single_score && ensemble.post == PostTransform::Probit {
                return Err(OnnxError::ProbitSingleScore {
                    op: a.op.to_string(),
                });
            }
        }
        ensemble.perfect = ensemble.lay_out_perfect();
        Ok(ensemble)
    }

    /// The perfect-tree layout, when the trees allow it (see the module documentation).
    fn lay_out_perfect(&self) -> Option<Perfect> {
        if !matches!(self.aggregate, Aggregate::Sum | Aggregate::Average) {
            return None;
        }
        let mut max_depth = 0;
        for nodes in &self.trees {
            if nodes.iter().any(|n| matches!(n.mode, Mode::Eq | Mode::Neq)) {
                return None;
            }
            max_depth = max_depth.max(depth(nodes)?);
        }
        if max_depth > MAX_PERFECT_DEPTH {
            return None;
        }
        let d = max_depth.max(1);
        let inner = (1usize << d) - 1;
        let n_leaves = 1usize << d;
        let mut p = Perfect {
            depth: d,
            features: vec![0; inner * self.trees.len()],
            thresholds: vec![f64::INFINITY; inner * self.trees.len()],
            leaves: vec![0.0; n_leaves * self.n_outputs * self.trees.len()],
            simd: None,
        };
        // The thresholds in single precision (`x <= t` in f32 for f32 inputs).
        let mut t32 = vec![f32::INFINITY; inner * self.trees.len()];
        for (t, nodes) in self.trees.iter().enumerate() {
            self.fill(&mut p, &mut t32, t, nodes, 0, 0, 0);
        }
        let exact = |v: f64| f64::from(v as f32) == v || v.is_infinite();
        let leaves_exact = p.leaves.iter().all(|v| exact(*v));
        let splits_exact = self
            .trees
            .iter()
            .flatten()
            .all(|n| n.mode == Mode::Leaf || exact(n.threshold));
        if leaves_exact && splits_exact && d <= 6 && self.n_outputs == 1 {
            p.simd = Some(Simd::new(Tables::new(
                p.depth,
                &p.features,
                &p.leaves,
                &t32,
                self.trees.len(),
            )));
        }
        Some(p)
    }

    /// Writes ONNX node `node` of tree `t` at heap position `pos` (level `level`).
    #[allow(clippy::too_many_arguments)]
    fn fill(
        &self,
        p: &mut Perfect,
        t32: &mut [f32],
        t: usize,
        nodes: &[Node],
        node: usize,
        pos: usize,
        level: usize,
    ) {
        let inner = (1usize << p.depth) - 1;
        let n = &nodes[node];
        if level == p.depth {
            let leaf = pos - inner;
            let base = (t * (inner + 1) + leaf) * self.n_outputs;
            for (target, w) in &self.weights[n.weights.clone()] {
                p.leaves[base + target] += w;
            }
            return;
        }
        let (left, right) = match n.mode {
            Mode::Leaf => (node, node),
            Mode::Leq | Mode::Lt => (n.true_child, n.false_child),
            Mode::Gt | Mode::Gte => (n.false_child, n.true_child),
            Mode::Eq | Mode::Neq => unreachable!("EQ/NEQ trees are not laid out"),
        };
        if n.mode != Mode::Leaf {
            p.features[t * inner + pos] = n.feature as u32;
            // x < t is x <= the largest number below t; x >= t is its negation.
            let strict = matches!(n.mode, Mode::Lt | Mode::Gte);
            p.thresholds[t * inner + pos] = if strict {
                n.threshold.next_down()
            } else {
                n.threshold
            };
            let v = n.threshold as f32;
            t32[t * inner + pos] = if strict { v.next_down() } else { v };
        }
        self.fill(p, t32, t, nodes, left, 2 * pos + 1, level + 1);
        self.fill(p, t32, t, nodes, right, 2 * pos + 2, level + 1);
    }
}

/// The trees' nodes as read, before they are checked to be whole trees.
struct NodeTable {
    /// Tree id → tree, in order of first appearance.
    tree_index: BTreeMap<i64, usize>,
    /// Per tree, its nodes by node id (`None`: an id no node has).
    trees: Vec<Vec<Option<Node>>>,
    /// The highest feature a branch reads.
    max_feature: usize,
}

/// The leaf weights, grouped per leaf (each leaf node holds its range).
struct LeafWeights {
    /// (output column, weight).
    weights: Vec<(usize, f64)>,
    /// Which outputs have a weight.
    used: Vec<bool>,
    all_positive: bool,
}

impl TreeAttributes<'_> {
    fn check_lengths(&self) -> Result<(), OnnxError> {
        let n = self.nodes_nodeids.len();
        let lens = [
            self.nodes_treeids.len(),
            self.nodes_featureids.len(),
            self.nodes_values.len(),
            self.nodes_modes.len(),
            self.nodes_truenodeids.len(),
            self.nodes_falsenodeids.len(),
        ];
        if lens.iter().any(|l| *l != n) {
            return Err(OnnxError::TreeNodeLengths {
                op: self.op.to_string(),
            });
        }
        if self.leaf_nodeids.len() != self.leaf_treeids.len()
            || self.leaf_ids.len() != self.leaf_treeids.len()
            || self.leaf_weights.len() != self.leaf_treeids.len()
        {
            return Err(OnnxError::TreeLeafLengths {
                op: self.op.to_string(),
            });
        }
        Ok(())
    }

    fn aggregate(&self) -> Result<Aggregate, OnnxError> {
        Ok(match self.aggregate_function.as_str() {
            "" | "SUM" => Aggregate::Sum,
            "AVERAGE" => Aggregate::Average,
            "MIN" => Aggregate::Min,
            "MAX" => Aggregate::Max,
            other => {
                return Err(OnnxError::UnknownAggregate {
                    op: self.op.to_string(),
                    name: other.to_string(),
                })
            }
        })
    }

    /// Reads every node into its tree (the lengths are checked).
    fn read_nodes(&self) -> Result<NodeTable, OnnxError> {
        // Tree ids in order of first appearance; node ids index within their tree.
        let mut tree_index = BTreeMap::new();
        for t in self.nodes_treeids {
            let next = tree_index.len();
            tree_index.entry(*t).or_insert(next);
        }
        let mut sizes = vec![0usize; tree_index.len()];
        for (t, id) in self.nodes_treeids.iter().zip(self.nodes_nodeids) {
            let s = &mut sizes[tree_index[t]];
            let id = usize::try_from(*id).map_err(|_| OnnxError::NegativeNodeId {
                op: self.op.to_string(),
            })?;
            *s = (*s).max(id + 1);
        }
        let mut trees: Vec<Vec<Option<Node>>> = sizes.iter().map(|s| vec![None; *s]).collect();
        let mut max_feature = 0usize;
        for i in 0..self.nodes_nodeids.len() {
            let mode = match self.nodes_modes[i].as_str() {
                "BRANCH_LEQ" => Mode::Leq,
                "BRANCH_LT" => Mode::Lt,
                "BRANCH_GTE" => Mode::Gte,
                "BRANCH_GT" => Mode::Gt,
                "BRANCH_EQ" => Mode::Eq,
                "BRANCH_NEQ" => Mode::Neq,
                "LEAF" => Mode::Leaf,
                other => {
                    return Err(OnnxError::UnknownNodeMode {
                        op: self.op.to_string(),
                        mode: other.to_string(),
                    })
                }
            };
            let tree = tree_index[&self.nodes_treeids[i]];
            let feature = usize::try_from(self.nodes_featureids[i]).unwrap_or(0);
            if mode != Mode::Leaf {
                max_feature = max_feature.max(feature);
            }
            let child = |v: i64| usize::try_from(v).unwrap_or(usize::MAX);
            trees[tree][self.nodes_nodeids[i] as usize] = Some(Node {
                feature,
                threshold: self.nodes_values[i],
                mode,
                missing_true: self
                    .nodes_missing_value_tracks_true
                    .get(i)
                    .is_some_and(|v| *v != 0),
                true_child: child(self.nodes_truenodeids[i]),
                false_child: child(self.nodes_falsenodeids[i]),
                weights: 0..0,
            });
        }
        Ok(NodeTable {
            tree_index,
            trees,
            max_feature,
        })
    }

    /// Groups the leaf weights per leaf and gives each leaf node its range.
    fn attach_weights(
        &self,
        tree_index: &BTreeMap<i64, usize>,
        trees: &mut [Vec<Option<Node>>],
    ) -> Result<LeafWeights, OnnxError> {
        let mut order: Vec<usize> = (0..self.leaf_treeids.len()).collect();
        order.sort_by_key(|&i| (self.leaf_treeids[i], self.leaf_nodeids[i]));
        let mut weights = Vec::with_capacity(order.len());
        let mut used = vec![false; self.n_outputs.max(1)];
        let mut all_positive = true;
        let mut k = 0;
        while k < order.len() {
            let (t, id) = (self.leaf_treeids[order[k]], self.leaf_nodeids[order[k]]);
            let start = weights.len();
            while k < order.len()
                && (self.leaf_treeids[order[k]], self.leaf_nodeids[order[k]]) == (t, id)
            {
                let i = order[k];
                let target = usize::try_from(self.leaf_ids[i])
                    .ok()
                    .filter(|c| *c < self.n_outputs);
                let Some(target) = target else {
                    return Err(OnnxError::LeafOutput {
                        op: self.op.to_string(),
                        output: self.leaf_ids[i],
                        outputs: self.n_outputs,
                    });
                };
                used[target] = true;
                all_positive &= self.leaf_weights[i] >= 0.0;
                weights.push((target, self.leaf_weights[i]));
                k += 1;
            }
            let node = tree_index
                .get(&t)
                .and_then(|ti| trees[*ti].get_mut(id as usize))
                .and_then(Option::as_mut)
                .ok_or_else(|| OnnxError::WeightWithoutNode {
                    op: self.op.to_string(),
                    tree: t,
                    node: id,
                })?;
            node.weights = start..weights.len();
        }
        Ok(LeafWeights {
            weights,
            used,
            all_positive,
        })
    }
}

/// Checks that every tree has all its node ids, that branches point inside the tree,
/// and that no node is reached twice.
fn check_trees(op: &str, trees: Vec<Vec<Option<Node>>>) -> Result<Vec<Vec<Node>>, OnnxError> {
    let mut checked = Vec::with_capacity(trees.len());
    for (t, nodes) in trees.into_iter().enumerate() {
        let nodes: Vec<Node> = nodes
            .into_iter()
            .enumerate()
            .map(|(i, n)| {
                n.ok_or_else(|| OnnxError::MissingNode {
                    op: op.to_string(),
                    tree: t,
                    node: i,
                })
            })
            .collect::<Result<_, _>>()?;
        for node in &nodes {
            if node.mode != Mode::Leaf
                && (node.true_child >= nodes.len() || node.false_child >= nodes.len())
            {
                return Err(OnnxError::DanglingChild {
                    op: op.to_string(),
                    tree: t,
                });
            }
        }
        if depth(&nodes).is_none() {
            return Err(OnnxError::NotATree {
                op: op.to_string(),
                tree: t,
            });
        }
        checked.push(nodes);
    }
    Ok(checked)
}

/// The depth of the tree whose root is `nodes[0]`, or `None` when the nodes do not form
/// a tree (a node reached twice: a cycle or a shared child). Iterative, so a degenerate
/// model cannot exhaust the stack.
fn depth(nodes: &[Node]) -> Option<usize> {
    let mut seen = vec![false; nodes.len()];
    let mut stack = vec![(0usize, 0usize)];
    let mut deepest = 0;
    while let Some((node, level)) = stack.pop() {
        if std::mem::replace(&mut seen[node], true) {
            return None;
        }
        let n = &nodes[node];
        if n.mode == Mode::Leaf {
            deepest = deepest.max(level);
        } else {
            stack.push((n.true_child, level + 1));
            stack.push((n.false_child, level + 1));
        }
    }
    Some(deepest)
}
