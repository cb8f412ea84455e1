//! Writes in one pass, with one data-file writer per partition of the plan, all at
//! once: delta-rs' own write drains an unpartitioned table's every partition into a
//! single writer, so Parquet encoding and compression ran on one core.
//!
//! - A `table` task over an existing table: one Delta transaction removes every live
//!   file and adds the new ones.
//! - A `partition` task over an existing table: the rows are hash-partitioned by the
//!   partition columns so each value is written by one writer, the partitions replaced
//!   are the ones the written files hold, and one transaction removes those partitions'
//!   old files and adds the new ones. The input is read once, so a partition value
//!   computed by a volatile function (`now()`, `random()`) replaces exactly what was
//!   written.
//! - An `append` to an existing table: one transaction adds the new files, with the
//!   run's application transaction (`txn`) that makes the day's append idempotent.
//! - A `table`, `append`, `partition` or `merge` task whose table does not exist yet: the files are
//!   written first, and the commit that creates the table (protocol, metadata) adds
//!   them, so a failed task leaves no table behind.
//!
//! Tables this writer does not cover — writer features it would have to act on
//! (constraints, generated or identity columns, column mapping, change data feed, row
//! tracking), append-only tables, columns that change — return `None` from
//! [`one_pass_schema`], and go through delta-rs' write builder instead.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::{Column, ScalarValue};
use datafusion::error::DataFusionError;
use datafusion::execution::{SendableRecordBatchStream, SessionState};
use datafusion::logical_expr::{cast, Expr, LogicalPlan, LogicalPlanBuilder};
use datafusion::physical_expr;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties, Partitioning};
use deltalake::datafile::writer::{DeltaWriter, WriterConfig};
use deltalake::kernel::engine::arrow_conversion::TryFromArrow;
use deltalake::kernel::schema::cast::normalize_for_delta;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties, TableReference};
use deltalake::kernel::{Action, StructType, Transaction};
use deltalake::operations::create::CreateBuilder;
use deltalake::operations::write::WriterStatsConfig;
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::table::config::{TablePropertiesExt, DEFAULT_TARGET_FILE_SIZE};
use deltalake::{DeltaTable, DeltaTableError};
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;

use super::{
    delta_err, execute_err, progress, table_or_new, watched, write_err, writer_properties,
    TableWrite, WriteOutcome, Written,
};
use crate::error::{Error, Result};

/// The writer features a one-pass write keeps without doing anything for them:
/// `appendOnly` and `invariants` are looked at below, a timestamp without time zone
/// needs nothing, a file's deletion vector goes with its remove, and the checkpoint
/// features concern the log, which delta-rs' commit writes.
const KEPT: &[&str] = &[
    "appendOnly",
    "invariants",
    "timestampNtz",
    "deletionVectors",
    "v2Checkpoint",
    "vacuumProtocolCheck",
];

/// The table's Arrow schema when `table` can take a one-pass write of the rows of
/// `plan`: the same columns, each of a type [`casts_as_delta_writes`] to the table's
/// and non-null where the table's is, the same partition columns, no writer feature
/// but the [`KEPT`] ones, not append-only unless `appending`, and no column
/// invariants. Otherwise why not (logged: the write then takes delta-rs' write
/// builder).
pub(super) fn one_pass_schema(
    table: &DeltaTable,
    plan: &LogicalPlan,
    partition_by: &[String],
    appending: bool,
) -> std::result::Result<SchemaRef, String> {
    let snapshot = table
        .snapshot()
        .map_err(|e| format!("the table's log: {e}"))?;
    let protocol = snapshot.protocol();
    match protocol.min_writer_version() {
        ..=2 => {}
        7 => {
            let features = protocol.writer_features().unwrap_or_default();
            let acted_on: Vec<&str> = features
                .iter()
                .map(|f| f.as_ref())
                .filter(|f| !KEPT.contains(f))
                .collect();
            if !acted_on.is_empty() {
                return Err(format!("writer features {}", acted_on.join(", ")));
            }
        }
        v => {
            // What each legacy writer version adds, for the log line.
            let adds = match v {
                3 => "CHECK constraints",
                4 => "change data feed, generated columns",
                5 => "column mapping",
                6 => "identity columns",
                _ => "features of a later protocol",
            };
            return Err(format!("writer version {v} ({adds})"));
        }
    }
    if !appending && snapshot.table_config().append_only() {
        return Err("an append-only table".into());
    }
    if snapshot.metadata().partition_columns() != partition_by {
        return Err("other partition columns".into());
    }
    if let Some(f) = snapshot
        .schema()
        .fields()
        .find(|f| f.metadata().contains_key("delta.invariants"))
    {
        return Err(format!("an invariant on column {}", f.name()));
    }
    let schema = snapshot.snapshot().arrow_schema();
    let output = plan.schema();
    if output.fields().len() != schema.fields().len() {
        return Err("other columns".into());
    }
    for field in schema.fields() {
        let (_, produced) = output
            .qualified_field_with_unqualified_name(field.name())
            .map_err(|_| format!("no column {}", field.name()))?;
        if !casts_as_delta_writes(produced.data_type(), field.data_type())
            || (produced.is_nullable() && !field.is_nullable())
        {
            return Err(format!(
                "column {} of another type or nullability",
                field.name()
            ));
        }
    }
    Ok(schema)
}

