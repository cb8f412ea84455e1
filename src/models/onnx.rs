//! Reading an ONNX file and compiling the part of its graph that computes the scored
//! output.
//!
//! The scored output is a classifier's probabilities (the input of its `ZipMap`, or the
//! probability tensor of a classifier exported with `zipmap=False`) or, for anything
//! else, the first floating-point graph output. Only the nodes that output depends on
//! are kept, so a label branch (`ArgMax`, `ArrayFeatureExtractor`, casts to strings)
//! never has to be supported. The kept nodes are then evaluated one of two ways:
//!
//! - natively (the `ops` and `trees` modules) when they are ONNX-ML
//!   operators and the glue scikit-learn exporters put around them;
//! - by tract when they are all standard ONNX operators (a neural network).
//!
//! Anything else is refused here, naming the operator, before a row is read.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use prost::Message;
use tract_onnx::pb;
use tract_onnx::prelude::{
    tvec, Framework, InferenceFact, InferenceModelExt, IntoRunnable, TDim, Tensor,
    TypedRunnableModel,
};

use super::ops::{Norm, Op, PostTransform};
use super::trees::{TreeAttributes, TreeEnsemble};

const ML: &str = "ai.onnx.ml";

/// The element type of a model input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElemType {
    /// `tensor(float)`: features are rounded to single precision, as onnxruntime sees them.
    Float,
    /// `tensor(double)`.
    Double,
}

/// One input tensor of a model: `width` features per row.
#[derive(Debug, Clone)]
pub struct ModelInput {
    /// The tensor's name in the graph.
    pub name: String,
    /// Features per row.
    pub width: usize,
    /// Its element type.
    pub elem: ElemType,
}

/// A classifier's class labels, in the order of its probability columns.
#[derive(Debug, Clone, PartialEq)]
pub enum Labels {
    /// `classlabels_ints` / `classlabels_int64s`.
    Int(Vec<i64>),
    /// `classlabels_strings`.
    Str(Vec<String>),
}

impl Labels {
    /// The number of classes.
    pub fn len(&self) -> usize {
        match self {
            Labels::Int(v) => v.len(),
            Labels::Str(v) => v.len(),
        }
    }

    /// Whether there are no labels.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Label `i` as text.
    pub fn name(&self, i: usize) -> String {
        match self {
            Labels::Int(v) => v[i].to_string(),
            Labels::Str(v) => v[i].clone(),
        }
    }
}

/// What the scored output is.
#[derive(Debug, Clone, PartialEq)]
pub enum OutputKind {
    /// Class probabilities, one column per label.
    Probabilities(Labels),
    /// Values (regression targets, or a network's raw output).
    Values,
}

/// A loaded ONNX model, ready to score batches.
pub struct OnnxModel {
    /// The input tensors, in the order their features are taken from the arguments.
    pub inputs: Vec<ModelInput>,
    /// The graph tensor that is scored.
    pub output: String,
    /// Whether it holds probabilities or values.
    pub kind: OutputKind,
    /// Its number of columns.
    pub width: usize,
    /// The operators evaluated (`domain:Op`), and by what.
    pub operators: Vec<String>,
    /// `native` or `tract`.
    pub runtime: &'static str,
    /// Whether tree ensembles use the branch-free layout.
    pub compiled_trees: bool,
    runner: Runner,
}

impl std::fmt::Debug for OnnxModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxModel")
            .field("inputs", &self.inputs)
            .field("output", &self.output)
            .field("kind", &self.kind)
            .field("width", &self.width)
            .field("runtime", &self.runtime)
            .finish_non_exhaustive()
    }
}

enum Runner {
    Native(Program),
    Tract(Arc<TypedRunnableModel>),
}

struct Program {
    /// Slot of each graph input.
    inputs: Vec<usize>,
    steps: Vec<Step>,
    output: usize,
    slots: usize,
}

