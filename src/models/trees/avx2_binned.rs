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
//! - leaves are gathered 8 rows at a time and added in f64 and in tree order, as the
//!   portable walk adds them, so the sums are the same bit for bit.
//!
//! Two groups of 16 rows are walked together so that the latency of one group's
//! lookups hides behind the other's. A block's bins are found 8 rows at a time too
//! ([`fill_block`]).

use std::arch::x86_64::*;

use super::bins::{self, Bins, Block, Splits, GROUP, LANES, MAX_FEATURES, PROBES};
use super::tables::Tables;

/// The binned AVX2 steps around the walks.
const BLOCK: Block = Block {
    fill: fill_block,
    add: add_leaves,
};

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
    bins::score(tables, bins, x, rows, acc, BLOCK, |splits, at, out, two| {
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

/// [`Bins::fill_block`] 8 rows of a feature at a time: each value's bucket, its first
/// cut and the [`PROBES`] cuts from there are vector lanes and gathers, and the same
/// float operations as [`Buckets::bin`](bins::Buckets::bin) give the same bins. A row
/// whose probes are all below it, in a feature with a bucket of more cuts, takes the
/// portable `bin` for the rest of the count.
///
/// # Safety
/// The CPU must support AVX2; `x` has a column for each of the bins' features with at
/// least `start + groups × 16` values, and `block` room for `groups` groups.
#[target_feature(enable = "avx2")]
unsafe fn fill_block(bins: &Bins, block: &mut [i16], x: &[&[f64]], start: usize, groups: usize) {
    const { assert!(PROBES == 2, "two probes gathered") };
    assert!(block.len() >= groups * GROUP);
    let out = block.as_mut_ptr();
    for (f, b) in bins.features.iter().enumerate() {
        let col = &x[f][start..start + groups * LANES];
        let (low, scale) = (_mm256_set1_ps(b.low), _mm256_set1_ps(b.scale));
        let last = _mm256_set1_ps(b.last);
        for (g, rows) in col.chunks_exact(8).enumerate() {
            let at = rows.as_ptr();
            let v = _mm256_set_m128(
                _mm256_cvtpd_ps(_mm256_loadu_pd(at.add(4))),
                _mm256_cvtpd_ps(_mm256_loadu_pd(at)),
            );
            // `max` with zero second gives zero for NaN, as `f32::max` does.
            let spot = _mm256_mul_ps(_mm256_sub_ps(v, low), scale);
            let bucket = _mm256_cvttps_epi32(_mm256_min_ps(
                _mm256_max_ps(spot, _mm256_setzero_ps()),
                last,
            ));
            // `first` is u16: 32 bits at bucket × 2 are `first[bucket]` and the next.
            let first = _mm256_i32gather_epi32::<2>(b.first.as_ptr().cast(), bucket);
            let lo = _mm256_and_si256(first, _mm256_set1_epi32(0xFFFF));
            let below = |k: usize| {
                let cut = _mm256_i32gather_ps::<4>(b.padded.as_ptr().add(k), lo);
                _mm256_castps_si256(_mm256_cmp_ps::<_CMP_LT_OQ>(cut, v))
            };
            let (below0, below1) = (below(0), below(1));
            // A true comparison is -1.
            let bin = _mm256_sub_epi32(_mm256_sub_epi32(lo, below0), below1);
            let mut lanes = [0i32; 8];
            _mm256_storeu_si256(lanes.as_mut_ptr().cast(), bin);
            let further = _mm256_movemask_ps(_mm256_castsi256_ps(below1));
            if b.crowded && further != 0 {
                for (k, lane) in lanes.iter_mut().enumerate() {
                    if further & (1 << k) != 0 {
                        *lane = i32::from(b.bin(rows[k] as f32));
                    }
                }
            }
            // Rows 8g to 8g + 7: group 8g / 16, its half 8g % 16.
            let to = out.add(g / 2 * GROUP + f * LANES + g % 2 * 8);
            let packed = _mm_packs_epi32(
                _mm_loadu_si128(lanes.as_ptr().cast()),
                _mm_loadu_si128(lanes.as_ptr().add(4).cast()),
            );
            _mm_storeu_si128(to.cast(), packed);
        }
    }
}

/// [`bins::add_leaves`] 8 rows at a time: the rows' leaves gathered, widened to f64
/// and added to their sums.
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
unsafe fn add_leaves(sums: &mut [f64], positions: &[i16], leaves: &[f32]) {
    assert!(leaves.len() >= 64 && positions.len() >= sums.len());
    let whole = sums.len() / 8 * 8;
    let (vector, rest) = sums.split_at_mut(whole);
    let below_64 = _mm256_set1_epi32(63);
    for (i, eight) in vector.chunks_exact_mut(8).enumerate() {
        let at = _mm_loadu_si128(positions.as_ptr().add(i * 8).cast());
        let leaf = _mm256_i32gather_ps::<4>(
            leaves.as_ptr(),
            _mm256_and_si256(_mm256_cvtepi16_epi32(at), below_64),
        );
        let s = eight.as_mut_ptr();
        let low = _mm256_cvtps_pd(_mm256_castps256_ps128(leaf));
        let high = _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(leaf));
        _mm256_storeu_pd(s, _mm256_add_pd(_mm256_loadu_pd(s), low));
        _mm256_storeu_pd(s.add(4), _mm256_add_pd(_mm256_loadu_pd(s.add(4)), high));
    }
    bins::add_leaves(rest, &positions[whole..], leaves);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A depth-3 model's tables over 8 features: feature `f`'s thresholds spread
    /// evenly, except feature 7's, which crowd near 0 so that its buckets hold many.
    fn tables() -> Tables {
        let trees = 40;
        let (mut feat, mut thr) = (Vec::new(), Vec::new());
        for s in 0..trees * 7 {
            let f = s % 8;
            let u = (s as f32 * 0.618_034).fract() * 2.0 - 1.0;
            feat.push(f as u32);
            thr.push(if f == 7 {
                u.powi(9) * 1e3
            } else {
                u * (f + 1) as f32
            });
        }
        Tables::new(3, &feat, &vec![0.5; trees * 8], &thr, trees)
    }

    #[test]
    fn vector_bins_and_leaf_sums_are_the_portable_ones() {
        if !std::arch::is_x86_feature_detected!("avx2") {
            return;
        }
        let tables = tables();
        let bins = Bins::new(&tables).expect("binned");
        assert!(bins.features[7].crowded, "a crowded feature");
        // Each feature's cuts, just below and just above them, and far outside.
        let rows = 16 * 64;
        let x: Vec<Vec<f64>> = (0..8)
            .map(|f| {
                let cuts = &bins.features[f].padded;
                (0..rows)
                    .map(|r| {
                        let c = cuts[r / 3 % cuts.len()];
                        let v = match r % 3 {
                            0 => c,
                            1 => c.next_down(),
                            _ => c.next_up(),
                        };
                        f64::from(if v.is_finite() { v } else { -v })
                    })
                    .collect()
            })
            .collect();
        let x: Vec<&[f64]> = x.iter().map(Vec::as_slice).collect();
        let (mut vector, mut portable) = (vec![0i16; 64 * GROUP], vec![0i16; 64 * GROUP]);
        // SAFETY: the CPU has AVX2; 64 groups of rows and of room.
        unsafe {
            fill_block(&bins, &mut vector, &x, 0, 32);
            fill_block(&bins, &mut vector[32 * GROUP..], &x, 32 * LANES, 32);
        }
        bins.fill_block(&mut portable, &x, 0, 32);
        bins.fill_block(&mut portable[32 * GROUP..], &x, 32 * LANES, 32);
        assert_eq!(vector, portable);

        let leaves: Vec<f32> = (0..64).map(|i| i as f32 * 0.37 - 9.1).collect();
        let positions: Vec<i16> = (0..rows as i16 + 3).map(|i| i * 7 % 64).collect();
        let start: Vec<f64> = (0..rows + 3).map(|i| i as f64 * 1e-3).collect();
        let (mut vector, mut portable) = (start.clone(), start);
        // SAFETY: the CPU has AVX2; 64 leaves, a position per sum.
        unsafe { add_leaves(&mut vector, &positions, &leaves) };
        bins::add_leaves(&mut portable, &positions, &leaves);
        assert_eq!(vector, portable, "rows not a multiple of 8 included");
    }
}