/// Whether a column of type `produced` is written to a table column of type `table` by
/// a cast delta-rs' own writer would make: the same type, another encoding of strings
/// or of bytes, or a timestamp of another unit (Delta keeps microseconds) that is an
/// instant on both sides or a local time on both.
fn casts_as_delta_writes(produced: &DataType, table: &DataType) -> bool {
    use DataType::*;
    produced == table
        || matches!(
            (produced, table),
            (Utf8 | LargeUtf8 | Utf8View, Utf8 | LargeUtf8 | Utf8View)
                | (
                    Binary | LargeBinary | BinaryView,
                    Binary | LargeBinary | BinaryView
                )
        )
        || matches!((produced, table), (Timestamp(_, a), Timestamp(_, b)) if a.is_some() == b.is_some())
}

/// What a one-pass write over an existing table replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Replace {
    /// Every live file: a `table` task.
    All,
    /// The files of the partitions the new files hold: a `partition` task.
    WrittenPartitions,
}

/// Replaces the rows of `table` — all of them, or the partitions `plan`'s rows fall in
/// — with `plan`'s rows, in one read of `plan` and one commit; `schema` is
/// [`one_pass_schema`]'s. With no rows a `partition` write commits nothing, and a
/// `table` write commits the removal of every file (nothing when there was none); the
/// expectations are judged either way.
pub(super) async fn replace(
    state: &SessionState,
    table: DeltaTable,
    schema: SchemaRef,
    plan: LogicalPlan,
    target: &TableWrite<'_>,
    replace: Replace,
) -> Result<Written> {
    let start = Instant::now();
    let (url, partition_by) = (target.url, &target.config.partition_by);
    let (adds, written_rows) = write_into_table(state, &table, &schema, plan, target).await?;
    if adds.is_empty() && replace == Replace::WrittenPartitions {
        return Ok(Written::untouched(table));
    }
    let snapshot = table
        .snapshot()
        .map_err(|source| delta_err(url, "read the log of", source))?;
    let log_store = table.log_store();
    let (mut actions, written) = replaced_files(
        snapshot,
        log_store.as_ref(),
        &adds,
        &schema,
        target,
        replace,
    )
    .await?;
    if actions.is_empty() && adds.is_empty() {
        return Ok(Written::untouched(table));
    }
    let predicate = match replace {
        Replace::All => None,
        Replace::WrittenPartitions => {
            super::partitions_predicate(partition_by, written.into_iter())
                .map(|p| deltalake::delta_datafusion::expr::fmt_expr_to_sql(&p))
                .transpose()
                .map_err(|source| delta_err(url, "write", source))?
        }
    };
    actions.extend(adds.into_iter().map(Action::Add));
    let operation = DeltaOperation::Write {
        mode: SaveMode::Overwrite,
        partition_by: (!partition_by.is_empty()).then(|| partition_by.clone()),
        predicate,
    };
    commit_files(table, actions, operation, written_rows, start, target).await
}

