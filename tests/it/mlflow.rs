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
        let text = reqwest::Client::new()
            .post(format!("{}/api/2.0/mlflow/{path}", self.uri()))
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        serde_json::from_str(&text).unwrap()
    }

    async fn get(&self, path: &str, query: &[(&str, &str)]) -> Value {
        let text = reqwest::Client::new()
            .get(format!("{}/api/2.0/mlflow/{path}", self.uri()))
            .query(query)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        serde_json::from_str(&text).unwrap()
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
    let experiment = server
        .get(
            "experiments/get-by-name",
            &[("experiment_name", "quern/events")],
        )
        .await;
    let id = experiment["experiment"]["experiment_id"]
        .as_str()
        .unwrap()
        .to_string();
    let runs = server
        .post("runs/search", json!({ "experiment_ids": [id] }))
        .await;
    let runs = runs["runs"].as_array().unwrap();
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
