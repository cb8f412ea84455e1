//! The AVX-512 kernel of perfect trees of depth ≤ 6 over ≤ 16 features with f32
//! splits and leaves, 16 rows at a time: a level's (≤ 32) split features and thresholds
//! are looked up with two-register permutes instead of loads, and the leaf (≤ 64) with
//! two permutes and a blend. A lane's feature value comes from the group's ≤ 8 feature
//! registers by four permutes and three blends (gathers are several times slower on
//! current Xeons), or with one gather from the 16-row block for 9 to 16 features.
//!
//! It is chosen at run time when the CPU has AVX-512F.

use std::arch::x86_64::*;

use super::tables::Tables;

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
    let consts = Consts::new();
    let few = n_features <= 8;
    // Block layout: group g of 16 rows, feature f, lane: [g][f][lane].
    let mut block = vec![0f32; BLOCK * n_features];
    let mut start = 0;
    while start < rows {
        let n = (rows - start).min(BLOCK);
        let groups = n / 16;
        fill_block(&mut block, x, n_features, start, groups);
        for t in 0..tables.n_trees {
            let feat = tables.feat.as_ptr().add(t * 6 * 32);
            let thr = tables.thr.as_ptr().add(t * 6 * 32);
            let lv = tables.leaves.as_ptr().add(t * 64);
            let leaves = [
                _mm512_loadu_ps(lv),
                _mm512_loadu_ps(lv.add(16)),
                _mm512_loadu_ps(lv.add(32)),
                _mm512_loadu_ps(lv.add(48)),
            ];
            for g in 0..groups {
                let base = block.as_ptr().add(g * n_features * 16);
                let pos = walk(&consts, depth, feat, thr, base, n_features, few);
                add_leaves(&consts, &leaves, pos, acc.as_mut_ptr().add(start + g * 16));
            }
        }
        start += n;
    }
}

/// The vector constants of the walk.
struct Consts {
    lanes: __m512i,
    one: __m512i,
    thirty_one: __m512i,
    sixteen: __m512i,
    thirty_two: __m512i,
    sixty_four: __m512i,
}

impl Consts {
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn new() -> Self {
        Consts {
            lanes: _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
            one: _mm512_set1_epi32(1),
            thirty_one: _mm512_set1_epi32(31),
            sixteen: _mm512_set1_epi32(16),
            thirty_two: _mm512_set1_epi32(32),
            sixty_four: _mm512_set1_epi32(64),
        }
    }
}

/// Copies `groups` groups of 16 rows from `start` into `block` as f32, laid out
/// `[group][feature][lane]`.
#[inline]
fn fill_block(block: &mut [f32], x: &[&[f64]], n_features: usize, start: usize, groups: usize) {
    for g in 0..groups {
        for (f, col) in x[..n_features].iter().enumerate() {
            for lane in 0..16 {
                block[(g * n_features + f) * 16 + lane] = col[start + g * 16 + lane] as f32;
            }
        }
    }
}

/// Walks one tree for the 16 rows of a group at `base`: each lane's leaf index.
///
/// # Safety
/// As [`eval`]; `feat` and `thr` point at the tree's 6 × 32 split tables.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn walk(
    c: &Consts,
    depth: usize,
    feat: *const i32,
    thr: *const f32,
    base: *const f32,
    n_features: usize,
    few: bool,
) -> __m512i {
    // Up to 8 features: the group's values in 8 registers, and a lane's value
    // picked with permutes and blends (no gather).
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
    // Levels 0 and 1 have one and two nodes: their features are loaded directly
    // and chosen with a blend.
    let v0 = _mm512_loadu_ps(base.add(*feat as usize));
    let r0 = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(v0, _mm512_set1_ps(*thr));
    let mut pos = _mm512_maskz_mov_epi32(r0, c.one);
    let mut first = 1;
    if depth >= 2 {
        let (f, h) = (feat.add(32), thr.add(32));
        let v = _mm512_mask_blend_ps(
            r0,
            _mm512_loadu_ps(base.add(*f as usize)),
            _mm512_loadu_ps(base.add(*f.add(1) as usize)),
        );
        let th = _mm512_mask_blend_ps(r0, _mm512_set1_ps(*h), _mm512_set1_ps(*h.add(1)));
        let r1 = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, th);
        let twice = _mm512_slli_epi32::<1>(pos);
        pos = _mm512_mask_add_epi32(twice, r1, twice, c.one);
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
        let th = _mm512_permutex2var_ps(_mm512_loadu_ps(h), pos, _mm512_loadu_ps(h.add(16)));
        let v = if few {
            // off = feature × 16: bit 4 picks within a pair of registers, bits 5
            // and 6 pick the pair.
            let idx = _mm512_or_si512(_mm512_and_si512(off, c.sixteen), c.lanes);
            let p01 = _mm512_permutex2var_ps(cols[0], idx, cols[1]);
            let p23 = _mm512_permutex2var_ps(cols[2], idx, cols[3]);
            let p45 = _mm512_permutex2var_ps(cols[4], idx, cols[5]);
            let p67 = _mm512_permutex2var_ps(cols[6], idx, cols[7]);
            let odd_pair = _mm512_test_epi32_mask(off, c.thirty_two);
            let upper_half = _mm512_test_epi32_mask(off, c.sixty_four);
            let low = _mm512_mask_blend_ps(odd_pair, p01, p23);
            let high = _mm512_mask_blend_ps(odd_pair, p45, p67);
            _mm512_mask_blend_ps(upper_half, low, high)
        } else {
            _mm512_i32gather_ps::<4>(_mm512_add_epi32(off, c.lanes), base)
        };
        let right = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, th);
        pos = _mm512_mask_add_epi32(
            _mm512_slli_epi32::<1>(pos),
            right,
            _mm512_slli_epi32::<1>(pos),
            c.one,
        );
    }
    pos
}

/// Adds each lane's leaf value (of the 64 in `leaves`) to the 16 scores at `a`.
///
/// # Safety
/// `a` points at 16 writable scores.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn add_leaves(c: &Consts, leaves: &[__m512; 4], pos: __m512i, a: *mut f64) {
    let low = _mm512_permutex2var_ps(leaves[0], pos, leaves[1]);
    let high = _mm512_permutex2var_ps(leaves[2], pos, leaves[3]);
    let upper = _mm512_cmpgt_epi32_mask(pos, c.thirty_one);
    let leaf = _mm512_mask_blend_ps(upper, low, high);
    let lo = _mm512_cvtps_pd(_mm512_castps512_ps256(leaf));
    let hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(
        _mm512_castps_pd(leaf),
    )));
    _mm512_storeu_pd(a, _mm512_add_pd(_mm512_loadu_pd(a), lo));
    _mm512_storeu_pd(a.add(8), _mm512_add_pd(_mm512_loadu_pd(a.add(8)), hi));
}
