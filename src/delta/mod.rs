//! Delta tables: opening tables for reading, comparing a planned output with a table's
//! schema, and writing a task's plan with its materialization (one atomic commit per
//! task). Where a table lives is the catalog's business.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::config::ParquetOptions;
use datafusion::common::{Column, ScalarValue};
use datafusion::datasource::TableProvider;
use datafusion::error::DataFusionError;
use datafusion::execution::SessionState;
use datafusion::logical_expr::{col, lit, Expr, LogicalPlan, LogicalPlanBuilder, Partitioning};
use datafusion::parquet::file::properties::WriterProperties;
use datafusion::prelude::DataFrame;
use deltalake::kernel::engine::arrow_conversion::TryFromArrow;
use deltalake::kernel::schema::cast::normalize_for_delta;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::kernel::{StructType, Transaction};
use deltalake::operations::write::SchemaMode;
use deltalake::protocol::SaveMode;
use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError};
use futures::TryStreamExt;
use url::Url;

use crate::checks::{CompiledExpectations, ExpectationsTable};
use crate::config::{Materialization, TaskConfig};
use crate::error::{Error, PlanError, Result};
use datafusion::datasource::provider_as_source;

mod overwrite;
mod progress;
mod scan;

/// Sets quern's Parquet writer settings over DataFusion's defaults in a session's
/// options; `[engine.datafusion]` is applied after them. delta-rs writes with these when
/// given no writer properties (see [`writer_properties`]), as does `COPY`.
pub(crate) fn set_writer_options(parquet: &mut ParquetOptions, compression: &str) {
    // `[engine] compression`; DataFusion's own default codec is zstd(3).
    parquet.compression = Some(compression.to_owned());
    // Every open file holds one dictionary per column until it reaches this size
    // (then the column falls back to plain encoding), and a `partition` write keeps
    // one file open per partition value: with DataFusion's 1 MiB, the dictionaries
    // of 30 open day partitions were 310 MiB of the events repartition's 386 MiB heap.
    // At 64 KiB its files are smaller than at 256 KiB (143 against 147 MiB for
    // 10 M events: high-cardinality columns fall back sooner, to plain and snappy),
    // the write is as fast and the peak 45 MiB lower (scripts/bench-repartition);
    // columns of a few thousand short values still fit.
    parquet.dictionary_page_size_limit = 64 * 1024;
    // Row groups of 256 Ki rows, as polars writes (DataFusion's default is 1 Mi, DuckDB
    // writes 122 880), but for partitioned tables (see `writer_properties`). A writer
    // assembles each row group in one buffer that grows by doubling and hands it to the
    // upload whole: at 1 Mi rows of a narrow table, a fresh 16 MiB buffer per row group,
    // memory the kernel zeroes first. `scripts/bench-scoring`'s tasks, each table
    // written by the setting measured (8 alternated runs, medians): scoring 10 M rows
    // by a logistic regression 0.535 s at 1 Mi, 0.48 s at 128 Ki, 0.46 s at 256 Ki;
    // the copy 0.455, 0.435 and 0.415 s; peak memory 409-452, 242-282 and 269-289 MiB.
    // Reading the 10 M x 9 input back costs more with smaller groups (0.12, 0.15 and
    // 0.13 s for a sum of its columns).
    parquet.max_row_group_size = WRITE_ROW_GROUP_ROWS;
}

/// The rows of a row group in the files quern writes, but for partitioned tables.
const WRITE_ROW_GROUP_ROWS: usize = 256 * 1024;

/// The rows of a row group in a partitioned table's files when the environment sets
/// none: DataFusion's default. A partitioned write keeps a file open per partition
/// value, each holding its row group in progress; with row groups smaller than the
/// files, every open file also holds the row groups it has flushed, in buffers of their
/// own. Repartitioning 10 M events into 30 day partitions (`scripts/bench-repartition`)
/// peaked at 444-470 MiB with 1 Mi rows, 530-583 MiB with 128 or 256 Ki and 484-520
/// MiB with 64 Ki, in about the same time.
const PARTITIONED_ROW_GROUP_ROWS: usize = 1024 * 1024;

