//! Model scoring in SQL: each `[models]` entry of the environment becomes a scalar SQL
//! function that scores its arguments with an ONNX model.
//!
//! ```toml
//! [models]
//! churn = "models:/churn@champion"      # MLflow registry alias
//! ltv = "models:/ltv/3"                 # registry version
//! fraud = "runs:/0a1b2c/model"          # a run's artifacts
//! local = "models/churn.onnx"           # a file under the project root
//! ```
//!
//! `SELECT churn(f1, f2, f3, f4) AS p_churn FROM …` then returns:
//!
//! | model | SQL type |
//! |---|---|
//! | binary classifier | `DOUBLE`: the probability of the second class label (scikit-learn's `classes_[1]`) |
//! | multi-class classifier | `STRUCT(label, p_<label>…)`: the most probable label and one `DOUBLE` per class, e.g. `churn(…)['p_high']` |
//! | regressor, or any single-output model | `DOUBLE` |
//! | k outputs (multi-target, a raw network output) | `DOUBLE[k]` (fixed-size list) |
//!
//! A row with a NULL feature scores NULL. Arguments are numbers of any SQL type; each is
//! cast to the model's input type (float or double).
//!
//! Registry models are resolved when a run is planned (one version for the whole run),
//! through MLflow's REST API; downloaded files are cached on disk by server, name and
//! version, so a pinned version needs no network after its first download.

pub mod onnx;
mod ops;
mod trees;
mod udf;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;
use sha2::Digest;

pub use onnx::{ElemType, Labels, ModelInput, OnnxModel, OutputKind};
pub(crate) use udf::ModelFunction;

use crate::config::Environment;
use crate::error::{Error, Result};
use crate::mlflow::Client as MlflowClient;

/// Where a model comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelUri {
    /// `models:/name@alias`.
    Alias {
        /// Registered model name.
        name: String,
        /// Alias, e.g. `champion`.
        alias: String,
    },
    /// `models:/name/version`.
    Version {
        /// Registered model name.
        name: String,
        /// Version number.
        version: String,
    },
    /// `runs:/run_id/path`.
    Run {
        /// MLflow run id.
        run_id: String,
        /// Artifact path within the run.
        path: String,
    },
    /// A file, relative to the project root unless absolute.
    File(PathBuf),
}

impl ModelUri {
    /// Parses a `[models]` URI.
    pub fn parse(uri: &str) -> std::result::Result<Self, String> {
        if let Some(rest) = uri.strip_prefix("models:/") {
            if let Some((name, alias)) = rest.split_once('@') {
                if !name.is_empty() && !alias.is_empty() && !alias.contains('/') {
                    return Ok(ModelUri::Alias {
                        name: name.to_string(),
                        alias: alias.to_string(),
                    });
                }
            } else if let Some((name, version)) = rest.rsplit_once('/') {
                if !name.is_empty()
                    && !version.is_empty()
                    && version.bytes().all(|b| b.is_ascii_digit())
                {
                    return Ok(ModelUri::Version {
                        name: name.to_string(),
                        version: version.to_string(),
                    });
                }
            }
            return Err(format!(
                "`{uri}` is not a registry URI; write models:/<name>@<alias> or models:/<name>/<version>"
            ));
        }
        if let Some(rest) = uri.strip_prefix("runs:/") {
            return match rest.split_once('/') {
                Some((run_id, path)) if !run_id.is_empty() && !path.is_empty() => {
                    Ok(ModelUri::Run {
                        run_id: run_id.to_string(),
                        path: path.trim_matches('/').to_string(),
                    })
                }
                _ => Err(format!(
                    "`{uri}` is not a run URI; write runs:/<run_id>/<artifact path>"
                )),
            };
        }
        if uri.contains("://") || uri.starts_with("models:") || uri.starts_with("runs:") {
            return Err(format!(
                "`{uri}`: a model is models:/<name>@<alias>, models:/<name>/<version>, runs:/<run_id>/<path> or a path to a .onnx file"
            ));
        }
        if uri.is_empty() {
            return Err("the model URI is empty".into());
        }
        Ok(ModelUri::File(PathBuf::from(uri)))
    }

    fn needs_registry(&self) -> bool {
        !matches!(self, ModelUri::File(_))
    }
}

/// A model function resolved for a run: where its model came from, and the model.
#[derive(Debug, Clone)]
pub struct ResolvedModel {
    /// The SQL function name.
    pub function: String,
    /// The URI as configured.
    pub uri: String,
    /// The registered model and version it resolved to (`churn/3`), for registry URIs.
    pub version: Option<String>,
    /// The file that was loaded (the cache path for downloaded models).
    pub file: PathBuf,
    /// The SHA-256 of the file's bytes (hex): which model scored, to the byte.
    pub sha256: String,
    /// The model.
    pub model: Arc<OnnxModel>,
}

