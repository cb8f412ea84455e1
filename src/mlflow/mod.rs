//! A client of an MLflow server's REST API (tracking, registry and artifacts), shared by
//! run tracking (`checks`) and registry models (`models`), and its typed errors.

use std::time::Duration;

use serde_json::Value;

use crate::config::{resolve_env_vars, Environment};

/// How long an artifact download may take (models can be large).
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(300);

/// A request to an MLflow server that failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MlflowError {
    /// The server could not be reached or the response not read.
    #[error("MLflow {endpoint}: {source}")]
    Transport {
        /// What was asked (`registered-models/alias`, `artifact model/model.onnx`…).
        endpoint: String,
        /// reqwest's error, without the URL (which may carry credentials).
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with an error status.
    #[error("MLflow {endpoint}: HTTP {}: {}", status_text(*status), detail(error_code.as_deref(), message))]
    Status {
        /// What was asked.
        endpoint: String,
        /// The HTTP status code.
        status: u16,
        /// MLflow's `error_code` (`RESOURCE_DOES_NOT_EXIST`…), when the body has one.
        error_code: Option<String>,
        /// MLflow's `message`, else the body as text.
        message: String,
    },
    /// The answer is not the JSON expected.
    #[error("MLflow {endpoint}: {source}")]
    Decode {
        /// What was asked.
        endpoint: String,
        /// serde_json's error.
        #[source]
        source: serde_json::Error,
    },
}

impl MlflowError {
    /// Whether the server said that what was asked for does not exist.
    pub fn is_not_found(&self) -> bool {
        match self {
            MlflowError::Status {
                status, error_code, ..
            } => *status == 404 || error_code.as_deref() == Some("RESOURCE_DOES_NOT_EXIST"),
            _ => false,
        }
    }

    /// The HTTP status of an error answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            MlflowError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// MLflow's `error_code` of an error answer, when it gave one.
    pub fn error_code(&self) -> Option<&str> {
        match self {
            MlflowError::Status { error_code, .. } => error_code.as_deref(),
            _ => None,
        }
    }

    fn transport(endpoint: &str, source: reqwest::Error) -> Self {
        MlflowError::Transport {
            endpoint: endpoint.to_string(),
            source: source.without_url(),
        }
    }

    /// An error answer: MLflow's JSON error body (`error_code`, `message`) when it is
    /// one, else the body as text.
    fn answer(endpoint: &str, status: reqwest::StatusCode, body: &str) -> Self {
        let json: Option<Value> = serde_json::from_str(body).ok();
        let field = |name: &str| {
            json.as_ref()
                .and_then(|v| v[name].as_str())
                .map(str::to_string)
        };
        MlflowError::Status {
            endpoint: endpoint.to_string(),
            status: status.as_u16(),
            error_code: field("error_code"),
            message: field("message").unwrap_or_else(|| body.to_string()),
        }
    }
}

/// `404 Not Found`: the code and its reason phrase.
fn status_text(status: u16) -> String {
    match reqwest::StatusCode::from_u16(status) {
        Ok(s) => s.to_string(),
        Err(_) => status.to_string(),
    }
}

fn detail(error_code: Option<&str>, message: &str) -> String {
    match error_code {
        Some(code) => format!("{code}: {message}"),
        None => message.to_string(),
    }
}

/// A client of one MLflow server.
pub(crate) struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    /// The client of the environment's `[mlflow]` server; `Ok(None)` when it names
    /// none. The token is `[mlflow].token`, else `$MLFLOW_TRACKING_TOKEN`.
    pub(crate) fn for_env(env: &Environment) -> crate::Result<Option<Client>> {
        let Some(settings) = &env.mlflow else {
            return Ok(None);
        };
        let base = resolve_env_vars(&settings.uri, &env.file, "mlflow.uri")?;
        let token = match &settings.token {
            Some(t) => Some(resolve_env_vars(t, &env.file, "mlflow.token")?),
            None => std::env::var("MLFLOW_TRACKING_TOKEN")
                .ok()
                .filter(|t| !t.is_empty()),
        };
        Ok(Some(Client {
            http: crate::http::client(),
            base: base.trim_end_matches('/').to_string(),
            token,
        }))
    }

    /// The bearer token, if any.
    pub(crate) fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The server's base URL, as configured (a cache key).
    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    /// The server's base URL for messages: without a user name or password.
    pub(crate) fn server(&self) -> String {
        match url::Url::parse(&self.base) {
            Ok(mut url) if !url.username().is_empty() || url.password().is_some() => {
                // Only fails for URLs that cannot have credentials in the first place.
                let _ = url.set_username("");
                let _ = url.set_password(None);
                url.to_string()
            }
            _ => self.base.clone(),
        }
    }

    /// `GET /api/2.0/mlflow-artifacts/artifacts?path=…`: the files and folders under
    /// `path` of the server's artifact store, as (name, is_dir).
    pub(crate) async fn list_artifacts(
        &self,
        path: &str,
    ) -> Result<Vec<(String, bool)>, MlflowError> {
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
    pub(crate) async fn download_artifact(&self, path: &str) -> Result<Vec<u8>, MlflowError> {
        let endpoint = format!("artifact {path}");
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
            .request(self.http.get(&url).timeout(DOWNLOAD_TIMEOUT))
            .send()
            .await
            .map_err(|e| MlflowError::transport(&endpoint, e))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| MlflowError::transport(&endpoint, e))?;
        if !status.is_success() {
            return Err(MlflowError::answer(
                &endpoint,
                status,
                &String::from_utf8_lossy(&bytes),
            ));
        }
        Ok(bytes.to_vec())
    }

    fn request(&self, builder: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(t) => builder.bearer_auth(t),
            None => builder,
        }
    }

    /// `GET /api/2.0/mlflow/<path>?<query>`.
    pub(crate) async fn get(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<Value, MlflowError> {
        let url = format!("{}/api/2.0/mlflow/{path}", self.base);
        let response = self.request(self.http.get(&url).query(query)).send().await;
        Self::read(path, response).await
    }

    /// `POST /api/2.0/mlflow/<path>` with a JSON body.
    pub(crate) async fn post(&self, path: &str, body: Value) -> Result<Value, MlflowError> {
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
        endpoint: &str,
        response: reqwest::Result<reqwest::Response>,
    ) -> Result<Value, MlflowError> {
        let response = response.map_err(|e| MlflowError::transport(endpoint, e))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| MlflowError::transport(endpoint, e))?;
        if !status.is_success() {
            return Err(MlflowError::answer(endpoint, status, &text));
        }
        serde_json::from_str(&text).map_err(|source| MlflowError::Decode {
            endpoint: endpoint.to_string(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_body_is_read_into_its_code_and_message() {
        let e = MlflowError::answer(
            "registered-models/alias",
            reqwest::StatusCode::NOT_FOUND,
            r#"{"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "Registered model alias nope not found."}"#,
        );
        assert!(e.is_not_found());
        assert_eq!(e.error_code(), Some("RESOURCE_DOES_NOT_EXIST"));
        assert_eq!(
            e.to_string(),
            "MLflow registered-models/alias: HTTP 404 Not Found: RESOURCE_DOES_NOT_EXIST: Registered model alias nope not found."
        );
        let e = MlflowError::answer(
            "runs/get",
            reqwest::StatusCode::BAD_GATEWAY,
            "<html>bad gateway</html>",
        );
        assert!(!e.is_not_found());
        assert_eq!(e.status(), Some(502));
        assert_eq!(
            e.to_string(),
            "MLflow runs/get: HTTP 502 Bad Gateway: <html>bad gateway</html>"
        );
    }
}
