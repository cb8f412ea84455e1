//! The vector kernels of perfect trees of depth ≤ 6 with one output and f32 splits and
//! leaves, and the choice between them at run time:
//! - x86-64: AVX-512F (16 rows at a time), else AVX2 — on bins, 16 rows at a time, for
//!   trees 3 to 6 deep over ≤ 8 features with at most 32 766 distinct thresholds per
//!   feature (`avx2_binned`), on floats, 8 rows at a time, for the others (`avx2`);
//! - aarch64: NEON, on bins as `avx2_binned` and for the same trees (`neon`); the
//!   portable walk scores the others;
//! - else none, and the portable walk scores every row.
//!
//! `QUERN_TREE_KERNEL=avx2` (or `avx512`, `avx2-float` for the float kernel alone,
//! `neon`, or `portable` for the node walk) picks one below the fastest, to measure
//! each kernel on one machine, or to set a kernel aside.
//!
//! The kernels read the same tables and give the same sums as the portable walk, bit
//! for bit: the splits compare f32 features with f32 thresholds, or their bins (exact,
//! as the layout only builds the tables when every threshold is a float and the
//! features are checked to be floats), and each row's leaves are added in f64 in tree
//! order.

use super::bins::Bins;
use super::tables::Tables;

/// What the vector kernels read: the tables, and their thresholds as bins when the
/// trees read at most 8 features (see [`Bins::new`]).
#[derive(Debug, Clone)]
pub(super) struct Simd {
    tables: Tables,
    bins: Option<Bins>,
}

impl Simd {
    pub(super) fn new(tables: Tables) -> Simd {
        let bins = Bins::new(&tables);
        Simd { tables, bins }
    }
}

/// A vector kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kernel {
    Avx512,
    /// AVX2 on bins where the trees allow it, else on floats.
    Avx2,
    /// AVX2 on floats only: to compare the two, or to set the bins aside.
    Avx2Float,
    Neon,
}

impl Kernel {
    /// Whether this CPU has the kernel's instructions.
    fn is_supported(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 | Kernel::Avx2Float => std::arch::is_x86_feature_detected!("avx2"),
            #[cfg(target_arch = "aarch64")]
            Kernel::Neon => std::arch::is_aarch64_feature_detected!("neon"),
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// The kernels this CPU can run, fastest first.
    pub(super) fn supported() -> Vec<Kernel> {
        [
            Kernel::Avx512,
            Kernel::Avx2,
            Kernel::Avx2Float,
            Kernel::Neon,
        ]
        .into_iter()
        .filter(|k| k.is_supported())
        .collect()
    }

    /// The kernel scoring takes: the one `QUERN_TREE_KERNEL` names (`avx512`, `avx2`,
    /// `avx2-float`, `neon` or `portable`, the node walk) when the CPU supports it, else
    /// the fastest supported. Detected once.
    pub(super) fn chosen() -> Option<Kernel> {
        static CHOSEN: std::sync::OnceLock<Option<Kernel>> = std::sync::OnceLock::new();
        *CHOSEN.get_or_init(|| {
            let fastest = Kernel::supported().first().copied();
            let Some(name) = std::env::var_os("QUERN_TREE_KERNEL") else {
                return fastest;
            };
            let named = match name.to_str() {
                Some("portable") => return None,
                Some("avx512") => Kernel::Avx512,
                Some("avx2") => Kernel::Avx2,
                Some("avx2-float") => Kernel::Avx2Float,
                Some("neon") => Kernel::Neon,
                _ => {
                    tracing::warn!(
                        "QUERN_TREE_KERNEL={name:?} is not one of avx512, avx2, avx2-float, \
                         neon, portable; scoring with {fastest:?}"
                    );
                    return fastest;
                }
            };
            if named.is_supported() {
                Some(named)
            } else {
                tracing::warn!(
                    "QUERN_TREE_KERNEL: this CPU has no {named:?}; scoring with {fastest:?}"
                );
                fastest
            }
        })
    }
}

/// Scores the leading whole vectors of rows with `kernel` when the model and the
/// data allow it; returns how many rows it scored (0 when it cannot). `kernel` must be
/// one of [`Kernel::supported`], and `simd` given only when every feature of the rows
/// is a float (exactly an f32).
pub(super) fn eval(
    kernel: Option<Kernel>,
    depth: usize,
    simd: Option<&Simd>,
    n_features: usize,
    x: &[&[f64]],
    rows: usize,
    acc: &mut [f64],
) -> usize {
    let (Some(kernel), Some(simd)) = (kernel, simd) else {
        return 0;
    };
    if n_features > 16 || depth > 6 {
        return 0;
    }
    run(kernel, depth, simd, n_features, x, rows, acc)
}

/// Scores the leading whole vectors of `rows` rows with `kernel` (the binned kernels
/// take trees 3 to 6 deep whose thresholds have bins); returns how many it scored.
fn run(
    kernel: Kernel,
    depth: usize,
    simd: &Simd,
    n_features: usize,
    x: &[&[f64]],
    rows: usize,
    acc: &mut [f64],
) -> usize {
    assert!(
        kernel.is_supported(),
        "{kernel:?} is not supported by this CPU"
    );
    let whole = |lanes: usize| rows - rows % lanes;
    let (tables, binned) = (&simd.tables, simd.bins.as_ref().filter(|_| depth >= 3));
    // SAFETY: the CPU has the kernel's instructions (asserted above); its other
    // preconditions were checked by `eval` (depth ≤ 6, ≤ 16 features), by its caller
    // (float-exact features, else no tables) and by the layout (table sizes), and each
    // kernel scores whole vectors of rows.
    #[allow(unused_unsafe)]
    unsafe {
        match (kernel, binned) {
            #[cfg(target_arch = "x86_64")]
            (Kernel::Avx512, _) => {
                let rows = whole(16);
                super::avx512::eval(depth, tables, n_features, x, rows, acc);
                rows
            }
            #[cfg(target_arch = "x86_64")]
            (Kernel::Avx2, Some(bins)) => {
                let rows = whole(super::bins::LANES);
                super::avx2_binned::eval(depth, tables, bins, x, rows, acc);
                rows
            }
            #[cfg(target_arch = "x86_64")]
            (Kernel::Avx2, None) | (Kernel::Avx2Float, _) => {
                let rows = whole(8);
                super::avx2::eval(depth, tables, n_features, x, rows, acc);
                rows
            }
            #[cfg(target_arch = "aarch64")]
            (Kernel::Neon, Some(bins)) => {
                let rows = whole(super::bins::LANES);
                super::neon::eval(depth, tables, bins, x, rows, acc);
                rows
            }
            // NEON has no float kernel: the portable walk scores these trees.
            #[cfg(target_arch = "aarch64")]
            (Kernel::Neon, None) => {
                let _ = n_features;
                0
            }
            #[allow(unreachable_patterns)]
            _ => unreachable!("{kernel:?} is not supported on this architecture"),
        }
    }
}