struct Step {
    op: Op,
    inputs: Vec<usize>,
    output: usize,
}

impl OnnxModel {
    /// Reads an ONNX file's bytes. `output` names the graph tensor to score instead of
    /// the default (a classifier's probabilities, else the first float output).
    pub fn from_bytes(bytes: &[u8], output: Option<&str>) -> Result<Self, String> {
        let proto = pb::ModelProto::decode(bytes)
            .map_err(|e| format!("the file is not a valid ONNX model ({e})"))?;
        let graph = proto.graph.as_ref().ok_or("the ONNX model has no graph")?;
        // Duplicate opset imports (some exporters list the default domain twice) are
        // accepted, as onnxruntime accepts them; the operators decide what is supported.
        let initializers: HashMap<&str, &pb::TensorProto> = graph
            .initializer
            .iter()
            .map(|t| (t.name.as_str(), t))
            .collect();
        let inputs = graph
            .input
            .iter()
            .filter(|i| !initializers.contains_key(i.name.as_str()))
            .map(model_input)
            .collect::<Result<Vec<_>, _>>()?;
        if inputs.is_empty() {
            return Err("the model has no input".into());
        }
        let producers: HashMap<&str, (usize, usize)> = graph
            .node
            .iter()
            .enumerate()
            .flat_map(|(n, node)| {
                node.output
                    .iter()
                    .enumerate()
                    .map(move |(k, o)| (o.as_str(), (n, k)))
            })
            .collect();
        let (target, labels) = choose_output(graph, &producers, output)?;
        let needed = needed_nodes(graph, &producers, &target);
        let kind = match labels {
            Some(l) => OutputKind::Probabilities(l),
            None => OutputKind::Values,
        };
        let any_ml = needed.iter().any(|n| graph.node[*n].domain == ML);
        let all_native = needed.iter().all(|n| is_native(&graph.node[*n]));
        let operators: Vec<String> = needed
            .iter()
            .map(|n| op_name(&graph.node[*n]))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if any_ml || all_native {
            if let Some(bad) = needed
                .iter()
                .map(|n| &graph.node[*n])
                .find(|n| !is_native(n))
            {
                return Err(unsupported(bad, any_ml));
            }
            let (program, width, compiled) =
                compile_native(graph, &initializers, &producers, &needed, &inputs, &target)?;
            check_kind(&kind, width)?;
            return Ok(OnnxModel {
                inputs,
                output: target,
                kind,
                width,
                operators,
                runtime: "native",
                compiled_trees: compiled,
                runner: Runner::Native(program),
            });
        }
        let (plan, width) = compile_tract(&proto, &needed, &inputs, &target)?;
        check_kind(&kind, width)?;
        Ok(OnnxModel {
            inputs,
            output: target,
            kind,
            width,
            operators,
            runtime: "tract",
            compiled_trees: false,
            runner: Runner::Tract(plan),
        })
    }

    /// The number of features (SQL arguments) the model takes.
    pub fn n_features(&self) -> usize {
        self.inputs.iter().map(|i| i.width).sum()
    }

    /// Scores `rows` rows given as one column per feature; returns the output columns.
    pub fn score(&self, features: &[&[f64]], rows: usize) -> Result<Vec<Vec<f64>>, String> {
        match &self.runner {
            Runner::Native(p) => Ok(self.score_native(p, features, rows)),
            Runner::Tract(plan) => self.score_tract(plan, features, rows),
        }
    }

