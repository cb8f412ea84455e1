//! `TreeEnsembleRegressor` and `TreeEnsembleClassifier` (ONNX-ML), evaluated over
//! column-major batches.
//!
//! Every tree is first read into a generic node list that follows the operator's
//! semantics exactly (all six branch modes, `nodes_missing_value_tracks_true`, the four
//! aggregate functions). When the trees only use ordered comparisons, are at most
//! [`MAX_PERFECT_DEPTH`](layout::MAX_PERFECT_DEPTH) deep and are summed or averaged (what scikit-learn, LightGBM and
//! XGBoost exporters produce), they are also laid out as *perfect* binary trees: a short
//! leaf is replicated down to the full depth and every comparison is rewritten as
//! `x <= t`. A row then walks a tree with a fixed number of branch-free steps
//! (`i = 2i + 1 + (x > t)`), trees are evaluated one at a time over blocks of rows that
//! stay in the L1 cache, and the CPU overlaps the walks of neighbouring rows. A batch
//! holding NaN takes the generic walk, which honours the missing-value tracks.
//!
//! `layout` reads the attributes and builds the perfect-tree tables, `walk` is the
//! portable walk over them, `tables` holds what the vector kernels read (`bins` the
//! thresholds as 16-bit bins, and the loop the binned kernels share), and `simd`
//! chooses the vector kernel (`avx512`, `avx2_binned`, `avx2`, `neon`) the CPU has for
//! the rows it can take.

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx2_binned;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod bins;
mod layout;
#[cfg(target_arch = "aarch64")]
mod neon;
mod simd;
mod tables;
mod walk;

pub(crate) use layout::TreeAttributes;

use crate::models::transform::{logistic_pair, PostTransform};
use layout::Perfect;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Leq,
    Lt,
    Gte,
    Gt,
    Eq,
    Neq,
    Leaf,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Aggregate {
    Sum,
    Average,
    Min,
    Max,
}

#[derive(Debug, Clone)]
struct Node {
    feature: usize,
    threshold: f64,
    mode: Mode,
    missing_true: bool,
    true_child: usize,
    false_child: usize,
    /// Leaf weights: a range of `weights`.
    weights: std::ops::Range<usize>,
}

/// How a classifier turns summed leaf weights into class scores (onnxruntime's rules).
#[derive(Debug, Clone)]
struct ClassifierRules {
    n_labels: usize,
    /// Two labels but every weight is for class 0: one score per row, expanded to two.
    single_score: bool,
    weights_all_positive: bool,
}

/// A compiled tree ensemble.
#[derive(Debug, Clone)]
pub(crate) struct TreeEnsemble {
    /// Columns of the raw score (targets, or classes that carry weights).
    n_outputs: usize,
    n_features: usize,
    aggregate: Aggregate,
    base_values: Vec<f64>,
    post: PostTransform,
    classifier: Option<ClassifierRules>,
    /// Per tree, its nodes (index 0 is the root).
    trees: Vec<Vec<Node>>,
    /// Leaf weights: (output column, weight).
    weights: Vec<(usize, f64)>,
    perfect: Option<Perfect>,
}

impl TreeEnsemble {
    /// The number of input features the trees read.
    pub(crate) fn n_features(&self) -> usize {
        self.n_features
    }

    /// The number of output columns (targets, or class scores).
    pub(crate) fn width(&self) -> usize {
        match &self.classifier {
            Some(c) => c.n_labels,
            None => self.n_outputs,
        }
    }

    /// Whether the branch-free layout is used for NaN-free batches.
    pub(crate) fn is_compiled(&self) -> bool {
        self.perfect.is_some()
    }

    /// Evaluates the ensemble on `rows` rows of column-major `x` (at least
    /// [`n_features`](Self::n_features) columns); returns the output columns.
    pub(crate) fn eval(&self, x: &[&[f64]], rows: usize) -> Vec<Vec<f64>> {
        self.eval_with(simd::Kernel::chosen(), x, rows)
    }