/// Whether the environment set the row-group size (`[engine.datafusion]`
/// `"execution.parquet.max_row_group_size"`), carried in the session's config: then
/// partitioned tables take that size too, whatever it is, rather than
/// [`PARTITIONED_ROW_GROUP_ROWS`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct RowGroupSizeSet(pub(crate) bool);

/// The session's Parquet writer settings (`[engine] compression` over DataFusion's
/// `execution.parquet` options), so Delta writes and `COPY` write files alike; given
/// none, delta-rs would write with its own defaults instead. For a `partitioned`
/// table, [`PARTITIONED_ROW_GROUP_ROWS`] unless the environment set a size (see
/// [`RowGroupSizeSet`], which every session quern builds carries).
fn writer_properties(state: &SessionState, partitioned: bool) -> Result<WriterProperties> {
    let options = &state.config().options().execution.parquet;
    let mut builder = options
        .into_writer_properties_builder()
        .map_err(|e| Error::session("configuring the Parquet writer", e))?;
    let size_set = state
        .config()
        .get_extension::<RowGroupSizeSet>()
        .is_some_and(|set| set.0);
    if partitioned && !size_set {
        builder = builder.set_max_row_group_row_count(Some(PARTITIONED_ROW_GROUP_ROWS));
    }
    Ok(builder
        .set_created_by(format!("quern version {}", env!("CARGO_PKG_VERSION")))
        .build())
}

/// Whether `e` is a write stopped because the run was cancelled (`fail_fast`).
pub(crate) fn is_cancelled(e: &Error) -> bool {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(e) = next {
        if e.is::<progress::Cancelled>() {
            return true;
        }
        next = e.source();
    }
    false
}

/// Storage options (object_store / delta-rs keys) applied to a table URI.
pub(crate) type StorageOptions = HashMap<String, String>;

/// The outcome of writing one task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct WriteOutcome {
    /// The table's version after the write (unchanged when nothing was committed).
    pub version: u64,
    /// The rows the commit added.
    pub rows: u64,
    /// The data files the commit added.
    pub files_added: u64,
    /// The data files the commit removed (replaced).
    pub files_removed: u64,
    /// For an `append`: the table's log already held this task's transaction for the
    /// run date (the day was appended before), so nothing was written.
    pub already_appended: bool,
}

/// Opens the Delta table at `url`; `Ok(None)` when there is no table there yet.
pub(crate) async fn open(url: &Url, storage: &StorageOptions) -> Result<Option<DeltaTable>> {
    open_at(url, storage, None, None).await
}

/// Opens the Delta table at `url` as of `version` or `timestamp` (RFC 3339; the
/// latest version committed at or before it), or its latest version; `Ok(None)` when
/// there is no table there.
pub(crate) async fn open_at(
    url: &Url,
    storage: &StorageOptions,
    version: Option<u64>,
    timestamp: Option<&str>,
) -> Result<Option<DeltaTable>> {
    // A local folder without a log holds no table: no need to ask delta-rs.
    if url.scheme() == "file" {
        if let Ok(path) = url.to_file_path() {
            if !path.join("_delta_log").is_dir() {
                return Ok(None);
            }
        }
    }
    let mut builder = DeltaTableBuilder::from_url(url.clone())
        .map_err(|source| delta_err(url, "open", source))?
        .with_storage_options(storage.clone());
    if let Some(v) = version {
        builder = builder.with_version(v);
    }
    if let Some(ts) = timestamp {
        builder = builder
            .with_datestring(ts)
            .map_err(|source| delta_err(url, "open at a timestamp", source))?;
    }
    match builder.load().await {
        Ok(table) => Ok(Some(table)),
        Err(DeltaTableError::NotATable(_)) => Ok(None),
        Err(source) => Err(delta_err(url, "open", source)),
    }
}

