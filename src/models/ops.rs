//! The ONNX operators quern evaluates natively, over column-major batches: a value is a
//! list of columns (one `Vec<f64>` per feature or class), which is how Arrow hands the
//! features over and lets every linear operator run as vectorised column sweeps.

use super::error::OnnxError;
use super::transform::{logistic_in_place, logistic_pair, softmax, PostTransform};
use super::trees::TreeEnsemble;

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
    pub(crate) fn width(&self, inputs: &[usize]) -> Result<usize, OnnxError> {
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
                        return Err(OnnxError::ScalerWidth {
                            attribute: name,
                            values: v.len(),
                            features: w,
                        });
                    }
                }
                w
            }
            Op::Imputer { values, .. } => {
                if values.len() != 1 && values.len() != w {
                    return Err(OnnxError::ImputerWidth {
                        values: values.len(),
                        features: w,
                    });
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
                    return Err(OnnxError::Coefficients {
                        coefficients: coefficients.len(),
                        outputs: *rows,
                        features: w,
                    });
                }
                if *binary_single {
                    2
                } else {
                    *rows
                }
            }
            Op::Trees(t) => {
                if t.n_features() > w {
                    return Err(OnnxError::TreeFeature {
                        feature: t.n_features() - 1,
                        features: w,
                    });
                }
                t.width()
            }
            Op::Concat => inputs.iter().sum(),
            Op::Select(idx) => {
                if let Some(bad) = idx.iter().find(|i| **i >= w) {
                    return Err(OnnxError::SelectIndex {
                        index: *bad,
                        columns: w,
                    });
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
            Op::Imputer { values, replaced } => impute(x, values, *replaced),
            Op::Normalizer(norm) => normalize(x, *norm, rows),
            Op::Linear {
                coefficients,
                intercepts,
                rows: n_out,
                post,
                binary_single,
            } => {
                let mut scores = linear_scores(x, coefficients, intercepts, *n_out, rows);
                if *binary_single {
                    let s = scores.pop().unwrap_or_default();
                    return match post {
                        PostTransform::Logistic => {
                            let (p0, p1) = logistic_pair(s);
                            vec![p0, p1]
                        }
                        _ => vec![s.iter().map(|v| -v).collect(), s],
                    };
                }
                if *post == PostTransform::Logistic && scores.len() > 1 {
                    // Element-wise: a column sweep, which vectorises.
                    for col in &mut scores {
                        logistic_in_place(col);
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
            Op::Sigmoid => {
                let mut out = x.to_vec();
                out.iter_mut().for_each(|c| logistic_in_place(c));
                out
            }
            Op::Concat => inputs.iter().flat_map(|v| v.iter().cloned()).collect(),
            Op::Select(idx) => idx.iter().map(|i| x[*i].clone()).collect(),
        }
    }
}

/// `Imputer`: each column's `replaced` value (NaN: any NaN) becomes its imputed value.
fn impute(x: &[Vec<f64>], values: &[f64], replaced: f64) -> Vec<Vec<f64>> {
    x.iter()
        .enumerate()
        .map(|(j, c)| {
            let fill = values[if values.len() == 1 { 0 } else { j }];
            c.iter()
                .map(|v| {
                    let missing = if replaced.is_nan() {
                        v.is_nan()
                    } else {
                        *v == replaced
                    };
                    if missing {
                        fill
                    } else {
                        *v
                    }
                })
                .collect()
        })
        .collect()
}

/// `Normalizer`: each row divided by its max, L1 or L2 norm.
fn normalize(x: &[Vec<f64>], norm: Norm, rows: usize) -> Vec<Vec<f64>> {
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
    if norm == Norm::L2 {
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

/// The `n_out` linear scores `intercept + coefficients · x` of every row, as columns.
fn linear_scores(
    x: &[Vec<f64>],
    coefficients: &[f64],
    intercepts: &[f64],
    n_out: usize,
    rows: usize,
) -> Vec<Vec<f64>> {
    let w = x.len();
    (0..n_out)
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
        .collect()
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
