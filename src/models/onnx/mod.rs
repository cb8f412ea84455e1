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
//!
//! `decode` reads the protobuf's parts, `prune` chooses the scored output and the nodes
//! it needs, `compile` makes them native steps, and `tract` runs the others.

mod compile;
mod decode;
mod prune;
mod tract;

use std::collections::BTreeSet;

use prost::Message;
use tract_onnx::pb;

use crate::models::error::OnnxError;

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
#[non_exhaustive]
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
    /// What evaluates the graph.
    pub runtime: Runtime,
    /// Whether tree ensembles use the branch-free layout.
    pub compiled_trees: bool,
    runner: Runner,
}

/// What evaluates a model's graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Runtime {
    /// quern's own kernels for the ONNX-ML operators (linear models, trees, scalers…).
    Native,
    /// tract, for graphs of standard operators (e.g. neural networks).
    Tract,
}

impl Runtime {
    /// `native` or `tract`, as `quern models` shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::Native => "native",
            Runtime::Tract => "tract",
        }
    }
}

impl std::fmt::Display for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
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
    Native(compile::Program),
    Tract(tract::Plan),
}

impl OnnxModel {
    /// Reads an ONNX file's bytes. `output` names the graph tensor to score instead of
    /// the default (a classifier's probabilities, else the first float output).
    pub fn from_bytes(bytes: &[u8], output: Option<&str>) -> Result<Self, OnnxError> {
        let proto = pb::ModelProto::decode(bytes).map_err(OnnxError::Decode)?;
        let graph = proto.graph.as_ref().ok_or(OnnxError::NoGraph)?;
        // Duplicate opset imports (some exporters list the default domain twice) are
        // accepted, as onnxruntime accepts them; the operators decide what is supported.
        let initializers = decode::initializers(graph);
        let inputs = decode::inputs(graph, &initializers)?;
        let producers = prune::producers(graph);
        let (target, labels) = prune::choose_output(graph, &producers, output)?;
        let needed = prune::needed_nodes(graph, &producers, &target);
        let kind = match labels {
            Some(l) => OutputKind::Probabilities(l),
            None => OutputKind::Values,
        };
        let operators: Vec<String> = needed
            .iter()
            .map(|n| decode::op_name(&graph.node[*n]))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let (runner, width, compiled_trees) = if compile::is_native_graph(graph, &needed)? {
            let g = compile::Graph {
                graph,
                initializers: &initializers,
                producers: &producers,
                needed: &needed,
            };
            let (program, width, compiled) = compile::native(&g, &inputs, &target)?;
            (Runner::Native(program), width, compiled)
        } else {
            let (plan, width) = tract::compile(&proto, &needed, &inputs, &target)?;
            (Runner::Tract(plan), width, false)
        };
        check_kind(&kind, width)?;
        let runtime = match runner {
            Runner::Native(_) => Runtime::Native,
            Runner::Tract(_) => Runtime::Tract,
        };
        Ok(OnnxModel {
            inputs,
            output: target,
            kind,
            width,
            operators,
            runtime,
            compiled_trees,
            runner,
        })
    }

    /// The number of features (SQL arguments) the model takes.
    pub fn n_features(&self) -> usize {
        self.inputs.iter().map(|i| i.width).sum()
    }

    /// Scores `rows` rows given as one column per feature; returns the output columns.
    pub fn score(&self, features: &[&[f64]], rows: usize) -> Result<Vec<Vec<f64>>, OnnxError> {
        match &self.runner {
            Runner::Native(p) => Ok(p.run(&self.inputs, features, rows)),
            Runner::Tract(plan) => tract::score(plan, &self.inputs, self.width, features, rows),
        }
    }
}

fn check_kind(kind: &OutputKind, width: usize) -> Result<(), OnnxError> {
    if width == 0 {
        return Err(OnnxError::EmptyOutput);
    }
    match kind {
        OutputKind::Probabilities(l) if l.len() != width => Err(OnnxError::LabelCount {
            labels: l.len(),
            width,
        }),
        _ => Ok(()),
    }
}
