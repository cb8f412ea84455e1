//! Where an environment's tables live: the warehouse root with its storage options
//! resolved, the URL of every task table and run-log table, and the write guard that
//! keeps an environment under its own roots.

use std::path::Path;

use url::Url;

use super::stores::{self, StorageError};
use crate::config::{resolve_env_vars, Environment, PipelineName};
use crate::delta::StorageOptions;
use crate::error::{Error, Result};
use crate::pipeline::Project;

/// An environment's warehouse with its secrets resolved.
#[derive(Debug, Clone)]
pub(crate) struct Warehouse {
    root: Url,
    storage: StorageOptions,
}

impl Warehouse {
    /// Resolves the root and the `[storage]` options (secrets included); an option
    /// object_store does not know is an error naming its key.
    pub(crate) fn new(project: &Project, env: &Environment) -> Result<Self> {
        let root = Self::root_url(project, env)?;
        let mut storage = StorageOptions::new();
        for (key, value) in &env.storage {
            let full_key = format!("storage.{key}");
            stores::check_option(key).map_err(|source| storage_err(env, &full_key, source))?;
            let value = resolve_env_vars(value, &env.file, &full_key)?;
            stores::check_value(key, &value)
                .map_err(|source| storage_err(env, &full_key, source))?;
            storage.insert(key.clone(), value);
        }
        Ok(Warehouse { root, storage })
    }

    /// The warehouse root as a folder URL (secrets in it resolved).
    pub(crate) fn root_url(project: &Project, env: &Environment) -> Result<Url> {
        let root = resolve_env_vars(&env.warehouse.root, &env.file, "warehouse.root")?;
        location_url(project.root(), &root, true)
            .map_err(|source| storage_err(env, "warehouse.root", source))
    }

    /// `<root>/<pipeline>/<task>/`.
    pub(crate) fn table_url(&self, pipeline: &PipelineName, task: &str) -> Url {
        table_url(&self.root, pipeline, task)
    }

    /// `<root>/_quern/<table>/`: a table of the run log.
    pub(crate) fn log_table_url(&self, table: &str) -> Url {
        folder(&self.root, &["_quern", table])
    }

    /// The warehouse root (a folder URL).
    pub(crate) fn root(&self) -> &Url {
        &self.root
    }

    pub(crate) fn storage(&self) -> &StorageOptions {
        &self.storage
    }
}

/// `<root>/<pipeline>/<task>/`.
pub(crate) fn table_url(root: &Url, pipeline: &PipelineName, task: &str) -> Url {
    folder(root, &[pipeline.as_str(), task])
}

/// `root` with `segments` appended as folders. Pipeline, task and log-table names are
/// identifiers, and path segments are percent-encoded, so this cannot fail.
fn folder(root: &Url, segments: &[&str]) -> Url {
    let mut url = root.clone();
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(segments).push("");
    }
    url
}

pub(crate) fn storage_err(env: &Environment, key: &str, source: StorageError) -> Error {
    Error::Storage {
        file: env.file.clone(),
        key: key.to_string(),
        source: Box::new(source),
    }
}

/// Where an environment may write: under its own warehouse root and its declared
/// `write_roots`, and never under another environment's root. Checked for every task
/// before anything runs.
#[derive(Debug, Clone)]
pub(crate) struct WriteGuard {
    env: String,
    allowed: Vec<Url>,
    /// Other environments' warehouse roots: (environment, root).
    foreign: Vec<(String, String)>,
}

