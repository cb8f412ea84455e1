//! Model scoring kernels, one thread: a batch of 8192 rows × 8 features scored by
//! - the logistic regression of the parity fixtures (skl2onnx: LinearClassifier), and
//! - a gradient boosting of 100 trees of depth 6 (TreeEnsembleClassifier, binary, one
//!   score per row and LOGISTIC, as skl2onnx writes GradientBoostingClassifier), built
//!   here with random splits,
//!
//! through `OnnxModel::score`, as the SQL function calls it per batch.
//!
//! Targets (per core): LR ≥ scikit-learn predict_proba on numpy (~34 M rows/s here);
//! GBM ≥ 3 M rows/s. Run: `cargo bench --bench models`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use prost::Message;
use quern::models::OnnxModel;
use tract_onnx::pb;

const ROWS: usize = 8192;
const FEATURES: usize = 8;

/// A deterministic xorshift stream in [0, 1).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn ints(name: &str, v: Vec<i64>) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: 7,
        ints: v,
        ..Default::default()
    }
}

fn floats(name: &str, v: Vec<f32>) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: 6,
        floats: v,
        ..Default::default()
    }
}

fn strings(name: &str, v: Vec<&str>) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: 8,
        strings: v.into_iter().map(|s| s.as_bytes().to_vec()).collect(),
        ..Default::default()
    }
}

fn tensor_input(name: &str, width: i64) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{dimension::Value, Dimension};
    pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: 1,
                shape: Some(pb::TensorShapeProto {
                    dim: vec![
                        Dimension {
                            value: Some(Value::DimParam("N".into())),
                            ..Default::default()
                        },
                        Dimension {
                            value: Some(Value::DimValue(width)),
                            ..Default::default()
                        },
                    ],
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A binary TreeEnsembleClassifier of `trees` complete trees of depth `depth`.
fn gradient_boosting(trees: usize, depth: u32) -> Vec<u8> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut tree_ids, mut node_ids, mut feature_ids, mut values, mut modes) =
        (vec![], vec![], vec![], vec![], vec![]);
    let (mut true_ids, mut false_ids) = (vec![], vec![]);
    let (mut c_tree, mut c_node, mut c_ids, mut c_weights) = (vec![], vec![], vec![], vec![]);
    let inner = (1i64 << depth) - 1;
    for t in 0..trees as i64 {
        for n in 0..(2 * inner + 1) {
            tree_ids.push(t);
            node_ids.push(n);
            if n < inner {
                feature_ids.push((rng.next() * FEATURES as f64) as i64);
                values.push((rng.next() * 4.0 - 2.0) as f32);
                modes.push("BRANCH_LEQ");
                true_ids.push(2 * n + 1);
                false_ids.push(2 * n + 2);
            } else {
                feature_ids.push(0);
                values.push(0.0);
                modes.push("LEAF");
                true_ids.push(0);
                false_ids.push(0);
                c_tree.push(t);
                c_node.push(n);
                c_ids.push(0);
                c_weights.push((rng.next() - 0.5) as f32 * 0.2);
            }
        }
    }
    let node = pb::NodeProto {
        op_type: "TreeEnsembleClassifier".into(),
        domain: "ai.onnx.ml".into(),
        input: vec!["X".into()],
        output: vec!["label".into(), "probabilities".into()],
        attribute: vec![
            floats("base_values", vec![0.1]),
            ints("class_ids", c_ids),
            ints("class_nodeids", c_node),
            ints("class_treeids", c_tree),
            floats("class_weights", c_weights),
            ints("classlabels_int64s", vec![0, 1]),
            ints("nodes_falsenodeids", false_ids),
            ints("nodes_featureids", feature_ids),
            strings("nodes_modes", modes),
            ints("nodes_nodeids", node_ids),
            ints("nodes_treeids", tree_ids),
            ints("nodes_truenodeids", true_ids),
            floats("nodes_values", values),
            pb::AttributeProto {
                name: "post_transform".into(),
                r#type: 3,
                s: b"LOGISTIC".to_vec(),
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let model = pb::ModelProto {
        ir_version: 8,
        opset_import: vec![
            pb::OperatorSetIdProto {
                domain: String::new(),
                version: 17,
            },
            pb::OperatorSetIdProto {
                domain: "ai.onnx.ml".into(),
                version: 1,
            },
        ],
        graph: Some(pb::GraphProto {
            node: vec![node],
            input: vec![tensor_input("X", FEATURES as i64)],
            output: vec![pb::ValueInfoProto {
                name: "probabilities".into(),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    model.encode_to_vec()
}

fn features() -> Vec<Vec<f64>> {
    let mut rng = Rng(42);
    (0..FEATURES)
        .map(|_| (0..ROWS).map(|_| rng.next() * 4.0 - 2.0).collect())
        .collect()
}

fn bench(c: &mut Criterion) {
    let cols = features();
    let slices: Vec<&[f64]> = cols.iter().map(Vec::as_slice).collect();
    let lr_bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/models/logreg.onnx"
    ))
    .expect("fixture");
    let lr = OnnxModel::from_bytes(&lr_bytes, None).expect("lr loads");
    let gbm = OnnxModel::from_bytes(&gradient_boosting(100, 6), None).expect("gbm loads");
    assert!(gbm.compiled_trees);
    let mut group = c.benchmark_group("score");
    group.throughput(Throughput::Elements(ROWS as u64));
    group.bench_function("logistic_regression_8192x8", |b| {
        b.iter(|| lr.score(&slices, ROWS).expect("scores"))
    });
    group.bench_function("gradient_boosting_100x6_8192x8", |b| {
        b.iter(|| gbm.score(&slices, ROWS).expect("scores"))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
