//! The trees' thresholds as bins, for the kernels that compare 16-bit integers instead
//! of floats: each feature's distinct thresholds, sorted, are its cuts; a value's bin
//! is how many cuts lie below it, and a split on the feature's `j`-th cut sends a row
//! right exactly when the row's bin is above `j` (`x > c_j` ⇔ more than `j` cuts are
//! below `x`). NaN has bin 0 and goes left, as `x > t` is false for it.
//!
//! Finding a bin must cost little next to the walks it saves, so each feature's cuts
//! are hashed into equal-width buckets: a value's bucket gives the count of cuts in the
//! buckets below it, and at most [`PROBES`] comparisons with the cuts of its own bucket
//! finish the count (a binary search over the rest when a bucket holds more).
//!
//! [`score`] is the part the binned kernels share: rows in blocks, each block's bins
//! once, then tree after tree the kernel's walk over the block's groups of 16 rows, and
//! the leaves added per row in f64 and in tree order, as the portable walk adds them.

use super::tables::Tables;

/// The most distinct thresholds one feature may have: bins are `i16`, and
/// `i16::MAX` marks a split no row takes (the tables' padding).
const MAX_CUTS: usize = i16::MAX as usize - 1;

/// Most features the binned kernels take (their 8 feature registers).
pub(super) const MAX_FEATURES: usize = 8;

/// Cuts compared directly in a value's bucket.
pub(super) const PROBES: usize = 2;

/// Rows per group: the binned kernels walk 16 rows (one or two vectors) at a time.
pub(super) const LANES: usize = 16;

/// Bins of one group of rows: feature after feature (8, the unread ones 0), 16 rows
/// each.
pub(super) const GROUP: usize = MAX_FEATURES * LANES;

/// Rows per block: their bins (8 × 512 × 2 bytes) stay in L1.
const BLOCK: usize = 512;

/// One tree's split tables as a binned kernel reads them, 6 levels × 32 splits each.
#[derive(Clone, Copy)]
pub(super) struct Splits {
    /// The split's feature × 16, the offset of its rows in a group.
    pub(super) feat: *const i32,
    /// [`Bins::code`].
    pub(super) code: *const i16,
    /// [`Bins::cut`].
    pub(super) cut: *const i16,
}

/// The steps of [`score`] around the walks, per block of rows: a kernel with vector
/// versions gives them, the others take [`Block::PORTABLE`].
#[derive(Clone, Copy)]
pub(super) struct Block {
    /// The bins of a block, as [`Bins::fill_block`] computes them.
    pub(super) fill: Fill,
    /// Adds to each row's sum, in f64, its tree's leaf: `add(sums, positions, leaves)`
    /// with a position below 64 per sum and the tree's 64 leaves, as [`add_leaves`].
    pub(super) add: unsafe fn(&mut [f64], &[i16], &[f32]),
}

/// `fill(bins, block, x, start, groups)`, as [`Bins::fill_block`].
pub(super) type Fill = unsafe fn(&Bins, &mut [i16], &[&[f64]], usize, usize);

impl Block {
    /// The portable loops (what the NEON kernel takes; the AVX2 kernel's tests compare
    /// its own with them).
    #[cfg_attr(not(target_arch = "aarch64"), allow(dead_code))]
    pub(super) const PORTABLE: Block = Block {
        fill: Bins::fill_block,
        add: add_leaves,
    };
}