impl ResolvedModel {
    /// What the function returns, as SQL sees it.
    pub fn return_type(&self) -> datafusion::arrow::datatypes::DataType {
        udf::return_type(&self.model)
    }

    /// `churn = models:/churn@champion → churn/3`, for run summaries.
    pub fn summary(&self) -> String {
        match &self.version {
            Some(v) => format!("{} = {} → {v}", self.function, self.uri),
            None => format!("{} = {}", self.function, self.uri),
        }
    }
}

/// Resolves and loads the environment's model functions named in `functions` (all of
/// them when `None`), in name order.
pub(crate) async fn resolve(
    project_root: &Path,
    env: &Environment,
    functions: Option<&std::collections::BTreeSet<String>>,
) -> Result<Vec<ResolvedModel>> {
    let mut client: Option<Arc<MlflowClient>> = None;
    let mut out = Vec::new();
    for (function, settings) in &env.models {
        if functions.is_some_and(|f| !f.contains(function)) {
            continue;
        }
        let fail = |message: String| Error::Model {
            function: function.clone(),
            uri: settings.uri().to_string(),
            file: env.file.clone(),
            message,
        };
        let uri = ModelUri::parse(settings.uri()).map_err(fail)?;
        if uri.needs_registry() && client.is_none() {
            let c = MlflowClient::for_env(env).map_err(fail)?.ok_or_else(|| {
                fail(format!(
                    "a registry model needs an MLflow server: add [mlflow] uri = \"http://…\" to {}",
                    env.file.display()
                ))
            })?;
            client = Some(Arc::new(c));
        }
        let (bytes, file, version) = fetch(project_root, client.as_deref(), &uri)
            .await
            .map_err(fail)?;
        let model = OnnxModel::from_bytes(&bytes, settings.output())
            .map_err(|e| fail(format!("{}: {e}", file.display())))?;
        let sha256 = sha2::Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        out.push(ResolvedModel {
            function: function.clone(),
            uri: settings.uri().to_string(),
            version,
            file,
            sha256,
            model: Arc::new(model),
        });
    }
    Ok(out)
}

