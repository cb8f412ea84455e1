//! The ONNX operators quern evaluates natively, over column-major batches: a value is a
//! list of columns (one `Vec<f64>` per feature or class), which is how Arrow hands the
//! features over and lets every linear operator run as vectorised column sweeps.

use super::trees::TreeEnsemble;

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
    pub(crate) fn parse(op: &str, s: &str) -> Result<Self, String> {
        match s {
            "" | "NONE" => Ok(PostTransform::None),
            "LOGISTIC" => Ok(PostTransform::Logistic),
            "SOFTMAX" => Ok(PostTransform::Softmax),
            "SOFTMAX_ZERO" => Ok(PostTransform::SoftmaxZero),
            "PROBIT" => Ok(PostTransform::Probit),
            other => Err(format!("{op}: unknown post_transform {other}")),
        }
    }

    /// Applies the transform to one row's scores. As in onnxruntime, a single score is
    /// left as it is (only PROBIT would change it, and it is refused at load).
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

fn softmax(scores: &mut [f64]) {
    let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut sum = 0.0;
    for s in scores.iter_mut() {
        *s = exp(*s - max);
        sum += *s;
    }
    scores.iter_mut().for_each(|s| *s /= sum);
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Norm {
    Max,
    L1,
    L2,
}

/// One natively evaluated operator.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    Identity,
    /// `Cast` to float: values are rounded to single precision.
    CastF32,
    /// `Cast` to double: nothing to do.
    CastF64,
    Scaler {
        offset: Vec<f64>,
        scale: Vec<f64>,
    },
    Normalizer(Norm),
    Imputer {
        values: Vec<f64>,
        replaced: f64,
    },
    /// `LinearRegressor` and `LinearClassifier`'s scores: `rows` weight vectors.
    Linear {
        coefficients: Vec<f64>,
        intercepts: Vec<f64>,
        rows: usize,
        post: PostTransform,
        /// Two class labels but one weight vector: the score s becomes two columns.
        binary_single: bool,
    },
    Trees(Box<TreeEnsemble>),
    /// Standard `Softmax` / `Sigmoid` over the columns of a row.
    Softmax,
    Sigmoid,
    /// `Concat` along the feature axis.
    Concat,
    /// `ArrayFeatureExtractor` with constant indices: a selection of columns.
    Select(Vec<usize>),
}

impl Op {
    /// The output width for inputs of widths `inputs`, or why the op cannot take them.
    pub(crate) fn width(&self, inputs: &[usize]) -> Result<usize, String> {
        let w = inputs.first().copied().unwrap_or(0);
        Ok(match self {
            Op::Identity
            | Op::CastF32
            | Op::CastF64
            | Op::Normalizer(_)
            | Op::Softmax
            | Op::Sigmoid => w,
            Op::Scaler { offset, scale } => {
                for (name, v) in [("offset", offset), ("scale", scale)] {
                    if v.len() != 1 && v.len() != w {
                        return Err(format!(
                            "Scaler: {name} has {} values for {w} features",
                            v.len()
                        ));
                    }
                }
                w
            }
            Op::Imputer { values, .. } => {
                if values.len() != 1 && values.len() != w {
                    return Err(format!(
                        "Imputer: {} imputed values for {w} features",
                        values.len()
                    ));
                }
                w
            }
            Op::Linear {
                coefficients,
                rows,
                binary_single,
                ..
            } => {
                if coefficients.len() != rows * w {
                    return Err(format!(
                        "{} coefficients for {rows} outputs of {w} features",
                        coefficients.len()
                    ));
                }
                if *binary_single {
                    2
                } else {
                    *rows
                }
            }
            Op::Trees(t) => {
                if t.n_features() > w {
                    return Err(format!(
                        "the trees read feature {} of {w}",
                        t.n_features() - 1
                    ));
                }
                t.width()
            }
            Op::Concat => inputs.iter().sum(),
            Op::Select(idx) => {
                if let Some(bad) = idx.iter().find(|i| **i >= w) {
                    return Err(format!("ArrayFeatureExtractor: index {bad} of {w} columns"));
                }
                idx.len()
            }
        })
    }