    fn score_native(&self, p: &Program, features: &[&[f64]], rows: usize) -> Vec<Vec<f64>> {
        let mut slots: Vec<Option<Vec<Vec<f64>>>> = (0..p.slots).map(|_| None).collect();
        let mut next = 0;
        for (input, slot) in self.inputs.iter().zip(&p.inputs) {
            let cols = features[next..next + input.width]
                .iter()
                .map(|c| match input.elem {
                    ElemType::Float => c[..rows].iter().map(|v| *v as f32 as f64).collect(),
                    ElemType::Double => c[..rows].to_vec(),
                })
                .collect();
            slots[*slot] = Some(cols);
            next += input.width;
        }
        for step in &p.steps {
            let inputs: Vec<&[Vec<f64>]> = step
                .inputs
                .iter()
                .map(|s| slots[*s].as_deref().unwrap_or(&[]))
                .collect();
            let out = step.op.eval(&inputs, rows);
            slots[step.output] = Some(out);
        }
        slots[p.output].take().unwrap_or_default()
    }

    fn score_tract(
        &self,
        plan: &Arc<TypedRunnableModel>,
        features: &[&[f64]],
        rows: usize,
    ) -> Result<Vec<Vec<f64>>, String> {
        let mut tensors = tvec![];
        let mut next = 0;
        for input in &self.inputs {
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
            .map_err(|e| format!("{e:#}"))?;
            tensors.push(tensor.into());
        }
        let out = plan.run(tensors).map_err(|e| format!("tract: {e:#}"))?;
        let t = out[0]
            .cast_to::<f64>()
            .map_err(|e| format!("tract output: {e:#}"))?;
        let view = t
            .to_plain_array_view::<f64>()
            .map_err(|e| format!("{e:#}"))?;
        let values: Vec<f64> = view.iter().copied().collect();
        let width = self.width;
        if values.len() != rows * width {
            return Err(format!(
                "the model returned {} values for {rows} rows of {width} columns",
                values.len()
            ));
        }
        Ok((0..width)
            .map(|k| (0..rows).map(|i| values[i * width + k]).collect())
            .collect())
    }
}

fn check_kind(kind: &OutputKind, width: usize) -> Result<(), String> {
    if width == 0 {
        return Err("the scored output has no columns".into());
    }
    match kind {
        OutputKind::Probabilities(l) if l.len() != width => Err(format!(
            "the classifier has {} labels but its probability output has {width} columns",
            l.len()
        )),
        _ => Ok(()),
    }
}

fn op_name(node: &pb::NodeProto) -> String {
    if node.domain.is_empty() || node.domain == "ai.onnx" {
        node.op_type.clone()
    } else {
        format!("{}:{}", node.domain, node.op_type)
    }
}

fn unsupported(node: &pb::NodeProto, ml_graph: bool) -> String {
    let name = op_name(node);
    if node.domain == ML || !ml_graph {
        format!(
            "operator {name} (node '{}') is not supported; quern evaluates LinearClassifier, LinearRegressor, TreeEnsembleClassifier, TreeEnsembleRegressor, Scaler, Normalizer, Imputer, ArrayFeatureExtractor, Cast, ZipMap and Identity natively, and graphs of standard ONNX operators with tract",
            node.name
        )
    } else {
        format!(
            "operator {name} (node '{}') appears in a graph with ONNX-ML operators, where only Identity, Cast, Concat, Softmax and Sigmoid are supported beside them; export the network and the ONNX-ML part as separate models",
            node.name
        )
    }
}

fn model_input(info: &pb::ValueInfoProto) -> Result<ModelInput, String> {
    let tensor = match info.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(pb::type_proto::Value::TensorType(t)) => t,
        None => return Err(format!("input '{}' is not a tensor", info.name)),
    };
    let elem = match tensor.elem_type {
        1 => ElemType::Float,
        11 => ElemType::Double,
        other => {
            return Err(format!(
                "input '{}' has element type {} (ONNX type {other}); quern feeds float or double tensors",
                info.name,
                elem_type_name(other)
            ))
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
            return Err(format!(
                "input '{}' has shape {:?}; quern scores inputs of shape [N, k] with a fixed k",
                info.name, dims
            ))
        }
    };
    Ok(ModelInput {
        name: info.name.clone(),
        width,
        elem,
    })
}