/// Creates the target's table with `plan`'s rows: the files are written first (one
/// writer per partition of the plan), then one commit creates the table with them —
/// its protocol and metadata as delta-rs' create gives them for the plan's columns in
/// Delta types, and the default table configuration. With no rows the table is
/// created empty, so downstream tasks can read it.
pub(super) async fn create(
    state: &SessionState,
    plan: LogicalPlan,
    target: &TableWrite<'_>,
) -> Result<Written> {
    let start = Instant::now();
    let (url, partition_by) = (target.url, &target.config.partition_by);
    // The columns as delta-rs writes a new table's: its Delta types, back in Arrow.
    let schema = normalize_for_delta(plan.schema().inner());
    let columns = StructType::try_from_arrow(schema.as_ref())
        .map_err(|e| delta_err(url, "create", e.into()))?;
    let table = table_or_new(target, None)?;
    let config = WriterConfig::new(
        schema.clone(),
        partition_by.clone(),
        Some(writer_properties(state, !partition_by.is_empty())?),
        Some(DEFAULT_TARGET_FILE_SIZE),
        None,
        // What a table without `delta.dataSkipping*` settings collects: the first 32.
        Default::default(),
        None,
    );
    let log_store = table.log_store();
    let store = log_store.object_store(None);
    let (adds, written_rows) = write_plan(state, plan, &schema, &store, &config, target).await?;
    let partitions = partition_count(&adds);
    let files_added = adds.len() as u64;
    let metrics = operation_metrics(files_added, 0, partitions, written_rows, start);
    let properties = commit_properties(metrics, target);
    let table = CreateBuilder::new()
        .with_log_store(log_store)
        .with_columns(columns.fields().cloned())
        .with_partition_columns(partition_by.clone())
        .with_table_name(target.table_name)
        .with_actions(adds.into_iter().map(Action::Add))
        .with_commit_properties(properties)
        .with_save_mode(SaveMode::ErrorIfExists)
        .await
        .map_err(|source| delta_err(url, "create", source))?;
    let outcome = WriteOutcome {
        version: table.version().unwrap_or_default(),
        rows: written_rows,
        files_added,
        files_removed: 0,
        already_appended: false,
    };
    Ok(Written { outcome, table })
}

/// Appends `plan`'s rows to `table` in one read of `plan` and one commit, with the
/// task's application transaction when it has one; `schema` is [`one_pass_schema`]'s.
/// With no rows nothing is committed unless there is a transaction to record.
pub(super) async fn append(
    state: &SessionState,
    table: DeltaTable,
    schema: SchemaRef,
    plan: LogicalPlan,
    target: &TableWrite<'_>,
) -> Result<Written> {
    let start = Instant::now();
    let (adds, written_rows) = write_into_table(state, &table, &schema, plan, target).await?;
    if adds.is_empty() && target.append_id.is_none() {
        return Ok(Written::untouched(table));
    }
    let partition_by = &target.config.partition_by;
    let operation = DeltaOperation::Write {
        mode: SaveMode::Append,
        partition_by: (!partition_by.is_empty()).then(|| partition_by.clone()),
        predicate: None,
    };
    let actions = adds.into_iter().map(Action::Add).collect();
    commit_files(table, actions, operation, written_rows, start, target).await
}

/// Streams `plan` into new files of the existing `table` ([`write_plan`]) with the
/// table's target file size and the columns its configuration collects statistics
/// for: the files and their rows.
async fn write_into_table(
    state: &SessionState,
    table: &DeltaTable,
    schema: &SchemaRef,
    plan: LogicalPlan,
    target: &TableWrite<'_>,
) -> Result<(Vec<deltalake::kernel::Add>, u64)> {
    let snapshot = table
        .snapshot()
        .map_err(|source| delta_err(target.url, "read the log of", source))?;
    let stats = WriterStatsConfig::from_config(snapshot.snapshot().table_configuration());
    let config = WriterConfig::new(
        schema.clone(),
        target.config.partition_by.clone(),
        Some(writer_properties(
            state,
            !target.config.partition_by.is_empty(),
        )?),
        Some(snapshot.table_config().target_file_size()),
        None,
        stats.num_indexed_cols,
        stats.stats_columns,
    );
    let store = table.log_store().object_store(None);
    write_plan(state, plan, schema, &store, &config, target).await
}