/// A table provider reading the loaded version of `table` with `ctx`'s settings: a
/// plain Parquet scan of the snapshot's files with the log's statistics
/// ([`scan::SnapshotScan`]) where the table allows it, delta-rs' own scan otherwise
/// (deletion vectors, column mapping; the reason is logged).
///
/// delta-rs' provider is built either way: its columns are the ones SQL sees, so both
/// scans give the same types. Given the session, its scan follows the session's Parquet
/// settings as a Parquet source's does.
pub(crate) async fn provider(
    table: &DeltaTable,
    url: &Url,
    ctx: &datafusion::prelude::SessionContext,
) -> Result<Arc<dyn TableProvider>> {
    let session = Arc::new(ctx.state());
    let delta_rs = table
        .table_provider()
        .with_session(session)
        .await
        .map_err(|source| Error::Read {
            uri: url.to_string(),
            source: Box::new(source),
        })?;
    match scan::SnapshotScan::try_new(table, url, delta_rs.schema()) {
        Ok(scan) => {
            register_store(table, url, ctx);
            Ok(Arc::new(scan.sized_by_footer(ctx).await))
        }
        Err(why) => {
            tracing::debug!(table = %url, "reading through delta-rs' scan: {why}");
            Ok(delta_rs)
        }
    }
}

/// Makes the store of a table on S3 reachable as `s3://bucket` in `ctx` (where the
/// snapshot scan reads its files), through the table's own (credentialed) store, unless
/// the session has one for the bucket already.
fn register_store(table: &DeltaTable, url: &Url, ctx: &datafusion::prelude::SessionContext) {
    if url.scheme() == "file" {
        return;
    }
    let bucket = format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default());
    let Ok(bucket) = datafusion::execution::object_store::ObjectStoreUrl::parse(bucket) else {
        return;
    };
    let runtime = ctx.runtime_env();
    if runtime.object_store(&bucket).is_err() {
        runtime.register_object_store(bucket.as_ref(), table.log_store().root_object_store(None));
    }
}

/// How the output's columns differ from an existing table's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SchemaDiff {
    /// Output columns the table lacks, with their Delta types.
    pub added: Vec<String>,
    /// Table columns the output lacks.
    pub removed: Vec<String>,
    /// Columns whose type differs: "name: table type -> output type".
    pub changed: Vec<String>,
}

impl SchemaDiff {
    pub(crate) fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// Compares a planned output schema with `table`'s, in Delta types (so `Utf8View`
/// and `Utf8` are both `string`, nanosecond timestamps are `timestamp_ntz`).
pub(crate) fn schema_diff(
    table: &DeltaTable,
    url: &Url,
    output: &SchemaRef,
) -> Result<SchemaDiff, PlanError> {
    let planned = StructType::try_from_arrow(normalize_for_delta(output).as_ref())
        .map_err(|e| PlanError::DeltaType(e.into()))?;
    let existing = table
        .snapshot()
        .map_err(|source| PlanError::TableSchema {
            uri: url.to_string(),
            source,
        })?
        .schema();
    let mut diff = SchemaDiff::default();
    for field in planned.fields() {
        match existing.field(field.name()) {
            None => diff
                .added
                .push(format!("{} ({})", field.name(), field.data_type())),
            Some(t) if t.data_type() != field.data_type() => diff.changed.push(format!(
                "{}: {} in the table, {} in the output",
                field.name(),
                t.data_type(),
                field.data_type()
            )),
            Some(_) => {}
        }
    }
    for field in existing.fields() {
        if planned.field(field.name()).is_none() {
            diff.removed.push(field.name().to_string());
        }
    }
    Ok(diff)
}

/// A committed write: what it did, and the table at the version it left.
pub(crate) struct Written {
    pub outcome: WriteOutcome,
    pub table: DeltaTable,
}

impl Written {
    /// Nothing committed: `table` is left at its version.
    fn untouched(table: DeltaTable) -> Self {
        let outcome = WriteOutcome {
            version: table.version().unwrap_or_default(),
            rows: 0,
            files_added: 0,
            files_removed: 0,
            already_appended: false,
        };
        Written { outcome, table }
    }
}

/// Where and how a task's table is written.
pub(crate) struct TableWrite<'a> {
    /// The table.
    pub url: &'a Url,
    /// Storage options for the table's URI.
    pub storage: &'a StorageOptions,
    /// The table's name (recorded when it is created).
    pub table_name: &'a str,
    /// The task's settings: materialization, partitions, keys.
    pub config: &'a TaskConfig,
    /// Whether the commit may change the table's columns (checked at plan time).
    pub evolve: bool,
    /// Expectations checked while the rows stream into the table.
    pub expectations: Option<Arc<CompiledExpectations>>,
    /// For an `append` of a task's run: the Delta application transaction id
    /// (`txn.appId`) that makes the day's append idempotent — committed with the rows,
    /// and when the table's log already has it, the append writes nothing.
    pub append_id: Option<String>,
    /// Counts the rows as they are written, for a progress display.
    pub rows: Option<Arc<std::sync::atomic::AtomicU64>>,
    /// Set when the run is cancelled: the write stops before its commit.
    pub cancel: Option<Arc<std::sync::atomic::AtomicBool>>,
}

