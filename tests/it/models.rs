//! ONNX model scoring: parity with scikit-learn on committed fixtures
//! (scripts/fixtures/models.py), the SQL function's types and NULL handling, and the
//! errors for bad models and bad calls.

use std::collections::BTreeMap;

use quern::datafusion::arrow::array::{Array, AsArray};
use quern::datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type};
use quern::models::{OnnxModel, OutputKind};

use crate::common::{repo_root, stderr, TempProject};

const TOLERANCE: f64 = 1e-5;

/// Feature columns f0..f7 and the expected outputs `<model>__p_<class>` / `<model>__y`.
fn expected() -> (Vec<Vec<f64>>, BTreeMap<String, Vec<f64>>) {
    let text =
        std::fs::read_to_string(repo_root().join("tests/fixtures/models/expected.csv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let mut cols: Vec<Vec<f64>> = vec![Vec::new(); header.len()];
    for line in lines {
        for (c, v) in cols.iter_mut().zip(line.split(',')) {
            c.push(v.parse().unwrap());
        }
    }
    let features = cols[..8].to_vec();
    let outputs = header[8..]
        .iter()
        .map(|h| h.to_string())
        .zip(cols[8..].iter().cloned())
        .collect();
    (features, outputs)
}

fn load(name: &str) -> OnnxModel {
    let bytes =
        std::fs::read(repo_root().join(format!("tests/fixtures/models/{name}.onnx"))).unwrap();
    OnnxModel::from_bytes(&bytes, None).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn scores_match_scikit_learn() {
    let (features, outputs) = expected();
    let rows = features[0].len();
    let slices: Vec<&[f64]> = features.iter().map(Vec::as_slice).collect();
    let mut by_model: BTreeMap<&str, Vec<(&str, &Vec<f64>)>> = BTreeMap::new();
    for (column, values) in &outputs {
        let (model, what) = column.split_once("__").unwrap();
        by_model.entry(model).or_default().push((what, values));
    }
    // Every model the fixture script trains, with how quern must evaluate it.
    let runtimes = [
        ("gbc_binary", "native"),
        ("gbc_multiclass", "native"),
        ("gbr", "native"),
        ("linreg_normalized", "native"),
        ("logreg", "native"),
        ("logreg_multiclass", "native"),
        ("mlp_classifier", "tract"),
        ("mlp_regressor", "tract"),
        ("rf_binary", "native"),
        ("scaler_logreg", "native"),
    ];
    assert_eq!(by_model.len(), runtimes.len(), "{:?}", by_model.keys());
    for (name, runtime) in runtimes {
        let model = load(name);
        assert_eq!(model.runtime.as_str(), runtime, "{name}");
        let scored = model.score(&slices, rows).unwrap();
        let expected = &by_model[name];
        match &model.kind {
            OutputKind::Probabilities(labels) => {
                assert_eq!(labels.len(), expected.len(), "{name}");
                for (k, col) in scored.iter().enumerate() {
                    let want = expected
                        .iter()
                        .find(|(w, _)| *w == format!("p_{}", labels.name(k)))
                        .unwrap_or_else(|| panic!("{name}: no expected p_{}", labels.name(k)))
                        .1;
                    assert_close(name, col, want);
                }
            }
            OutputKind::Values => {
                assert_eq!(expected.len(), 1, "{name}");
                assert_close(name, &scored[0], expected[0].1);
            }
        }
    }
}

fn assert_close(name: &str, got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len());
    let (worst, at) = got
        .iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs())
        .enumerate()
        .map(|(i, d)| (d, i))
        .fold((0.0, 0), |a, b| if b.0 > a.0 { b } else { a });
    assert!(
        worst <= TOLERANCE,
        "{name}: row {at}: quern {} vs scikit-learn {} (|Δ| = {worst:e})",
        got[at],
        want[at]
    );
}

#[test]
fn a_model_listing_the_default_opset_twice_loads() {
    // skl2onnx writes some files with the default domain imported twice (gbr.onnx), and
    // the fixture script adds a second one to logreg.onnx; onnxruntime accepts both.
    use prost::Message;
    for name in ["logreg", "gbr"] {
        let bytes =
            std::fs::read(repo_root().join(format!("tests/fixtures/models/{name}.onnx"))).unwrap();
        let proto = tract_onnx::pb::ModelProto::decode(bytes.as_slice()).unwrap();
        let defaults = proto
            .opset_import
            .iter()
            .filter(|o| o.domain.is_empty())
            .count();
        assert_eq!(defaults, 2, "{name}");
        load(name);
    }
}

#[test]
fn gradient_boosting_trees_use_the_compiled_layout() {
    // Shallow boosted trees take the branch-free path; the deep random forest cannot.
    assert!(load("gbc_binary").compiled_trees);
    assert!(load("gbr").compiled_trees);
    assert!(!load("rf_binary").compiled_trees);
}

#[test]
fn a_nan_feature_takes_the_exact_tree_walk() {
    // The generic walk decides NaN by the node's missing-value track (false here: the
    // false branch), like onnxruntime; the compiled walk is not used for that batch.
    let model = load("gbr");
    let (features, _) = expected();
    let mut with_nan = features.clone();
    with_nan[0][3] = f64::NAN;
    let a: Vec<&[f64]> = features.iter().map(Vec::as_slice).collect();
    let b: Vec<&[f64]> = with_nan.iter().map(Vec::as_slice).collect();
    let plain = model.score(&a, 400).unwrap();
    let nan = model.score(&b, 400).unwrap();
    // Every other row scores the same through either walk.
    for i in (0..400).filter(|i| *i != 3) {
        assert!((plain[0][i] - nan[0][i]).abs() < 1e-12, "row {i}");
    }
    assert!(nan[0][3].is_finite());
}

/// A project whose local environment maps functions to the fixture models.
fn project_with_models(extra: &str) -> TempProject {
    let p = TempProject::new();
    let dir = repo_root().join("tests/fixtures/models");
    let mut models = String::from("[models]\n");
    for name in [
        "logreg",
        "gbc_multiclass",
        "logreg_multiclass",
        "gbr",
        "svc",
        "mlp_regressor",
    ] {
        models.push_str(&format!("{name} = \"{}/{name}.onnx\"\n", dir.display()));
    }
    models.push_str(extra);
    let env = p
        .read("environments/local.toml")
        .replacen("[models]\n", &models, 1);
    p.write("environments/local.toml", &env);
    p
}

async fn query(
    p: &TempProject,
    sql: &str,
) -> quern::Result<Vec<quern::datafusion::arrow::array::RecordBatch>> {
    let df = p.engine("local").query(sql).await?;
    df.collect().await.map_err(|e| quern::Error::Query {
        source: Box::new(e),
    })
}

#[tokio::test]
async fn model_functions_return_documented_types_and_null_for_null_features() {
    let p = project_with_models("");
    let features = "(VALUES (1.0, 2, 5.5, -1.0, 0.3, 2.0, 0.1, 1.5), (NULL, 2, 5.5, -1.0, 0.3, 2.0, 0.1, 1.5)) AS t(a, b, c, d, e, f, g, h)";
    let sql = format!(
        "SELECT logreg(a, b, c, d, e, f, g, h) AS p, gbr(a, b, c, d, e, f, g, h) AS y,
                gbc_multiclass(a, b, c, d, e, f, g, h) AS m,
                logreg_multiclass(a, b, c, d, e, f, g, h)['label'] AS named,
                mlp_regressor(a, b, c, d, e, f, g, h) AS nn
         FROM {features}"
    );
    let batches = query(&p, &sql).await.unwrap();
    let b = &batches[0];
    assert_eq!(b.num_rows(), 2);
    let schema = b.schema();
    assert_eq!(schema.field(0).data_type(), &DataType::Float64);
    assert_eq!(schema.field(1).data_type(), &DataType::Float64);
    let DataType::Struct(fields) = schema.field(2).data_type() else {
        panic!("{:?}", schema.field(2))
    };
    let names: Vec<&str> = fields.iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names, ["label", "p_0", "p_1", "p_2"]);
    assert_eq!(schema.field(3).data_type(), &DataType::Utf8);
    assert_eq!(schema.field(4).data_type(), &DataType::Float64);

    // The first row agrees with the model called directly; the NULL row is NULL.
    let direct = load("logreg");
    let row: [f64; 8] = [1.0, 2.0, 5.5, -1.0, 0.3, 2.0, 0.1, 1.5];
    let cols: Vec<Vec<f64>> = row.iter().map(|v| vec![*v]).collect();
    let slices: Vec<&[f64]> = cols.iter().map(Vec::as_slice).collect();
    let want = direct.score(&slices, 1).unwrap()[1][0];
    let p_col = b.column(0).as_primitive::<Float64Type>();
    assert!((p_col.value(0) - want).abs() < 1e-12);
    for c in 0..5 {
        assert!(b.column(c).is_null(1), "column {c} of the NULL row");
    }
    let m = b.column(2).as_struct();
    let label = m.column(0).as_primitive::<Int64Type>().value(0);
    let probs: Vec<f64> = (1..4)
        .map(|k| m.column(k).as_primitive::<Float64Type>().value(0))
        .collect();
    assert!((probs.iter().sum::<f64>() - 1.0).abs() < 1e-9, "{probs:?}");
    let best = probs
        .iter()
        .enumerate()
        .fold(0, |best, (k, v)| if *v > probs[best] { k } else { best });
    assert_eq!(label, best as i64);
}

