//! Where a model's bytes come from: a file of the project, or an MLflow registry
//! version or run (an alias asked for its version), downloaded through the server's
//! artifact proxy into the cache.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::cache::{cache_file, store};
use super::error::ModelError;
use crate::config::ModelUri;
use crate::mlflow::Client;

/// A model's bytes, the file they were read from (the cache path for downloads), and
/// the registered version (`churn/3`) for registry URIs.
pub(super) struct Fetched {
    pub(super) bytes: Vec<u8>,
    pub(super) file: PathBuf,
    pub(super) version: Option<String>,
}

/// What a registry URI stores, its alias resolved.
enum Stored<'a> {
    /// A registered model version.
    Version { name: &'a str, version: String },
    /// A run's artifact.
    Run { run_id: &'a str, path: &'a str },
}

impl Stored<'_> {
    /// `name/version` of a registered version.
    fn label(&self) -> Option<String> {
        match self {
            Stored::Version { name, version } => Some(format!("{name}/{version}")),
            Stored::Run { .. } => None,
        }
    }

    /// Its key in the cache.
    fn cache_key(&self) -> String {
        match self {
            Stored::Version { name, version } => format!("{name}/{version}"),
            Stored::Run { run_id, path } => format!("runs/{run_id}/{}", path.replace('/', "_")),
        }
    }

    /// Where its files are: a version's download URI (also how an unknown pinned
    /// version is found out), or under the run's artifact root.
    async fn location(&self, client: &Client) -> Result<String, ModelError> {
        match self {
            Stored::Version { name, version } => {
                let v = ask(
                    client,
                    "model-versions/get-download-uri",
                    &[("name", name), ("version", version)],
                    &format!("version {version} of registered model {name}"),
                )
                .await?;
                Ok(v["artifact_uri"]
                    .as_str()
                    .ok_or_else(|| ModelError::NoDownloadUri {
                        model: self.cache_key(),
                    })?
                    .to_string())
            }
            Stored::Run { run_id, path } => {
                let run = ask(
                    client,
                    "runs/get",
                    &[("run_id", run_id)],
                    &format!("run {run_id}"),
                )
                .await?;
                let root = run["run"]["info"]["artifact_uri"].as_str().ok_or_else(|| {
                    ModelError::RunWithoutArtifactUri {
                        run_id: run_id.to_string(),
                    }
                })?;
                Ok(format!("{}/{path}", root.trim_end_matches('/')))
            }
        }
    }
}

/// Fetches the model of `uri`: a file under `project_root`, or from the registry of
/// `client` (`None`: the environment `env_file` names no MLflow server).
pub(super) async fn fetch(
    project_root: &Path,
    client: Option<&Client>,
    uri: &ModelUri,
    env_file: &Path,
) -> Result<Fetched, ModelError> {
    let (client, stored) = match (uri, client) {
        (ModelUri::File(path), _) => {
            let file = project_root.join(path);
            return Ok(Fetched {
                bytes: read(&file)?,
                file,
                version: None,
            });
        }
        (_, None) => {
            return Err(ModelError::NoRegistry {
                file: env_file.to_path_buf(),
            })
        }
        (ModelUri::Alias { name, alias }, Some(c)) => {
            let v = ask(
                c,
                "registered-models/alias",
                &[("name", name), ("alias", alias)],
                &format!("alias @{alias} of registered model {name}"),
            )
            .await?;
            let version = version_of(&v)?;
            (c, Stored::Version { name, version })
        }
        (ModelUri::Version { name, version }, Some(c)) => (
            c,
            Stored::Version {
                name,
                version: version.clone(),
            },
        ),
        (ModelUri::Run { run_id, path }, Some(c)) => (c, Stored::Run { run_id, path }),
    };
    let version = stored.label();
    let cached = cache_file(client.base(), &stored.cache_key());
    if let Ok(bytes) = std::fs::read(&cached) {
        return Ok(Fetched {
            bytes,
            file: cached,
            version,
        });
    }
    let location = stored.location(client).await?;
    let bytes = download_model(client, &location).await?;
    store(&cached, &bytes)?;
    Ok(Fetched {
        bytes,
        file: cached,
        version,
    })
}

