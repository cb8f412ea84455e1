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
//!
//! The modules, in the one direction their imports go: this file resolves each
//! function's model (`fetch` gets its bytes from the project or the MLflow registry,
//! through the `cache`) and makes it a SQL function (`udf`); `onnx` reads and compiles
//! the graph into `ops`, whose tree ensembles are `trees`; `transform` holds the post
//! transforms (logistic, softmax) both use. `error` is used by all and uses none of
//! them.

mod cache;
mod error;
mod fetch;
mod onnx;
mod ops;
mod transform;
mod trees;
mod udf;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::Digest;

pub use error::{ModelError, OnnxError};
pub use onnx::{ElemType, Labels, ModelInput, OnnxModel, OutputKind, Runtime};
pub(crate) use udf::ModelFunction;

use crate::config::{Environment, ModelUri};
use crate::error::{Error, Result};
use crate::mlflow::Client;

/// A model function resolved for a run: where its model came from, and the model.
#[derive(Debug, Clone)]
#[non_exhaustive]
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
    /// The output scored (`output` of the `[models]` entry), when chosen.
    pub(crate) output: Option<String>,
}

impl ResolvedModel {
    /// What the function returns, as SQL sees it.
    pub fn return_type(&self) -> datafusion::arrow::datatypes::DataType {
        udf::return_type(&self.model)
    }

    /// What another process needs to load this very model: the version pinned
    /// (`models:/churn/3` for `models:/churn@champion`) and the checksum.
    pub(crate) fn descriptor(&self) -> ModelDescriptor {
        let uri = match (ModelUri::parse(&self.uri), &self.version) {
            (Ok(ModelUri::Alias { .. }), Some(version)) => format!("models:/{version}"),
            _ => self.uri.clone(),
        };
        ModelDescriptor {
            function: self.function.clone(),
            uri,
            output: self.output.clone(),
            sha256: self.sha256.clone(),
        }
    }

    /// `churn = models:/churn@champion → churn/3`, for run summaries.
    pub fn summary(&self) -> String {
        match &self.version {
            Some(v) => format!("{} = {} → {v}", self.function, self.uri),
            None => format!("{} = {}", self.function, self.uri),
        }
    }
}

/// The environment's MLflow client, made when the first registry model needs it.
struct Registry<'e> {
    env: &'e Environment,
    client: Option<Client>,
}

impl Registry<'_> {
    /// The client; `None` when the environment names no server. A `${VAR}` of
    /// `[mlflow]` that is not set is the configuration error.
    fn client(&mut self) -> Result<Option<&Client>> {
        if self.client.is_none() {
            self.client = Client::for_env(self.env)?;
        }
        Ok(self.client.as_ref())
    }
}

/// Resolves and loads the environment's model functions named in `functions` (all of
/// them when `None`), in name order.
pub(crate) async fn resolve(
    project_root: &Path,
    env: &Environment,
    functions: Option<&BTreeSet<String>>,
) -> Result<Vec<ResolvedModel>> {
    let mut registry = Registry { env, client: None };
    let mut out = Vec::new();
    for (function, settings) in &env.models {
        if functions.is_some_and(|f| !f.contains(function)) {
            continue;
        }
        let fail = |source: ModelError| Error::Model {
            function: function.clone(),
            uri: settings.uri().to_string(),
            file: env.file.clone(),
            source: Box::new(source),
        };
        let uri = ModelUri::parse(settings.uri()).map_err(|e| fail(e.into()))?;
        let client = match &uri {
            ModelUri::File(_) => None,
            _ => registry.client()?,
        };
        let fetched = fetch::fetch(project_root, client, &uri, &env.file)
            .await
            .map_err(fail)?;
        let model = OnnxModel::from_bytes(&fetched.bytes, settings.output()).map_err(|source| {
            fail(ModelError::Onnx {
                file: fetched.file.clone(),
                source,
            })
        })?;
        let sha256 = sha2::Sha256::digest(&fetched.bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        out.push(ResolvedModel {
            function: function.clone(),
            uri: settings.uri().to_string(),
            version: fetched.version,
            file: fetched.file,
            sha256,
            model: Arc::new(model),
            output: settings.output().map(str::to_string),
        });
    }
    Ok(out)
}

/// What a model function was resolved to on the client, enough for another process to
/// load the same model: the version is pinned and the bytes are checked.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub(crate) struct ModelDescriptor {
    /// The SQL function name.
    pub(crate) function: String,
    /// The model's URI with its version pinned (`models:/churn/3` for
    /// `models:/churn@champion`), or the project-relative file.
    pub(crate) uri: String,
    /// The model output the function scores (`[models]`' `output`), when chosen.
    pub(crate) output: Option<String>,
    /// The SHA-256 of the model file the client loaded (hex).
    pub(crate) sha256: String,
}

/// Loads the model `descriptor` names, as the client that sent it loaded it: from the
/// project's file or this environment's MLflow server; bytes other than the client's
/// (another file, a version overwritten) are an error naming the model.
pub(crate) async fn load_shipped(
    project_root: &Path,
    env: &Environment,
    descriptor: &ModelDescriptor,
) -> Result<Arc<OnnxModel>> {
    let fail = |source: ModelError| Error::Model {
        function: descriptor.function.clone(),
        uri: descriptor.uri.clone(),
        file: env.file.clone(),
        source: Box::new(source),
    };
    let uri = ModelUri::parse(&descriptor.uri).map_err(|e| fail(e.into()))?;
    let mut registry = Registry { env, client: None };
    let client = match &uri {
        ModelUri::File(_) => None,
        _ => registry.client()?,
    };
    let fetched = fetch::fetch(project_root, client, &uri, &env.file)
        .await
        .map_err(fail)?;
    let sha256: String = sha2::Sha256::digest(&fetched.bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if sha256 != descriptor.sha256 {
        return Err(fail(ModelError::ChecksumMismatch {
            file: fetched.file,
            expected: descriptor.sha256.clone(),
            found: sha256,
        }));
    }
    let model =
        OnnxModel::from_bytes(&fetched.bytes, descriptor.output.as_deref()).map_err(|source| {
            fail(ModelError::Onnx {
                file: fetched.file.clone(),
                source,
            })
        })?;
    Ok(Arc::new(model))
}

/// Which configured model functions `functions` (lower-cased names called by some SQL)
/// names.
pub(crate) fn used(env: &Environment, functions: &BTreeSet<String>) -> BTreeSet<String> {
    env.models
        .keys()
        .filter(|k| functions.contains(k.as_str()))
        .cloned()
        .collect()
}