fn elem_type_name(t: i32) -> &'static str {
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

const CLASSIFIERS: [&str; 3] = [
    "LinearClassifier",
    "TreeEnsembleClassifier",
    "SVMClassifier",
];

/// The tensor to score and, for a classifier, its labels.
fn choose_output(
    graph: &pb::GraphProto,
    producers: &HashMap<&str, (usize, usize)>,
    requested: Option<&str>,
) -> Result<(String, Option<Labels>), String> {
    let outputs: Vec<&str> = graph.output.iter().map(|o| o.name.as_str()).collect();
    let through_zipmap = |name: &str| -> Option<(String, Labels)> {
        let (n, _) = producers.get(name)?;
        let node = &graph.node[*n];
        (node.op_type == "ZipMap").then(|| {
            let labels = labels_of(node).unwrap_or(Labels::Int(Vec::new()));
            (node.input[0].clone(), labels)
        })
    };
    if let Some(name) = requested {
        if !outputs.contains(&name) && !producers.contains_key(name) {
            return Err(format!(
                "the model has no output '{name}'; its outputs are {}",
                outputs.join(", ")
            ));
        }
        if let Some((input, labels)) = through_zipmap(name) {
            return Ok((input, Some(labels)));
        }
        return Ok((name.to_string(), classifier_labels(graph, producers, name)));
    }
    for name in &outputs {
        if let Some((input, labels)) = through_zipmap(name) {
            return Ok((input, Some(labels)));
        }
    }
    for name in &outputs {
        if let Some(labels) = classifier_labels(graph, producers, name) {
            return Ok((name.to_string(), Some(labels)));
        }
    }
    let float = graph.output.iter().find(|o| {
        matches!(
            o.r#type.as_ref().and_then(|t| t.value.as_ref()),
            Some(pb::type_proto::Value::TensorType(t)) if t.elem_type == 1 || t.elem_type == 11
        )
    });
    match float {
        Some(o) => Ok((o.name.clone(), None)),
        None => Err(format!(
            "the model has no floating-point output to score; its outputs are {}",
            outputs.join(", ")
        )),
    }
}

/// The labels of the classifier whose probability output `name` is (through any
/// Identity, Cast or Normalizer).
fn classifier_labels(
    graph: &pb::GraphProto,
    producers: &HashMap<&str, (usize, usize)>,
    name: &str,
) -> Option<Labels> {
    let mut name = name;
    for _ in 0..graph.node.len() {
        let (n, k) = producers.get(name)?;
        let node = &graph.node[*n];
        if CLASSIFIERS.contains(&node.op_type.as_str()) {
            return (*k == 1).then(|| labels_of(node)).flatten();
        }
        if !matches!(node.op_type.as_str(), "Identity" | "Cast" | "Normalizer") {
            return None;
        }
        name = node.input.first()?;
    }
    None
}

fn labels_of(node: &pb::NodeProto) -> Option<Labels> {
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

/// The nodes `target` depends on, in graph order.
fn needed_nodes(
    graph: &pb::GraphProto,
    producers: &HashMap<&str, (usize, usize)>,
    target: &str,
) -> Vec<usize> {
    let mut needed = BTreeSet::new();
    let mut stack = vec![target];
    while let Some(name) = stack.pop() {
        if let Some((n, _)) = producers.get(name) {
            if needed.insert(*n) {
                stack.extend(
                    graph.node[*n]
                        .input
                        .iter()
                        .map(String::as_str)
                        .filter(|s| !s.is_empty()),
                );
            }
        }
    }
    needed.into_iter().collect()
}

/// Whether quern evaluates `node`'s operator natively (attribute errors surface when
/// compiling).
fn is_native(node: &pb::NodeProto) -> bool {
    let standard = node.domain.is_empty() || node.domain == "ai.onnx";
    matches!(
        (standard, node.domain == ML, node.op_type.as_str()),
        (
            true,
            _,
            "Identity" | "Cast" | "Softmax" | "Sigmoid" | "Concat"
        ) | (
            _,
            true,
            "Scaler"
                | "Normalizer"
                | "Imputer"
                | "LinearRegressor"
                | "LinearClassifier"
                | "TreeEnsembleRegressor"
                | "TreeEnsembleClassifier"
                | "ArrayFeatureExtractor"
        )
    )
}

struct Attrs<'a>(&'a pb::NodeProto);

