//! The tables the vector kernels read: a perfect tree of depth ≤ 6 with one output,
//! its splits and leaves as f32, padded to 6 levels of 32 splits and 64 leaves so that
//! every kernel can index them without bounds checks.

/// Per tree: for each of 6 levels, 32 split offsets (feature × 16) and 32
/// thresholds; then 64 leaves.
#[derive(Debug, Clone)]
pub(super) struct Tables {
    pub(super) n_trees: usize,
    pub(super) feat: Vec<i32>,
    pub(super) thr: Vec<f32>,
    pub(super) leaves: Vec<f32>,
}

impl Tables {
    /// From a perfect-tree layout of depth ≤ 6 with one output (its split features
    /// and leaves), and its f32 thresholds.
    pub(super) fn new(
        depth: usize,
        features: &[u32],
        leaves_f64: &[f64],
        t32: &[f32],
        n_trees: usize,
    ) -> Self {
        let inner = (1usize << depth) - 1;
        let mut feat = vec![0i32; n_trees * 6 * 32];
        let mut thr = vec![f32::INFINITY; n_trees * 6 * 32];
        let mut leaves = vec![0f32; n_trees * 64];
        for t in 0..n_trees {
            for level in 0..depth {
                let first = (1usize << level) - 1;
                for j in 0..(1usize << level) {
                    feat[(t * 6 + level) * 32 + j] = (features[t * inner + first + j] * 16) as i32;
                    thr[(t * 6 + level) * 32 + j] = t32[t * inner + first + j];
                }
            }
            for j in 0..=inner {
                leaves[t * 64 + j] = leaves_f64[t * (inner + 1) + j] as f32;
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