/// Scores the `rows` rows of `x` (a multiple of [`LANES`]) into `acc` with a binned
/// kernel's `walk(splits, group, out, two)`, which walks one tree for the group of
/// rows whose bins start at `group` (and for the next group too when `two`), and
/// writes each row's leaf position (below 64) at `out`; each block's bins and sums
/// with `steps`.
///
/// # Safety
/// `bins` are the bins of `tables`; `x` has a column for each of the bins' features
/// with at least `rows` values; `acc.len() >= rows`; `walk` writes 16 positions per
/// group and reads no further than its groups; the CPU runs `steps`.
#[inline(always)]
pub(super) unsafe fn score(
    tables: &Tables,
    bins: &Bins,
    x: &[&[f64]],
    rows: usize,
    acc: &mut [f64],
    steps: Block,
    mut walk: impl FnMut(Splits, *const i16, *mut i16, bool),
) {
    let mut block = vec![0i16; BLOCK / LANES * GROUP];
    let mut leaf = vec![0i16; BLOCK];
    let mut start = 0;
    while start < rows {
        let n = (rows - start).min(BLOCK);
        let groups = n / LANES;
        (steps.fill)(bins, &mut block, x, start, groups);
        let sums = &mut acc[start..start + n];
        for t in 0..tables.n_trees {
            let splits = Splits {
                feat: tables.feat.as_ptr().add(t * 6 * 32),
                code: bins.code.as_ptr().add(t * 6 * 32),
                cut: bins.cut.as_ptr().add(t * 6 * 32),
            };
            let mut g = 0;
            while g < groups {
                // Two groups together, or the last one alone.
                let two = g + 2 <= groups;
                walk(
                    splits,
                    block.as_ptr().add(g * GROUP),
                    leaf.as_mut_ptr().add(g * LANES),
                    two,
                );
                g += if two { 2 } else { 1 };
            }
            (steps.add)(sums, &leaf[..n], &tables.leaves[t * 64..t * 64 + 64]);
        }
        start += n;
    }
}

/// Adds to each of `sums` the leaf of its position among `leaves` (64), in f64, as the
/// portable walk adds them.
pub(super) fn add_leaves(sums: &mut [f64], positions: &[i16], leaves: &[f32]) {
    let leaves: &[f32; 64] = leaves.try_into().expect("a tree of 64 leaves");
    for (sum, l) in sums.iter_mut().zip(positions) {
        // A position is below 64; the mask spares the bounds check.
        *sum += f64::from(leaves[*l as usize & 63]);
    }
}

/// The thresholds of a [`Tables`] as bins.
#[derive(Debug, Clone)]
pub(super) struct Bins {
    /// Per feature read by a split (feature 0 up to the highest one read).
    pub(super) features: Vec<Buckets>,
    /// Per tree, 6 levels × 32 splits as in [`Tables`]: the split's feature `f` as
    /// `f × 0x1010`, so that shifting it left by 3, 2 or 1 puts bit 0, 1 or 2 of `f`
    /// in the sign bit of both its bytes (the masks of a byte blend).
    pub(super) code: Vec<i16>,
    /// Per tree, 6 levels × 32 splits: the threshold's index among its feature's
    /// cuts (`i16::MAX` for +∞, which no row exceeds).
    pub(super) cut: Vec<i16>,
}

impl Bins {
    /// The bins of `tables`, or `None` when a split reads a feature beyond
    /// [`MAX_FEATURES`] or a feature has more than `MAX_CUTS` distinct thresholds.
    pub(super) fn new(tables: &Tables) -> Option<Bins> {
        let read = tables
            .feat
            .iter()
            .map(|f| *f as usize / 16)
            .max()
            .unwrap_or(0)
            + 1;
        if read > MAX_FEATURES {
            return None;
        }
        let mut cuts = vec![Vec::new(); read];
        for (f, t) in tables.feat.iter().zip(&tables.thr) {
            if *t != f32::INFINITY {
                cuts[*f as usize / 16].push(*t);
            }
        }
        for c in &mut cuts {
            // The tables hold no NaN (their thresholds are exact floats).
            c.sort_by(f32::total_cmp);
            c.dedup();
            if c.len() > MAX_CUTS {
                return None;
            }
        }
        let code = tables
            .feat
            .iter()
            .map(|f| (f / 16 * 0x1010) as i16)
            .collect();
        let cut = tables
            .feat
            .iter()
            .zip(&tables.thr)
            .map(|(f, t)| {
                if *t == f32::INFINITY {
                    i16::MAX
                } else {
                    cuts[*f as usize / 16].partition_point(|c| c < t) as i16
                }
            })
            .collect();
        Some(Bins {
            features: cuts.iter().map(|c| Buckets::new(c)).collect(),
            code,
            cut,
        })
    }

