//! The AVX2 kernel on floats of perfect trees of depth ≤ 6 over ≤ 16 features, 8 rows
//! at a time, over the same tables as the AVX-512 kernel: it scores the trees the
//! binned kernel ([`avx2_binned`](super::avx2_binned)) does not take (depth 1 or 2,
//! more than 8 features, or a feature with more distinct thresholds than a 16-bit bin
//! counts), and every tree when `QUERN_TREE_KERNEL=avx2-float` sets the bins aside.
//!
//! A step costs what its lookups cost, and cross-lane permutes are the dear part on
//! AVX2 (three µops on the first EPYCs), so the walk spends them only where they pay:
//! - levels 0 to 2 (≤ 4 nodes) compare the 8 rows with every node of the level (a
//!   load and a compare each, no lookup) and keep, per lane, the comparison of the
//!   node it is at, with blends on the bits of its position;
//! - levels 3 to 5 (8 to 32 nodes) look the lane's split feature and threshold up
//!   with `vpermps` (one per 8 nodes, blended), and its feature value among the
//!   group's ≤ 8 feature registers with three levels of blends (9 to 16 features: one
//!   gather from the block);
//! - leaves are not looked up in registers: each tree's leaf positions are stored and
//!   added to the rows' sums by a scalar pass, in f64 and in tree order as the
//!   portable walk adds them.
//!
//! Two groups of 8 rows are walked together so that the latency of one group's
//! lookups hides behind the other's.

use std::arch::x86_64::*;

use super::tables::Tables;

/// Rows per block: their features (≤ 16 × 512 floats) stay in L1.
const BLOCK: usize = 512;

/// Levels whose nodes are all compared (no lookup): see [`compared`].
const COMPARED_LEVELS: usize = 3;

/// # Safety
/// The CPU must support AVX2; `depth <= 6` (the tables' depth), `n_features <= 16`,
/// every column has at least `rows` values, `rows % 8 == 0`, `acc.len() >= rows`.
pub(super) unsafe fn eval(
    depth: usize,
    tables: &Tables,
    n_features: usize,
    x: &[&[f64]],
    rows: usize,
    acc: &mut [f64],
) {
    match (depth, n_features <= 8) {
        (1, true) => eval_depth::<1, true>(tables, n_features, x, rows, acc),
        (2, true) => eval_depth::<2, true>(tables, n_features, x, rows, acc),
        (3, true) => eval_depth::<3, true>(tables, n_features, x, rows, acc),
        (4, true) => eval_depth::<4, true>(tables, n_features, x, rows, acc),
        (5, true) => eval_depth::<5, true>(tables, n_features, x, rows, acc),
        (6, true) => eval_depth::<6, true>(tables, n_features, x, rows, acc),
        (1, false) => eval_depth::<1, false>(tables, n_features, x, rows, acc),
        (2, false) => eval_depth::<2, false>(tables, n_features, x, rows, acc),
        (3, false) => eval_depth::<3, false>(tables, n_features, x, rows, acc),
        (4, false) => eval_depth::<4, false>(tables, n_features, x, rows, acc),
        (5, false) => eval_depth::<5, false>(tables, n_features, x, rows, acc),
        (6, false) => eval_depth::<6, false>(tables, n_features, x, rows, acc),
        _ => unreachable!("the AVX2 kernel takes trees of depth 1 to 6"),
    }
}

/// # Safety
/// As [`eval`], with `FEW` meaning `n_features <= 8`.
#[target_feature(enable = "avx2")]
unsafe fn eval_depth<const D: usize, const FEW: bool>(
    tables: &Tables,
    n_features: usize,
    x: &[&[f64]],
    rows: usize,
    acc: &mut [f64],
) {
    // Block layout: group g of 8 rows, feature f, lane: [g][f][lane]; then 8 × 8
    // floats of padding, so the last group's 8 feature registers can always be loaded.
    let mut block = vec![0f32; BLOCK * n_features + 64];
    let mut leaf = vec![0u32; BLOCK];
    let mut start = 0;
    while start < rows {
        let n = (rows - start).min(BLOCK);
        let groups = n / 8;
        fill_block(&mut block, x, n_features, start, groups);
        let sums = &mut acc[start..start + n];
        for t in 0..tables.n_trees {
            let feat = tables.feat.as_ptr().add(t * 6 * 32);
            let thr = tables.thr.as_ptr().add(t * 6 * 32);
            let mut g = 0;
            while g < groups {
                let at = block.as_ptr().add(g * n_features * 8);
                // Two groups together, or the last one alone.
                if g + 2 <= groups {
                    let bases = [at, at.add(n_features * 8)];
                    let pos = walk::<D, FEW, 2>(feat, thr, bases);
                    _mm256_storeu_si256(leaf.as_mut_ptr().add(g * 8).cast(), pos[0]);
                    _mm256_storeu_si256(leaf.as_mut_ptr().add(g * 8 + 8).cast(), pos[1]);
                    g += 2;
                } else {
                    let pos = walk::<D, FEW, 1>(feat, thr, [at]);
                    _mm256_storeu_si256(leaf.as_mut_ptr().add(g * 8).cast(), pos[0]);
                    g += 1;
                }
            }
            let leaves = &tables.leaves[t * 64..t * 64 + 64];
            for (sum, l) in sums.iter_mut().zip(&leaf[..n]) {
                // A position is below 64; the mask spares the bounds check.
                *sum += f64::from(leaves[*l as usize & 63]);
            }
        }
        start += n;
    }
}