/// Commits `actions` (the adds of `rows` rows, and any removes) to `table` as
/// `operation`, with the write's metrics: what was committed, and the table at the
/// new version.
async fn commit_files(
    table: DeltaTable,
    actions: Vec<Action>,
    operation: DeltaOperation,
    rows: u64,
    start: Instant,
    target: &TableWrite<'_>,
) -> Result<Written> {
    let url = target.url;
    let adds: Vec<_> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Add(add) => Some(add),
            _ => None,
        })
        .collect();
    let files_added = adds.len() as u64;
    let files_removed = actions
        .iter()
        .filter(|a| matches!(a, Action::Remove(_)))
        .count() as u64;
    let metrics = operation_metrics(
        files_added,
        files_removed,
        partition_count(adds),
        rows,
        start,
    );
    let snapshot = table
        .snapshot()
        .map_err(|source| delta_err(url, "read the log of", source))?;
    let committed = CommitBuilder::from(commit_properties(metrics, target))
        .with_actions(actions)
        .build(
            Some(snapshot as &dyn TableReference),
            table.log_store(),
            operation,
        )
        .await
        .map_err(|source| delta_err(url, "commit", source))?;
    let outcome = WriteOutcome {
        version: committed.version(),
        rows,
        files_added,
        files_removed,
        already_appended: false,
    };
    let mut table = table;
    table.state = Some(committed.snapshot);
    Ok(Written { outcome, table })
}

/// The commit's properties: its write metrics, and for an `append` of a task's run the
/// application transaction that makes it idempotent.
fn commit_properties(metrics: serde_json::Value, target: &TableWrite<'_>) -> CommitProperties {
    let properties =
        CommitProperties::default().with_metadata([("operationMetrics".to_owned(), metrics)]);
    match &target.append_id {
        Some(id) => properties.with_application_transaction(Transaction::new(id, 1)),
        None => properties,
    }
}

/// How many partitions the `adds` hold (one for an unpartitioned table's files).
fn partition_count<'a>(adds: impl IntoIterator<Item = &'a deltalake::kernel::Add>) -> usize {
    adds.into_iter()
        .map(|add| {
            let mut values: Vec<_> = add.partition_values.iter().collect();
            values.sort();
            values
        })
        .collect::<HashSet<_>>()
        .len()
}

/// The write metrics recorded in the commit (`operationMetrics`, as delta-rs names
/// them), which the run log reads back.
fn operation_metrics(
    files_added: u64,
    files_removed: u64,
    partitions: usize,
    rows: u64,
    start: Instant,
) -> serde_json::Value {
    serde_json::json!({
        "num_added_files": files_added,
        "num_removed_files": files_removed,
        "num_partitions": partitions,
        "num_added_rows": rows,
        "execution_time_ms": start.elapsed().as_millis() as u64,
        "num_retries": 0,
    })
}

/// Streams `plan` — through the task's expectations and row counter, cast to
/// `schema`, hash-partitioned by the partition columns when there are any — into
/// files, one writer per partition of the physical plan: the files and their rows.
async fn write_plan(
    state: &SessionState,
    plan: LogicalPlan,
    schema: &SchemaRef,
    store: &Arc<dyn object_store::ObjectStore>,
    config: &WriterConfig,
    target: &TableWrite<'_>,
) -> Result<(Vec<deltalake::kernel::Add>, u64)> {
    let partition_by = &target.config.partition_by;
    let (plan, query_error) = watched(plan, target)?;
    let plan = to_table_schema(plan, schema)?;
    let physical = state
        .create_physical_plan(&plan)
        .await
        .map_err(|e| execute_err(target, e))?;
    let physical = if partition_by.is_empty() {
        at_most_session_partitions(physical, state)?
    } else {
        hashed_by_partition(physical, partition_by, state)?
    };
    write_files(physical, state, store, config, schema, &query_error, target).await
}