/// Writes `plan` to the target table as its task's settings say, in one commit.
///
/// The plan's batches are streamed into Parquet files; nothing is collected. If the
/// plan fails part-way nothing is committed, so the table keeps its previous version.
pub(crate) async fn write(
    state: &SessionState,
    plan: LogicalPlan,
    target: TableWrite<'_>,
) -> Result<Written> {
    let url = target.url;
    if url.scheme() == "file" {
        if let Ok(path) = url.to_file_path() {
            std::fs::create_dir_all(&path).map_err(|e| Error::io(&path, e))?;
        }
    }
    let existing = open(url, target.storage).await?;
    match (target.config.materialized, existing) {
        (Materialization::Table, Some(table)) => overwrite_table(state, table, plan, &target).await,
        (Materialization::Table, None) => {
            tracing::debug!(table = %target.url, "table write into a new table");
            overwrite::create(state, plan, &target).await
        }
        (Materialization::Append, table) => {
            if let (Some(table), Some(id)) = (&table, &target.append_id) {
                if appended_before(table, id, url).await? {
                    let mut outcome = outcome_of(table, url).await?;
                    (outcome.rows, outcome.files_added, outcome.files_removed) = (0, 0, 0);
                    outcome.already_appended = true;
                    let table = table.clone();
                    return Ok(Written { outcome, table });
                }
            }
            let Some(table) = table else {
                tracing::debug!(table = %target.url, "append into a new table");
                return overwrite::create(state, plan, &target).await;
            };
            match overwrite::one_pass_schema(&table, &plan, &target.config.partition_by, true) {
                Ok(schema) => {
                    tracing::debug!(table = %target.url, "append in one pass");
                    overwrite::append(state, table, schema, plan, &target).await
                }
                Err(why) => {
                    tracing::info!(table = %target.url, "append through delta-rs' write: {why}");
                    commit(state, table, plan, &target, SaveMode::Append, None).await
                }
            }
        }
        (Materialization::Partition, table) => {
            replace_partitions(state, table, plan, &target).await
        }
        (Materialization::Merge, Some(table)) => {
            let plan = with_expectations(plan, target.expectations.clone())?;
            merge(state, table, plan, &target).await
        }
        // The first merge creates the table.
        (Materialization::Merge, None) => overwrite::create(state, plan, &target).await,
        (Materialization::View | Materialization::Command, _) => Err(Error::Execute {
            task: target.table_name.to_string(),
            uri: url.to_string(),
            source: Box::new(DataFusionError::Internal(
                "views and command tasks are not written by quern".into(),
            )),
        }),
    }
}

/// Whether `table`'s log has the application transaction `id` (any version).
async fn appended_before(table: &DeltaTable, id: &str, url: &Url) -> Result<bool> {
    let state = table
        .snapshot()
        .map_err(|source| delta_err(url, "read the log of", source))?;
    let version = state
        .transaction_version(table.log_store().as_ref(), id)
        .await
        .map_err(|source| delta_err(url, "read the transactions of", source))?;
    Ok(version.is_some())
}

