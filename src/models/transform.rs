//! The post transforms of ONNX-ML's classifiers and regressors (logistic, softmax), and
//! the vectorisable `exp` they share, used by the linear and the tree operators.

use super::error::OnnxError;

/// A post transform of ONNX-ML's classifiers and regressors.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum PostTransform {
    None,
    Logistic,
    Softmax,
    SoftmaxZero,
    /// Recognised so it can be refused by name; never evaluated.
    Probit,
}

impl PostTransform {
    pub(crate) fn parse(op: &str, s: &str) -> Result<Self, OnnxError> {
        match s {
            "" | "NONE" => Ok(PostTransform::None),
            "LOGISTIC" => Ok(PostTransform::Logistic),
            "SOFTMAX" => Ok(PostTransform::Softmax),
            "SOFTMAX_ZERO" => Ok(PostTransform::SoftmaxZero),
            "PROBIT" => Ok(PostTransform::Probit),
            other => Err(OnnxError::UnknownPostTransform {
                op: op.to_string(),
                name: other.to_string(),
            }),
        }
    }

    /// Applies the transform to one row's scores. As in onnxruntime, a single score is
    /// left as it is (only PROBIT would change it, and it is refused at load).
    #[inline]
    pub(crate) fn apply(self, scores: &mut [f64]) {
        if scores.len() < 2 {
            return;
        }
        match self {
            PostTransform::None | PostTransform::Probit => {}
            PostTransform::Logistic => scores.iter_mut().for_each(|s| *s = logistic(*s)),
            PostTransform::Softmax => softmax(scores),
            PostTransform::SoftmaxZero => {
                let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let mut sum = 0.0;
                for s in scores.iter_mut() {
                    if *s != 0.0 {
                        *s = exp(*s - max);
                        sum += *s;
                    }
                }
                scores.iter_mut().for_each(|s| *s /= sum);
            }
        }
    }
}

/// `1 / (1 + e^-x)`. `#[inline]` (as `softmax` and `PostTransform::apply`): the
/// operators call it per value from other modules, and must keep their loops inlined
/// and vectorised across codegen units.
#[inline]
pub(crate) fn logistic(x: f64) -> f64 {
    1.0 / (1.0 + exp(-x))
}

/// `e^x` to within a few ulps (relative error below 1e-15), written so that LLVM
/// vectorises loops over it with plain SSE2: `f64::exp` is a libm call per value, and
/// was two thirds of a logistic regression's scoring time.
///
/// x = n·ln2 + r with |r| ≤ ln2/2; e^r by its Taylor series to degree 12 (truncation
/// error below 1e-15 there); 2^n built in the exponent bits. Rounding to the nearest
/// integer uses the 1.5·2^52 trick, which also leaves n in the low bits.
#[inline(always)]
pub(crate) fn exp(x: f64) -> f64 {
    const MAGIC: f64 = 6_755_399_441_055_744.0; // 1.5 * 2^52
    const LN2_HI: f64 = 6.931_471_803_691_238e-1;
    const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
    let clamped = x.clamp(-708.0, 709.0);
    let t = clamped * std::f64::consts::LOG2_E + MAGIC;
    let n = t - MAGIC;
    let k = t.to_bits().wrapping_sub(MAGIC.to_bits());
    let r = clamped - n * LN2_HI - n * LN2_LO;
    let mut p = 1.0 / 479_001_600.0;
    for c in [
        1.0 / 39_916_800.0,
        1.0 / 3_628_800.0,
        1.0 / 362_880.0,
        1.0 / 40_320.0,
        1.0 / 5_040.0,
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ] {
        p = p * r + c;
    }
    let y = p * f64::from_bits(k.wrapping_add(1023) << 52);
    if x.is_nan() {
        x
    } else {
        y
    }
}

/// The logistic of every value of `xs`, in place, as wide as the CPU computes.
pub(crate) fn logistic_in_place(xs: &mut [f64]) {
    logistic_in_place_as(Width::widest(), xs);
}

fn logistic_in_place_as(width: Width, xs: &mut [f64]) {
    #[inline(always)]
    fn sweep((xs, _): (&mut [f64], &mut [f64])) {
        xs.iter_mut().for_each(|v| *v = logistic(*v));
    }
    as_wide!(width, sweep, (xs, &mut []));
}

/// A binary classifier's two probabilities from its scores `s` (which become P(1)):
/// P(0) = logistic(-s) and P(1) = logistic(s), with one exponential a row instead of
/// two — e = e^-s, P(1) = 1 / (1 + e), P(0) = e · P(1) — as wide as the CPU computes.
pub(crate) fn logistic_pair(s: Vec<f64>) -> (Vec<f64>, Vec<f64>) {
    logistic_pair_as(Width::widest(), s)
}

