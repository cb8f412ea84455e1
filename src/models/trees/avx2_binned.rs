//! The AVX2 kernel of perfect trees of depth 3 to 6 over ≤ 8 features, on bins
//! ([`Bins`]) instead of floats: a row's features become 16-bit bins once per block,
//! and the walk compares them with the splits' cut indices, 16 rows per vector where
//! the float kernel ([`avx2`](super::avx2)) takes 8.
//!
//! Sixteen-bit lanes also make the lookups cheap on AVX2, whose cross-lane permutes
//! are the dear part of the float kernel:
//! - levels 0 to 2 compare the 16 rows with every node of the level and keep, per lane,
//!   the comparison of its node, chosen by the earlier comparisons (whole-lane masks);
//! - levels 3 to 5 look a lane's split up in byte shuffles (`vpshufb`) of 8-entry
//!   tables, blended on the position's bits 3 and 4, and its feature's bin among the
//!   group's 8 feature registers with three levels of byte blends on the bits of the
//!   feature code;
//! - leaves are added by a scalar pass, in f64 and in tree order, as the portable walk
//!   adds them, so the sums are the same bit for bit.
//!
//! Two groups of 16 rows are walked together so that the latency of one group's
//! lookups hides behind the other's.

use std::arch::x86_64::*;

use super::bins::{self, Bins, Splits, GROUP, LANES, MAX_FEATURES};
use super::tables::Tables;

/// Levels whose nodes are all compared (no lookup): see [`compared`].
const COMPARED_LEVELS: usize = 3;

/// # Safety
/// The CPU must support AVX2; `3 <= depth <= 6` (the tables' depth), `bins` are the
/// bins of `tables`, `x` has a column for each of the bins' features with at least
/// `rows` float-exact values, `rows % 16 == 0` and `acc.len() >= rows`.
pub(super) unsafe fn eval(
    depth: usize,
    tables: &Tables,
    bins: &Bins,
    x: &[&[f64]],
    rows: usize,
    acc: &mut [f64],
) {
    match depth {
        3 => eval_depth::<3>(tables, bins, x, rows, acc),
        4 => eval_depth::<4>(tables, bins, x, rows, acc),
        5 => eval_depth::<5>(tables, bins, x, rows, acc),
        6 => eval_depth::<6>(tables, bins, x, rows, acc),
        _ => unreachable!("the binned AVX2 kernel takes trees of depth 3 to 6"),
    }
}

/// # Safety
/// As [`eval`].
#[target_feature(enable = "avx2")]
unsafe fn eval_depth<const D: usize>(
    tables: &Tables,
    bins: &Bins,
    x: &[&[f64]],
    rows: usize,
    acc: &mut [f64],
) {
    bins::score(tables, bins, x, rows, acc, |splits, at, out, two| {
        if two {
            let pos = walk::<D, 2>(splits, [at, at.add(GROUP)]);
            _mm256_storeu_si256(out.cast(), pos[0]);
            _mm256_storeu_si256(out.add(LANES).cast(), pos[1]);
        } else {
            let pos = walk::<D, 1>(splits, [at]);
            _mm256_storeu_si256(out.cast(), pos[0]);
        }
    });
}

/// Walks one tree for the `G` groups of 16 rows at `bases`, level by level across the
/// groups: each lane's leaf position (0 to 2^D - 1).
///
/// # Safety
/// As [`eval`].
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn walk<const D: usize, const G: usize>(
    splits: Splits,
    bases: [*const i16; G],
) -> [__m256i; G] {
    let mut pos = [_mm256_setzero_si256(); G];
    for (p, base) in pos.iter_mut().zip(bases) {
        *p = compared(splits, base);
    }
    if D <= COMPARED_LEVELS {
        return pos;
    }
    let mut cols = [[_mm256_setzero_si256(); MAX_FEATURES]; G];
    for (group, base) in cols.iter_mut().zip(bases) {
        for (f, c) in group.iter_mut().enumerate() {
            *c = _mm256_loadu_si256(base.add(f * LANES).cast());
        }
    }
    // A position p as shuffle indices: bytes 2p and 2p + 1, the bytes of entry p.
    let spread = _mm256_set1_epi16(0x0202);
    let odd = _mm256_set1_epi16(0x0100);
    for level in COMPARED_LEVELS..D {
        let (c, k) = (splits.code.add(level * 32), splits.cut.add(level * 32));
        for g in 0..G {
            let index = _mm256_add_epi16(_mm256_mullo_epi16(pos[g], spread), odd);
            let v = pick(&cols[g], lookup(level, c, index));
            let right = _mm256_cmpgt_epi16(v, lookup(level, k, index));
            // A true comparison is all ones (-1): pos = 2 pos + 1 when the row goes right.
            pos[g] = _mm256_sub_epi16(_mm256_add_epi16(pos[g], pos[g]), right);
        }
    }
    pos
}