    /// The bins of `groups` groups of 16 rows of `x` from `start`, laid out
    /// `[group][feature][row]` (see [`GROUP`]).
    #[cfg_attr(not(target_arch = "aarch64"), allow(dead_code))]
    pub(super) fn fill_block(&self, block: &mut [i16], x: &[&[f64]], start: usize, groups: usize) {
        for (f, buckets) in self.features.iter().enumerate() {
            let col = &x[f][start..start + groups * LANES];
            for (g, rows) in col.chunks_exact(LANES).enumerate() {
                let to = &mut block[g * GROUP + f * LANES..g * GROUP + (f + 1) * LANES];
                for (t, v) in to.iter_mut().zip(rows) {
                    *t = buckets.bin(*v as f32);
                }
            }
        }
    }
}

/// One feature's cuts and their equal-width buckets. `bucket` is monotone in the
/// value (a float subtraction, a multiplication by a scale ≥ 0 and a clamp), so
/// the cuts in a lower bucket are all below a value and those in a higher one all
/// above it, whatever the rounding: only the value's own bucket needs comparisons.
#[derive(Debug, Clone)]
pub(super) struct Buckets {
    pub(super) low: f32,
    pub(super) scale: f32,
    /// The last bucket, as a float for the clamp.
    pub(super) last: f32,
    /// `first[i]`: how many cuts lie in buckets below `i` (one entry per bucket and
    /// one past the last).
    pub(super) first: Vec<u16>,
    /// The cuts, ascending, then [`PROBES`] × +∞ so that probing past the last cut
    /// reads a value no row is below.
    pub(super) padded: Vec<f32>,
    /// Whether a bucket holds more than [`PROBES`] cuts.
    pub(super) crowded: bool,
}

impl Buckets {
    /// Buckets for `cuts` (ascending, distinct, no NaN or +∞): twice as many as cuts,
    /// doubled while a bucket holds more than [`PROBES`] cuts, up to 8 per cut and 2^16
    /// (16 KiB for the 800 cuts of a 100-tree model's feature, 128 KiB at most); a
    /// bucket that is still crowded is searched.
    fn new(cuts: &[f32]) -> Buckets {
        let mut finite = cuts.iter().copied().filter(|c| c.is_finite());
        let (low, high) = match (finite.next(), finite.next_back()) {
            (Some(l), Some(h)) => (l, h),
            _ => (0.0, 1.0),
        };
        let most = (cuts.len() * 8).next_power_of_two().min(1 << 16);
        let mut padded = cuts.to_vec();
        padded.extend([f32::INFINITY; PROBES]);
        let mut n = (cuts.len() * 2).next_power_of_two().max(2);
        loop {
            // A scale that overflows (cuts spanning most of f32) or is zero only makes
            // the buckets coarse: the search below stays exact.
            let scale = (n as f32 - 1.0) / (high - low);
            let mut b = Buckets {
                low,
                scale: if scale.is_finite() { scale } else { 1.0 },
                last: n as f32 - 1.0,
                first: vec![0; n + 1],
                padded: Vec::new(),
                crowded: false,
            };
            let mut count = vec![0u16; n];
            for c in cuts {
                count[b.bucket(*c)] += 1;
            }
            for (i, c) in count.iter().enumerate() {
                b.first[i + 1] = b.first[i] + c;
            }
            b.crowded = count.iter().any(|c| usize::from(*c) > PROBES);
            if !b.crowded || n >= most {
                b.padded = padded;
                return b;
            }
            n *= 2;
        }
    }

    /// The bucket of `v` (0 for NaN).
    #[inline]
    fn bucket(&self, v: f32) -> usize {
        // `max` returns its other operand for NaN.
        let at = ((v - self.low) * self.scale).max(0.0).min(self.last);
        // SAFETY: `at` is a finite float in 0..=last, and last < 2^16.
        unsafe { at.to_int_unchecked::<u32>() as usize }
    }

