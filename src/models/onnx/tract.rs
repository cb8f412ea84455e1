//! Graphs of standard ONNX operators (neural networks), handed to tract: compiled with
//! a symbolic batch dimension, and run over a batch.

use std::sync::Arc;

use tract_onnx::pb;
use tract_onnx::prelude::{
    tvec, Framework, InferenceFact, InferenceModelExt, IntoRunnable, TDim, Tensor,
    TypedRunnableModel,
};

use super::decode::unsupported;
use super::{ElemType, ModelInput};
use crate::models::error::OnnxError;

/// A tract graph, optimised and ready to run.
pub(super) type Plan = Arc<TypedRunnableModel>;

/// Hands the needed nodes to tract, with a symbolic batch dimension; returns the plan
/// and the output width.
pub(super) fn compile(
    proto: &pb::ModelProto,
    needed: &[usize],
    inputs: &[ModelInput],
    target: &str,
) -> Result<(Plan, usize), OnnxError> {
    let onnx = tract_onnx::onnx();
    let graph = proto.graph.as_ref().ok_or(OnnxError::NoGraph)?;
    if let Some(bad) = needed
        .iter()
        .map(|n| &graph.node[*n])
        .find(|n| !onnx.op_register.0.contains_key(n.op_type.as_str()))
    {
        return Err(unsupported(bad, false));
    }
    let mut pruned = proto.clone();
    if let Some(g) = pruned.graph.as_mut() {
        g.node = needed.iter().map(|n| graph.node[*n].clone()).collect();
        g.output = vec![pb::ValueInfoProto {
            name: target.to_string(),
            ..Default::default()
        }];
    }
    let mut model = onnx
        .with_ignore_output_shapes(true)
        .with_ignore_output_types(true)
        .model_for_proto_model(&pruned)
        .map_err(OnnxError::Tract)?;
    let batch = model.symbols.sym("N");
    for (i, input) in inputs.iter().enumerate() {
        let dt = match input.elem {
            ElemType::Float => tract_onnx::prelude::DatumType::F32,
            ElemType::Double => tract_onnx::prelude::DatumType::F64,
        };
        let shape: Vec<TDim> = vec![batch.clone().into(), (input.width as i64).into()];
        model
            .set_input_fact(i, InferenceFact::dt_shape(dt, shape))
            .map_err(OnnxError::Tract)?;
    }
    let typed = model.into_optimized().map_err(OnnxError::Tract)?;
    let fact = typed.output_fact(0).map_err(OnnxError::Tract)?.clone();
    let width = match fact.shape.as_concrete() {
        Some([_, w]) => *w,
        Some([_]) => 1,
        _ => match fact.shape.dims().len() {
            1 => 1,
            2 => fact.shape.dims()[1]
                .to_i64()
                .map_err(|_| OnnxError::NoFixedWidth {
                    output: target.to_string(),
                })? as usize,
            _ => {
                return Err(OnnxError::OutputShape {
                    output: target.to_string(),
                    shape: format!("{:?}", fact.shape),
                })
            }
        },
    };
    let plan = typed.into_runnable().map_err(OnnxError::Tract)?;
    Ok((plan, width))
}

/// Scores `rows` rows of `features` (one column per feature, `inputs` in order) into
/// `width` output columns.
pub(super) fn score(
    plan: &Plan,
    inputs: &[ModelInput],
    width: usize,
    features: &[&[f64]],
    rows: usize,
) -> Result<Vec<Vec<f64>>, OnnxError> {
    let mut tensors = tvec![];
    let mut next = 0;
    for input in inputs {
        let w = input.width;
        let cols = &features[next..next + w];
        next += w;
        let tensor: Tensor = match input.elem {
            ElemType::Float => {
                let mut data = Vec::with_capacity(rows * w);
                for i in 0..rows {
                    data.extend(cols.iter().map(|c| c[i] as f32));
                }
                Tensor::from_shape(&[rows, w], &data)
            }
            ElemType::Double => {
                let mut data = Vec::with_capacity(rows * w);
                for i in 0..rows {
                    data.extend(cols.iter().map(|c| c[i]));
                }
                Tensor::from_shape(&[rows, w], &data)
            }
        }
        .map_err(OnnxError::Tensor)?;
        tensors.push(tensor.into());
    }
    let out = plan.run(tensors).map_err(OnnxError::Tract)?;
    let t = out[0].cast_to::<f64>().map_err(OnnxError::TractOutput)?;
    let view = t.to_plain_array_view::<f64>().map_err(OnnxError::Tensor)?;
    let values: Vec<f64> = view.iter().copied().collect();
    if values.len() != rows * width {
        return Err(OnnxError::OutputSize {
            values: values.len(),
            rows,
            width,
        });
    }
    Ok((0..width)
        .map(|k| (0..rows).map(|i| values[i * width + k]).collect())
        .collect())
}