/// The existing table, or a new (uncommitted) one at the target's URL.
fn table_or_new(target: &TableWrite<'_>, existing: Option<DeltaTable>) -> Result<DeltaTable> {
    if let Some(table) = existing {
        return Ok(table);
    }
    let url = target.url;
    DeltaTableBuilder::from_url(url.clone())
        .map_err(|source| delta_err(url, "create", source))?
        .with_storage_options(target.storage.clone())
        .build()
        .map_err(|source| delta_err(url, "create", source))
}

/// `table` over an existing table: every row replaced in one pass when
/// [`overwrite::one_pass_schema`] allows; otherwise (other columns, which the task may
/// be allowed to evolve, other partition columns, writer features the one-pass write
/// does not act on) through delta-rs' overwrite.
async fn overwrite_table(
    state: &SessionState,
    table: DeltaTable,
    plan: LogicalPlan,
    target: &TableWrite<'_>,
) -> Result<Written> {
    match overwrite::one_pass_schema(&table, &plan, &target.config.partition_by, false) {
        Ok(schema) => {
            tracing::debug!(table = %target.url, "table write in one pass");
            let replace = overwrite::Replace::All;
            overwrite::replace(state, table, schema, plan, target, replace).await
        }
        Err(why) => {
            tracing::info!(table = %target.url, "table write through delta-rs' overwrite: {why}");
            commit(state, table, plan, target, SaveMode::Overwrite, None).await
        }
    }
}

/// `partition`: the partitions present in the output replace the same partitions of
/// the table. A new table takes all of the rows (created empty when there are none,
/// so downstream tasks can read it). An existing table is replaced in one pass when
/// [`overwrite::one_pass_schema`] allows; otherwise a `SELECT DISTINCT` of the
/// partition values comes first and delta-rs replaces those partitions. With no rows
/// an existing table is left untouched (its expectations still judged).
async fn replace_partitions(
    state: &SessionState,
    existing: Option<DeltaTable>,
    plan: LogicalPlan,
    target: &TableWrite<'_>,
) -> Result<Written> {
    let Some(table) = existing else {
        tracing::debug!(table = %target.url, "partition write into a new table");
        return overwrite::create(state, plan, target).await;
    };
    match overwrite::one_pass_schema(&table, &plan, &target.config.partition_by, false) {
        Ok(schema) => {
            tracing::debug!(table = %target.url, "partition write in one pass");
            let replace = overwrite::Replace::WrittenPartitions;
            return overwrite::replace(state, table, schema, plan, target, replace).await;
        }
        Err(why) => tracing::info!(
            table = %target.url,
            "partition write through SELECT DISTINCT and replaceWhere: {why}"
        ),
    }
    if let Some(p) = written_partitions(state, &plan, target).await? {
        return commit(state, table, plan, target, SaveMode::Overwrite, Some(p)).await;
    }
    // Still judge the (empty) output, e.g. a minimum row count.
    let plan = with_expectations(plan, target.expectations.clone())?;
    DataFrame::new(state.clone(), plan)
        .collect()
        .await
        .map_err(|source| execute_err(target, source))?;
    Ok(Written::untouched(table))
}