    /// [`eval`](Self::eval) with the given vector kernel (`None`: the portable walk
    /// alone), which must be one the CPU supports.
    fn eval_with(&self, kernel: Option<simd::Kernel>, x: &[&[f64]], rows: usize) -> Vec<Vec<f64>> {
        let k = self.n_outputs;
        let mut acc = vec![0.0f64; rows * k];
        let columns = &x[..self.n_features];
        // Whether every feature is a float (what the vector kernels need, and what a
        // model with float inputs gets): then none is NaN, and one pass tells both.
        let floats = columns
            .iter()
            .all(|c| c[..rows].iter().all(|v| f64::from(*v as f32) == *v));
        let has_nan = !floats && columns.iter().any(|c| c[..rows].iter().any(|v| v.is_nan()));
        match &self.perfect {
            Some(p) if !has_nan => {
                // The vector kernel takes what it can (single-output layouts only).
                let tables = p.simd.as_ref().filter(|_| floats);
                let done = simd::eval(kernel, p.depth, tables, self.n_features, x, rows, &mut acc);
                walk::eval_perfect(p, self.trees.len(), k, x, done, rows, &mut acc);
            }
            _ => self.eval_generic(x, rows, &mut acc),
        }
        if self.aggregate == Aggregate::Average {
            let n = self.trees.len() as f64;
            acc.iter_mut().for_each(|v| *v /= n);
        }
        self.finalize(&acc, rows)
    }

    fn eval_generic(&self, x: &[&[f64]], rows: usize, acc: &mut [f64]) {
        let k = self.n_outputs;
        let mut seen = vec![false; k];
        for i in 0..rows {
            let out = &mut acc[i * k..(i + 1) * k];
            seen.iter_mut().for_each(|s| *s = false);
            for nodes in &self.trees {
                let mut node = &nodes[0];
                while node.mode != Mode::Leaf {
                    let v = x[node.feature][i];
                    let t = node.threshold;
                    let cond = match node.mode {
                        Mode::Leq => v <= t,
                        Mode::Lt => v < t,
                        Mode::Gte => v >= t,
                        Mode::Gt => v > t,
                        Mode::Eq => v == t,
                        Mode::Neq => v != t,
                        Mode::Leaf => unreachable!(),
                    };
                    let go_true = cond || (node.missing_true && v.is_nan());
                    node = &nodes[if go_true {
                        node.true_child
                    } else {
                        node.false_child
                    }];
                }
                for (target, w) in &self.weights[node.weights.clone()] {
                    let slot = &mut out[*target];
                    *slot = match self.aggregate {
                        Aggregate::Sum | Aggregate::Average => *slot + w,
                        Aggregate::Min if seen[*target] => slot.min(*w),
                        Aggregate::Max if seen[*target] => slot.max(*w),
                        Aggregate::Min | Aggregate::Max => *w,
                    };
                    seen[*target] = true;
                }
            }
        }
    }

