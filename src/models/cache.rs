//! The on-disk cache of downloaded models: a registered version's or a run's files
//! never change, so a cached copy needs no further request.

use std::path::{Path, PathBuf};

use super::error::ModelError;

/// Where the download of `key` from `server` is cached:
/// `$QUERN_MODEL_CACHE`, else `$XDG_CACHE_HOME/quern/models`, else
/// `~/.cache/quern/models`, then `<server>/<key>/model.onnx`.
pub(super) fn cache_file(server: &str, key: &str) -> PathBuf {
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
pub(super) fn store(file: &Path, bytes: &[u8]) -> Result<(), ModelError> {
    let dir = file.parent().ok_or_else(|| ModelError::CachePath {
        path: file.to_path_buf(),
    })?;
    let fail = |action, path: &Path| {
        let path = path.to_path_buf();
        move |source| ModelError::Cache {
            action,
            path,
            source,
        }
    };
    std::fs::create_dir_all(dir).map_err(fail("create", dir))?;
    let tmp = dir.join(format!(".model.onnx.{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(fail("write", &tmp))?;
    std::fs::rename(&tmp, file).map_err(fail("write", file))
}