/// Streams `plan` through the task's expectations into new files of `table` and
/// commits them with `save_mode` (replacing the rows matching `replace_where`).
async fn commit(
    state: &SessionState,
    table: DeltaTable,
    plan: LogicalPlan,
    target: &TableWrite<'_>,
    save_mode: SaveMode,
    replace_where: Option<Expr>,
) -> Result<Written> {
    let (url, partition_by) = (target.url, &target.config.partition_by);
    // Expectations are checked in the same pass that writes (after the partition
    // values were read, so they are not counted twice).
    let (plan, query_error) = watched(plan, target)?;
    let plan = if partition_by.is_empty() {
        plan
    } else {
        by_partition(LogicalPlanBuilder::from(plan), partition_by, state)?
    };
    let mut builder = table
        .write(Vec::new())
        .with_input_plan(plan)
        .with_session_state(Arc::new(state.clone()))
        .with_writer_properties(writer_properties(state, !partition_by.is_empty())?)
        .with_save_mode(save_mode)
        .with_table_name(target.table_name);
    if !partition_by.is_empty() {
        builder = builder.with_partition_columns(partition_by.iter().cloned());
    }
    if let Some(predicate) = replace_where {
        builder = builder.with_replace_where(predicate);
    }
    if target.evolve {
        builder = builder.with_schema_mode(SchemaMode::Merge);
    }
    if let (SaveMode::Append, Some(id)) = (save_mode, &target.append_id) {
        let txn = Transaction::new(id, 1);
        builder = builder
            .with_commit_properties(CommitProperties::default().with_application_transaction(txn));
    }
    let table = builder.await.map_err(|source| {
        let kept = query_error.lock().unwrap_or_else(|p| p.into_inner()).take();
        match kept {
            Some(e) => execute_err(target, e),
            None => write_err(target, source),
        }
    })?;
    let outcome = outcome_of(&table, url).await?;
    Ok(Written { outcome, table })
}

/// `plan` read through the task's expectations and the counter of its rows (which
/// stops it when the run is cancelled), and where its first query error is kept.
fn watched(
    plan: LogicalPlan,
    target: &TableWrite<'_>,
) -> Result<(LogicalPlan, progress::QueryError)> {
    let plan = with_expectations(plan, target.expectations.clone())?;
    let rows = target.rows.clone().unwrap_or_default();
    let query_error = progress::QueryError::default();
    let cancel = target.cancel.clone().unwrap_or_default();
    let plan = progress::counted(plan, rows, query_error.clone(), cancel)?;
    Ok((plan, query_error))
}

/// `plan` hash-partitioned by the partition columns over the session's partitions, so
/// each partition value is written by one writer: a few large files per partition
/// rather than one per thread per partition.
fn by_partition(
    plan: LogicalPlanBuilder,
    partition_by: &[String],
    state: &SessionState,
) -> Result<LogicalPlan> {
    let n = state.config().target_partitions().max(1);
    let keys = partition_by
        .iter()
        .map(|c| col(Column::new_unqualified(c)))
        .collect();
    plan.repartition(Partitioning::Hash(keys, n))
        .and_then(LogicalPlanBuilder::build)
        .map_err(|e| Error::session("partitioning the rows to write", e))
}

/// A failed write: an Arrow error while the rows were computed (a division by zero,
/// an overflow, a bad cast) is the task's own failure, reported as such rather than as
/// delta-rs words it ("Failed to convert into Arrow schema").
fn write_err(target: &TableWrite<'_>, source: DeltaTableError) -> Error {
    match source {
        DeltaTableError::Arrow { source } => {
            execute_err(target, DataFusionError::ArrowError(Box::new(source), None))
        }
        other => delta_err(target.url, "write", other),
    }
}

fn execute_err(target: &TableWrite<'_>, source: DataFusionError) -> Error {
    Error::Execute {
        task: target.table_name.to_string(),
        uri: target.url.to_string(),
        source: Box::new(source),
    }
}

/// `plan` read through its expectations, when it has any.
fn with_expectations(
    plan: LogicalPlan,
    expectations: Option<Arc<CompiledExpectations>>,
) -> Result<LogicalPlan> {
    let Some(checks) = expectations.filter(|c| !c.is_empty()) else {
        return Ok(plan);
    };
    let table = ExpectationsTable::new(plan, checks);
    LogicalPlanBuilder::scan("expectations", provider_as_source(Arc::new(table)), None)
        .and_then(LogicalPlanBuilder::build)
        .map_err(|e| Error::session("reading the output through its expectations", e))
}