#[tokio::test]
async fn bad_calls_are_plan_errors_that_say_what_the_model_takes() {
    let p = project_with_models("");
    let err = query(&p, "SELECT logreg(1.0, 2.0, 3.0) AS p")
        .await
        .unwrap_err();
    let text = err.full_message();
    assert!(
        text.contains(
            "logreg() takes 8 features (model input X [8]), but is called with 3 arguments"
        ),
        "{text}"
    );
    let err = query(&p, "SELECT logreg(1.0, 2.0, 'three', 4, 5, 6, 7, 8) AS p")
        .await
        .unwrap_err();
    let text = err.full_message();
    assert!(
        text.contains("argument 3 of model function logreg() is Utf8"),
        "{text}"
    );
}

#[tokio::test]
async fn bad_models_are_errors_naming_the_function_and_the_problem() {
    let p = project_with_models("");
    // An ONNX-ML operator quern does not evaluate: named, with the model.
    let err = query(&p, "SELECT svc(1, 2, 3, 4, 5, 6, 7, 8) AS p")
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("model function `svc`"), "{text}");
    assert!(text.contains("operator ai.onnx.ml:SVMClassifier"), "{text}");

    // A corrupt file (a truncated model), a file that is not ONNX at all, no file.
    let p = project_with_models(
        "truncated = \"models/truncated.onnx\"\nnotes = \"models/notes.onnx\"\nmissing = \"models/missing.onnx\"\n",
    );
    let bytes = std::fs::read(repo_root().join("tests/fixtures/models/gbr.onnx")).unwrap();
    std::fs::write(
        p.path().join("models/truncated.onnx"),
        &bytes[..bytes.len() / 2],
    )
    .unwrap();
    p.write("models/notes.onnx", "this is not a model\n");
    for (f, why) in [
        ("truncated", "not a valid ONNX model"),
        ("notes", "not a valid ONNX model"),
        ("missing", "cannot read"),
    ] {
        let err = query(&p, &format!("SELECT {f}(1, 2, 3, 4, 5, 6, 7, 8) AS p"))
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains(&format!("model function `{f}`")), "{text}");
        assert!(text.contains(why), "{f}: {text}");
    }
}