    /// Base values and the post transform, per onnxruntime's rules.
    fn finalize(&self, acc: &[f64], rows: usize) -> Vec<Vec<f64>> {
        let k = self.n_outputs;
        let width = self.width();
        // A binary classifier's one logistic score: both probabilities in column
        // sweeps, one exponential a row.
        if let Some(c) = &self.classifier {
            let logistic_score = c.n_labels == 2 && c.single_score && !c.weights_all_positive;
            if logistic_score && self.post == PostTransform::Logistic {
                let base = self.base_values.first().copied().unwrap_or(0.0);
                let s = (0..rows).map(|i| acc[i * k] + base).collect();
                let (p0, p1) = logistic_pair(s);
                return vec![p0, p1];
            }
        }
        let mut out = vec![vec![0.0; rows]; width];
        let mut scores = vec![0.0; width];
        for i in 0..rows {
            let raw = &acc[i * k..(i + 1) * k];
            match &self.classifier {
                Some(c) if c.n_labels == 2 && c.single_score => {
                    let s = raw[0] + self.base_values.first().copied().unwrap_or(0.0);
                    // (With a logistic post transform it was done above.)
                    let (p0, p1) = if c.weights_all_positive {
                        (1.0 - s, s)
                    } else {
                        (-s, s)
                    };
                    out[0][i] = p0;
                    out[1][i] = p1;
                    continue;
                }
                _ => {}
            }
            scores.copy_from_slice(raw);
            if self.base_values.len() == width {
                scores
                    .iter_mut()
                    .zip(&self.base_values)
                    .for_each(|(s, b)| *s += b);
            } else if let Some(b) = self
                .base_values
                .first()
                .filter(|_| self.base_values.len() == 1)
            {
                scores[0] += b;
            }
            self.post.apply(&mut scores);
            for (col, s) in out.iter_mut().zip(&scores) {
                col[i] = *s;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two trees over two features using every ordered mode, one of them uneven.
    fn ensemble(modes: [&str; 3]) -> TreeEnsemble {
        // tree 0: node0 (f0 vs 0.5) -> node1 (f1 vs -1.0) -> leaves 3, 4; node0 -> leaf 2
        // tree 1: node0 (f1 vs 2.0) -> leaves 1, 2
        let nodes_modes = vec![
            modes[0].to_string(),
            modes[1].to_string(),
            "LEAF".into(),
            "LEAF".into(),
            "LEAF".into(),
            modes[2].to_string(),
            "LEAF".into(),
            "LEAF".into(),
        ];
        TreeEnsemble::new(TreeAttributes {
            op: "TreeEnsembleRegressor",
            nodes_treeids: &[0, 0, 0, 0, 0, 1, 1, 1],
            nodes_nodeids: &[0, 1, 2, 3, 4, 0, 1, 2],
            nodes_featureids: &[0, 1, 0, 0, 0, 1, 0, 0],
            nodes_values: vec![0.5, -1.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0],
            nodes_modes,
            nodes_truenodeids: &[1, 3, 0, 0, 0, 1, 0, 0],
            nodes_falsenodeids: &[2, 4, 0, 0, 0, 2, 0, 0],
            nodes_missing_value_tracks_true: &[],
            leaf_treeids: &[0, 0, 0, 1, 1],
            leaf_nodeids: &[2, 3, 4, 1, 2],
            leaf_ids: &[0, 0, 0, 0, 0],
            leaf_weights: vec![1.0, 10.0, 100.0, 1000.0, 10000.0],
            base_values: vec![0.5],
            post_transform: PostTransform::None,
            aggregate_function: "SUM".into(),
            n_outputs: 1,
            is_classifier: false,
        })
        .unwrap()
    }

    #[test]
    fn the_branch_free_layout_agrees_with_the_node_walk_for_every_mode() {
        // Values on, just below and just above every threshold.
        let mut f0 = Vec::new();
        let mut f1 = Vec::new();
        for a in [0.5, 0.5f64.next_down(), 0.5f64.next_up(), -3.0, 7.0] {
            for b in [
                -1.0,
                (-1.0f64).next_down(),
                (-1.0f64).next_up(),
                2.0,
                2.0f64.next_down(),
                2.0f64.next_up(),
            ] {
                f0.push(a);
                f1.push(b);
            }
        }
        let rows = f0.len();
        for m0 in ["BRANCH_LEQ", "BRANCH_LT", "BRANCH_GTE", "BRANCH_GT"] {
            for m1 in ["BRANCH_LEQ", "BRANCH_LT", "BRANCH_GTE", "BRANCH_GT"] {
                let e = ensemble([m0, m1, m1]);
                assert!(e.is_compiled());
                let fast = e.eval(&[&f0, &f1], rows);
                let mut acc = vec![0.0; rows];
                e.eval_generic(&[&f0, &f1], rows, &mut acc);
                let exact = e.finalize(&acc, rows);
                assert_eq!(fast, exact, "{m0} {m1}");
            }
        }
        // Spot check LEQ by hand: f0 = 0.5 <= 0.5 -> node1; f1 = -1 <= -1 -> leaf 3 (10);
        // tree 1: f1 = -1 <= 2 -> leaf 1 (1000); plus the base value 0.5.
        let e = ensemble(["BRANCH_LEQ", "BRANCH_LEQ", "BRANCH_LEQ"]);
        assert_eq!(e.eval(&[&[0.5], &[-1.0]], 1), vec![vec![1010.5]]);
    }

    #[test]
    fn every_vector_kernel_agrees_with_the_node_walk_on_float_inputs() {
        // Float-exact values at, just below and just above each threshold, 16k rows so
        // that whole vectors of rows go through each kernel the CPU has.
        let near = |t: f32| [t, t.next_down(), t.next_up()].map(f64::from);
        let (a, b) = (near(0.5), [near(-1.0), near(2.0)].concat());
        let mut f0 = Vec::new();
        let mut f1 = Vec::new();
        for i in 0..16_384 {
            f0.push(a[i % 3]);
            f1.push(b[(i / 3) % 6]);
        }
        let rows = f0.len();
        for modes in [
            ["BRANCH_LEQ"; 3],
            ["BRANCH_LT"; 3],
            ["BRANCH_GTE"; 3],
            ["BRANCH_GT"; 3],
        ] {
            let e = ensemble(modes);
            let mut acc = vec![0.0; rows];
            e.eval_generic(&[&f0, &f1], rows, &mut acc);
            let exact = e.finalize(&acc, rows);
            for kernel in simd::Kernel::supported() {
                let fast = e.eval_with(Some(kernel), &[&f0, &f1], rows);
                assert_eq!(fast, exact, "{kernel:?} {modes:?}");
            }
        }
    }

    /// `trees` random trees of `depth` over `n_features` float features, uneven (a
    /// node is a leaf early one time in five below the root), with float thresholds
    /// and weights.
    fn random_ensemble(trees: usize, depth: u32, n_features: usize, seed: u64) -> TreeEnsemble {
        let mut state = seed;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let (mut tree_ids, mut node_ids, mut features, mut values, mut modes) =
            (vec![], vec![], vec![], vec![], vec![]);
        let (mut true_ids, mut false_ids) = (vec![], vec![]);
        let (mut leaf_trees, mut leaf_nodes, mut leaf_weights) = (vec![], vec![], vec![]);
        let mode_names = ["BRANCH_LEQ", "BRANCH_LT", "BRANCH_GTE", "BRANCH_GT"];
        for t in 0..trees as i64 {
            // (node id, level), breadth first; ids are handed out as nodes are made.
            let mut queue = std::collections::VecDeque::from([(0i64, 0u32)]);
            let mut next_id = 1i64;
            while let Some((id, level)) = queue.pop_front() {
                tree_ids.push(t);
                node_ids.push(id);
                let leaf = level == depth || (level > 0 && next() < 0.2);
                if leaf {
                    features.push(0);
                    values.push(0.0);
                    modes.push("LEAF".to_string());
                    true_ids.push(0);
                    false_ids.push(0);
                    leaf_trees.push(t);
                    leaf_nodes.push(id);
                    leaf_weights.push(f64::from((next() - 0.5) as f32));
                } else {
                    features.push((next() * n_features as f64) as i64 % n_features as i64);
                    values.push(f64::from((next() * 4.0 - 2.0) as f32));
                    modes.push(mode_names[(next() * 4.0) as usize % 4].to_string());
                    true_ids.push(next_id);
                    false_ids.push(next_id + 1);
                    queue.push_back((next_id, level + 1));
                    queue.push_back((next_id + 1, level + 1));
                    next_id += 2;
                }
            }
        }
        // Every feature is read, so the model has n_features inputs.
        let mut e = TreeEnsemble::new(TreeAttributes {
            op: "TreeEnsembleRegressor",
            nodes_treeids: &tree_ids,
            nodes_nodeids: &node_ids,
            nodes_featureids: &features,
            nodes_values: values,
            nodes_modes: modes,
            nodes_truenodeids: &true_ids,
            nodes_falsenodeids: &false_ids,
            nodes_missing_value_tracks_true: &[],
            leaf_treeids: &leaf_trees,
            leaf_nodeids: &leaf_nodes,
            leaf_ids: &vec![0; leaf_trees.len()],
            leaf_weights,
            base_values: vec![0.25],
            post_transform: PostTransform::None,
            aggregate_function: "SUM".into(),
            n_outputs: 1,
            is_classifier: false,
        })
        .unwrap();
        e.n_features = n_features;
        e
    }

    #[test]
    fn every_vector_kernel_agrees_with_the_node_walk_at_every_depth_and_width() {
        // Rows that are not a whole number of vectors, so the portable walk finishes
        // each batch. Each feature value is one of the model's thresholds, or the
        // float just below or above it, so every comparison is tested at its edge.
        let rows = 1000 + 13;
        for n_features in [1, 3, 8, 9, 16] {
            for depth in 1..=6 {
                let e = random_ensemble(20, depth, n_features, 17 + u64::from(depth));
                assert!(
                    e.perfect.as_ref().is_some_and(|p| p.simd.is_some()),
                    "depth {depth}: the vector tables are built"
                );
                let thresholds: Vec<f32> = e
                    .trees
                    .iter()
                    .flatten()
                    .filter(|n| n.mode != Mode::Leaf)
                    .map(|n| n.threshold as f32)
                    .collect();
                let x: Vec<Vec<f64>> = (0..n_features)
                    .map(|f| {
                        (0..rows)
                            .map(|i| {
                                let k = i * 7919 + f * 104_729;
                                let t = thresholds[k % thresholds.len()];
                                f64::from([t, t.next_down(), t.next_up()][(k / 13) % 3])
                            })
                            .collect()
                    })
                    .collect();
                let cols: Vec<&[f64]> = x.iter().map(Vec::as_slice).collect();
                let mut acc = vec![0.0; rows];
                e.eval_generic(&cols, rows, &mut acc);
                let exact = e.finalize(&acc, rows);
                assert_eq!(
                    e.eval_with(None, &cols, rows),
                    exact,
                    "portable, depth {depth}"
                );
                for kernel in simd::Kernel::supported() {
                    let fast = e.eval_with(Some(kernel), &cols, rows);
                    assert_eq!(
                        fast, exact,
                        "{kernel:?}, depth {depth}, {n_features} features"
                    );
                }
            }
        }
    }

    #[test]
    fn a_cycle_or_a_shared_child_is_an_error_not_a_hang() {
        let err = TreeEnsemble::new(TreeAttributes {
            op: "TreeEnsembleRegressor",
            nodes_treeids: &[0, 0],
            nodes_nodeids: &[0, 1],
            nodes_featureids: &[0, 0],
            nodes_values: vec![0.0, 0.0],
            nodes_modes: vec!["BRANCH_LEQ".into(), "BRANCH_LEQ".into()],
            nodes_truenodeids: &[1, 0],
            nodes_falsenodeids: &[1, 1],
            nodes_missing_value_tracks_true: &[],
            leaf_treeids: &[],
            leaf_nodeids: &[],
            leaf_ids: &[],
            leaf_weights: vec![],
            base_values: vec![],
            post_transform: PostTransform::None,
            aggregate_function: "SUM".into(),
            n_outputs: 1,
            is_classifier: false,
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("tree 0 is not a tree"), "{err}");
    }

    #[test]
    fn missing_values_follow_the_missing_track() {
        let mut e = ensemble(["BRANCH_LEQ", "BRANCH_LEQ", "BRANCH_LEQ"]);
        // NaN fails every comparison: the false branches (leaf 2 of each tree).
        assert_eq!(e.eval(&[&[f64::NAN], &[f64::NAN]], 1), vec![vec![10001.5]]);
        for t in &mut e.trees {
            for n in t.iter_mut() {
                n.missing_true = true;
            }
        }
        // With the track set, NaN goes to the true branches: leaf 3 and leaf 1.
        assert_eq!(e.eval(&[&[f64::NAN], &[f64::NAN]], 1), vec![vec![1010.5]]);
    }
}
