//! A client of an MLflow server's REST API (tracking, registry and artifacts), used
//! by the model registry and by run tracking.

use std::time::Duration;

use serde_json::Value;

use crate::config::{resolve_env_vars, Environment};

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

    pub(crate) async fn post(&self, path: &str, body: Value) -> Result<Value, String> {
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
