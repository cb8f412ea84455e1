//! Where tables live for an environment: the warehouse root, table URIs, storage
//! options with `${VAR}` resolved, and registering sources in a session.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use datafusion::catalog::MemorySchemaProvider;
use datafusion::common::TableReference;
use datafusion::datasource::file_format::csv::CsvFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::prelude::SessionContext;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use url::Url;

use super::Engine;
use crate::config::{resolve_env_vars, Environment, PipelineName, SourceFormat, SourceTable};
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
    pub(crate) fn new(project: &Project, env: &Environment) -> Result<Self> {
        let root = Self::root_url(project, env)?;
        let mut storage = StorageOptions::new();
        for (key, value) in &env.storage {
            let value = resolve_env_vars(value, &env.file, &format!("storage.{key}"))?;
            storage.insert(key.clone(), value);
        }
        Ok(Warehouse { root, storage })
    }

    /// The warehouse root as a folder URL (secrets in it resolved).
    pub(crate) fn root_url(project: &Project, env: &Environment) -> Result<Url> {
        let root = resolve_env_vars(&env.warehouse.root, &env.file, "warehouse.root")?;
        location_url(project.root(), &root, true).map_err(|message| Error::Config {
            file: env.file.clone(),
            key: "warehouse.root".into(),
            message,
        })
    }

    /// `<root>/<pipeline>/<task>/`.
    pub(crate) fn table_url(&self, pipeline: &PipelineName, task: &str) -> Result<Url> {
        table_url(&self.root, pipeline, task)
    }

    pub(crate) fn root(&self) -> &Url {
        &self.root
    }

    pub(crate) fn storage(&self) -> &StorageOptions {
        &self.storage
    }
}