fn version_of(v: &Value) -> Result<String, ModelError> {
    let version = &v["model_version"]["version"];
    version
        .as_str()
        .map(str::to_string)
        .or_else(|| version.as_i64().map(|n| n.to_string()))
        .ok_or_else(|| ModelError::UnexpectedAnswer { answer: v.clone() })
}

/// `GET /api/2.0/mlflow/<path>`; an error says `what` was asked, of which server, and
/// what it answered.
async fn ask(
    client: &Client,
    path: &str,
    query: &[(&str, &str)],
    what: &str,
) -> Result<Value, ModelError> {
    client
        .get(path, query)
        .await
        .map_err(|e| ModelError::registry(what, client.server(), e))
}

/// Downloads the ONNX file of the model stored at `location` (a folder of an MLflow
/// model with an `MLmodel` file, a folder with one `.onnx` file, or a `.onnx` file).
async fn download_model(client: &Client, location: &str) -> Result<Vec<u8>, ModelError> {
    let path = match location.split_once(":") {
        Some(("mlflow-artifacts", rest)) => {
            // mlflow-artifacts:/path or mlflow-artifacts://host:port/path
            match rest.strip_prefix("//") {
                Some(hosted) => hosted
                    .split_once('/')
                    .map(|(_, p)| p)
                    .unwrap_or("")
                    .to_string(),
                None => rest.trim_start_matches('/').to_string(),
            }
        }
        Some(("file", rest)) => {
            return read_local_model(Path::new(rest.trim_start_matches("//")));
        }
        None if location.starts_with('/') => return read_local_model(Path::new(location)),
        _ => {
            return Err(ModelError::NotProxied {
                location: location.to_string(),
            })
        }
    };
    if path.ends_with(".onnx") {
        return Ok(client.download_artifact(&path).await?);
    }
    let files = client.list_artifacts(&path).await?;
    let mlmodel = if files.iter().any(|(n, d)| n == "MLmodel" && !d) {
        let text = client.download_artifact(&format!("{path}/MLmodel")).await?;
        Some(String::from_utf8_lossy(&text).into_owned())
    } else {
        None
    };
    let name = pick_onnx_file(location, &files, mlmodel.as_deref())?;
    Ok(client.download_artifact(&format!("{path}/{name}")).await?)
}

fn read(file: &Path) -> Result<Vec<u8>, ModelError> {
    std::fs::read(file).map_err(|source| ModelError::Io {
        path: file.to_path_buf(),
        source,
    })
}

/// A model stored on this machine: a `.onnx` file, or a model folder.
fn read_local_model(dir: &Path) -> Result<Vec<u8>, ModelError> {
    if dir.extension().is_some_and(|e| e == "onnx") {
        return read(dir);
    }
    let entries = std::fs::read_dir(dir).map_err(|source| ModelError::ListFolder {
        path: dir.to_path_buf(),
        source,
    })?;
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
    let name = pick_onnx_file(&dir.display().to_string(), &files, mlmodel.as_deref())?;
    read(&dir.join(name))
}

/// The ONNX file of the model folder at `location` holding `files` (name, is a
/// folder): the `onnx` flavor's `data` in its `MLmodel` text, when it has one, else the
/// folder's only `.onnx` file.
fn pick_onnx_file(
    location: &str,
    files: &[(String, bool)],
    mlmodel: Option<&str>,
) -> Result<String, ModelError> {
    let location = location.to_string();
    if let Some(text) = mlmodel {
        if let Some(data) = onnx_flavor_data(text) {
            return Ok(data);
        }
        if !files.iter().any(|(n, _)| n.ends_with(".onnx")) {
            return Err(ModelError::NoOnnxFlavor { location });
        }
    }
    let onnx: Vec<&String> = files
        .iter()
        .filter(|(n, d)| !d && n.ends_with(".onnx"))
        .map(|(n, _)| n)
        .collect();
    match onnx.as_slice() {
        [one] => Ok((*one).clone()),
        [] if files.is_empty() => Err(ModelError::NoArtifacts { location }),
        [] => Err(ModelError::NoOnnxFile {
            location,
            files: files.iter().map(|(n, _)| n.clone()).collect(),
        }),
        many => Err(ModelError::SeveralOnnxFiles {
            location,
            files: many.iter().map(|s| s.to_string()).collect(),
        }),
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

#[cfg(test)]
mod tests {
    use super::*;

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
