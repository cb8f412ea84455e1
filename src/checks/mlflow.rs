//! MLflow tracking over REST: when the environment names an MLflow server, each
//! pipeline run becomes an MLflow run in the experiment `quern/<pipeline>`, with the
//! run's params (env, ds), its metric values, expectation counts and rows written (with
//! timestamps), and its final status.

use std::time::Duration;

use serde_json::{json, Value};

use crate::config::{resolve_env_vars, Environment};
use crate::engine::{RunReport, TaskStatus};

/// Logs `report` to the environment's MLflow server; `Ok(None)` when it names none,
/// else the MLflow run id.
pub(crate) async fn log_run(
    env: &Environment,
    report: &RunReport,
    started_ms: i64,
) -> Result<Option<String>, String> {
    let Some(client) = Client::for_env(env)? else {
        return Ok(None);
    };
    let experiment = format!("quern/{}", report.pipeline);
    let experiment_id = match client
        .get(
            "experiments/get-by-name",
            &[("experiment_name", experiment.as_str())],
        )
        .await
    {
        Ok(v) => v["experiment"]["experiment_id"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        Err(e) if e.contains("RESOURCE_DOES_NOT_EXIST") => {
            let created = client
                .post("experiments/create", json!({ "name": experiment }))
                .await?;
            created["experiment_id"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        }
        Err(e) => return Err(e),
    };
    let run = client
        .post(
            "runs/create",
            json!({
                "experiment_id": experiment_id,
                "run_name": report.run_id,
                "start_time": started_ms,
                "tags": [
                    { "key": "quern.pipeline", "value": report.pipeline.to_string() },
                    { "key": "quern.env", "value": report.env },
                    { "key": "quern.run_id", "value": report.run_id },
                ],
            }),
        )
        .await?;
    let run_id = run["run"]["info"]["run_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let now = chrono::Utc::now().timestamp_millis();
    let mut metrics = Vec::new();
    let mut push = |key: String, value: f64| {
        metrics.push(json!({ "key": sanitize(&key), "value": value, "timestamp": now, "step": 0 }));
    };
    for m in &report.metrics {
        let Some(v) = m.value else { continue };
        match &m.group {
            Some(g) => push(format!("{}.{g}", m.metric), v),
            None => push(m.metric.clone(), v),
        }
    }
    for t in &report.tasks {
        if let TaskStatus::Succeeded(Some(w)) = &t.status {
            push(format!("rows.{}", t.task), w.rows as f64);
        }
        for e in &t.expectations {
            push(
                format!("expectation.{}.{}", t.task, e.name),
                e.violations as f64,
            );
        }
    }
    let mut params = vec![
        json!({ "key": "env", "value": report.env }),
        json!({ "key": "ds", "value": report.ds.ds() }),
    ];
    // The model versions scored with, so a run is traceable to its models.
    for m in &report.models {
        let value = m.version.clone().unwrap_or_else(|| m.uri.clone());
        params.push(json!({ "key": format!("model.{}", m.function), "value": value }));
    }
    let params = Value::Array(params);
    // MLflow takes at most 1000 metrics per batch.
    for (i, chunk) in metrics.chunks(1000).enumerate() {
        let mut body = json!({ "run_id": run_id, "metrics": chunk });
        if i == 0 {
            body["params"] = params.clone();
        }
        client.post("runs/log-batch", body).await?;
    }
    if metrics.is_empty() {
        client
            .post(
                "runs/log-batch",
                json!({ "run_id": run_id, "params": params }),
            )
            .await?;
    }
    let status = if report.succeeded() {
        "FINISHED"
    } else {
        "FAILED"
    };
    client
        .post(
            "runs/update",
            json!({ "run_id": run_id, "status": status, "end_time": now }),
        )
        .await?;
    Ok(Some(run_id))
}

/// MLflow metric keys: letters, digits, `_ - . / ` and spaces.
fn sanitize(key: &str) -> String {
    key.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_-./ ".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A client of an MLflow server's REST API (tracking, registry and artifacts).
pub(crate) struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    /// The client of the environment's `[mlflow]` server; `Ok(None)` when it names
    /// none. The token is `[mlflow].token`, else `$MLFLOW_TRACKING_TOKEN`.
    pub(crate) fn for_env(env: &Environment) -> Result<Option<Client>, String> {
        let Some(settings) = &env.mlflow else {
            return Ok(None);
        };
        let base =
            resolve_env_vars(&settings.uri, &env.file, "mlflow.uri").map_err(|e| e.to_string())?;
        let token = match env.mlflow.as_ref().and_then(|s| s.token.as_ref()) {
            Some(t) => {
                Some(resolve_env_vars(t, &env.file, "mlflow.token").map_err(|e| e.to_string())?)
            }
            None => std::env::var("MLFLOW_TRACKING_TOKEN")
                .ok()
                .filter(|t| !t.is_empty()),
        };
        Ok(Some(Client {
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(10))
                .build()
                .map_err(|e| format!("HTTP client: {e}"))?,
            base: base.trim_end_matches('/').to_string(),
            token,
        }))
    }

    /// The server's base URL.
    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    /// `GET /api/2.0/mlflow-artifacts/artifacts?path=…`: the files and folders under
    /// `path` of the server's artifact store, as (name, is_dir).
    pub(crate) async fn list_artifacts(&self, path: &str) -> Result<Vec<(String, bool)>, String> {
        let url = format!("{}/api/2.0/mlflow-artifacts/artifacts", self.base);
        let response = self
            .request(self.http.get(&url).query(&[("path", path)]))
            .send()
            .await;
        let v = Self::read("mlflow-artifacts list", response).await?;
        Ok(v["files"]
            .as_array()
            .map(|files| {
                files
                    .iter()
                    .filter_map(|f| {
                        let name = f["path"].as_str()?;
                        let name = name.rsplit('/').next().unwrap_or(name).to_string();
                        Some((name, f["is_dir"].as_bool().unwrap_or(false)))
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    /// `GET /api/2.0/mlflow-artifacts/artifacts/<path>`: one artifact's bytes.
    pub(crate) async fn download_artifact(&self, path: &str) -> Result<Vec<u8>, String> {
        let encoded: Vec<String> = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| url::form_urlencoded::byte_serialize(s.as_bytes()).collect())
            .collect();
        let url = format!(
            "{}/api/2.0/mlflow-artifacts/artifacts/{}",
            self.base,
            encoded.join("/")
        );
        let response = self
            .request(self.http.get(&url).timeout(Duration::from_secs(300)))
            .send()
            .await
            .map_err(|e| format!("MLflow artifact {path}: {}", e.without_url()))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| format!("MLflow artifact {path}: {}", e.without_url()))?;
        if !status.is_success() {
            return Err(format!(
                "MLflow artifact {path}: HTTP {status}: {}",
                String::from_utf8_lossy(&bytes)
            ));
        }
        Ok(bytes.to_vec())
    }

    fn request(&self, builder: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let builder = builder.timeout(Duration::from_secs(30));
        match &self.token {
            Some(t) => builder.bearer_auth(t),
            None => builder,
        }
    }

    pub(crate) async fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<Value, String> {
        let url = format!("{}/api/2.0/mlflow/{path}", self.base);
        let response = self.request(self.http.get(&url).query(query)).send().await;
        Self::read(path, response).await
    }

    async fn post(&self, path: &str, body: Value) -> Result<Value, String> {
        let url = format!("{}/api/2.0/mlflow/{path}", self.base);
        let response = self
            .request(self.http.post(&url))
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .await;
        Self::read(path, response).await
    }

    async fn read(
        path: &str,
        response: reqwest::Result<reqwest::Response>,
    ) -> Result<Value, String> {
        let response = response.map_err(|e| format!("MLflow {path}: {}", e.without_url()))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| format!("MLflow {path}: {}", e.without_url()))?;
        if !status.is_success() {
            return Err(format!("MLflow {path}: HTTP {status}: {text}"));
        }
        serde_json::from_str(&text).map_err(|e| format!("MLflow {path}: {e}"))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_are_sanitized() {
        assert_eq!(
            super::sanitize("conversion_rate.spring sale!"),
            "conversion_rate.spring sale_"
        );
    }
}
