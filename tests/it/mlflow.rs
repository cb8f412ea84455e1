//! MLflow tracking against a real `mlflow server` on loopback, started by the test
//! (scripts/test installs mlflow into the test venv).

use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::{stderr, stdout, TempProject};

/// An `mlflow server` with a sqlite store in a temporary folder, stopped when dropped.
pub struct MlflowServer {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl MlflowServer {
    pub fn start() -> Self {
        let bin = std::env::var("QUERN_MLFLOW").unwrap_or_else(|_| {
            let python = crate::common::python();
            let sibling = std::path::Path::new(&python).with_file_name("mlflow");
            if sibling.is_file() {
                sibling.display().to_string()
            } else {
                "mlflow".into()
            }
        });
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(&bin)
            .args([
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--workers",
                "1",
            ])
            .arg("--backend-store-uri")
            .arg(format!("sqlite:///{}/mlflow.db", dir.path().display()))
            .arg("--artifacts-destination")
            .arg(dir.path().join("artifacts"))
            .env("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
            // Its own process group: `mlflow server` runs uvicorn as a child, which
            // must be stopped with it.
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {bin} ({e}); scripts/test installs mlflow, or set QUERN_MLFLOW"
                )
            });
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "mlflow server did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        MlflowServer {
            child,
            port,
            _dir: dir,
        }
    }

    pub fn uri(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let request = reqwest::Client::new()
            .post(format!("{}/api/2.0/mlflow/{path}", self.uri()))
            .header("Content-Type", "application/json")
            .body(body.to_string());
        Self::json(request).await
    }

    async fn get(&self, path: &str, query: &[(&str, &str)]) -> Value {
        let request = reqwest::Client::new()
            .get(format!("{}/api/2.0/mlflow/{path}", self.uri()))
            .query(query);
        Self::json(request).await
    }

    async fn json(request: reqwest::RequestBuilder) -> Value {
        let text = request.send().await.unwrap().text().await.unwrap();
        serde_json::from_str(&text).unwrap()
    }

    /// The runs of experiment `name`.
    pub async fn runs_of(&self, name: &str) -> Vec<Value> {
        let experiment = self
            .get("experiments/get-by-name", &[("experiment_name", name)])
            .await;
        let id = experiment["experiment"]["experiment_id"]
            .as_str()
            .unwrap()
            .to_string();
        let runs = self
            .post("runs/search", json!({ "experiment_ids": [id] }))
            .await;
        runs["runs"].as_array().unwrap().clone()
    }
}

