//! Compiling the kept nodes into native steps (the ONNX-ML operators and the glue
//! scikit-learn exporters put around them), one function per operator family, and
//! running the resulting program over a batch.

use std::collections::HashMap;

use tract_onnx::pb;

use super::decode::{elem_type_name, labels_of, op_name, tensor_i64, unsupported, Attrs, ML};
use super::prune::Producers;
use super::{ElemType, ModelInput};
use crate::models::error::OnnxError;
use crate::models::ops::{Norm, Op};
use crate::models::transform::PostTransform;
use crate::models::trees::{TreeAttributes, TreeEnsemble};

/// The native steps of a graph, over numbered slots (a slot holds one tensor's columns).
pub(super) struct Program {
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

impl Program {
    /// Scores `rows` rows of `features` (one column per feature, `inputs` in order).
    pub(super) fn run(
        &self,
        inputs: &[ModelInput],
        features: &[&[f64]],
        rows: usize,
    ) -> Vec<Vec<f64>> {
        let mut slots: Vec<Option<Vec<Vec<f64>>>> = (0..self.slots).map(|_| None).collect();
        let mut next = 0;
        for (input, slot) in inputs.iter().zip(&self.inputs) {
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
        // How many more times each slot is read (by the steps left, and as the output),
        // so that a step that passes its input on unchanged (`Identity`, a cast to
        // double) can move the columns when it is their last reader instead of copying.
        let mut reads = vec![0usize; self.slots];
        for s in self.steps.iter().flat_map(|step| &step.inputs) {
            reads[*s] += 1;
        }
        reads[self.output] += 1;
        for step in &self.steps {
            for s in &step.inputs {
                reads[*s] -= 1;
            }
            if let ([only], Op::Identity | Op::CastF64) = (step.inputs.as_slice(), &step.op) {
                if reads[*only] == 0 {
                    slots[step.output] = slots[*only].take();
                    continue;
                }
            }
            let inputs: Vec<&[Vec<f64>]> = step
                .inputs
                .iter()
                .map(|s| slots[*s].as_deref().unwrap_or(&[]))
                .collect();
            let out = step.op.eval(&inputs, rows);
            slots[step.output] = Some(out);
        }
        slots[self.output].take().unwrap_or_default()
    }
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

/// Whether the kept nodes are evaluated natively: when any is an ONNX-ML operator, or
/// all are operators quern has. A graph with ONNX-ML operators and one quern lacks is
/// refused, naming it; `false` leaves the graph to tract.
pub(super) fn is_native_graph(graph: &pb::GraphProto, needed: &[usize]) -> Result<bool, OnnxError> {
    let any_ml = needed.iter().any(|n| graph.node[*n].domain == ML);
    let all_native = needed.iter().all(|n| is_native(&graph.node[*n]));
    if !(any_ml || all_native) {
        return Ok(false);
    }
    match needed
        .iter()
        .map(|n| &graph.node[*n])
        .find(|n| !is_native(n))
    {
        Some(bad) => Err(unsupported(bad, any_ml)),
        None => Ok(true),
    }
}

/// The graph a program is compiled from.
pub(super) struct Graph<'a> {
    pub(super) graph: &'a pb::GraphProto,
    pub(super) initializers: &'a HashMap<&'a str, &'a pb::TensorProto>,
    pub(super) producers: &'a Producers<'a>,
    /// The nodes the scored output depends on, in graph order.
    pub(super) needed: &'a [usize],
}

/// Compiles the needed nodes into native steps; returns the program, the output width
/// and whether tree ensembles use the branch-free layout.
pub(super) fn native(
    g: &Graph<'_>,
    inputs: &[ModelInput],
    target: &str,
) -> Result<(Program, usize, bool), OnnxError> {
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
    for &n in g.needed {
        let node = &g.graph.node[n];
        let context = |source: OnnxError| OnnxError::Node {
            node: node.name.clone(),
            op: op_name(node),
            source: Box::new(source),
        };
        // The output this program needs from the node.
        let out_index = node
            .output
            .iter()
            .position(|o| {
                o == target || g.needed.iter().any(|m| g.graph.node[*m].input.contains(o))
            })
            .unwrap_or(0);
        let op = native_op(g, node, out_index)?;
        if let Op::Trees(trees) = &op {
            compiled_trees &= trees.is_compiled();
        }
        let in_slots = data_slots(g, node, &op, &slot_of).map_err(context)?;
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
        .ok_or_else(|| OnnxError::OutputNotComputed {
            output: target.to_string(),
        })?;
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

/// The native operator of `node`, whose output `out_index` is used; an error names the
/// node.
fn native_op(g: &Graph<'_>, node: &pb::NodeProto, out_index: usize) -> Result<Op, OnnxError> {
    let a = Attrs(node);
    let op = match node.op_type.as_str() {
        "Identity" => Ok(Op::Identity),
        "Cast" => cast(&a),
        "Softmax" | "Concat" => along_features(node, &a),
        "Sigmoid" => Ok(Op::Sigmoid),
        "Scaler" => scaler(&a),
        "Normalizer" => normalizer(&a),
        "Imputer" => imputer(&a),
        "LinearRegressor" | "LinearClassifier" => linear(node, &a, out_index),
        "TreeEnsembleRegressor" | "TreeEnsembleClassifier" => tree_ensemble(node, &a, out_index),
        "ArrayFeatureExtractor" => select(g, node),
        _ => return Err(unsupported(node, true)),
    };
    op.map_err(|source| OnnxError::Node {
        node: node.name.clone(),
        op: op_name(node),
        source: Box::new(source),
    })
}

fn cast(a: &Attrs<'_>) -> Result<Op, OnnxError> {
    match a.int("to", 0) {
        1 => Ok(Op::CastF32),
        11 => Ok(Op::CastF64),
        other => Err(OnnxError::CastTo {
            elem: elem_type_name(other as i32),
        }),
    }
}

/// `Softmax` or `Concat`, along the feature axis only.
fn along_features(node: &pb::NodeProto, a: &Attrs<'_>) -> Result<Op, OnnxError> {
    let axis = a.int("axis", if node.op_type == "Softmax" { -1 } else { 1 });
    if axis != 1 && axis != -1 {
        return Err(OnnxError::Axis { axis });
    }
    Ok(if node.op_type == "Softmax" {
        Op::Softmax
    } else {
        Op::Concat
    })
}

fn scaler(a: &Attrs<'_>) -> Result<Op, OnnxError> {
    Ok(Op::Scaler {
        offset: a.floats("offset")?,
        scale: a.floats("scale")?,
    })
}

fn normalizer(a: &Attrs<'_>) -> Result<Op, OnnxError> {
    Ok(Op::Normalizer(match a.string("norm").as_str() {
        "MAX" => Norm::Max,
        "L1" => Norm::L1,
        "L2" => Norm::L2,
        other => {
            return Err(OnnxError::UnknownNorm {
                norm: other.to_string(),
            })
        }
    }))
}

fn imputer(a: &Attrs<'_>) -> Result<Op, OnnxError> {
    Ok(Op::Imputer {
        values: a.floats("imputed_value_floats")?,
        replaced: a
            .get("replaced_value_float")
            .map_or(0.0, |v| f64::from(v.f)),
    })
}

/// `LinearRegressor`, or `LinearClassifier`'s scores (output 1).
fn linear(node: &pb::NodeProto, a: &Attrs<'_>, out_index: usize) -> Result<Op, OnnxError> {
    let classifier = node.op_type == "LinearClassifier";
    if classifier && out_index == 0 {
        return Err(OnnxError::LabelOutput);
    }
    let intercepts = a.floats("intercepts")?;
    let coefficients = a.floats("coefficients")?;
    let rows = if classifier {
        intercepts.len().max(1)
    } else {
        a.int("targets", 1).max(1) as usize
    };
    let n_labels = labels_of(node).map_or(0, |l| l.len());
    let post = a.post_transform()?;
    // A binary logistic regression as skl2onnx exports it: two weight rows, the first
    // the exact negation of the second. Scored as the second row's one score s, the
    // probabilities are logistic(-s) and logistic(s): one linear sweep and one
    // exponential a row instead of two each, P(1) the same bits.
    let w = coefficients.len() / rows.max(1);
    let negated =
        |a: &[f64], b: &[f64]| a.iter().zip(b).all(|(x, y)| x.to_bits() == (-y).to_bits());
    let (coefficients, intercepts, rows) = if classifier
        && rows == 2
        && n_labels == 2
        && post == PostTransform::Logistic
        && coefficients.len() == 2 * w
        && negated(&coefficients[..w], &coefficients[w..])
        && negated(&intercepts[..1], &intercepts[1..])
    {
        (coefficients[w..].to_vec(), intercepts[1..].to_vec(), 1)
    } else {
        (coefficients, intercepts, rows)
    };
    Ok(Op::Linear {
        coefficients,
        intercepts,
        rows,
        post,
        binary_single: classifier && rows == 1 && n_labels == 2,
    })
}

/// `TreeEnsembleRegressor`, or `TreeEnsembleClassifier`'s scores (output 1).
fn tree_ensemble(node: &pb::NodeProto, a: &Attrs<'_>, out_index: usize) -> Result<Op, OnnxError> {
    let classifier = node.op_type == "TreeEnsembleClassifier";
    if classifier && out_index == 0 {
        return Err(OnnxError::LabelOutput);
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
        nodes_values: a.floats("nodes_values")?,
        nodes_modes: a.strings("nodes_modes"),
        nodes_truenodeids: a.ints("nodes_truenodeids"),
        nodes_falsenodeids: a.ints("nodes_falsenodeids"),
        nodes_missing_value_tracks_true: a.ints("nodes_missing_value_tracks_true"),
        leaf_treeids: a.ints(&format!("{prefix}_treeids")),
        leaf_nodeids: a.ints(&format!("{prefix}_nodeids")),
        leaf_ids: a.ints(&format!("{prefix}_ids")),
        leaf_weights: a.floats(&format!("{prefix}_weights"))?,
        base_values: a.floats("base_values")?,
        post_transform: a.post_transform()?,
        aggregate_function: a.string("aggregate_function"),
        n_outputs,
        is_classifier: classifier,
    })?;
    Ok(Op::Trees(Box::new(trees)))
}

/// `ArrayFeatureExtractor` with constant indices.
fn select(g: &Graph<'_>, node: &pb::NodeProto) -> Result<Op, OnnxError> {
    let indices = node
        .input
        .get(1)
        .and_then(|i| g.initializers.get(i.as_str()))
        .ok_or(OnnxError::ConstantIndicesOnly)?;
    let idx = tensor_i64(indices)?;
    Ok(Op::Select(
        idx.into_iter()
            .map(|i| usize::try_from(i).map_err(|_| OnnxError::NegativeIndex { index: i }))
            .collect::<Result<_, _>>()?,
    ))
}

/// The slots of the node's data inputs: Concat takes every input, the others one
/// (ArrayFeatureExtractor's second, its constant indices, is read by `select`).
fn data_slots(
    g: &Graph<'_>,
    node: &pb::NodeProto,
    op: &Op,
    slot_of: &HashMap<String, usize>,
) -> Result<Vec<usize>, OnnxError> {
    let n_inputs = if matches!(op, Op::Concat) {
        node.input.len()
    } else {
        1
    };
    node.input
        .iter()
        .take(n_inputs)
        .map(|name| {
            slot_of.get(name.as_str()).copied().ok_or_else(|| {
                let input = name.clone();
                if g.initializers.contains_key(name.as_str()) {
                    OnnxError::ConstantInput { input }
                } else if g.producers.contains_key(name.as_str()) {
                    OnnxError::InputAfterNode { input }
                } else {
                    OnnxError::UnknownInput { input }
                }
            })
        })
        .collect()
}