/// Upserts `plan`'s rows into `table` on the task's `unique_key`.
async fn merge(
    state: &SessionState,
    table: DeltaTable,
    plan: LogicalPlan,
    target: &TableWrite<'_>,
) -> Result<Written> {
    let (url, config, evolve) = (target.url, target.config, target.evolve);
    let source = DataFrame::new(state.clone(), plan);
    let columns: Vec<String> = source
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let side = |alias: &str, c: &str| col(Column::new(Some(alias), c));
    let on = config
        .unique_key
        .iter()
        .map(|k| side("target", k).eq(side("source", k)))
        .reduce(Expr::and)
        .unwrap_or_else(|| lit(false));
    let delete_when = config.delete_when.clone();
    let mut builder = table
        .merge(source, on)
        .with_source_alias("source")
        .with_target_alias("target")
        .with_session_state(Arc::new(state.clone()))
        .with_writer_properties(writer_properties(state, !config.partition_by.is_empty())?)
        .with_merge_schema(evolve);
    let merge_err = |source| delta_err(url, "merge", source);
    if let Some(condition) = &delete_when {
        builder = builder
            .when_matched_delete(|d| d.predicate(condition.as_str()))
            .map_err(merge_err)?;
    }
    builder = builder
        .when_matched_update(|mut u| {
            for c in &columns {
                u = u.update(Column::new_unqualified(c), side("source", c));
            }
            u
        })
        .map_err(merge_err)?
        .when_not_matched_insert(|mut i| {
            if let Some(condition) = &delete_when {
                i = i.predicate(format!("NOT ({condition})"));
            }
            for c in &columns {
                i = i.set(Column::new_unqualified(c), side("source", c));
            }
            i
        })
        .map_err(merge_err)?;
    let (table, metrics) = builder.await.map_err(|e| match e {
        e @ DeltaTableError::Arrow { .. } => write_err(target, e),
        e => merge_err(e),
    })?;
    let outcome = WriteOutcome {
        version: table.version().unwrap_or_default(),
        rows: (metrics.num_target_rows_inserted + metrics.num_target_rows_updated) as u64,
        files_added: metrics.num_target_files_added as u64,
        files_removed: metrics.num_target_files_removed as u64,
        already_appended: false,
    };
    Ok(Written { outcome, table })
}

/// The version and write metrics of the commit that made `table`'s current version.
async fn outcome_of(table: &DeltaTable, url: &Url) -> Result<WriteOutcome> {
    let version = table.version().unwrap_or_default();
    let mut outcome = WriteOutcome {
        version,
        rows: 0,
        files_added: 0,
        files_removed: 0,
        already_appended: false,
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
    target: &TableWrite<'_>,
) -> Result<Option<Expr>> {
    let partition_by = &target.config.partition_by;
    let df = DataFrame::new(state.clone(), plan.clone());
    let batches = df
        .select_columns(&partition_by.iter().map(String::as_str).collect::<Vec<_>>())
        .and_then(|df| df.distinct())
        .map_err(|e| execute_err(target, e))?
        .collect()
        .await
        .map_err(|e| execute_err(target, e))?;
    let mut rows = Vec::new();
    for batch in &batches {
        for row in 0..batch.num_rows() {
            let values = (0..partition_by.len())
                .map(|i| ScalarValue::try_from_array(batch.column(i), row))
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| execute_err(target, e))?;
            rows.push(values);
        }
    }
    Ok(partitions_predicate(partition_by, rows.into_iter()))
}

/// `(p1 = v1 AND p2 = v2) OR …` over `rows` of partition values (in `partition_by`'s
/// order), or `None` when there are none.
fn partitions_predicate(
    partition_by: &[String],
    rows: impl Iterator<Item = Vec<ScalarValue>>,
) -> Option<Expr> {
    rows.filter_map(|values| {
        partition_by
            .iter()
            .zip(values)
            .map(|(name, value)| {
                let column = col(Column::new_unqualified(name));
                if value.is_null() {
                    column.is_null()
                } else {
                    column.eq(lit(value))
                }
            })
            .reduce(Expr::and)
    })
    .reduce(Expr::or)
}

pub(crate) fn delta_err(url: &Url, action: &'static str, source: DeltaTableError) -> Error {
    Error::Delta {
        uri: url.to_string(),
        action,
        source: Box::new(source),
    }
}
