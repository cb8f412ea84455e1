//! The aarch64 NEON kernel of perfect trees of depth 3 to 6 over ≤ 8 features, on
//! bins ([`Bins`]) as the binned AVX2 kernel, with its block layout: groups of 16 rows,
//! walked as two vectors of 8 sixteen-bit lanes.
//!
//! NEON's table lookups reach further than AVX2's byte shuffles, which makes every
//! lookup one instruction:
//! - levels 0 to 2 compare the rows with every node of the level and keep, per lane,
//!   the comparison of its node (bit selects on the earlier comparisons);
//! - levels 3 to 5 look a lane's split up with `tbl` over the level's table (8 to 32
//!   entries, 16 to 64 bytes, one to four registers), and its feature's bin with a
//!   `tbl` over the group's features 0 to 3 and a `tbx` over 4 to 7 (128 bytes): the
//!   feature code `f × 0x1010` is the byte offset of the feature's register in both
//!   bytes, to which each lane adds its own bytes' offset;
//! - leaves are added by a scalar pass, in f64 and in tree order, as the portable walk
//!   adds them, so the sums are the same bit for bit.

use std::arch::aarch64::*;

use super::bins::{self, Bins, GROUP, LANES};
use super::tables::Tables;

/// # Safety
/// As [`bins::score`]: `3 <= depth <= 6` (the tables' depth), `bins` are the bins of
/// `tables`, `x` has a column for each of the bins' features with at least `rows`
/// float-exact values, `rows % 16 == 0` and `acc.len() >= rows`.
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
        _ => unreachable!("the NEON kernel takes trees of depth 3 to 6"),
    }
}

/// # Safety
/// As [`eval`].
#[target_feature(enable = "neon")]
unsafe fn eval_depth<const D: usize>(
    tables: &Tables,
    bins: &Bins,
    x: &[&[f64]],
    rows: usize,
    acc: &mut [f64],
) {
    bins::score(
        tables,
        bins,
        x,
        rows,
        acc,
        bins::Block::PORTABLE,
        |splits, at, out, two| {
            if two {
                let pos = walk::<D, 4>(splits, [at, at.add(8), at.add(GROUP), at.add(GROUP + 8)]);
                for (k, p) in pos.into_iter().enumerate() {
                    vst1q_s16(out.add(k * 8), p);
                }
            } else {
                let pos = walk::<D, 2>(splits, [at, at.add(8)]);
                vst1q_s16(out, pos[0]);
                vst1q_s16(out.add(8), pos[1]);
            }
        },
    );
}

/// Walks one tree for the `V` vectors of 8 rows at `bases` (each the first lane of its
/// rows' feature 0 in a group, whose features are [`LANES`] apart), level by level
/// across the vectors: each lane's leaf position (0 to 2^D - 1).
///
/// # Safety
/// As [`eval`].
#[inline]
#[target_feature(enable = "neon")]
unsafe fn walk<const D: usize, const V: usize>(
    splits: bins::Splits,
    bases: [*const i16; V],
) -> [int16x8_t; V] {
    let mut pos = [vdupq_n_s16(0); V];
    for (p, base) in pos.iter_mut().zip(bases) {
        *p = compared(splits, base);
    }
    if D <= 3 {
        return pos;
    }
    // A position p as table indices: bytes 2p and 2p + 1, the bytes of entry p.
    let spread = vdupq_n_u16(0x0202);
    let odd = vdupq_n_u16(0x0100);
    // Each lane's own bytes in a feature's register: 2i and 2i + 1.
    let own = vreinterpretq_u8_u16(vaddq_u16(
        vmulq_u16(vld1q_u16([0u16, 1, 2, 3, 4, 5, 6, 7].as_ptr()), spread),
        odd,
    ));
    let sixty_four = vdupq_n_u8(64);
    for level in 3..D {
        let (code, cut) = (splits.code.add(level * 32), splits.cut.add(level * 32));
        for (p, base) in pos.iter_mut().zip(bases) {
            let index =
                vreinterpretq_u8_u16(vaddq_u16(vmulq_u16(vreinterpretq_u16_s16(*p), spread), odd));
            let at = vaddq_u8(vreinterpretq_u8_s16(lookup(level, code, index)), own);
            // The group's features 0 to 3, then 4 to 7 (a `tbx` keeps the lanes whose
            // index, less 64, is out of its range: the features 0 to 3).
            let low = uint8x16x4_t(
                vld1q_u8(base.cast()),
                vld1q_u8(base.add(LANES).cast()),
                vld1q_u8(base.add(2 * LANES).cast()),
                vld1q_u8(base.add(3 * LANES).cast()),
            );
            let high = uint8x16x4_t(
                vld1q_u8(base.add(4 * LANES).cast()),
                vld1q_u8(base.add(5 * LANES).cast()),
                vld1q_u8(base.add(6 * LANES).cast()),
                vld1q_u8(base.add(7 * LANES).cast()),
            );
            let v = vqtbx4q_u8(vqtbl4q_u8(low, at), high, vsubq_u8(at, sixty_four));
            let right = vcgtq_s16(vreinterpretq_s16_u8(v), lookup(level, cut, index));
            // A true comparison is all ones (-1): pos = 2 pos + 1 when the row goes right.
            *p = vsubq_s16(vaddq_s16(*p, *p), vreinterpretq_s16_u16(right));
        }
    }
    pos
}

/// Each lane's entry of the level's table of 2^level ≤ 32 `i16` at `tab`, by its
/// table indices (bytes `2p` and `2p + 1`).
#[inline]
#[target_feature(enable = "neon")]
unsafe fn lookup(level: usize, tab: *const i16, index: uint8x16_t) -> int16x8_t {
    let t = tab.cast::<u8>();
    vreinterpretq_s16_u8(match level {
        0..=3 => vqtbl1q_u8(vld1q_u8(t), index),
        4 => vqtbl2q_u8(uint8x16x2_t(vld1q_u8(t), vld1q_u8(t.add(16))), index),
        _ => vqtbl4q_u8(
            uint8x16x4_t(
                vld1q_u8(t),
                vld1q_u8(t.add(16)),
                vld1q_u8(t.add(32)),
                vld1q_u8(t.add(48)),
            ),
            index,
        ),
    })
}

/// Levels 0 to 2 of one vector of rows: every node of a level compared, and per lane
/// the comparison of its node kept, chosen by the earlier levels' comparisons.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn compared(splits: bins::Splits, base: *const i16) -> int16x8_t {
    // `feat` holds the feature × 16: the offset of its lanes in the group.
    let right = |level: usize, j: usize| {
        let column = vld1q_s16(base.add(*splits.feat.add(level * 32 + j) as usize));
        vcgtq_s16(column, vdupq_n_s16(*splits.cut.add(level * 32 + j)))
    };
    let step = |pos: int16x8_t, taken: uint16x8_t| {
        vsubq_s16(vaddq_s16(pos, pos), vreinterpretq_s16_u16(taken))
    };
    let r0 = right(0, 0);
    let r1 = vbslq_u16(r0, right(1, 1), right(1, 0));
    let low = vbslq_u16(r1, right(2, 1), right(2, 0));
    let high = vbslq_u16(r1, right(2, 3), right(2, 2));
    let r2 = vbslq_u16(r0, high, low);
    step(step(step(vdupq_n_s16(0), r0), r1), r2)
}