impl WriteGuard {
    pub(crate) fn new(project: &Project, env: &Environment) -> Result<Self> {
        let mut allowed = vec![Warehouse::root_url(project, env)?];
        for (i, root) in env.warehouse.write_roots.iter().enumerate() {
            let key = format!("warehouse.write_roots[{i}]");
            let resolved = resolve_env_vars(root, &env.file, &key)?;
            let url = location_url(project.root(), &resolved, true)
                .map_err(|source| storage_err(env, &key, source))?;
            allowed.push(url);
        }
        let mut foreign = Vec::new();
        for name in project.environment_names() {
            if *name == env.name {
                continue;
            }
            let other = project.environment(name)?;
            if let Some(root) = foreign_root(project, &other) {
                foreign.push((name.clone(), root));
            }
        }
        Ok(WriteGuard {
            env: env.name.clone(),
            allowed,
            foreign,
        })
    }

    /// Refuses a write of `task` to `url` outside the environment's roots or under
    /// another environment's root.
    pub(crate) fn check(&self, task: &str, url: &Url) -> Result<()> {
        let target = url.as_str();
        let own = self
            .allowed
            .iter()
            .any(|root| target.starts_with(root.as_str()));
        let other = self
            .foreign
            .iter()
            .find(|(_, root)| target.starts_with(root.as_str()));
        if own && other.is_none() {
            return Ok(());
        }
        let mut allowed: Vec<String> = self.allowed.iter().map(ToString::to_string).collect();
        if let Some((env, root)) = other {
            allowed.push(format!("and never under environment `{env}`'s root {root}"));
        }
        Err(Error::ForbiddenWrite {
            task: task.to_string(),
            env: self.env.clone(),
            uri: url.to_string(),
            allowed,
        })
    }
}

/// Another environment's warehouse root as a URL string. An unset `${VAR}` in it:
/// compare with the part before it, which refuses more rather than less.
fn foreign_root(project: &Project, other: &Environment) -> Option<String> {
    let root = match resolve_env_vars(&other.warehouse.root, &other.file, "warehouse.root") {
        Ok(r) => r,
        Err(_) => other
            .warehouse
            .root
            .split("${")
            .next()
            .unwrap_or_default()
            .to_string(),
    };
    if root.is_empty() {
        return None;
    }
    location_url(project.root(), &root, true)
        .ok()
        .map(|url| url.to_string())
}

/// A location as written in an environment file: a URL (`s3://…`, `file://…`) or a
/// local path, relative to the project folder. A `folder` gets a trailing `/` so that
/// `join` appends to it.
pub(crate) fn location_url(
    project_root: &Path,
    location: &str,
    folder: bool,
) -> Result<Url, StorageError> {
    let looks_like_url = location.split_once("://").is_some_and(|(scheme, _)| {
        !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphanumeric())
    });
    let mut url = if looks_like_url {
        Url::parse(location).map_err(|source| StorageError::InvalidUrl {
            location: location.to_string(),
            source,
        })?
    } else {
        let path = project_root.join(location);
        Url::from_file_path(&path).map_err(|()| StorageError::NotAbsolute { path })?
    };
    if folder && !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_become_folder_urls() {
        let root = Path::new("/proj");
        assert_eq!(
            location_url(root, "warehouse", true).unwrap().as_str(),
            "file:///proj/warehouse/"
        );
        assert_eq!(
            location_url(root, "s3://acme-alpha/warehouse", true)
                .unwrap()
                .as_str(),
            "s3://acme-alpha/warehouse/"
        );
        assert_eq!(
            location_url(root, "/abs/w/", true).unwrap().as_str(),
            "file:///abs/w/"
        );
    }

    #[test]
    fn table_urls_are_folders_under_the_root() {
        let root = Url::parse("s3://acme/warehouse/").unwrap();
        let events = PipelineName::try_new("events").unwrap();
        assert_eq!(
            table_url(&root, &events, "daily").as_str(),
            "s3://acme/warehouse/events/daily/"
        );
        let local = Url::parse("file:///proj/warehouse/").unwrap();
        let w = Warehouse {
            root: local,
            storage: StorageOptions::new(),
        };
        assert_eq!(
            w.log_table_url("runs").as_str(),
            "file:///proj/warehouse/_quern/runs/"
        );
    }
}
