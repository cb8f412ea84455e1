//! The NEON tree kernel and the bins it reads, from the project's sources, with a test
//! that the kernel's sums equal those of a scalar walk of the same tables, bit for bit
//! (the project's own parity tests run it against the node walk on aarch64 machines).
//! The bins' unit tests run here too.

#![allow(dead_code)]

#[path = "../../../src/models/trees/bins.rs"]
mod bins;
#[cfg(target_arch = "aarch64")]
#[path = "../../../src/models/trees/neon.rs"]
mod neon;
#[path = "../../../src/models/trees/tables.rs"]
mod tables;

#[cfg(all(test, target_arch = "aarch64"))]
mod parity {
    use super::tables::Tables;

    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> f64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    /// `trees` perfect trees of `depth` over `n_features`, thresholds drawn by `draw`;
    /// one split in eight is +∞ (what the layout writes below a leaf that ends early),
    /// and one in sixteen each -∞, -0 or 0.
    fn tables(
        rng: &mut Rng,
        trees: usize,
        depth: usize,
        n_features: usize,
        draw: &dyn Fn(f64) -> f32,
    ) -> Tables {
        let inner = (1 << depth) - 1;
        let features: Vec<u32> = (0..trees * inner)
            .map(|_| (rng.next() * n_features as f64) as u32)
            .collect();
        let thresholds: Vec<f32> = (0..trees * inner)
            .map(|_| match (rng.next() * 16.0) as u32 {
                0 | 1 => f32::INFINITY,
                2 => f32::NEG_INFINITY,
                3 => -0.0,
                4 => 0.0,
                _ => draw(rng.next()),
            })
            .collect();
        let leaves: Vec<f64> = (0..trees * (inner + 1))
            .map(|_| f64::from((rng.next() - 0.5) as f32))
            .collect();
        Tables::new(depth, &features, &leaves, &thresholds, trees)
    }

    /// Each row's sum of leaves by a scalar walk of the tables: `x > t` goes right.
    fn walk(t: &Tables, depth: usize, x: &[Vec<f64>], rows: usize) -> Vec<f64> {
        let mut sums = vec![0.0; rows];
        for (r, sum) in sums.iter_mut().enumerate() {
            for tree in 0..t.n_trees {
                let mut pos = 0;
                for level in 0..depth {
                    let at = (tree * 6 + level) * 32 + pos;
                    let f = t.feat[at] as usize / 16;
                    pos = 2 * pos + usize::from(x[f][r] as f32 > t.thr[at]);
                }
                *sum += f64::from(t.leaves[tree * 64 + pos]);
            }
        }
        sums
    }

    #[test]
    fn the_neon_kernel_sums_what_a_scalar_walk_sums() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let uniform = |u: f64| (u * 4.0 - 2.0) as f32;
        // Most thresholds near 0 and a few far out: crowded buckets.
        let skewed = |u: f64| ((u * 2.0 - 1.0).powi(9) * 1e4) as f32;
        // 41 groups of 16 rows: 32 in the first block, and an odd 9 in the second, so
        // that both the two-group and the one-group walks run.
        let rows = 16 * 41;
        for (name, draw) in [
            ("uniform", &uniform as &dyn Fn(f64) -> f32),
            ("skewed", &skewed),
        ] {
            for depth in 3..=6 {
                for n_features in 1..=8 {
                    let t = tables(&mut rng, 12, depth, n_features, draw);
                    let bins = super::bins::Bins::new(&t).expect("binned");
                    // Thresholds, the floats next to them, values beyond, ±∞.
                    let finite: Vec<f32> =
                        t.thr.iter().copied().filter(|v| v.is_finite()).collect();
                    let x: Vec<Vec<f64>> = (0..n_features)
                        .map(|_| {
                            (0..rows)
                                .map(|_| {
                                    let c = finite[(rng.next() * finite.len() as f64) as usize];
                                    let v = match (rng.next() * 8.0) as u32 {
                                        0 => c.next_down(),
                                        1 => c.next_up(),
                                        2 => draw(rng.next()),
                                        3 => f32::INFINITY,
                                        4 => f32::NEG_INFINITY,
                                        _ => c,
                                    };
                                    f64::from(v)
                                })
                                .collect()
                        })
                        .collect();
                    let cols: Vec<&[f64]> = x.iter().map(Vec::as_slice).collect();
                    let mut sums = vec![0.0; rows];
                    // SAFETY: NEON is part of aarch64; the depth is 3 to 6, the bins
                    // are the tables', every feature has `rows` float values, and
                    // `rows` is a multiple of 16.
                    unsafe { super::neon::eval(depth, &t, &bins, &cols, rows, &mut sums) };
                    assert_eq!(
                        sums,
                        walk(&t, depth, &x, rows),
                        "{name} thresholds, depth {depth}, {n_features} features"
                    );
                }
            }
        }
    }
}