#[tokio::test]
async fn a_model_may_not_take_the_name_of_a_sql_function() {
    let p = project_with_models("abs = \"models/churn.onnx\"\n");
    let err = query(&p, "SELECT abs(1, 2, 3, 4, 5, 6, 7, 8) AS p")
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("model function `abs`"), "{text}");
    assert!(text.contains("name of a built-in SQL function"), "{text}");
}

#[test]
fn a_bad_model_uri_is_a_config_error_with_the_key() {
    let p = TempProject::new();
    let env = p.read("environments/local.toml").replace(
        "churn = \"models/churn.onnx\"",
        "churn = \"s3://bucket/churn.onnx\"",
    );
    p.write("environments/local.toml", &env);
    let out = p.quern(&["plan", "events"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("key `models.churn`"), "{err}");
    assert!(err.contains("models:/<name>@<alias>"), "{err}");
}

/// `scoring.churn_scores` of `project` holds scikit-learn's P(churn) for every customer
/// of the seed (within 1e-5), from models/churn.onnx.
pub fn assert_churn_scores(project: &TempProject) {
    let parse = |text: &str| -> Vec<(String, f64)> {
        text.lines()
            .skip(1)
            .map(|l| {
                let (u, p) = l.split_once(',').unwrap();
                (u.to_string(), p.parse().unwrap())
            })
            .collect()
    };
    let want = parse(
        &std::fs::read_to_string(repo_root().join("tests/fixtures/models/churn_expected.csv"))
            .unwrap(),
    );
    let got = parse(
        &project.query_csv("SELECT user_id, p_churn FROM scoring.churn_scores ORDER BY user_id"),
    );
    assert_eq!(got.len(), want.len());
    for ((u, p), (wu, wp)) in got.iter().zip(&want) {
        assert_eq!(u, wu);
        assert!(
            (p - wp).abs() <= TOLERANCE,
            "{u}: quern {p} vs scikit-learn {wp}"
        );
    }
}

#[test]
fn the_scoring_example_writes_scikit_learn_probabilities_to_delta() {
    let p = TempProject::new();
    let out = p.quern(&["run", "scoring", "--ds", "2024-03-01"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(crate::common::stdout(&out).contains("model   churn = models/churn.onnx"));
    assert_churn_scores(&p);
    // Another Delta reader sees the same table, and the run log records the model
    // (URI and the SHA-256 of the file that scored).
    let script = format!(
        r#"import deltalake, hashlib, os
t = deltalake.DeltaTable('{root}/warehouse/scoring/churn_scores').to_pyarrow_table()
m = deltalake.DeltaTable('{root}/warehouse/_quern/models').to_pyarrow_table().to_pylist()
sha = hashlib.sha256(open('{root}/models/churn.onnx', 'rb').read()).hexdigest()
assert [(r['function'], r['uri'], r['version'], r['sha256']) for r in m] == [('churn', 'models/churn.onnx', None, sha)], m
print(t.num_rows, round(sum(t.column('p_churn').to_pylist()), 6))
os._exit(0)"#,
        root = p.path().display()
    );
    let out = std::process::Command::new(crate::common::python())
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let sum = p.query_csv("SELECT round(sum(p_churn), 6) AS s FROM scoring.churn_scores");
    let sum = sum.lines().nth(1).unwrap();
    assert_eq!(crate::common::stdout(&out).trim(), format!("240 {sum}"));
}