/// The model's bytes, the file they were read from, and the registry version.
async fn fetch(
    project_root: &Path,
    client: Option<&MlflowClient>,
    uri: &ModelUri,
) -> std::result::Result<(Vec<u8>, PathBuf, Option<String>), String> {
    if let ModelUri::File(path) = uri {
        let file = project_root.join(path);
        let bytes =
            std::fs::read(&file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        return Ok((bytes, file, None));
    }
    let client = client.ok_or("no MLflow client")?;
    // The registered version, if the URI names one (an alias is asked for its version).
    let registered = match uri {
        ModelUri::Alias { name, alias } => {
            let v = ask(
                client,
                "registered-models/alias",
                &[("name", name), ("alias", alias)],
                &format!("alias @{alias} of registered model {name}"),
            )
            .await?;
            Some((name.clone(), version_of(&v)?))
        }
        ModelUri::Version { name, version } => Some((name.clone(), version.clone())),
        ModelUri::Run { .. } | ModelUri::File(_) => None,
    };
    // A registered version's or a run's files never change: a cached copy needs no
    // further request.
    let label = registered.as_ref().map(|(n, v)| format!("{n}/{v}"));
    let key = match (&label, uri) {
        (Some(label), _) => label.clone(),
        (None, ModelUri::Run { run_id, path }) => {
            format!("runs/{run_id}/{}", path.replace('/', "_"))
        }
        (None, _) => unreachable!("files are read above"),
    };
    let cached = cache_file(client.base(), &key);
    if let Ok(bytes) = std::fs::read(&cached) {
        return Ok((bytes, cached, label));
    }
    let location = match (&registered, uri) {
        // Also how an unknown pinned version is found out.
        (Some((name, version)), _) => {
            let v = ask(
                client,
                "model-versions/get-download-uri",
                &[("name", name), ("version", version)],
                &format!("version {version} of registered model {name}"),
            )
            .await?;
            v["artifact_uri"]
                .as_str()
                .ok_or_else(|| format!("the registry gave no artifact_uri for {key}"))?
                .to_string()
        }
        (None, ModelUri::Run { run_id, path }) => {
            let run = ask(
                client,
                "runs/get",
                &[("run_id", run_id)],
                &format!("run {run_id}"),
            )
            .await?;
            let root = run["run"]["info"]["artifact_uri"]
                .as_str()
                .ok_or_else(|| format!("run {run_id} has no artifact_uri"))?;
            format!("{}/{path}", root.trim_end_matches('/'))
        }
        (None, _) => unreachable!("files are read above"),
    };
    let bytes = download_model(client, &location).await?;
    store(&cached, &bytes)?;
    Ok((bytes, cached, label))
}

fn version_of(v: &Value) -> std::result::Result<String, String> {
    let version = &v["model_version"]["version"];
    version
        .as_str()
        .map(str::to_string)
        .or_else(|| version.as_i64().map(|n| n.to_string()))
        .ok_or_else(|| format!("unexpected registry answer: {v}"))
}

/// `GET /api/2.0/mlflow/<path>`; an error says `what` was asked, of which server, and
/// what it answered.
async fn ask(
    client: &MlflowClient,
    path: &str,
    query: &[(&str, &String)],
    what: &str,
) -> std::result::Result<Value, String> {
    let query: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
    client
        .get(path, &query)
        .await
        .map_err(|e| registry_error(client, e, what))
}

/// A registry error in words: what was asked, of which server, and what it said.
fn registry_error(client: &MlflowClient, e: String, what: &str) -> String {
    if e.contains("RESOURCE_DOES_NOT_EXIST")
        || e.contains("INVALID_PARAMETER_VALUE")
        || e.contains("HTTP 404")
    {
        format!(
            "{what} does not exist in the MLflow registry at {} ({e})",
            client.base()
        )
    } else if e.contains("HTTP 401") || e.contains("HTTP 403") {
        format!("the MLflow server at {} refused the request for {what}; check [mlflow] token or $MLFLOW_TRACKING_TOKEN ({e})", client.base())
    } else {
        format!(
            "cannot reach the MLflow registry at {} for {what}: {e}",
            client.base()
        )
    }
}

/// Downloads the ONNX file of the model stored at `location` (a folder of an MLflow
/// model with an `MLmodel` file, a folder with one `.onnx` file, or a `.onnx` file).
async fn download_model(
    client: &MlflowClient,
    location: &str,
) -> std::result::Result<Vec<u8>, String> {
    let path = match location.split_once(":") {
        Some(("mlflow-artifacts", rest)) => {
            // mlflow-artifacts:/path or mlflow-artifacts://host:port/path
            match rest.strip_prefix("//") {
                Some(hosted) => hosted.split_once('/').map(|(_, p)| p).unwrap_or("").to_string(),
                None => rest.trim_start_matches('/').to_string(),
            }
        }
        Some(("file", rest)) => {
            return read_local_model(Path::new(rest.trim_start_matches("//")));
        }
        None if location.starts_with('/') => return read_local_model(Path::new(location)),
        _ => {
            return Err(format!(
                "the model's artifacts are at {location}, which quern reads only through the MLflow server's artifact proxy; start `mlflow server` with artifact serving (the default, --serve-artifacts) so model versions are stored under mlflow-artifacts:/"
            ))
        }
    };
    if path.ends_with(".onnx") {
        return client.download_artifact(&path).await;
    }
    let files = client.list_artifacts(&path).await?;
    let mlmodel = if files.iter().any(|(n, d)| n == "MLmodel" && !d) {
        let text = client.download_artifact(&format!("{path}/MLmodel")).await?;
        Some(String::from_utf8_lossy(&text).into_owned())
    } else {
        None
    };
    let name =
        pick_onnx_file(&files, mlmodel.as_deref()).map_err(|e| format!("{location}: {e}"))?;
    client.download_artifact(&format!("{path}/{name}")).await
}

fn read_local_model(dir: &Path) -> std::result::Result<Vec<u8>, String> {
    if dir.extension().is_some_and(|e| e == "onnx") {
        return std::fs::read(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()));
    }
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    let files: Vec<(String, bool)> = entries
        .filter_map(|e| e.ok())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                e.path().is_dir(),
            )
        })
        .collect();
    let mlmodel = std::fs::read_to_string(dir.join("MLmodel")).ok();
    let name = pick_onnx_file(&files, mlmodel.as_deref())?;
    std::fs::read(dir.join(&name))
        .map_err(|e| format!("cannot read {}: {e}", dir.join(name).display()))
}