/// The partitions the `adds` hold, as typed values (a value may be spelled otherwise
/// in files another engine wrote), and the removes of the table's files `replace`
/// takes: all of them, or those in the partitions written.
async fn replaced_files(
    snapshot: &deltalake::table::state::DeltaTableState,
    log_store: &dyn deltalake::logstore::LogStore,
    adds: &[deltalake::kernel::Add],
    schema: &SchemaRef,
    target: &TableWrite<'_>,
    replace: Replace,
) -> Result<(Vec<Action>, HashSet<Vec<ScalarValue>>)> {
    let (url, partition_by) = (target.url, &target.config.partition_by);
    // The partitions written, as typed values (a value is spelled the same way in
    // every file of a partition only if one writer wrote them all).
    let types: Vec<DataType> = partition_by
        .iter()
        .map(|c| schema.field_with_name(c).map(|f| f.data_type().clone()))
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| execute_err(target, e.into()))?;
    let key_of = |values: &HashMap<String, Option<String>>| {
        partition_by
            .iter()
            .zip(&types)
            .map(|(c, t)| match values.get(c).cloned().flatten() {
                Some(text) => ScalarValue::try_from_string(text, t),
                None => ScalarValue::try_from(t),
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| execute_err(target, e))
    };
    let mut written = HashSet::new();
    for add in adds {
        written.insert(key_of(&add.partition_values)?);
    }
    let mut actions: Vec<Action> = Vec::new();
    let mut files = snapshot.snapshot().file_views(log_store, None);
    while let Some(file) = files
        .try_next()
        .await
        .map_err(|source| delta_err(url, "list the files of", source))?
    {
        if replace == Replace::All || written.contains(&key_of(&file.partition_values_map())?) {
            actions.push(Action::Remove(file.remove_action(true)));
        }
    }
    drop(files);
    Ok((actions, written))
}

/// Streams every partition of `physical` through its own writer, all at once: the
/// files written and their rows. When one fails the others stop, the files already
/// closed are deleted, and the task's first error is returned.
async fn write_files(
    physical: Arc<dyn ExecutionPlan>,
    state: &SessionState,
    store: &Arc<dyn object_store::ObjectStore>,
    config: &WriterConfig,
    schema: &SchemaRef,
    query_error: &progress::QueryError,
    target: &TableWrite<'_>,
) -> Result<(Vec<deltalake::kernel::Add>, u64)> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = tokio::task::JoinSet::new();
    for partition in 0..physical.output_partitioning().partition_count() {
        let stream = physical
            .execute(partition, state.task_ctx())
            .map_err(|e| execute_err(target, e))?;
        let writer = DeltaWriter::new(Arc::clone(store), config.clone());
        writers.spawn(write_stream(stream, writer, schema.clone(), stop.clone()));
    }
    let (mut adds, mut written_rows, mut first_error) = (Vec::new(), 0u64, None);
    while let Some(joined) = writers.join_next().await {
        match joined {
            Ok(Ok((files, n))) => {
                adds.extend(files);
                written_rows += n;
            }
            Ok(Err(Failure::Stopped)) => {}
            Ok(Err(failure)) => {
                first_error.get_or_insert(failure);
            }
            Err(e) => {
                let e = DataFusionError::External(Box::new(e));
                first_error.get_or_insert(Failure::Query(e));
            }
        }
    }
    if let Some(failure) = first_error {
        // The files already closed are in no commit; take them back.
        for add in &adds {
            if let Ok(path) = deltalake::Path::from_url_path(&add.path) {
                let _ = store.delete(&path).await;
            }
        }
        let kept = query_error.lock().unwrap_or_else(|p| p.into_inner()).take();
        return Err(match (kept, failure) {
            (Some(e), _) | (None, Failure::Query(e)) => execute_err(target, e),
            (None, Failure::Write(e)) => write_err(target, e),
            (None, Failure::Stopped) => unreachable!("a stopped writer is not kept as an error"),
        });
    }
    Ok((adds, written_rows))
}

/// `plan` with the table's columns in the table's order and types.
fn to_table_schema(plan: LogicalPlan, schema: &SchemaRef) -> Result<LogicalPlan> {
    let output = plan.schema().clone();
    let columns = schema.fields().iter().map(|field| {
        let column = Expr::Column(Column::new_unqualified(field.name()));
        let produced = output
            .qualified_field_with_unqualified_name(field.name())
            .map(|(_, f)| f.data_type().clone());
        match produced {
            Ok(t) if &t == field.data_type() => column,
            _ => cast(column, field.data_type().clone()).alias(field.name()),
        }
    });
    LogicalPlanBuilder::from(plan)
        .project(columns)
        .and_then(LogicalPlanBuilder::build)
        .map_err(|e| Error::session("casting the rows to the table's columns", e))
}

