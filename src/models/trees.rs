//! `TreeEnsembleRegressor` and `TreeEnsembleClassifier` (ONNX-ML), evaluated over
//! column-major batches.
//!
//! Every tree is first read into a generic node list that follows the operator's
//! semantics exactly (all six branch modes, `nodes_missing_value_tracks_true`, the four
//! aggregate functions). When the trees only use ordered comparisons, are at most
//! [`MAX_PERFECT_DEPTH`] deep and are summed or averaged (what scikit-learn, LightGBM and
//! XGBoost exporters produce), they are also laid out as *perfect* binary trees: a short
//! leaf is replicated down to the full depth and every comparison is rewritten as
//! `x <= t`. A row then walks a tree with a fixed number of branch-free steps
//! (`i = 2i + 1 + (x > t)`), trees are evaluated one at a time over blocks of rows that
//! stay in the L1 cache, and the CPU overlaps the walks of neighbouring rows. A batch
//! holding NaN takes the generic walk, which honours the missing-value tracks.

use super::ops::{logistic, PostTransform};

/// Deepest tree laid out as a perfect tree (2^12 leaves).
const MAX_PERFECT_DEPTH: usize = 12;
/// Rows evaluated together per tree: 512 rows × 8 features × 8 bytes stay in L1.
const BLOCK: usize = 512;

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

/// Trees laid out as perfect binary trees in heap order.
#[derive(Debug, Clone)]
struct Perfect {
    depth: usize,
    /// Per tree, `2^depth - 1` split features and thresholds (`x <= t` goes left).
    features: Vec<u32>,
    thresholds: Vec<f64>,
    /// Per tree, `2^depth` leaves × `n_outputs` values.
    leaves: Vec<f64>,
    /// The single-precision tables of the SIMD kernel, built once here, when the trees
    /// are at most 6 deep with one output and every split and leaf value is exactly a
    /// float (as ONNX's `nodes_values` and weights are).
    simd: Option<simd::Tables>,
}

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