    /// The bin of `v`: how many cuts are below it (0 for NaN).
    #[inline]
    pub(super) fn bin(&self, v: f32) -> i16 {
        let i = self.bucket(v);
        // SAFETY: `i <= last`, and `first` has `last + 2` entries; `first[i]` is at
        // most the number of cuts, and `padded` holds PROBES values past them.
        unsafe {
            let lo = usize::from(*self.first.get_unchecked(i));
            let c = self.padded.as_ptr().add(lo);
            let mut bin = lo;
            for k in 0..PROBES {
                bin += usize::from(*c.add(k) < v);
            }
            // Both probes below v in a bucket of more cuts: count the rest (the cuts
            // ascend, so a probe at or above v already ended the count).
            if self.crowded && *c.add(PROBES - 1) < v {
                let hi = usize::from(*self.first.get_unchecked(i + 1));
                if hi > lo + PROBES {
                    bin += self.padded[lo + PROBES..hi].partition_point(|c| *c < v);
                }
            }
            bin as i16
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values at, next to and between the cuts, and beyond them.
    fn probes(cuts: &[f32]) -> Vec<f32> {
        let mut v = vec![f32::NEG_INFINITY, f32::INFINITY, f32::NAN, 0.0, -0.0];
        for c in cuts {
            v.extend([*c, c.next_down(), c.next_up(), c * 0.5, c * 2.0 + 1.0]);
        }
        v
    }

    #[test]
    fn a_bin_counts_the_cuts_below_the_value() {
        let mut state = 7u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let uniform: Vec<f32> = (0..800).map(|_| (next() * 4.0 - 2.0) as f32).collect();
        // Heavy tails: most cuts crowd near 0, so some buckets hold many.
        let skewed: Vec<f32> = (0..800)
            .map(|_| ((next() * 2.0 - 1.0).powi(9) * 1e4) as f32)
            .collect();
        let cases: Vec<Vec<f32>> = vec![
            vec![],
            vec![0.5],
            vec![f32::NEG_INFINITY, -1.0, 3.0],
            vec![-f32::MAX, 0.0, f32::MAX],
            vec![1.0, 1.0f32.next_up(), 1.0f32.next_up().next_up()],
            uniform,
            skewed,
        ];
        for mut cuts in cases {
            cuts.sort_by(f32::total_cmp);
            cuts.dedup();
            let b = Buckets::new(&cuts);
            for v in probes(&cuts) {
                let want = cuts.partition_point(|c| *c < v) as i16;
                assert_eq!(b.bin(v), want, "{v} among {} cuts", cuts.len());
            }
        }
    }

    #[test]
    fn splits_keep_their_direction_as_bins() {
        // One tree of depth 2 over features 0 and 1; padding splits are +∞.
        let features = [0, 1, 0];
        let thresholds = [0.5f32, -1.0, 0.5];
        let tables = Tables::new(2, &features, &[1.0, 2.0, 3.0, 4.0], &thresholds, 1);
        let bins = Bins::new(&tables).expect("binned");
        assert_eq!(bins.features.len(), 2);
        // Level 0: feature 0's cut 0.5 (its only one); level 1: feature 1's -1.0 and
        // feature 0's 0.5.
        assert_eq!(&bins.cut[..1], &[0]);
        assert_eq!(&bins.cut[32..34], &[0, 0]);
        assert_eq!(&bins.code[32..34], &[0x1010, 0]);
        assert_eq!(bins.cut[2 * 32], i16::MAX, "padding never goes right");
        for v in [0.5f32, 0.5f32.next_up(), -3.0] {
            let right = v > 0.5;
            assert_eq!(bins.features[0].bin(v) > bins.cut[0], right, "{v}");
        }
    }

    #[test]
    fn too_many_features_or_cuts_are_not_binned() {
        let wide = Tables::new(1, &[8], &[0.0, 1.0], &[0.0], 1);
        assert!(Bins::new(&wide).is_none());
        // Depth-6 trees on feature 0 with one more distinct threshold than a bin
        // holds, then as many as it holds.
        let trees = (MAX_CUTS + 1).div_ceil(63);
        let splits = trees * 63;
        let tables = |distinct: usize| {
            let thresholds: Vec<f32> = (0..splits).map(|i| i.min(distinct - 1) as f32).collect();
            Tables::new(
                6,
                &vec![0; splits],
                &vec![0.0; trees * 64],
                &thresholds,
                trees,
            )
        };
        assert!(Bins::new(&tables(MAX_CUTS + 1)).is_none());
        assert!(Bins::new(&tables(MAX_CUTS)).is_some());
    }
}