/// Copies `groups` groups of 8 rows from `start` into `block` as f32, laid out
/// `[group][feature][lane]`.
#[inline]
fn fill_block(block: &mut [f32], x: &[&[f64]], n_features: usize, start: usize, groups: usize) {
    for g in 0..groups {
        for (f, col) in x[..n_features].iter().enumerate() {
            let from = &col[start + g * 8..start + g * 8 + 8];
            let to = &mut block[(g * n_features + f) * 8..(g * n_features + f) * 8 + 8];
            for (t, v) in to.iter_mut().zip(from) {
                *t = *v as f32;
            }
        }
    }
}

/// The sign bits of `v`, as a blend mask.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn mask(v: __m256i) -> __m256 {
    _mm256_castsi256_ps(v)
}

/// Walks one tree for the `G` groups of 8 rows at `bases`, level by level across the
/// groups: each lane's leaf position (0 to 2^D - 1).
///
/// # Safety
/// As [`eval`]; `feat` and `thr` point at the tree's 6 × 32 split tables.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn walk<const D: usize, const FEW: bool, const G: usize>(
    feat: *const i32,
    thr: *const f32,
    bases: [*const f32; G],
) -> [__m256i; G] {
    let mut pos = [_mm256_setzero_si256(); G];
    for (p, base) in pos.iter_mut().zip(bases) {
        *p = compared::<D>(feat, thr, base);
    }
    if D <= COMPARED_LEVELS {
        return pos;
    }
    // All 8 registers are loaded (past the group's features when it has fewer: the
    // next group's, or the block's padding); a lane only picks a feature it has.
    let mut cols = [[_mm256_setzero_ps(); 8]; G];
    if FEW {
        for (group, base) in cols.iter_mut().zip(bases) {
            for (f, c) in group.iter_mut().enumerate() {
                *c = _mm256_loadu_ps(base.add(f * 8));
            }
        }
    }
    let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for level in COMPARED_LEVELS..D {
        let (f, h) = (feat.add(level * 32), thr.add(level * 32));
        for k in 0..G {
            let off = _mm256_castps_si256(lookup(level, f.cast(), pos[k]));
            let th = lookup(level, h, pos[k]);
            let v = if FEW {
                pick(&cols[k], off)
            } else {
                let idx = _mm256_add_epi32(_mm256_srli_epi32::<1>(off), lanes);
                _mm256_i32gather_ps::<4>(bases[k], idx)
            };
            let right = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_GT_OQ>(v, th));
            pos[k] = _mm256_sub_epi32(_mm256_add_epi32(pos[k], pos[k]), right);
        }
    }
    pos
}

/// Each lane's value of its feature among 8 feature registers: `off` is the feature
/// × 16, so its bits 4, 5 and 6 are the feature's three bits.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn pick(c: &[__m256; 8], off: __m256i) -> __m256 {
    let b0 = mask(_mm256_slli_epi32::<27>(off));
    let b1 = mask(_mm256_slli_epi32::<26>(off));
    let low = _mm256_blendv_ps(
        _mm256_blendv_ps(c[0], c[1], b0),
        _mm256_blendv_ps(c[2], c[3], b0),
        b1,
    );
    let high = _mm256_blendv_ps(
        _mm256_blendv_ps(c[4], c[5], b0),
        _mm256_blendv_ps(c[6], c[7], b0),
        b1,
    );
    _mm256_blendv_ps(low, high, mask(_mm256_slli_epi32::<25>(off)))
}

/// Each lane's entry `pos` of the level's table at `tab` (2^level ≤ 32 entries).
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn lookup(level: usize, tab: *const f32, pos: __m256i) -> __m256 {
    match level {
        0..=3 => part(tab, pos),
        4 => _mm256_blendv_ps(
            part(tab, pos),
            part(tab.add(8), pos),
            mask(_mm256_slli_epi32::<28>(pos)),
        ),
        _ => {
            let b3 = mask(_mm256_slli_epi32::<28>(pos));
            let low = _mm256_blendv_ps(part(tab, pos), part(tab.add(8), pos), b3);
            let high = _mm256_blendv_ps(part(tab.add(16), pos), part(tab.add(24), pos), b3);
            _mm256_blendv_ps(low, high, mask(_mm256_slli_epi32::<27>(pos)))
        }
    }
}

/// Each lane's entry `pos % 8` of the 8 at `tab`.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn part(tab: *const f32, pos: __m256i) -> __m256 {
    _mm256_permutevar8x32_ps(_mm256_loadu_ps(tab), pos)
}

/// Levels 0 to 2 (at most D) of one group: every node of a level compared, and per
/// lane the comparison of its node kept.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn compared<const D: usize>(feat: *const i32, thr: *const f32, base: *const f32) -> __m256i {
    let right = |level: usize, j: usize| {
        let column = _mm256_loadu_ps(base.add(*feat.add(level * 32 + j) as usize / 2));
        _mm256_cmp_ps::<_CMP_GT_OQ>(column, _mm256_set1_ps(*thr.add(level * 32 + j)))
    };
    // A true comparison is all ones (-1): pos = 2 pos + 1 when the row goes right.
    let step = |pos: __m256i, taken: __m256| {
        _mm256_sub_epi32(_mm256_add_epi32(pos, pos), _mm256_castps_si256(taken))
    };
    let mut pos = step(_mm256_setzero_si256(), right(0, 0));
    if D >= 2 {
        let b0 = mask(_mm256_slli_epi32::<31>(pos));
        pos = step(pos, _mm256_blendv_ps(right(1, 0), right(1, 1), b0));
    }
    if D >= 3 {
        let b0 = mask(_mm256_slli_epi32::<31>(pos));
        let b1 = mask(_mm256_slli_epi32::<30>(pos));
        let low = _mm256_blendv_ps(right(2, 0), right(2, 1), b0);
        let high = _mm256_blendv_ps(right(2, 2), right(2, 3), b0);
        pos = step(pos, _mm256_blendv_ps(low, high, b1));
    }
    pos
}
