//! Reading the protobuf's parts: the graph's inputs, a node's attributes and constant
//! tensors, class labels, and how a node is named in messages.

use std::collections::HashMap;

use tract_onnx::pb;

use super::{ElemType, Labels, ModelInput};
use crate::models::error::OnnxError;
use crate::models::transform::PostTransform;

/// The ONNX-ML operator domain.
pub(super) const ML: &str = "ai.onnx.ml";

/// The graph's constant tensors, by name.
pub(super) fn initializers(graph: &pb::GraphProto) -> HashMap<&str, &pb::TensorProto> {
    graph
        .initializer
        .iter()
        .map(|t| (t.name.as_str(), t))
        .collect()
}

/// The graph inputs that are not initializers: the features, in order.
pub(super) fn inputs(
    graph: &pb::GraphProto,
    initializers: &HashMap<&str, &pb::TensorProto>,
) -> Result<Vec<ModelInput>, OnnxError> {
    let inputs = graph
        .input
        .iter()
        .filter(|i| !initializers.contains_key(i.name.as_str()))
        .map(model_input)
        .collect::<Result<Vec<_>, _>>()?;
    if inputs.is_empty() {
        return Err(OnnxError::NoInput);
    }
    Ok(inputs)
}

fn model_input(info: &pb::ValueInfoProto) -> Result<ModelInput, OnnxError> {
    let tensor = match info.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(pb::type_proto::Value::TensorType(t)) => t,
        None => {
            return Err(OnnxError::InputNotTensor {
                input: info.name.clone(),
            })
        }
    };
    let elem = match tensor.elem_type {
        1 => ElemType::Float,
        11 => ElemType::Double,
        other => {
            return Err(OnnxError::InputType {
                input: info.name.clone(),
                elem: elem_type_name(other),
                code: other,
            })
        }
    };
    let dims: Vec<Option<i64>> = tensor
        .shape
        .as_ref()
        .map(|s| {
            s.dim
                .iter()
                .map(|d| match d.value {
                    Some(pb::tensor_shape_proto::dimension::Value::DimValue(v)) => Some(v),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let width = match dims.as_slice() {
        [_] => 1,
        [_, Some(w)] if *w > 0 => *w as usize,
        _ => {
            return Err(OnnxError::InputShape {
                input: info.name.clone(),
                dims,
            })
        }
    };
    Ok(ModelInput {
        name: info.name.clone(),
        width,
        elem,
    })
}

/// The name of ONNX element type `t`.
pub(super) fn elem_type_name(t: i32) -> &'static str {
    match t {
        1 => "float",
        2 => "uint8",
        3 => "int8",
        6 => "int32",
        7 => "int64",
        8 => "string",
        9 => "bool",
        10 => "float16",
        11 => "double",
        _ => "other",
    }
}

/// `Op` for standard operators, `domain:Op` for the others.
pub(super) fn op_name(node: &pb::NodeProto) -> String {
    if node.domain.is_empty() || node.domain == "ai.onnx" {
        node.op_type.clone()
    } else {
        format!("{}:{}", node.domain, node.op_type)
    }
}

/// The error for a node whose operator quern does not evaluate; `ml_graph`: the graph
/// has ONNX-ML operators (so it is not handed to tract).
pub(super) fn unsupported(node: &pb::NodeProto, ml_graph: bool) -> OnnxError {
    let (op, name) = (op_name(node), node.name.clone());
    if node.domain == ML || !ml_graph {
        OnnxError::Unsupported { op, node: name }
    } else {
        OnnxError::UnsupportedBesideMl { op, node: name }
    }
}

/// A classifier node's class labels.
pub(super) fn labels_of(node: &pb::NodeProto) -> Option<Labels> {
    let a = Attrs(node);
    for name in ["classlabels_int64s", "classlabels_ints"] {
        if let Some(attr) = a.get(name) {
            return Some(Labels::Int(attr.ints.clone()));
        }
    }
    a.get("classlabels_strings").map(|attr| {
        Labels::Str(
            attr.strings
                .iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect(),
        )
    })
}

/// A node's attributes, read by name (a missing one reads as its default).
pub(super) struct Attrs<'a>(pub(super) &'a pb::NodeProto);

impl<'a> Attrs<'a> {
    pub(super) fn get(&self, name: &str) -> Option<&'a pb::AttributeProto> {
        self.0.attribute.iter().find(|a| a.name == name)
    }

    pub(super) fn ints(&self, name: &str) -> &'a [i64] {
        self.get(name).map_or(&[], |a| a.ints.as_slice())
    }

    pub(super) fn int(&self, name: &str, default: i64) -> i64 {
        self.get(name).map_or(default, |a| a.i)
    }

    pub(super) fn string(&self, name: &str) -> String {
        self.get(name)
            .map(|a| String::from_utf8_lossy(&a.s).into_owned())
            .unwrap_or_default()
    }

    pub(super) fn strings(&self, name: &str) -> Vec<String> {
        self.get(name).map_or_else(Vec::new, |a| {
            a.strings
                .iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect()
        })
    }

    /// `name` as floats, or `name_as_tensor` (doubles) when present.
    pub(super) fn floats(&self, name: &str) -> Result<Vec<f64>, OnnxError> {
        if let Some(t) = self
            .get(&format!("{name}_as_tensor"))
            .and_then(|a| a.t.as_ref())
        {
            return tensor_f64(t);
        }
        Ok(self
            .get(name)
            .map(|a| a.floats.iter().map(|v| f64::from(*v)).collect())
            .unwrap_or_default())
    }

    pub(super) fn post_transform(&self) -> Result<PostTransform, OnnxError> {
        let p = PostTransform::parse(&self.0.op_type, &self.string("post_transform"))?;
        if p == PostTransform::Probit {
            return Err(OnnxError::Probit {
                op: self.0.op_type.clone(),
            });
        }
        Ok(p)
    }
}

fn tensor_f64(t: &pb::TensorProto) -> Result<Vec<f64>, OnnxError> {
    let raw = |size: usize| t.raw_data.chunks_exact(size);
    Ok(match t.data_type {
        1 if !t.float_data.is_empty() => t.float_data.iter().map(|v| f64::from(*v)).collect(),
        1 => raw(4)
            .map(|b| f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])))
            .collect(),
        11 if !t.double_data.is_empty() => t.double_data.clone(),
        11 => raw(8)
            .map(|b| f64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
            .collect(),
        other => {
            return Err(OnnxError::TensorType {
                tensor: t.name.clone(),
                elem: elem_type_name(other),
                expected: "float or double",
            })
        }
    })
}

/// A constant tensor of integers.
pub(super) fn tensor_i64(t: &pb::TensorProto) -> Result<Vec<i64>, OnnxError> {
    Ok(match t.data_type {
        7 if !t.int64_data.is_empty() => t.int64_data.clone(),
        7 => t
            .raw_data
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
            .collect(),
        6 if !t.int32_data.is_empty() => t.int32_data.iter().map(|v| i64::from(*v)).collect(),
        6 => t
            .raw_data
            .chunks_exact(4)
            .map(|b| i64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])))
            .collect(),
        other => {
            return Err(OnnxError::TensorType {
                tensor: t.name.clone(),
                elem: elem_type_name(other),
                expected: "integers",
            })
        }
    })
}
