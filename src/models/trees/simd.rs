//! The vector kernels of perfect trees of depth ≤ 6 with one output and f32 splits and
//! leaves, and the choice between them at run time: AVX-512F (16 rows at a time),
//! else AVX2 (8 rows), else none and the portable walk scores every row.
//! `QUERN_TREE_KERNEL=avx2` (or `avx512`, or `portable` for the node walk) picks one
//! below the fastest, to measure each kernel on one machine.
//!
//! Both kernels read the same tables and give the same sums as the portable walk, bit
//! for bit: the splits compare f32 features with f32 thresholds (exact, as the layout
//! only builds the tables when every threshold is a float and the features are checked
//! to be floats), and each row's leaves are added in f64 in tree order.
//!
//! No kernel is written for aarch64 NEON yet; an aarch64 build takes the portable walk.

use super::tables::Tables;

/// A vector kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kernel {
    Avx512,
    Avx2,
}

impl Kernel {
    /// Rows per vector: a kernel scores the leading multiple of it.
    fn lanes(self) -> usize {
        match self {
            Kernel::Avx512 => 16,
            Kernel::Avx2 => 8,
        }
    }

    /// Whether this CPU has the kernel's instructions.
    fn is_supported(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            match self {
                Kernel::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
                Kernel::Avx2 => std::arch::is_x86_feature_detected!("avx2"),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    /// The kernels this CPU can run, fastest first.
    pub(super) fn supported() -> Vec<Kernel> {
        [Kernel::Avx512, Kernel::Avx2]
            .into_iter()
            .filter(|k| k.is_supported())
            .collect()
    }

    /// The kernel scoring takes: the one `QUERN_TREE_KERNEL` names (`avx512`, `avx2` or
    /// `portable`, the node walk) when the CPU supports it, else the fastest supported.
    /// Detected once.
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
                _ => {
                    tracing::warn!(
                        "QUERN_TREE_KERNEL={name:?} is not one of avx512, avx2, portable; \
                         scoring with {fastest:?}"
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
/// one of [`Kernel::supported`].
pub(super) fn eval(
    kernel: Option<Kernel>,
    depth: usize,
    tables: Option<&Tables>,
    n_features: usize,
    x: &[&[f64]],
    rows: usize,
    acc: &mut [f64],
) -> usize {
    let (Some(kernel), Some(tables)) = (kernel, tables) else {
        return 0;
    };
    let usable = n_features <= 16
        && depth <= 6
        // The features must be floats too, as they are for a float input.
        && x[..n_features]
            .iter()
            .all(|c| c[..rows].iter().all(|v| f64::from(*v as f32) == *v));
    if !usable {
        return 0;
    }
    let whole = rows - rows % kernel.lanes();
    run(kernel, depth, tables, n_features, x, whole, acc);
    whole
}

#[cfg(target_arch = "x86_64")]
fn run(
    kernel: Kernel,
    depth: usize,
    tables: &Tables,
    n_features: usize,
    x: &[&[f64]],
    rows: usize,
    acc: &mut [f64],
) {
    assert!(
        kernel.is_supported(),
        "{kernel:?} is not supported by this CPU"
    );
    // SAFETY: the CPU has the kernel's instructions (asserted above); its other
    // preconditions (depth ≤ 6, ≤ 16 features, whole vectors of rows, table sizes)
    // were checked by `eval` and the layout.
    unsafe {
        match kernel {
            Kernel::Avx512 => super::avx512::eval(depth, tables, n_features, x, rows, acc),
            Kernel::Avx2 => super::avx2::eval(depth, tables, n_features, x, rows, acc),
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn run(
    kernel: Kernel,
    _depth: usize,
    _tables: &Tables,
    _n_features: usize,
    _x: &[&[f64]],
    _rows: usize,
    _acc: &mut [f64],
) {
    unreachable!("{kernel:?} is not supported on this architecture")
}
