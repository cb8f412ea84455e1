//! The portable walk of perfect trees: blocks of rows that stay in L1, walked level
//! by level so the steps of neighbouring rows overlap.

use super::layout::Perfect;

/// Rows evaluated together per tree: 512 rows × 8 features × 8 bytes stay in L1.
const BLOCK: usize = 512;

/// Rows `from..rows` with `k` outputs per row: the portable hot loop of tree scoring
/// (the rows the SIMD kernel did not take).
pub(super) fn eval_perfect(
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
