//! The URI of a `[models]` entry: a registry alias or version, a run's artifact, or a
//! file. Checked when the environment is read; resolved by `models`.

use std::path::PathBuf;

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

/// A `[models]` URI that is none of the forms quern reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ModelUriError {
    /// `models:/…` without an alias or a numeric version.
    #[error(
        "`{uri}` is not a registry URI; write models:/<name>@<alias> or models:/<name>/<version>"
    )]
    NotRegistry {
        /// The URI as written.
        uri: String,
    },
    /// `runs:/…` without a run id and an artifact path.
    #[error("`{uri}` is not a run URI; write runs:/<run_id>/<artifact path>")]
    NotRun {
        /// The URI as written.
        uri: String,
    },
    /// Another scheme (`s3://…`, `models:` without the slash…).
    #[error("`{uri}`: a model is models:/<name>@<alias>, models:/<name>/<version>, runs:/<run_id>/<path> or a path to a .onnx file")]
    UnknownScheme {
        /// The URI as written.
        uri: String,
    },
    /// An empty string.
    #[error("the model URI is empty")]
    Empty,
}

impl ModelUri {
    /// Parses a `[models]` URI.
    pub fn parse(uri: &str) -> Result<Self, ModelUriError> {
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
            return Err(ModelUriError::NotRegistry { uri: uri.into() });
        }
        if let Some(rest) = uri.strip_prefix("runs:/") {
            return match rest.split_once('/') {
                Some((run_id, path)) if !run_id.is_empty() && !path.is_empty() => {
                    Ok(ModelUri::Run {
                        run_id: run_id.to_string(),
                        path: path.trim_matches('/').to_string(),
                    })
                }
                _ => Err(ModelUriError::NotRun { uri: uri.into() }),
            };
        }
        if uri.contains("://") || uri.starts_with("models:") || uri.starts_with("runs:") {
            return Err(ModelUriError::UnknownScheme { uri: uri.into() });
        }
        if uri.is_empty() {
            return Err(ModelUriError::Empty);
        }
        Ok(ModelUri::File(PathBuf::from(uri)))
    }
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
}