impl Drop for MlflowServer {
    fn drop(&mut self) {
        // Stop the whole group (mlflow and its uvicorn worker), then reap mlflow.
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_run_is_an_mlflow_run_with_its_metrics() {
    let server = MlflowServer::start();
    let project = TempProject::new();
    project.write(
        "environments/local.toml",
        &format!(
            "{}\n[mlflow]\nuri = \"{}\"\n",
            project.read("environments/local.toml"),
            server.uri()
        ),
    );
    for ds in ["2024-03-01", "2024-03-02"] {
        let out = project.quern(&["run", "events", "--ds", ds]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(stdout(&out).contains("mlflow  run "), "{}", stdout(&out));
    }
    let runs = server.runs_of("quern/events").await;
    assert_eq!(runs.len(), 2);
    let mut seen = Vec::new();
    for run in runs {
        assert_eq!(run["info"]["status"], "FINISHED");
        let params = run["data"]["params"].as_array().unwrap();
        let ds = params.iter().find(|p| p["key"] == "ds").unwrap()["value"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(params
            .iter()
            .any(|p| p["key"] == "env" && p["value"] == "local"));
        let metrics = run["data"]["metrics"].as_array().unwrap();
        let value = |k: &str| {
            metrics
                .iter()
                .find(|m| m["key"] == k)
                .map(|m| m["value"].as_f64().unwrap())
        };
        assert!(metrics.iter().all(|m| m["timestamp"].as_i64().unwrap() > 0));
        seen.push((
            ds,
            value("active_users"),
            value("rows.events_by_day"),
            value("expectation.daily_active_users.not_null_country_"),
        ));
    }
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        seen,
        [
            ("2024-03-01".to_string(), Some(15.0), Some(18.0), Some(0.0)),
            ("2024-03-02".to_string(), Some(11.0), Some(14.0), Some(0.0)),
        ]
    );
}

#[test]
fn an_unreachable_mlflow_server_is_reported_and_the_run_keeps_its_results() {
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let project = TempProject::new();
    project.write(
        "environments/local.toml",
        &format!("{}\n[mlflow]\nuri = \"http://127.0.0.1:{closed}\"\ntoken = \"${{QUERN_TEST_MLFLOW_TOKEN}}\"\n", project.read("environments/local.toml")),
    );
    let out = project
        .command(&["run", "events", "--ds", "2024-03-01"])
        .env("QUERN_TEST_MLFLOW_TOKEN", "tok-secret")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(
            "warning: the run could not be logged to MLflow: MLflow experiments/get-by-name"
        ),
        "{text}"
    );
    assert!(!text.contains("tok-secret"));
    assert_eq!(
        project.query_csv("SELECT count(*) AS n FROM events.daily_active_users"),
        "n\n4\n"
    );
}

/// Logs each ONNX file as a new version of registered model `name` through MLflow's own
/// Python client (`mlflow.onnx.log_model`), and points `alias` at the last one. Each
/// run also keeps the file as a plain artifact under `onnx/`; returns the last run's id.
fn register(
    server: &MlflowServer,
    name: &str,
    alias: &str,
    files: &[std::path::PathBuf],
) -> String {
    const SCRIPT: &str = r#"
import sys, onnx, mlflow
from mlflow import MlflowClient
uri, name, alias, *files = sys.argv[1:]
mlflow.set_tracking_uri(uri)
versions = []
for f in files:
    with mlflow.start_run() as run:
        info = mlflow.onnx.log_model(onnx.load(f), name="model", registered_model_name=name)
        versions.append(info.registered_model_version)
        mlflow.log_artifact(f, artifact_path="onnx")
MlflowClient().set_registered_model_alias(name, alias, versions[-1])
print(run.info.run_id)
"#;
    let out = Command::new(crate::common::python())
        .arg("-c")
        .arg(SCRIPT)
        .args([server.uri().as_str(), name, alias])
        .args(files)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out).trim().lines().last().unwrap().to_string()
}

/// The repository's local environment with its `[models]` entries replaced by `models`
/// and `[mlflow]` at `uri`.
fn use_registry(project: &TempProject, models: &str, uri: &str) {
    let env = std::fs::read_to_string(crate::common::repo_root().join("environments/local.toml"))
        .unwrap()
        .replace("churn = \"models/churn.onnx\"\n", models);
    project.write(
        "environments/local.toml",
        &format!("{env}\n[mlflow]\nuri = \"{uri}\"\n"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_models_resolve_once_per_run_score_and_are_cached() {
    let server = MlflowServer::start();
    let root = crate::common::repo_root();
    // Version 1 is another model with the same inputs; the alias points at version 2.
    let run_id = register(
        &server,
        "churn",
        "champion",
        &[
            root.join("tests/fixtures/models/logreg.onnx"),
            root.join("models/churn.onnx"),
        ],
    );
    let cache = tempfile::tempdir().unwrap();
    let project = TempProject::new();
    use_registry(
        &project,
        &format!(
            "churn = \"models:/churn@champion\"\npinned = \"models:/churn/1\"\nfrom_run = \"runs:/{run_id}/onnx\"\n"
        ),
        &server.uri(),
    );
    let quern = |args: &[&str]| {
        project
            .command(args)
            .env("QUERN_MODEL_CACHE", cache.path())
            .output()
            .unwrap()
    };

    let out = quern(&["models"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let listing = stdout(&out);
    assert!(listing.contains("resolved  churn/2"), "{listing}");
    assert!(listing.contains("resolved  churn/1"), "{listing}");
    // runs:/<id>/onnx: the run's artifact folder with one .onnx file.
    assert!(
        listing.contains(&format!("runs/{run_id}/onnx/model.onnx")),
        "{listing}"
    );
    assert_eq!(
        listing.matches("runtime   native, trees compiled").count(),
        2,
        "{listing}"
    );
    assert!(
        listing.contains("inputs    X float[8] (8 arguments)"),
        "{listing}"
    );

    let out = quern(&["run", "scoring", "--ds", "2024-03-01"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let summary = stdout(&out);
    assert!(
        summary.contains("model   churn = models:/churn@champion → churn/2"),
        "{summary}"
    );
    // The scores are version 2's (the churn model), matching scikit-learn.
    crate::models::assert_churn_scores(&project);
    // The MLflow run of the pipeline records the version it scored with.
    let runs = server.runs_of("quern/scoring").await;
    let params = runs[0]["data"]["params"].as_array().unwrap().clone();
    assert!(
        params
            .iter()
            .any(|p| p["key"] == "model.churn" && p["value"] == "churn/2"),
        "{params:?}"
    );

    // An unknown alias fails the plan, names the alias, and writes nothing.
    let before = project.warehouse_state();
    use_registry(&project, "churn = \"models:/churn@nope\"\n", &server.uri());
    let out = quern(&["run", "scoring", "--ds", "2024-03-02"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("model function `churn` = \"models:/churn@nope\""),
        "{err}"
    );
    assert!(
        err.contains("alias @nope of registered model churn does not exist"),
        "{err}"
    );
    assert_eq!(project.warehouse_state(), before);
    // So does a pinned version the registry does not have.
    use_registry(&project, "churn = \"models:/churn/9\"\n", &server.uri());
    let out = quern(&["run", "scoring", "--ds", "2024-03-02"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("version 9 of registered model churn does not exist"),
        "{err}"
    );
    assert_eq!(project.warehouse_state(), before);

    // With the server gone, a pinned version comes from the cache; an alias cannot be
    // resolved, which is a plan error naming the server.
    let uri = server.uri();
    drop(server);
    let pinned = TempProject::new();
    use_registry(&pinned, "churn = \"models:/churn/2\"\n", &uri);
    let out = pinned
        .command(&["run", "scoring", "--ds", "2024-03-01"])
        .env("QUERN_MODEL_CACHE", cache.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("churn = models:/churn/2 → churn/2"));
    let alias = TempProject::new();
    use_registry(&alias, "churn = \"models:/churn@champion\"\n", &uri);
    let out = alias
        .command(&["run", "scoring", "--ds", "2024-03-01"])
        .env("QUERN_MODEL_CACHE", cache.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("cannot reach the MLflow registry at {uri}")),
        "{err}"
    );
    assert!(alias.warehouse_state().is_empty());
}
