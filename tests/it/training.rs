//! The whole pipeline in one DAG: the scoring example's `train` task (scikit-learn,
//! logged to a real `mlflow server`, registered as churn@challenger) runs inside
//! `quern run scoring`, and the scoring task downstream scores with the version it
//! registered, as onnxruntime scores that version.

use std::process::Command;

use crate::common::{python, stderr, stdout, TempProject};
use crate::mlflow::MlflowServer;

/// The example project with an `alpha` environment on local disk, scoring with
/// `models:/churn@challenger` from `server`, Python from the test venv.
fn alpha_project(server: &MlflowServer) -> TempProject {
    let project = TempProject::new();
    let local = project.read("environments/local.toml");
    let alpha = local
        .replace("root = \"warehouse\"", "root = \"warehouse-alpha\"")
        .replace(
            "churn = \"models/churn.onnx\"",
            "churn = \"models:/churn@challenger\"",
        );
    assert!(alpha.contains("warehouse-alpha") && alpha.contains("@challenger"));
    project.write(
        "environments/alpha.toml",
        &format!(
            "{alpha}\n[mlflow]\nuri = \"{}\"\n\n[python]\ninterpreter = \"{}\"\n",
            server.uri(),
            python()
        ),
    );
    project
}

/// onnxruntime's scores of the training set with the registry's `churn/<version>`
/// against quern's churn_scores: the largest difference.
fn max_score_difference(project: &TempProject, server: &MlflowServer, version: u32) -> f64 {
    const SCRIPT: &str = r#"
import sys, mlflow, numpy as np, onnxruntime as ort
from deltalake import DeltaTable
uri, root, version = sys.argv[1:]
mlflow.set_tracking_uri(uri)
model = mlflow.onnx.load_model(f"models:/churn/{version}")
sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
features = ["tenure_days", "events_30d", "active_days_30d", "sessions_30d",
            "avg_order_value", "orders_90d", "support_tickets_90d", "days_since_last_event"]
train = DeltaTable(f"{root}/warehouse-alpha/scoring/training_set").to_pandas()
scores = DeltaTable(f"{root}/warehouse-alpha/scoring/churn_scores").to_pandas()
joined = train.merge(scores, on="user_id")
assert len(joined) == len(scores) == 240, (len(joined), len(scores))
X = joined[features].to_numpy().astype(np.float32)
p = np.array([r[1] for r in sess.run(None, {"X": X})[1]])
print(float(np.max(np.abs(p - joined["p_churn"].to_numpy()))))
"#;
    let out = Command::new(python())
        .arg("-c")
        .arg(SCRIPT)
        .arg(server.uri())
        .arg(project.path())
        .arg(version.to_string())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out).trim().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn training_registers_a_version_that_scoring_uses_in_the_same_run() {
    let server = MlflowServer::start();
    let project = alpha_project(&server);
    let alpha = |args: &[&str]| {
        let mut all = vec!["--env", "alpha"];
        all.extend_from_slice(args);
        project.command(&all).output().unwrap()
    };

    // On an empty registry the alias does not resolve when the run is planned: the
    // error says that train registers it, and how to run it first. Nothing is written.
    let out = alpha(&["run", "scoring", "--ds", "2024-03-01"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("alias @challenger of registered model churn does not exist")
            && err.contains("task `train` registers this model in this run")
            && err.contains("--select train"),
        "{err}"
    );
    assert!(!project.path().join("warehouse-alpha").exists());

    // Training alone (with its upstream): version 1, the alias moved to it.
    let out = alpha(&["run", "scoring", "--select", "+train", "--ds", "2024-03-01"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stderr(&out).contains("scoring/train | registered churn version 1; churn@challenger -> 1"),
        "{}",
        stderr(&out)
    );

    // One run: features, train (version 2), then scoring with version 2, not the
    // version 1 the alias named when the run was planned.
    let out = alpha(&[
        "--progress",
        "plain",
        "run",
        "scoring",
        "--ds",
        "2024-03-02",
    ]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let summary = stdout(&out);
    assert!(
        summary.contains("model   churn = models:/churn@challenger → churn/2"),
        "{summary}"
    );
    let order: Vec<&str> = summary
        .lines()
        .filter_map(|l| l.strip_prefix("ok      "))
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(
        order,
        ["customer_features", "training_set", "train", "churn_scores"]
    );
    let diff = max_score_difference(&project, &server, 2);
    assert!(
        diff < 1e-5,
        "quern's scores differ from version 2's by {diff}"
    );
    // The run log records the version scored with, and the training's output tail.
    let log = stdout(&alpha(&[
        "query",
        "SELECT t.status, m.version FROM _quern.tasks t JOIN _quern.models m ON m.run_id = t.run_id WHERE t.task = 'train' AND t.run_id LIKE 'scoring-20240302%'",
        "--format",
        "csv",
    ]));
    assert_eq!(log, "status,version\nsucceeded,churn/2\n");
    let tail = stdout(&alpha(&[
        "query",
        "SELECT output FROM _quern.tasks WHERE task = 'train' AND run_id LIKE 'scoring-20240302%'",
        "--format",
        "csv",
    ]));
    assert!(tail.contains("churn@challenger -> 2"), "{tail}");
    // Each training is an MLflow run with its metrics.
    let runs = server.runs_of("quern-scoring-train").await;
    assert_eq!(runs.len(), 2);
    let metrics = runs[0]["data"]["metrics"].as_array().unwrap();
    assert!(
        metrics.iter().any(|m| m["key"] == "test_auc"),
        "{metrics:?}"
    );

    // A train task that registers nothing fails, and scoring does not run.
    project.write("sql/scoring/train.py", "print('no training today')\n");
    let before = project.read_dir_state("warehouse-alpha/scoring/churn_scores/_delta_log");
    let out = alpha(&["run", "scoring", "--ds", "2024-03-03"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains("it declares registers = \"churn\" but registered model `churn` got no new version in MLflow (latest: version 2)"),
        "{text}"
    );
    assert!(text.contains("    no training today"), "{text}");
    assert!(text.contains("skipped churn_scores"), "{text}");
    assert_eq!(
        project.read_dir_state("warehouse-alpha/scoring/churn_scores/_delta_log"),
        before
    );
}