/// `physical` hash-partitioned by the partition columns over the session's
/// partitions, so each partition value reaches one writer and is written as few large
/// files. This is added to the optimized plan: a repartition in the logical plan is one
/// the physical optimizer drops (nothing above it requires that distribution), and
/// every writer then got rows of every partition value — two files per partition on
/// two cores.
fn hashed_by_partition(
    physical: Arc<dyn ExecutionPlan>,
    partition_by: &[String],
    state: &SessionState,
) -> Result<Arc<dyn ExecutionPlan>> {
    let n = state.config().target_partitions().max(1);
    let schema = physical.schema();
    let keys = partition_by
        .iter()
        .map(|name| {
            let column = physical_expr::expressions::Column::new_with_schema(name, &schema)?;
            Ok(Arc::new(column) as Arc<dyn physical_expr::PhysicalExpr>)
        })
        .collect::<datafusion::error::Result<Vec<_>>>()
        .map_err(|e| Error::session("partitioning the rows to write", e))?;
    let repartition = RepartitionExec::try_new(physical, Partitioning::Hash(keys, n))
        .map_err(|e| Error::session("partitioning the rows to write", e))?;
    Ok(Arc::new(repartition))
}

/// `physical`, or when it has more partitions than the session's (a `UNION ALL` of
/// many inputs) its batches dealt round-robin over the session's partitions: a writer
/// per partition holds a row group's buffer, so their number stays that of the cores.
fn at_most_session_partitions(
    physical: Arc<dyn ExecutionPlan>,
    state: &SessionState,
) -> Result<Arc<dyn ExecutionPlan>> {
    let n = state.config().target_partitions().max(1);
    if physical.output_partitioning().partition_count() <= n {
        return Ok(physical);
    }
    let repartition = RepartitionExec::try_new(physical, Partitioning::RoundRobinBatch(n))
        .map_err(|e| Error::session("partitioning the rows to write", e))?;
    Ok(Arc::new(repartition))
}

/// Why a writer stopped.
enum Failure {
    /// The task's query failed.
    Query(DataFusionError),
    /// Writing or closing a file failed.
    Write(DeltaTableError),
    /// Another writer failed first.
    Stopped,
}

/// Writes every batch of `stream` through `writer`, then closes it: its files and
/// rows. On a failure, or when another writer has failed (`stop`), its uploads are
/// aborted.
async fn write_stream(
    mut stream: SendableRecordBatchStream,
    mut writer: DeltaWriter,
    schema: SchemaRef,
    stop: Arc<AtomicBool>,
) -> std::result::Result<(Vec<deltalake::kernel::Add>, u64), Failure> {
    let mut rows = 0u64;
    let failure = loop {
        if stop.load(Ordering::Relaxed) {
            break Failure::Stopped;
        }
        let batch = match stream.next().await {
            None => {
                return writer.close().await.map(|adds| (adds, rows)).map_err(|e| {
                    stop.store(true, Ordering::Relaxed);
                    Failure::Write(e)
                })
            }
            Some(Err(e)) => break Failure::Query(e),
            Some(Ok(batch)) => batch,
        };
        rows += batch.num_rows() as u64;
        let batch = match as_table_batch(&batch, &schema) {
            Ok(batch) => batch,
            Err(e) => break Failure::Query(e.into()),
        };
        if let Err(e) = writer.write(&batch).await {
            break Failure::Write(e);
        }
    };
    if !matches!(failure, Failure::Stopped) {
        stop.store(true, Ordering::Relaxed);
    }
    let _ = writer.abort().await;
    Err(failure)
}

/// `batch`'s columns labelled with the table's fields (nullability, metadata), each
/// cast to its field's type where it is not of it: an operator may produce another
/// encoding than its plan's schema says (a `||` of strings gives `Utf8View` arrays
/// under a `Utf8` column), which the cast planned in [`to_table_schema`] cannot see.
fn as_table_batch(
    batch: &RecordBatch,
    schema: &SchemaRef,
) -> std::result::Result<RecordBatch, datafusion::arrow::error::ArrowError> {
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(
            |(column, field)| match column.data_type() == field.data_type() {
                true => Ok(column.clone()),
                false => datafusion::arrow::compute::cast(column, field.data_type()),
            },
        )
        .collect::<std::result::Result<Vec<_>, _>>()?;
    RecordBatch::try_new(schema.clone(), columns)
}
