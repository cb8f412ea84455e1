//! Source tables declared in an environment (`[sources.<name>]`): Delta tables (at a
//! version or a time, when pinned), and Parquet or CSV files or folders of them.

use std::path::Path;
use std::sync::Arc;

use datafusion::datasource::file_format::csv::CsvFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::datasource::TableProvider;
use datafusion::prelude::SessionContext;

use super::location::{location_url, storage_err};
use super::stores;
use crate::config::{resolve_env_vars, Environment, SourceFormat, SourceTable};
use crate::delta::StorageOptions;
use crate::error::{Error, Result};

/// The table provider of the source table `source.table`, read in its format with the
/// warehouse's (resolved) storage options.
pub(super) async fn provider(
    ctx: &SessionContext,
    project_root: &Path,
    env: &Environment,
    storage: &StorageOptions,
    (source, table): (&str, &str),
    spec: &SourceTable,
) -> Result<Arc<dyn TableProvider>> {
    let key = format!("sources.{source}.{table}");
    let uri = resolve_env_vars(&spec.uri, &env.file, &key)?;
    let url = location_url(project_root, &uri, spec.format == SourceFormat::Delta)
        .map_err(|e| storage_err(env, &key, e))?;
    if spec.format == SourceFormat::Delta {
        let opened =
            crate::delta::open_at(&url, storage, spec.version, spec.timestamp.as_deref()).await?;
        let Some(t) = opened else {
            return Err(Error::Config {
                file: env.file.clone(),
                key,
                message: format!("there is no Delta table at {url}"),
            });
        };
        return crate::delta::provider(&t, &url, ctx).await;
    }
    if url.scheme() == "s3" {
        stores::register_s3(ctx, &url, storage).map_err(|e| storage_err(env, &key, e))?;
    }
    // DataFusion tells a file from a folder by looking at a local path itself.
    let location = match url.to_file_path() {
        Ok(path) if url.scheme() == "file" => path.display().to_string(),
        _ => uri.clone(),
    };
    listing_table(ctx, spec.format, &location)
        .await
        .map_err(|source| Error::Source {
            file: env.file.clone(),
            key,
            uri: location.clone(),
            source: Box::new(source),
        })
}

/// A Parquet or CSV file, or a folder of them; `key=value` folders (hive-style
/// partitions) become columns.
async fn listing_table(
    ctx: &SessionContext,
    format: SourceFormat,
    location: &str,
) -> datafusion::error::Result<Arc<dyn TableProvider>> {
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
        SourceFormat::Csv => Arc::new(super::csv::SizedCsv(
            CsvFormat::default().with_has_header(true),
        )),
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