fn logistic_pair_as(width: Width, mut s: Vec<f64>) -> (Vec<f64>, Vec<f64>) {
    #[inline(always)]
    fn pair((s, p0): (&mut [f64], &mut [f64])) {
        for (v, q) in s.iter_mut().zip(p0.iter_mut()) {
            let e = exp(-*v);
            let p = 1.0 / (1.0 + e);
            *q = e * p;
            *v = p;
        }
    }
    let mut p0 = vec![0.0; s.len()];
    as_wide!(width, pair, (&mut s, &mut p0));
    (p0, s)
}

/// The vector units a column sweep can be compiled for: the build's own (SSE2 on
/// x86-64, two doubles a vector), AVX2 (four) or AVX-512 (eight), chosen at run time.
/// The arithmetic is the same IEEE operations in each (Rust does not fuse multiplies
/// and adds on its own), so every CPU gives the same bits.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
enum Width {
    Built,
    Avx2,
    Avx512,
}

impl Width {
    /// The widest this CPU has.
    fn widest() -> Width {
        *Width::supported().last().unwrap_or(&Width::Built)
    }

    /// The widths this CPU runs, narrowest first.
    fn supported() -> Vec<Width> {
        let mut widths = vec![Width::Built];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                widths.push(Width::Avx2);
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                widths.push(Width::Avx512);
            }
        }
        widths
    }
}

/// Calls `$sweep($args)` compiled for `$width` (one the CPU has: [`Width::supported`]).
macro_rules! as_wide {
    ($width:expr, $sweep:ident, $args:expr) => {{
        match $width {
            #[cfg(target_arch = "x86_64")]
            Width::Avx512 => {
                #[target_feature(enable = "avx512f")]
                fn avx512(args: (&mut [f64], &mut [f64])) {
                    $sweep(args)
                }
                debug_assert!(std::arch::is_x86_feature_detected!("avx512f"));
                // SAFETY: Width::Avx512 is only chosen on a CPU with AVX-512F.
                unsafe { avx512($args) }
            }
            #[cfg(target_arch = "x86_64")]
            Width::Avx2 => {
                #[target_feature(enable = "avx2")]
                fn avx2(args: (&mut [f64], &mut [f64])) {
                    $sweep(args)
                }
                debug_assert!(std::arch::is_x86_feature_detected!("avx2"));
                // SAFETY: Width::Avx2 is only chosen on a CPU with AVX2.
                unsafe { avx2($args) }
            }
            _ => $sweep($args),
        }
    }};
}
use as_wide;

/// Softmax of one row's scores, in place.
#[inline]
pub(crate) fn softmax(scores: &mut [f64]) {
    let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut sum = 0.0;
    for s in scores.iter_mut() {
        *s = exp(*s - max);
        sum += *s;
    }
    scores.iter_mut().for_each(|s| *s /= sum);
}

#[cfg(test)]
mod tests {
    #[test]
    fn exp_is_within_a_few_ulps_of_libm() {
        let mut worst = 0.0f64;
        let mut x = -745.0;
        while x < 709.0 {
            let (a, b) = (super::exp(x), x.exp());
            if b > 1e-300 {
                worst = worst.max(((a - b) / b).abs());
            }
            x += 0.0137;
        }
        assert!(worst < 5e-15, "{worst:e}");
        assert!(super::exp(f64::NAN).is_nan());
        assert_eq!(super::exp(0.0), 1.0);
        assert!(super::logistic(-800.0) < 1e-300);
        assert!(super::logistic(800.0) == 1.0);
    }

    /// Every width this CPU runs gives the bits of the plain `logistic`, and the pair's P(0) is
    /// within a few ulps of logistic(-s) (both are below 1e-300 past `exp`'s clamp).
    #[test]
    fn wide_logistics_agree_with_the_scalar_one() {
        let mut xs: Vec<f64> = (0..1001).map(|i| (i as f64 - 500.0) * 0.0731).collect();
        xs.extend([-800.0, -40.0, 40.0, 800.0, 0.0, f64::NAN]);
        for width in super::Width::supported() {
            let mut swept = xs.clone();
            super::logistic_in_place_as(width, &mut swept);
            for (x, y) in xs.iter().zip(&swept) {
                assert_eq!(super::logistic(*x).to_bits(), y.to_bits(), "{width:?} {x}");
            }
            let (p0, p1) = super::logistic_pair_as(width, xs.clone());
            for ((x, a), b) in xs.iter().zip(&p0).zip(&p1) {
                if x.is_nan() {
                    assert!(a.is_nan() && b.is_nan());
                    continue;
                }
                let (want0, want1) = (super::logistic(-x), super::logistic(*x));
                assert!(
                    (a - want0).abs() <= 4.0 * f64::EPSILON * want0 + 1e-300,
                    "P(0) of {x}: {a} against {want0}"
                );
                assert!(
                    (b - want1).abs() <= 4.0 * f64::EPSILON * want1 + 1e-300,
                    "P(1) of {x}: {b} against {want1}"
                );
            }
        }
    }
}