impl<'a> Attrs<'a> {
    fn get(&self, name: &str) -> Option<&'a pb::AttributeProto> {
        self.0.attribute.iter().find(|a| a.name == name)
    }

    fn ints(&self, name: &str) -> &'a [i64] {
        self.get(name).map_or(&[], |a| a.ints.as_slice())
    }

    fn int(&self, name: &str, default: i64) -> i64 {
        self.get(name).map_or(default, |a| a.i)
    }

    fn string(&self, name: &str) -> String {
        self.get(name)
            .map(|a| String::from_utf8_lossy(&a.s).into_owned())
            .unwrap_or_default()
    }

    fn strings(&self, name: &str) -> Vec<String> {
        self.get(name).map_or_else(Vec::new, |a| {
            a.strings
                .iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect()
        })
    }

    /// `name` as floats, or `name_as_tensor` (doubles) when present.
    fn floats(&self, name: &str) -> Result<Vec<f64>, String> {
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

    fn post_transform(&self) -> Result<PostTransform, String> {
        let p = PostTransform::parse(&self.0.op_type, &self.string("post_transform"))?;
        if p == PostTransform::Probit {
            return Err(format!(
                "{}: post_transform PROBIT is not supported",
                self.0.op_type
            ));
        }
        Ok(p)
    }
}

fn tensor_f64(t: &pb::TensorProto) -> Result<Vec<f64>, String> {
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
            return Err(format!(
                "tensor '{}' has element type {}; expected float or double",
                t.name,
                elem_type_name(other)
            ))
        }
    })
}

fn tensor_i64(t: &pb::TensorProto) -> Result<Vec<i64>, String> {
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
            return Err(format!(
                "tensor '{}' has element type {}; expected integers",
                t.name,
                elem_type_name(other)
            ))
        }
    })
}