/// The ONNX file of a model folder of `files` (name, is a folder): the `onnx` flavor's
/// `data` in its `MLmodel` text, when it has one, else the folder's only `.onnx` file.
fn pick_onnx_file(
    files: &[(String, bool)],
    mlmodel: Option<&str>,
) -> std::result::Result<String, String> {
    if let Some(text) = mlmodel {
        if let Some(data) = onnx_flavor_data(text) {
            return Ok(data);
        }
        if !files.iter().any(|(n, _)| n.ends_with(".onnx")) {
            return Err("the MLflow model has no onnx flavor; log it with mlflow.onnx.log_model (quern scores ONNX models)".into());
        }
    }
    let onnx: Vec<&String> = files
        .iter()
        .filter(|(n, d)| !d && n.ends_with(".onnx"))
        .map(|(n, _)| n)
        .collect();
    match onnx.as_slice() {
        [one] => Ok((*one).clone()),
        [] if files.is_empty() => Err("there are no artifacts there (MLflow 3 keeps a model logged with log_model under the logged model, not the run: use its registry URI, or log the .onnx file with log_artifact)".into()),
        [] => Err(format!(
            "no .onnx file among the model's artifacts ({})",
            files
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
        many => Err(format!(
            "several .onnx files among the model's artifacts ({}); point the URI at one",
            many.iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// `data:` of the `onnx:` flavor in an `MLmodel` (YAML) file.
fn onnx_flavor_data(mlmodel: &str) -> Option<String> {
    let mut in_flavors = false;
    let mut in_onnx = false;
    for line in mlmodel.lines() {
        let indent = line.len() - line.trim_start().len();
        let trimmed = line.trim();
        if indent == 0 {
            in_flavors = trimmed == "flavors:";
            in_onnx = false;
            continue;
        }
        if in_flavors && indent == 2 {
            in_onnx = trimmed == "onnx:";
            continue;
        }
        if in_onnx {
            if let Some(data) = trimmed.strip_prefix("data:") {
                return Some(data.trim().trim_matches(['\'', '"']).to_string());
            }
        }
    }
    None
}

/// Where the download of `key` from `server` is cached:
/// `$QUERN_MODEL_CACHE`, else `$XDG_CACHE_HOME/quern/models`, else
/// `~/.cache/quern/models`, then `<server>/<key>/model.onnx`.
fn cache_file(server: &str, key: &str) -> PathBuf {
    let root = std::env::var_os("QUERN_MODEL_CACHE")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("quern/models"))
        })
        .or_else(|| std::env::var_os("HOME").map(|d| PathBuf::from(d).join(".cache/quern/models")))
        .unwrap_or_else(|| std::env::temp_dir().join("quern-models"));
    let server: String = server
        .trim_start_matches("http://")
        .trim_start_matches("https://")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut file = root.join(server);
    for part in key.split('/') {
        file.push(part);
    }
    file.join("model.onnx")
}

/// Writes `bytes` to `file` through a temporary name, so a cache entry is whole or absent.
fn store(file: &Path, bytes: &[u8]) -> std::result::Result<(), String> {
    let dir = file.parent().ok_or("cache path has no folder")?;
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let tmp = dir.join(format!(".model.onnx.{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, file).map_err(|e| format!("cannot write {}: {e}", file.display()))
}

/// Which configured model functions `functions` (lower-cased names called by some SQL)
/// names.
pub(crate) fn used(
    env: &Environment,
    functions: &std::collections::BTreeSet<String>,
) -> std::collections::BTreeSet<String> {
    env.models
        .keys()
        .filter(|k| functions.contains(k.as_str()))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_model_uris() {
        assert_eq!(
            ModelUri::parse("models:/churn@champion").unwrap(),
            ModelUri::Alias {
                name: "churn".into(),
                alias: "champion".into()
            }
        );
        assert_eq!(
            ModelUri::parse("models:/churn/3").unwrap(),
            ModelUri::Version {
                name: "churn".into(),
                version: "3".into()
            }
        );
        assert_eq!(
            ModelUri::parse("runs:/abc123/model").unwrap(),
            ModelUri::Run {
                run_id: "abc123".into(),
                path: "model".into()
            }
        );
        assert_eq!(
            ModelUri::parse("models/churn.onnx").unwrap(),
            ModelUri::File("models/churn.onnx".into())
        );
        for bad in [
            "models:/churn",
            "models:/churn/latest",
            "runs:/abc",
            "s3://b/m.onnx",
            "",
        ] {
            assert!(ModelUri::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn reads_the_onnx_flavor_of_an_mlmodel_file() {
        let mlmodel = "artifact_path: model\nflavors:\n  onnx:\n    code: null\n    data: model.onnx\n    onnx_version: 1.17.0\n  python_function:\n    data: model.onnx\n    loader_module: mlflow.onnx\nmodel_uuid: x\n";
        assert_eq!(onnx_flavor_data(mlmodel).as_deref(), Some("model.onnx"));
        assert_eq!(
            onnx_flavor_data("flavors:\n  sklearn:\n    pickled_model: model.pkl\n"),
            None
        );
    }
}