/// Each lane's bin of its feature among the 8 feature registers, by its feature code
/// `f × 0x1010` (see [`Bins::code`]).
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn pick(c: &[__m256i; MAX_FEATURES], code: __m256i) -> __m256i {
    let b0 = _mm256_slli_epi16::<3>(code);
    let b1 = _mm256_slli_epi16::<2>(code);
    let low = _mm256_blendv_epi8(
        _mm256_blendv_epi8(c[0], c[1], b0),
        _mm256_blendv_epi8(c[2], c[3], b0),
        b1,
    );
    let high = _mm256_blendv_epi8(
        _mm256_blendv_epi8(c[4], c[5], b0),
        _mm256_blendv_epi8(c[6], c[7], b0),
        b1,
    );
    _mm256_blendv_epi8(low, high, _mm256_slli_epi16::<1>(code))
}

/// Each lane's entry of the level's table of 2^level ≤ 32 `i16` at `tab`, by its
/// shuffle indices (bytes `2p` and `2p + 1`, of which `vpshufb` reads the low 4 bits:
/// the entry `p % 8`). Shifting the indices left by 3 (by 2) puts bit 3 (bit 4) of
/// `p` in the sign bit of both bytes, the masks choosing among the 8-entry parts.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn lookup(level: usize, tab: *const i16, index: __m256i) -> __m256i {
    let part = |k: usize| {
        let t = _mm256_broadcastsi128_si256(_mm_loadu_si128(tab.add(k * 8).cast()));
        _mm256_shuffle_epi8(t, index)
    };
    match level {
        0..=3 => part(0),
        4 => _mm256_blendv_epi8(part(0), part(1), _mm256_slli_epi16::<3>(index)),
        _ => {
            let b3 = _mm256_slli_epi16::<3>(index);
            let low = _mm256_blendv_epi8(part(0), part(1), b3);
            let high = _mm256_blendv_epi8(part(2), part(3), b3);
            _mm256_blendv_epi8(low, high, _mm256_slli_epi16::<2>(index))
        }
    }
}

/// Levels 0 to 2 of one group: every node of a level compared, and per lane the
/// comparison of its node kept, chosen by the earlier levels' comparisons.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn compared(splits: Splits, base: *const i16) -> __m256i {
    // `feat` holds the feature × 16: the offset of its 16 lanes in the group.
    let right = |level: usize, j: usize| {
        let column = _mm256_loadu_si256(base.add(*splits.feat.add(level * 32 + j) as usize).cast());
        _mm256_cmpgt_epi16(column, _mm256_set1_epi16(*splits.cut.add(level * 32 + j)))
    };
    let step = |pos: __m256i, taken: __m256i| _mm256_sub_epi16(_mm256_add_epi16(pos, pos), taken);
    let r0 = right(0, 0);
    let r1 = _mm256_blendv_epi8(right(1, 0), right(1, 1), r0);
    let low = _mm256_blendv_epi8(right(2, 0), right(2, 1), r1);
    let high = _mm256_blendv_epi8(right(2, 2), right(2, 3), r1);
    let r2 = _mm256_blendv_epi8(low, high, r0);
    step(step(step(_mm256_setzero_si256(), r0), r1), r2)
}