    /// Evaluates the op on `rows` rows.
    pub(crate) fn eval(&self, inputs: &[&[Vec<f64>]], rows: usize) -> Vec<Vec<f64>> {
        let x = inputs[0];
        match self {
            Op::Identity | Op::CastF64 => x.to_vec(),
            Op::CastF32 => x
                .iter()
                .map(|c| c.iter().map(|v| *v as f32 as f64).collect())
                .collect(),
            Op::Scaler { offset, scale } => x
                .iter()
                .enumerate()
                .map(|(j, c)| {
                    let o = offset[if offset.len() == 1 { 0 } else { j }];
                    let s = scale[if scale.len() == 1 { 0 } else { j }];
                    c.iter().map(|v| (v - o) * s).collect()
                })
                .collect(),
            Op::Imputer { values, replaced } => x
                .iter()
                .enumerate()
                .map(|(j, c)| {
                    let fill = values[if values.len() == 1 { 0 } else { j }];
                    c.iter()
                        .map(|v| {
                            let missing = if replaced.is_nan() {
                                v.is_nan()
                            } else {
                                v == replaced
                            };
                            if missing {
                                fill
                            } else {
                                *v
                            }
                        })
                        .collect()
                })
                .collect(),
            Op::Normalizer(norm) => {
                let mut out: Vec<Vec<f64>> = x.to_vec();
                let mut denom = vec![0.0f64; rows];
                for c in x {
                    for (d, v) in denom.iter_mut().zip(c) {
                        *d = match norm {
                            Norm::Max => d.max(*v),
                            Norm::L1 => *d + v.abs(),
                            Norm::L2 => *d + v * v,
                        };
                    }
                }
                if *norm == Norm::L2 {
                    denom.iter_mut().for_each(|d| *d = d.sqrt());
                }
                for c in &mut out {
                    for (v, d) in c.iter_mut().zip(&denom) {
                        // onnxruntime leaves an all-zero row as it is.
                        if *d != 0.0 {
                            *v /= d;
                        }
                    }
                }
                out
            }
            Op::Linear {
                coefficients,
                intercepts,
                rows: n_out,
                post,
                binary_single,
            } => {
                let w = x.len();
                let mut scores: Vec<Vec<f64>> = (0..*n_out)
                    .map(|k| {
                        let mut acc = vec![intercepts.get(k).copied().unwrap_or(0.0); rows];
                        for (j, col) in x.iter().enumerate() {
                            let c = coefficients[k * w + j];
                            for (a, v) in acc.iter_mut().zip(col) {
                                *a += c * v;
                            }
                        }
                        acc
                    })
                    .collect();
                if *binary_single {
                    let s = scores.pop().unwrap_or_default();
                    return match post {
                        PostTransform::Logistic => vec![
                            s.iter().map(|v| logistic(-v)).collect(),
                            s.iter().map(|v| logistic(*v)).collect(),
                        ],
                        _ => vec![s.iter().map(|v| -v).collect(), s],
                    };
                }
                if *post == PostTransform::Logistic && scores.len() > 1 {
                    // Element-wise: a column sweep, which vectorises.
                    for col in &mut scores {
                        col.iter_mut().for_each(|v| *v = logistic(*v));
                    }
                } else {
                    apply_rows(&mut scores, rows, |row| post.apply(row));
                }
                scores
            }
            Op::Trees(t) => {
                let cols: Vec<&[f64]> = x.iter().map(Vec::as_slice).collect();
                t.eval(&cols, rows)
            }
            Op::Softmax => {
                let mut out = x.to_vec();
                apply_rows(&mut out, rows, softmax);
                out
            }
            Op::Sigmoid => x
                .iter()
                .map(|c| c.iter().map(|v| logistic(*v)).collect())
                .collect(),
            Op::Concat => inputs.iter().flat_map(|v| v.iter().cloned()).collect(),
            Op::Select(idx) => idx.iter().map(|i| x[*i].clone()).collect(),
        }
    }
}

/// Calls `f` on each row of column-major `cols` (gathered into a scratch row).
fn apply_rows(cols: &mut [Vec<f64>], rows: usize, mut f: impl FnMut(&mut [f64])) {
    if cols.len() < 2 {
        if let Some(c) = cols.first_mut() {
            for v in c.iter_mut() {
                let mut one = [*v];
                f(&mut one);
                *v = one[0];
            }
        }
        return;
    }
    let mut row = vec![0.0; cols.len()];
    for i in 0..rows {
        for (r, c) in row.iter_mut().zip(cols.iter()) {
            *r = c[i];
        }
        f(&mut row);
        for (r, c) in row.iter().zip(cols.iter_mut()) {
            c[i] = *r;
        }
    }
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
}