/// Compiles the needed nodes into native steps; returns the program, the output width
/// and whether tree ensembles use the branch-free layout.
fn compile_native(
    graph: &pb::GraphProto,
    initializers: &HashMap<&str, &pb::TensorProto>,
    producers: &HashMap<&str, (usize, usize)>,
    needed: &[usize],
    inputs: &[ModelInput],
    target: &str,
) -> Result<(Program, usize, bool), String> {
    let mut slot_of: HashMap<String, usize> = HashMap::new();
    let mut widths: Vec<usize> = Vec::new();
    let mut input_slots = Vec::new();
    for input in inputs {
        slot_of.insert(input.name.clone(), widths.len());
        input_slots.push(widths.len());
        widths.push(input.width);
    }
    let mut steps = Vec::new();
    let mut compiled_trees = true;
    for &n in needed {
        let node = &graph.node[n];
        let context = |e: String| format!("node '{}' ({}): {e}", node.name, op_name(node));
        let a = Attrs(node);
        // The output this program needs from the node.
        let out_index = node
            .output
            .iter()
            .position(|o| o == target || needed.iter().any(|m| graph.node[*m].input.contains(o)))
            .unwrap_or(0);
        let op = match node.op_type.as_str() {
            "Identity" => Op::Identity,
            "Cast" => match a.int("to", 0) {
                1 => Op::CastF32,
                11 => Op::CastF64,
                other => {
                    return Err(context(format!(
                        "a cast to {} on the scored path is not supported",
                        elem_type_name(other as i32)
                    )))
                }
            },
            "Softmax" | "Concat" => {
                let axis = a.int("axis", if node.op_type == "Softmax" { -1 } else { 1 });
                if axis != 1 && axis != -1 {
                    return Err(context(format!(
                        "axis {axis} is not supported (only the feature axis)"
                    )));
                }
                if node.op_type == "Softmax" {
                    Op::Softmax
                } else {
                    Op::Concat
                }
            }
            "Sigmoid" => Op::Sigmoid,
            "Scaler" => Op::Scaler {
                offset: a.floats("offset").map_err(context)?,
                scale: a.floats("scale").map_err(context)?,
            },
            "Normalizer" => Op::Normalizer(match a.string("norm").as_str() {
                "MAX" => Norm::Max,
                "L1" => Norm::L1,
                "L2" => Norm::L2,
                other => return Err(context(format!("unknown norm '{other}'"))),
            }),
            "Imputer" => Op::Imputer {
                values: a.floats("imputed_value_floats").map_err(context)?,
                replaced: a
                    .get("replaced_value_float")
                    .map_or(0.0, |v| f64::from(v.f)),
            },
            "LinearRegressor" | "LinearClassifier" => {
                let classifier = node.op_type == "LinearClassifier";
                if classifier && out_index == 0 {
                    return Err(context(
                        "its label output is not scored; score the probabilities".into(),
                    ));
                }
                let intercepts = a.floats("intercepts").map_err(context)?;
                let coefficients = a.floats("coefficients").map_err(context)?;
                let rows = if classifier {
                    intercepts.len().max(1)
                } else {
                    a.int("targets", 1).max(1) as usize
                };
                let n_labels = labels_of(node).map_or(0, |l| l.len());
                Op::Linear {
                    coefficients,
                    intercepts,
                    rows,
                    post: a.post_transform().map_err(context)?,
                    binary_single: classifier && rows == 1 && n_labels == 2,
                }
            }
            "TreeEnsembleRegressor" | "TreeEnsembleClassifier" => {
                let classifier = node.op_type == "TreeEnsembleClassifier";
                if classifier && out_index == 0 {
                    return Err(context(
                        "its label output is not scored; score the probabilities".into(),
                    ));
                }
                let prefix = if classifier { "class" } else { "target" };
                let n_outputs = if classifier {
                    labels_of(node).map_or(0, |l| l.len())
                } else {
                    a.int("n_targets", 1).max(1) as usize
                };
                let trees = TreeEnsemble::new(TreeAttributes {
                    op: &node.op_type,
                    nodes_treeids: a.ints("nodes_treeids"),
                    nodes_nodeids: a.ints("nodes_nodeids"),
                    nodes_featureids: a.ints("nodes_featureids"),
                    nodes_values: a.floats("nodes_values").map_err(context)?,
                    nodes_modes: a.strings("nodes_modes"),
                    nodes_truenodeids: a.ints("nodes_truenodeids"),
                    nodes_falsenodeids: a.ints("nodes_falsenodeids"),
                    nodes_missing_value_tracks_true: a.ints("nodes_missing_value_tracks_true"),
                    leaf_treeids: a.ints(&format!("{prefix}_treeids")),
                    leaf_nodeids: a.ints(&format!("{prefix}_nodeids")),
                    leaf_ids: a.ints(&format!("{prefix}_ids")),
                    leaf_weights: a.floats(&format!("{prefix}_weights")).map_err(context)?,
                    base_values: a.floats("base_values").map_err(context)?,
                    post_transform: a.post_transform().map_err(context)?,
                    aggregate_function: a.string("aggregate_function"),
                    n_outputs,
                    is_classifier: classifier,
                })
                .map_err(context)?;
                compiled_trees &= trees.is_compiled();
                Op::Trees(Box::new(trees))
            }
            "ArrayFeatureExtractor" => {
                let indices = node
                    .input
                    .get(1)
                    .and_then(|i| initializers.get(i.as_str()))
                    .ok_or_else(|| context("only constant indices are supported".into()))?;
                let idx = tensor_i64(indices).map_err(context)?;
                Op::Select(
                    idx.into_iter()
                        .map(|i| usize::try_from(i).map_err(|_| context(format!("index {i}"))))
                        .collect::<Result<_, _>>()?,
                )
            }
            _ => return Err(unsupported(node, true)),
        };
        // Concat takes every input; the others one (ArrayFeatureExtractor's second,
        // its constant indices, was read above).
        let n_inputs = if matches!(op, Op::Concat) {
            node.input.len()
        } else {
            1
        };
        let data_inputs: Vec<&String> = node.input.iter().take(n_inputs).collect();
        let mut in_slots = Vec::new();
        for name in data_inputs {
            let slot = *slot_of.get(name.as_str()).ok_or_else(|| {
                if initializers.contains_key(name.as_str()) {
                    context(format!("constant input '{name}' is not supported here"))
                } else if producers.contains_key(name.as_str()) {
                    context(format!("input '{name}' is produced after this node"))
                } else {
                    context(format!("input '{name}' is not in the graph"))
                }
            })?;
            in_slots.push(slot);
        }
        let in_widths: Vec<usize> = in_slots.iter().map(|s| widths[*s]).collect();
        let width = op.width(&in_widths).map_err(context)?;
        let out_name = &node.output[out_index];
        slot_of.insert(out_name.clone(), widths.len());
        steps.push(Step {
            op,
            inputs: in_slots,
            output: widths.len(),
        });
        widths.push(width);
    }
    let output = *slot_of
        .get(target)
        .ok_or_else(|| format!("output '{target}' is not computed by the graph"))?;
    let has_trees = steps.iter().any(|s| matches!(s.op, Op::Trees(_)));
    Ok((
        Program {
            inputs: input_slots,
            steps,
            output,
            slots: widths.len(),
        },
        widths[output],
        has_trees && compiled_trees,
    ))
}