impl TreeEnsemble {
    /// Reads the node and leaf tables; errors name the inconsistency.
    pub(crate) fn new(a: TreeAttributes<'_>) -> Result<Self, String> {
        let n = a.nodes_nodeids.len();
        let lens = [
            a.nodes_treeids.len(),
            a.nodes_featureids.len(),
            a.nodes_values.len(),
            a.nodes_modes.len(),
            a.nodes_truenodeids.len(),
            a.nodes_falsenodeids.len(),
        ];
        if lens.iter().any(|l| *l != n) {
            return Err(format!("{}: the nodes_* attributes differ in length", a.op));
        }
        if a.leaf_nodeids.len() != a.leaf_treeids.len()
            || a.leaf_ids.len() != a.leaf_treeids.len()
            || a.leaf_weights.len() != a.leaf_treeids.len()
        {
            return Err(format!(
                "{}: the leaf weight attributes differ in length",
                a.op
            ));
        }
        let aggregate = match a.aggregate_function.as_str() {
            "" | "SUM" => Aggregate::Sum,
            "AVERAGE" => Aggregate::Average,
            "MIN" => Aggregate::Min,
            "MAX" => Aggregate::Max,
            other => return Err(format!("{}: unknown aggregate_function {other}", a.op)),
        };
        // Tree ids in order of first appearance; node ids index within their tree.
        let mut tree_index = std::collections::BTreeMap::new();
        for t in a.nodes_treeids {
            let next = tree_index.len();
            tree_index.entry(*t).or_insert(next);
        }
        let mut sizes = vec![0usize; tree_index.len()];
        for (t, id) in a.nodes_treeids.iter().zip(a.nodes_nodeids) {
            let s = &mut sizes[tree_index[t]];
            *s = (*s)
                .max(usize::try_from(*id).map_err(|_| format!("{}: negative node id", a.op))? + 1);
        }
        let mut trees: Vec<Vec<Option<Node>>> = sizes.iter().map(|s| vec![None; *s]).collect();
        let mut max_feature = 0usize;
        for i in 0..n {
            let mode = match a.nodes_modes[i].as_str() {
                "BRANCH_LEQ" => Mode::Leq,
                "BRANCH_LT" => Mode::Lt,
                "BRANCH_GTE" => Mode::Gte,
                "BRANCH_GT" => Mode::Gt,
                "BRANCH_EQ" => Mode::Eq,
                "BRANCH_NEQ" => Mode::Neq,
                "LEAF" => Mode::Leaf,
                other => return Err(format!("{}: unknown node mode {other}", a.op)),
            };
            let tree = tree_index[&a.nodes_treeids[i]];
            let feature = usize::try_from(a.nodes_featureids[i]).unwrap_or(0);
            if mode != Mode::Leaf {
                max_feature = max_feature.max(feature);
            }
            let child = |v: i64| usize::try_from(v).unwrap_or(usize::MAX);
            trees[tree][a.nodes_nodeids[i] as usize] = Some(Node {
                feature,
                threshold: a.nodes_values[i],
                mode,
                missing_true: a
                    .nodes_missing_value_tracks_true
                    .get(i)
                    .is_some_and(|v| *v != 0),
                true_child: child(a.nodes_truenodeids[i]),
                false_child: child(a.nodes_falsenodeids[i]),
                weights: 0..0,
            });
        }
        // Leaf weights, grouped per leaf.
        let mut order: Vec<usize> = (0..a.leaf_treeids.len()).collect();
        order.sort_by_key(|&i| (a.leaf_treeids[i], a.leaf_nodeids[i]));
        let mut weights = Vec::with_capacity(order.len());
        let mut used = vec![false; a.n_outputs.max(1)];
        let mut all_positive = true;
        let mut k = 0;
        while k < order.len() {
            let (t, id) = (a.leaf_treeids[order[k]], a.leaf_nodeids[order[k]]);
            let start = weights.len();
            while k < order.len() && (a.leaf_treeids[order[k]], a.leaf_nodeids[order[k]]) == (t, id)
            {
                let i = order[k];
                let target = usize::try_from(a.leaf_ids[i])
                    .ok()
                    .filter(|c| *c < a.n_outputs);
                let Some(target) = target else {
                    return Err(format!(
                        "{}: leaf weight for output {} of {}",
                        a.op, a.leaf_ids[i], a.n_outputs
                    ));
                };
                used[target] = true;
                all_positive &= a.leaf_weights[i] >= 0.0;
                weights.push((target, a.leaf_weights[i]));
                k += 1;
            }
            let node = tree_index
                .get(&t)
                .and_then(|ti| trees[*ti].get_mut(id as usize))
                .and_then(Option::as_mut)
                .ok_or_else(|| {
                    format!(
                        "{}: a weight for tree {t} node {id}, which does not exist",
                        a.op
                    )
                })?;
            node.weights = start..weights.len();
        }
        let mut checked = Vec::with_capacity(trees.len());
        for (t, nodes) in trees.into_iter().enumerate() {
            let nodes: Vec<Node> = nodes
                .into_iter()
                .enumerate()
                .map(|(i, n)| n.ok_or_else(|| format!("{}: tree {t} has no node {i}", a.op)))
                .collect::<Result<_, _>>()?;
            for node in &nodes {
                if node.mode != Mode::Leaf
                    && (node.true_child >= nodes.len() || node.false_child >= nodes.len())
                {
                    return Err(format!(
                        "{}: tree {t} points at a node it does not have",
                        a.op
                    ));
                }
            }
            if depth(&nodes).is_none() {
                return Err(format!(
                    "{}: tree {t} is not a tree (a node is reached twice)",
                    a.op
                ));
            }
            checked.push(nodes);
        }
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
                return Err(format!(
                    "{}: post_transform PROBIT on a binary single-score ensemble is not supported",
                    a.op
                ));
            }
        }
        ensemble.perfect = ensemble.lay_out_perfect();
        Ok(ensemble)
    }

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
            p.simd = Some(simd::Tables::new(&p, &t32, self.trees.len()));
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

    /// Evaluates the ensemble on `rows` rows of column-major `x` (at least
    /// [`n_features`](Self::n_features) columns); returns the output columns.
    pub(crate) fn eval(&self, x: &[&[f64]], rows: usize) -> Vec<Vec<f64>> {
        let k = self.n_outputs;
        let mut acc = vec![0.0f64; rows * k];
        let has_nan = x[..self.n_features]
            .iter()
            .any(|c| c[..rows].iter().any(|v| v.is_nan()));
        match &self.perfect {
            Some(p) if !has_nan => {
                // The SIMD kernel takes what it can (single-output layouts only).
                let done = simd::eval(p, self.n_features, x, rows, &mut acc);
                eval_perfect(p, self.trees.len(), k, x, done, rows, &mut acc);
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
        let mut out = vec![vec![0.0; rows]; width];
        let mut scores = vec![0.0; width];
        for i in 0..rows {
            let raw = &acc[i * k..(i + 1) * k];
            match &self.classifier {
                Some(c) if c.n_labels == 2 && c.single_score => {
                    let s = raw[0] + self.base_values.first().copied().unwrap_or(0.0);
                    let (p0, p1) = if c.weights_all_positive {
                        (1.0 - s, s)
                    } else if self.post == PostTransform::Logistic {
                        (logistic(-s), logistic(s))
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

/// Rows `from..rows` with `k` outputs per row: the portable hot loop of tree scoring
/// (the rows the SIMD kernel did not take).
fn eval_perfect(
    p: &Perfect,
    n_trees: usize,
    k: usize,
    x: &[&[f64]],
    from: usize,
    rows: usize,
    acc: &mut [f64],
) {
    let inner = (1usize << p.depth) - 1;
    let n_leaves = inner + 1;
    let mut block = Vec::with_capacity(BLOCK * x.len());
    let mut idx = vec![0u32; BLOCK];
    let mut start = from;
    while start < rows {
        let end = (start + BLOCK).min(rows);
        copy_block(x, start, end, &mut block);
        let out = &mut acc[start * k..end * k];
        for t in 0..n_trees {
            let features = &p.features[t * inner..(t + 1) * inner];
            let thresholds = &p.thresholds[t * inner..(t + 1) * inner];
            let leaves = &p.leaves[t * n_leaves * k..(t + 1) * n_leaves * k];
            walk_block(p.depth, features, thresholds, &block, end - start, &mut idx);
            let reached = idx[..end - start].iter().map(|leaf| *leaf as usize - inner);
            if k == 1 {
                for (o, leaf) in out.iter_mut().zip(reached) {
                    *o += leaves[leaf];
                }
            } else {
                for (row, leaf) in out.chunks_exact_mut(k).zip(reached) {
                    for (o, l) in row.iter_mut().zip(&leaves[leaf * k..(leaf + 1) * k]) {
                        *o += l;
                    }
                }
            }
        }
        start = end;
    }
}

/// Rows `start..end` of every column, feature after feature, into `block`.
fn copy_block(x: &[&[f64]], start: usize, end: usize, block: &mut Vec<f64>) {
    block.clear();
    for c in x {
        block.extend_from_slice(&c[start..end]);
    }
}

/// Walks one perfect tree for the `rows` rows of `block` (feature-major, `rows` values
/// per feature) level by level: every row takes one step before any takes the next,
/// so the steps of different rows are independent and the CPU overlaps them. Leaves
/// the heap index of each row's leaf in `idx`.
#[inline(always)]
fn walk_block(
    depth: usize,
    features: &[u32],
    thresholds: &[f64],
    block: &[f64],
    rows: usize,
    idx: &mut [u32],
) {
    let idx = &mut idx[..rows];
    // The root is the same node for every row: a plain sweep over one column.
    let f0 = features[0] as usize;
    let (column, t0) = (&block[f0 * rows..(f0 + 1) * rows], thresholds[0]);
    for (i, v) in idx.iter_mut().zip(column) {
        *i = 1 + u32::from(*v > t0);
    }
    for _ in 1..depth {
        for (row, i) in idx.iter_mut().enumerate() {
            let node = *i as usize;
            let f = features[node] as usize;
            let right = block[f * rows + row] > thresholds[node];
            *i = (2 * node + 1 + usize::from(right)) as u32;
        }
    }
}

/// Perfect trees of depth ≤ 6 over ≤ 16 features with f32 splits and leaves, 16 rows
/// at a time with AVX-512: a level's (≤ 32) split features and thresholds are looked
/// up with two-register permutes instead of loads, and the leaf (≤ 64) with two
/// permutes and a blend. A lane's feature value comes from the group's ≤ 8 feature
/// registers by four permutes and three blends (gathers are several times slower on
/// current Xeons), or with one gather from the 16-row block for 9 to 16 features.
mod simd {
    use super::Perfect;

    /// Per tree: for each of 6 levels, 32 split offsets (feature × 16) and 32
    /// thresholds; then 64 leaves.
    #[derive(Debug, Clone)]
    pub(super) struct Tables {
        n_trees: usize,
        feat: Vec<i32>,
        thr: Vec<f32>,
        leaves: Vec<f32>,
    }

    impl Tables {
        /// From a layout of depth ≤ 6 with one output, and its f32 thresholds.
        pub(super) fn new(p: &Perfect, t32: &[f32], n_trees: usize) -> Self {
            let inner = (1usize << p.depth) - 1;
            let mut feat = vec![0i32; n_trees * 6 * 32];
            let mut thr = vec![f32::INFINITY; n_trees * 6 * 32];
            let mut leaves = vec![0f32; n_trees * 64];
            for t in 0..n_trees {
                for level in 0..p.depth {
                    let first = (1usize << level) - 1;
                    for j in 0..(1usize << level) {
                        feat[(t * 6 + level) * 32 + j] =
                            (p.features[t * inner + first + j] * 16) as i32;
                        thr[(t * 6 + level) * 32 + j] = t32[t * inner + first + j];
                    }
                }
                for j in 0..=inner {
                    leaves[t * 64 + j] = p.leaves[t * (inner + 1) + j] as f32;
                }
            }
            Tables {
                n_trees,
                feat,
                thr,
                leaves,
            }
        }
    }

    /// Scores the leading multiple of 16 rows when the CPU and the model allow it;
    /// returns how many rows it scored (0 when it cannot).
    pub(super) fn eval(
        p: &Perfect,
        n_features: usize,
        x: &[&[f64]],
        rows: usize,
        acc: &mut [f64],
    ) -> usize {
        #[cfg(target_arch = "x86_64")]
        {
            let Some(tables) = p.simd.as_ref() else {
                return 0;
            };
            // QUERN_PORTABLE_TREES=1 turns the kernel off, to measure the portable walk.
            static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
            let enabled = *ENABLED.get_or_init(|| {
                std::arch::is_x86_feature_detected!("avx512f")
                    && std::env::var_os("QUERN_PORTABLE_TREES").is_none()
            });
            let usable = n_features <= 16
                && enabled
                // The features must be floats too, as they are for a float input.
                && x[..n_features]
                    .iter()
                    .all(|c| c[..rows].iter().all(|v| f64::from(*v as f32) == *v));
            if !usable {
                return 0;
            }
            let rows16 = rows - rows % 16;
            // SAFETY: avx512f was detected above; the kernel's preconditions (depth,
            // feature count, table sizes) were checked here and by the layout.
            unsafe { avx512::eval(p.depth, tables, n_features, x, rows16, acc) };
            rows16
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (p, n_features, x, rows, acc);
            0
        }
    }

    #[cfg(target_arch = "x86_64")]
    mod avx512 {
        use std::arch::x86_64::*;

        use super::Tables;

        /// Rows per block: their features (≤ 16 × 512 floats) stay in L1.
        const BLOCK: usize = 512;

        /// # Safety
        /// The CPU must support AVX-512F; `depth <= 6` (the tables' depth),
        /// `n_features <= 16`, every column has at least `rows` values,
        /// `rows % 16 == 0`, `acc.len() >= rows`.
        #[target_feature(enable = "avx512f")]
        pub(super) unsafe fn eval(
            depth: usize,
            tables: &Tables,
            n_features: usize,
            x: &[&[f64]],
            rows: usize,
            acc: &mut [f64],
        ) {
            let lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
            let one = _mm512_set1_epi32(1);
            let thirty_one = _mm512_set1_epi32(31);
            let (sixteen, thirty_two, sixty_four) = (
                _mm512_set1_epi32(16),
                _mm512_set1_epi32(32),
                _mm512_set1_epi32(64),
            );
            let few = n_features <= 8;
            // Block layout: group g of 16 rows, feature f, lane: [g][f][lane].
            let mut block = vec![0f32; BLOCK * n_features];
            let mut start = 0;
            while start < rows {
                let n = (rows - start).min(BLOCK);
                let groups = n / 16;
                for g in 0..groups {
                    for (f, col) in x[..n_features].iter().enumerate() {
                        for lane in 0..16 {
                            block[(g * n_features + f) * 16 + lane] =
                                col[start + g * 16 + lane] as f32;
                        }
                    }
                }
                for t in 0..tables.n_trees {
                    let feat = tables.feat.as_ptr().add(t * 6 * 32);
                    let thr = tables.thr.as_ptr().add(t * 6 * 32);
                    let lv = tables.leaves.as_ptr().add(t * 64);
                    let (l0, l1, l2, l3) = (
                        _mm512_loadu_ps(lv),
                        _mm512_loadu_ps(lv.add(16)),
                        _mm512_loadu_ps(lv.add(32)),
                        _mm512_loadu_ps(lv.add(48)),
                    );
                    for g in 0..groups {
                        let base = block.as_ptr().add(g * n_features * 16);
                        // Up to 8 features: the group's values in 8 registers, and a
                        // lane's value picked with permutes and blends (no gather).
                        let column = |f: usize| {
                            if f < n_features {
                                _mm512_loadu_ps(base.add(f * 16))
                            } else {
                                _mm512_setzero_ps()
                            }
                        };
                        let cols = if few {
                            [
                                column(0),
                                column(1),
                                column(2),
                                column(3),
                                column(4),
                                column(5),
                                column(6),
                                column(7),
                            ]
                        } else {
                            [_mm512_setzero_ps(); 8]
                        };
                        // Levels 0 and 1 have one and two nodes: their features are
                        // loaded directly and chosen with a blend.
                        let v0 = _mm512_loadu_ps(base.add(*feat as usize));
                        let r0 = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(v0, _mm512_set1_ps(*thr));
                        let mut pos = _mm512_maskz_mov_epi32(r0, one);
                        let mut first = 1;
                        if depth >= 2 {
                            let (f, h) = (feat.add(32), thr.add(32));
                            let v = _mm512_mask_blend_ps(
                                r0,
                                _mm512_loadu_ps(base.add(*f as usize)),
                                _mm512_loadu_ps(base.add(*f.add(1) as usize)),
                            );
                            let th = _mm512_mask_blend_ps(
                                r0,
                                _mm512_set1_ps(*h),
                                _mm512_set1_ps(*h.add(1)),
                            );
                            let r1 = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, th);
                            let twice = _mm512_slli_epi32::<1>(pos);
                            pos = _mm512_mask_add_epi32(twice, r1, twice, one);
                            first = 2;
                        }
                        for level in first..depth {
                            let f = feat.add(level * 32);
                            let h = thr.add(level * 32);
                            let off = _mm512_permutex2var_epi32(
                                _mm512_loadu_si512(f.cast()),
                                pos,
                                _mm512_loadu_si512(f.add(16).cast()),
                            );
                            let th = _mm512_permutex2var_ps(
                                _mm512_loadu_ps(h),
                                pos,
                                _mm512_loadu_ps(h.add(16)),
                            );
                            let v = if few {
                                // off = feature × 16: bit 4 picks within a pair of
                                // registers, bits 5 and 6 pick the pair.
                                let idx = _mm512_or_si512(_mm512_and_si512(off, sixteen), lanes);
                                let p01 = _mm512_permutex2var_ps(cols[0], idx, cols[1]);
                                let p23 = _mm512_permutex2var_ps(cols[2], idx, cols[3]);
                                let p45 = _mm512_permutex2var_ps(cols[4], idx, cols[5]);
                                let p67 = _mm512_permutex2var_ps(cols[6], idx, cols[7]);
                                let odd_pair = _mm512_test_epi32_mask(off, thirty_two);
                                let upper_half = _mm512_test_epi32_mask(off, sixty_four);
                                let low = _mm512_mask_blend_ps(odd_pair, p01, p23);
                                let high = _mm512_mask_blend_ps(odd_pair, p45, p67);
                                _mm512_mask_blend_ps(upper_half, low, high)
                            } else {
                                _mm512_i32gather_ps::<4>(_mm512_add_epi32(off, lanes), base)
                            };
                            let right = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, th);
                            pos = _mm512_mask_add_epi32(
                                _mm512_slli_epi32::<1>(pos),
                                right,
                                _mm512_slli_epi32::<1>(pos),
                                one,
                            );
                        }
                        let low = _mm512_permutex2var_ps(l0, pos, l1);
                        let high = _mm512_permutex2var_ps(l2, pos, l3);
                        let upper = _mm512_cmpgt_epi32_mask(pos, thirty_one);
                        let leaf = _mm512_mask_blend_ps(upper, low, high);
                        let a = acc.as_mut_ptr().add(start + g * 16);
                        let lo = _mm512_cvtps_pd(_mm512_castps512_ps256(leaf));
                        let hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(
                            _mm512_castps_pd(leaf),
                        )));
                        _mm512_storeu_pd(a, _mm512_add_pd(_mm512_loadu_pd(a), lo));
                        _mm512_storeu_pd(a.add(8), _mm512_add_pd(_mm512_loadu_pd(a.add(8)), hi));
                    }
                }
                start += n;
            }
        }
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
    fn the_simd_kernel_agrees_with_the_node_walk_on_float_inputs() {
        // Float-exact values at, just below and just above each threshold, 16k rows so
        // that whole 16-row groups go through the vector kernel where the CPU has it.
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
            let fast = e.eval(&[&f0, &f1], rows);
            let mut acc = vec![0.0; rows];
            e.eval_generic(&[&f0, &f1], rows, &mut acc);
            assert_eq!(fast, e.finalize(&acc, rows), "{modes:?}");
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
        .unwrap_err();
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
