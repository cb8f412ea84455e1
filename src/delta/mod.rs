//! Delta tables: where a task's table lives, opening tables for reading, and writing a
//! task's plan with its materialization (one atomic commit per task).

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::common::ScalarValue;
use datafusion::datasource::TableProvider;
use datafusion::execution::SessionState;
use datafusion::logical_expr::{col, lit, Expr, LogicalPlan};
use datafusion::prelude::DataFrame;
use deltalake::protocol::SaveMode;
use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError};
use futures::TryStreamExt;
use url::Url;

use crate::config::Materialization;
use crate::error::{Error, Result};

/// Storage options (object_store / delta-rs keys) applied to a table URI.
pub(crate) type StorageOptions = HashMap<String, String>;

/// The outcome of writing one task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteOutcome {
    /// The table's version after the write (unchanged when nothing was committed).
    pub version: u64,
    /// The rows the commit added.
    pub rows: u64,
    /// The data files the commit added.
    pub files_added: u64,
    /// The data files the commit removed (replaced).
    pub files_removed: u64,
}

/// Opens the Delta table at `url`; `Ok(None)` when there is no table there yet.
pub(crate) async fn open(url: &Url, storage: &StorageOptions) -> Result<Option<DeltaTable>> {
    if url.scheme() == "file" {
        if let Ok(path) = url.to_file_path() {
            if !path.join("_delta_log").is_dir() {
                return Ok(None);
            }
        }
    }
    let builder = DeltaTableBuilder::from_url(url.clone())
        .map_err(|source| delta_err(url, "open", source))?
        .with_storage_options(storage.clone());
    match builder.load().await {
        Ok(table) => Ok(Some(table)),
        Err(DeltaTableError::NotATable(_)) => Ok(None),
        Err(source) => Err(delta_err(url, "open", source)),
    }
}

/// A table provider reading the current version of `table`.
pub(crate) async fn provider(table: &DeltaTable, url: &Url) -> Result<Arc<dyn TableProvider>> {
    table.table_provider().await.map_err(|source| Error::Read {
        uri: url.to_string(),
        source: Box::new(source),
    })
}

/// Writes `plan` to the table at `url` with `materialization`, in one commit.
///
/// The plan's batches are streamed into Parquet files; nothing is collected. If the
/// plan fails part-way nothing is committed, so the table keeps its previous version.
pub(crate) async fn write(
    state: &SessionState,
    url: &Url,
    storage: &StorageOptions,
    table_name: &str,
    plan: LogicalPlan,
    materialization: Materialization,
    partition_by: &[String],
) -> Result<WriteOutcome> {
    if url.scheme() == "file" {
        if let Ok(path) = url.to_file_path() {
            std::fs::create_dir_all(&path).map_err(|e| Error::io(&path, e))?;
        }
    }
    let existing = open(url, storage).await?;
    let previous_version = existing.as_ref().and_then(|t| t.version());
    let table = match existing {
        Some(t) => t,
        None => DeltaTableBuilder::from_url(url.clone())
            .map_err(|source| delta_err(url, "create", source))?
            .with_storage_options(storage.clone())
            .build()
            .map_err(|source| delta_err(url, "create", source))?,
    };

    let (save_mode, replace_where) = match materialization {
        Materialization::Table => (SaveMode::Overwrite, None),
        Materialization::Append => (SaveMode::Append, None),
        Materialization::Partition => {
            let predicate = written_partitions(state, &plan, partition_by).await?;
            match predicate {
                Some(p) => (SaveMode::Overwrite, Some(p)),
                // No rows: nothing to replace. An existing table is left untouched; a
                // new one is created empty so downstream tasks can read it.
                None => match previous_version {
                    Some(version) => {
                        return Ok(WriteOutcome {
                            version,
                            rows: 0,
                            files_added: 0,
                            files_removed: 0,
                        })
                    }
                    None => (SaveMode::Append, None),
                },
            }
        }
        Materialization::View => {
            unreachable!("views are not written; the engine never calls write for them")
        }
    };

    let mut builder = table
        .write(Vec::new())
        .with_input_plan(plan)
        .with_session_state(Arc::new(state.clone()))
        .with_save_mode(save_mode)
        .with_table_name(table_name);
    if !partition_by.is_empty() {
        builder = builder.with_partition_columns(partition_by.iter().cloned());
    }
    if let Some(predicate) = replace_where {
        builder = builder.with_replace_where(predicate);
    }
    let table = builder
        .await
        .map_err(|source| delta_err(url, "write", source))?;
    let version = table.version().unwrap_or_default() as u64;
    let mut outcome = WriteOutcome {
        version,
        rows: 0,
        files_added: 0,
        files_removed: 0,
    };
    let history: Vec<_> = table
        .history(Some(1))
        .try_collect()
        .await
        .map_err(|source| delta_err(url, "read history", source))?;
    if let Some(metrics) = history.first().and_then(|c| c.info.get("operationMetrics")) {
        let get = |k: &str| metrics.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
        outcome.rows = get("num_added_rows");
        outcome.files_added = get("num_added_files");
        outcome.files_removed = get("num_removed_files");
    }
    Ok(outcome)
}

/// The predicate `(p1 = v1 AND p2 = v2) OR …` over the partition values present in
/// `plan`'s output, or `None` when it has no rows. This is a separate, small query
/// (`SELECT DISTINCT` of the partition columns); delta-rs then replaces exactly those
/// partitions in the same commit that adds the new files.
async fn written_partitions(
    state: &SessionState,
    plan: &LogicalPlan,
    partition_by: &[String],
) -> Result<Option<Expr>> {
    let df = DataFrame::new(state.clone(), plan.clone());
    let batches = df
        .select_columns(&partition_by.iter().map(String::as_str).collect::<Vec<_>>())
        .and_then(|df| df.distinct())
        .map_err(Error::query)?
        .collect()
        .await
        .map_err(Error::query)?;
    let mut disjuncts: Vec<Expr> = Vec::new();
    for batch in &batches {
        for row in 0..batch.num_rows() {
            let mut conj: Option<Expr> = None;
            for (i, name) in partition_by.iter().enumerate() {
                let value =
                    ScalarValue::try_from_array(batch.column(i), row).map_err(Error::query)?;
                let term = if value.is_null() {
                    col(name.as_str()).is_null()
                } else {
                    col(name.as_str()).eq(lit(value))
                };
                conj = Some(match conj {
                    Some(c) => c.and(term),
                    None => term,
                });
            }
            disjuncts.extend(conj);
        }
    }
    Ok(disjuncts.into_iter().reduce(Expr::or))
}

pub(crate) fn delta_err(url: &Url, action: &'static str, source: DeltaTableError) -> Error {
    Error::Delta {
        uri: url.to_string(),
        action,
        source: Box::new(source),
    }
}