/// Hands the needed nodes to tract, with a symbolic batch dimension.
fn compile_tract(
    proto: &pb::ModelProto,
    needed: &[usize],
    inputs: &[ModelInput],
    target: &str,
) -> Result<(Arc<TypedRunnableModel>, usize), String> {
    let onnx = tract_onnx::onnx();
    let graph = proto.graph.as_ref().ok_or("the ONNX model has no graph")?;
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
    let err = |e: tract_onnx::prelude::TractError| format!("tract: {e:#}");
    let mut model = onnx
        .with_ignore_output_shapes(true)
        .with_ignore_output_types(true)
        .model_for_proto_model(&pruned)
        .map_err(err)?;
    let batch = model.symbols.sym("N");
    for (i, input) in inputs.iter().enumerate() {
        let dt = match input.elem {
            ElemType::Float => tract_onnx::prelude::DatumType::F32,
            ElemType::Double => tract_onnx::prelude::DatumType::F64,
        };
        let shape: Vec<TDim> = vec![batch.clone().into(), (input.width as i64).into()];
        model
            .set_input_fact(i, InferenceFact::dt_shape(dt, shape))
            .map_err(err)?;
    }
    let typed = model.into_optimized().map_err(err)?;
    let fact = typed.output_fact(0).map_err(err)?.clone();
    let width = match fact.shape.as_concrete() {
        Some([_, w]) => *w,
        Some([_]) => 1,
        _ => match fact.shape.dims().len() {
            1 => 1,
            2 => fact.shape.dims()[1]
                .to_i64()
                .map_err(|_| format!("output '{target}' has no fixed width"))?
                as usize,
            _ => {
                return Err(format!(
                    "output '{target}' has shape {:?}; expected [N] or [N, k]",
                    fact.shape
                ))
            }
        },
    };
    let plan = typed.into_runnable().map_err(err)?;
    Ok((plan, width))
}
