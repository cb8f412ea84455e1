//! Choosing the scored output (a classifier's probabilities: its `ZipMap`'s input or
//! its probability tensor; else the first floating-point output) and keeping only the
//! nodes it depends on, so a label branch never has to be supported.

use std::collections::{BTreeSet, HashMap};

use tract_onnx::pb;

use super::decode::labels_of;
use super::Labels;
use crate::models::error::OnnxError;

/// Each tensor's producer: (node index, output index).
pub(super) type Producers<'a> = HashMap<&'a str, (usize, usize)>;

/// Which node output produces each tensor.
pub(super) fn producers(graph: &pb::GraphProto) -> Producers<'_> {
    graph
        .node
        .iter()
        .enumerate()
        .flat_map(|(n, node)| {
            node.output
                .iter()
                .enumerate()
                .map(move |(k, o)| (o.as_str(), (n, k)))
        })
        .collect()
}

const CLASSIFIERS: [&str; 3] = [
    "LinearClassifier",
    "TreeEnsembleClassifier",
    "SVMClassifier",
];

/// The tensor to score and, for a classifier, its labels.
pub(super) fn choose_output(
    graph: &pb::GraphProto,
    producers: &Producers<'_>,
    requested: Option<&str>,
) -> Result<(String, Option<Labels>), OnnxError> {
    let outputs: Vec<&str> = graph.output.iter().map(|o| o.name.as_str()).collect();
    let through_zipmap = |name: &str| -> Option<(String, Labels)> {
        let (n, _) = producers.get(name)?;
        let node = &graph.node[*n];
        if node.op_type != "ZipMap" {
            return None;
        }
        let labels = labels_of(node).unwrap_or(Labels::Int(Vec::new()));
        Some((node.input.first()?.clone(), labels))
    };
    if let Some(name) = requested {
        if !outputs.contains(&name) && !producers.contains_key(name) {
            return Err(OnnxError::NoSuchOutput {
                name: name.to_string(),
                outputs: outputs.iter().map(|o| o.to_string()).collect(),
            });
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
        None => Err(OnnxError::NoFloatOutput {
            outputs: outputs.iter().map(|o| o.to_string()).collect(),
        }),
    }
}

/// The labels of the classifier whose probability output `name` is (through any
/// Identity, Cast or Normalizer).
fn classifier_labels(
    graph: &pb::GraphProto,
    producers: &Producers<'_>,
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

/// The nodes `target` depends on, in graph order.
pub(super) fn needed_nodes(
    graph: &pb::GraphProto,
    producers: &Producers<'_>,
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