/// `<root>/<pipeline>/<task>/`.
pub(crate) fn table_url(root: &Url, pipeline: &PipelineName, task: &str) -> Result<Url> {
    root.join(&format!("{pipeline}/{task}/"))
        .map_err(|e| Error::InvalidArgument {
            what: "table",
            value: format!("{pipeline}.{task}"),
            message: e.to_string(),
        })
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
            let url =
                location_url(project.root(), &resolved, true).map_err(|message| Error::Config {
                    file: env.file.clone(),
                    key,
                    message,
                })?;
            allowed.push(url);
        }
        let mut foreign = Vec::new();
        for name in project.environment_names() {
            if *name == env.name {
                continue;
            }
            let other = project.environment(name)?;
            // An unset `${VAR}` in another environment's root: compare with the part
            // before it, which refuses more rather than less.
            let root = match resolve_env_vars(&other.warehouse.root, &other.file, "warehouse.root")
            {
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
                continue;
            }
            if let Ok(url) = location_url(project.root(), &root, true) {
                foreign.push((name.clone(), url.to_string()));
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

/// A location as written in an environment file: a URL (`s3://…`, `file://…`) or a
/// local path, relative to the project folder. A `folder` gets a trailing `/` so that
/// `join` appends to it.
pub(crate) fn location_url(
    project_root: &Path,
    location: &str,
    folder: bool,
) -> Result<Url, String> {
    let looks_like_url = location.split_once("://").is_some_and(|(scheme, _)| {
        !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphanumeric())
    });
    let mut url = if looks_like_url {
        Url::parse(location).map_err(|e| format!("`{location}` is not a valid URL: {e}"))?
    } else {
        let path = project_root.join(location);
        Url::from_file_path(&path)
            .map_err(|()| format!("`{}` is not an absolute path", path.display()))?
    };
    if folder && !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

/// Creates the SQL schema `name` in the session's default catalog if it is missing.
pub(crate) fn ensure_schema(ctx: &SessionContext, name: &str) {
    if let Some(catalog) = ctx.catalog("datafusion") {
        if catalog.schema(name).is_none() {
            // Registering can only fail for a name clash, which `schema()` just ruled out.
            let _ = catalog.register_schema(name, Arc::new(MemorySchemaProvider::new()));
        }
    }
}

/// Registers the Delta table at `url` in `ctx` as `reference` (creating its schema);
/// `Ok(false)` when there is no table there.
pub(crate) async fn register_delta(
    ctx: &SessionContext,
    reference: TableReference,
    url: &Url,
    storage: &StorageOptions,
) -> Result<bool> {
    let Some(table) = crate::delta::open(url, storage).await? else {
        return Ok(false);
    };
    let provider = crate::delta::provider(&table, url).await?;
    if let Some(schema) = reference.schema() {
        ensure_schema(ctx, schema);
    }
    ctx.register_table(reference, provider)
        .map_err(Error::query)?;
    Ok(true)
}

/// Registers the source table `source.table` in `ctx`, reading it in its format with
/// the warehouse's (resolved) storage options.
pub(crate) async fn register_source(
    engine: &Engine,
    ctx: &SessionContext,
    storage: &StorageOptions,
    source: &str,
    table: &str,
    spec: &SourceTable,
) -> Result<()> {
    let env = engine.environment();
    let key = format!("sources.{source}.{table}");
    let uri = resolve_env_vars(&spec.uri, &env.file, &key)?;
    let url =
        location_url(engine.project().root(), &uri, false).map_err(|message| Error::Config {
            file: env.file.clone(),
            key: key.clone(),
            message,
        })?;
    let reference = TableReference::partial(source, table);
    ensure_schema(ctx, source);
    let query_err = Error::query;
    if url.scheme() == "s3" && spec.format != SourceFormat::Delta {
        register_s3_store(ctx, &url, storage).map_err(|message| Error::Config {
            file: env.file.clone(),
            key: key.clone(),
            message,
        })?;
    }
    // DataFusion tells a file from a folder by looking at a local path itself.
    let location = match url.to_file_path() {
        Ok(path) if url.scheme() == "file" => path.display().to_string(),
        _ => uri.clone(),
    };
    match spec.format {
        SourceFormat::Delta => {
            let mut url = url;
            if !url.path().ends_with('/') {
                let path = format!("{}/", url.path());
                url.set_path(&path);
            }
            let Some(t) =
                crate::delta::open_at(&url, storage, spec.version, spec.timestamp.as_deref())
                    .await
                    .map_err(|e| match e {
                        Error::InvalidArgument { message, .. } => Error::Config {
                            file: env.file.clone(),
                            key: key.clone(),
                            message,
                        },
                        other => other,
                    })?
            else {
                return Err(Error::Config {
                    file: env.file.clone(),
                    key,
                    message: format!("there is no Delta table at {url}"),
                });
            };
            let provider = crate::delta::provider(&t, &url).await?;
            ctx.register_table(reference, provider).map_err(query_err)?;
        }
        SourceFormat::Parquet | SourceFormat::Csv => {
            let table = listing_table(ctx, spec.format, &location)
                .await
                .map_err(|source| source_err(&env.file, &key, &location, source))?;
            ctx.register_table(reference, table).map_err(query_err)?;
        }
    }
    Ok(())
}

/// A Parquet or CSV file, or a folder of them; `key=value` folders (hive-style
/// partitions) become columns.
async fn listing_table(
    ctx: &SessionContext,
    format: SourceFormat,
    location: &str,
) -> datafusion::error::Result<Arc<dyn datafusion::datasource::TableProvider>> {
    let is_folder = location.ends_with('/') || Path::new(location).is_dir();
    let location = if is_folder && !location.ends_with('/') {
        format!("{location}/")
    } else {
        location.to_string()
    };
    let default_ext = if format == SourceFormat::Csv {
        ".csv"
    } else {
        ".parquet"
    };
    let ext = if is_folder {
        default_ext.to_string()
    } else {
        Path::new(&location).extension().map_or_else(
            || default_ext.to_string(),
            |e| format!(".{}", e.to_string_lossy()),
        )
    };
    let file_format: Arc<dyn FileFormat> = match format {
        SourceFormat::Csv => Arc::new(CsvFormat::default().with_has_header(true)),
        _ => Arc::new(ParquetFormat::default()),
    };
    let options = ListingOptions::new(file_format).with_file_extension(ext);
    let state = ctx.state();
    let config = ListingTableConfig::new(ListingTableUrl::parse(&location)?)
        .with_listing_options(options)
        .infer_partitions_from_path(&state)
        .await?
        .infer_schema(&state)
        .await?;
    Ok(Arc::new(ListingTable::try_new(config)?))
}

fn source_err(
    file: &Path,
    key: &str,
    location: &str,
    source: datafusion::error::DataFusionError,
) -> Error {
    Error::Config {
        file: file.to_path_buf(),
        key: key.to_string(),
        message: format!("cannot read {location}: {source}"),
    }
}

/// Registers an S3 object store for `url`'s bucket built from the environment's
/// storage options (falling back to the standard `AWS_*` variables).
fn register_s3_store(
    ctx: &SessionContext,
    url: &Url,
    storage: &StorageOptions,
) -> Result<(), String> {
    let bucket = url.host_str().unwrap_or_default();
    let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
    for (key, value) in storage {
        if let Ok(k) = AmazonS3ConfigKey::from_str(key) {
            builder = builder.with_config(k, value);
        }
    }
    let store = builder.build().map_err(|e| e.to_string())?;
    let base = Url::parse(&format!("s3://{bucket}/")).map_err(|e| e.to_string())?;
    ctx.register_object_store(&base, Arc::new(store));
    Ok(())
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
}
