//! Reading a Delta table's snapshot as a plain Parquet scan: DataFusion's
//! `DataSourceExec` over the snapshot's live files, with the log's per-file statistics
//! (row counts, column min/max and null counts) and typed partition values.
//!
//! Why not delta-rs' own scan: it reports column statistics only for the columns of a
//! pushed-down predicate, so the planner sizes joins as if it knew nothing (TPC-H Q18
//! built its semi-join hash table from the 6 M-row side), and a plan holding it cannot
//! be sent to other processes. Tables this scan cannot read faithfully — deletion
//! vectors, column mapping, files outside the table's store — keep delta-rs' scan.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, UInt64Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, FieldRef, Schema, SchemaRef};
use datafusion::catalog::Session;
use datafusion::common::stats::Precision;
use datafusion::common::{Column, ColumnStatistics, DFSchema, ScalarValue, Statistics};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::metadata::DFParquetMetadata;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder};
use datafusion::datasource::table_schema::TableSchema;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::Result as DfResult;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_optimizer::pruning::{PruningPredicateBuilder, PruningStatistics};
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;
use deltalake::DeltaTable;
use object_store::path::Path;
use url::Url;

/// A Delta table version read as Parquet files (see the module docs).
#[derive(Debug)]
pub(crate) struct SnapshotScan {
    /// The table's columns as SQL sees them, in the table's order.
    schema: SchemaRef,
    /// The Parquet columns, then the partition columns: the order the scan reads in.
    layout: TableSchema,
    /// For each table column, its position in `layout`.
    to_layout: Vec<usize>,
    /// The store the files are in (`file://`, `s3://bucket`).
    store: ObjectStoreUrl,
    /// The live files, with partition values and statistics in `layout`'s order.
    files: Vec<PartitionedFile>,
}

impl SnapshotScan {
    /// The scan of `table`'s loaded version, whose columns are `schema` (delta-rs'
    /// provider's, so SQL sees the same types either way); `Err` says why the table
    /// needs delta-rs' own scan instead.
    pub(crate) fn try_new(
        table: &DeltaTable,
        url: &Url,
        schema: SchemaRef,
    ) -> Result<Self, String> {
        let state = table
            .snapshot()
            .map_err(|e| format!("the table's log: {e}"))?;
        let metadata = state.metadata();
        if let Some(mode) = metadata.configuration().get("delta.columnMapping.mode") {
            if !mode.eq_ignore_ascii_case("none") {
                return Err(format!("column mapping (mode {mode})"));
            }
        }
        let partition_cols = metadata.partition_columns().to_vec();
        let (file_fields, partition_fields): (Vec<FieldRef>, Vec<FieldRef>) = schema
            .fields()
            .iter()
            .cloned()
            .partition(|f| !partition_cols.contains(f.name()));
        let layout_schema = Schema::new(
            file_fields
                .iter()
                .chain(&partition_fields)
                .cloned()
                .collect::<Vec<_>>(),
        );
        let to_layout = schema
            .fields()
            .iter()
            .map(|f| layout_schema.index_of(f.name()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        let layout = TableSchema::builder(Arc::new(Schema::new(file_fields.clone())))
            .with_table_partition_cols(partition_fields.clone())
            .build();
        let (store, root) = store_of(url)?;
        let log = state
            .snapshot()
            .try_log_data()
            .map_err(|e| format!("the table's files: {e}"))?;
        let stats = LogStats::read(&log, &layout_schema, partition_fields.len());
        let mut files = Vec::with_capacity(log.num_files());
        for (i, file) in log.iter().enumerate() {
            if file.deletion_vector_descriptor().is_some() {
                return Err("deletion vectors".into());
            }
            let relative = file.path();
            if relative.contains("://") {
                return Err(format!("a file outside the table's folder ({relative})"));
            }
            // The log's path, unescaped once, is the store's key (a file named
            // `city=New%20York` in a folder); `Path::from` would escape it again.
            let location = Path::parse(format!("{}/{relative}", root.as_ref()))
                .map_err(|e| format!("the path of {relative}: {e}"))?;
            let size = u64::try_from(file.size()).unwrap_or_default();
            // Not `PartitionedFile::new`, which takes the key as a string to escape.
            let mut part = PartitionedFile::new("", size);
            part.object_meta.location = location;
            part.partition_values = stats.partition_values(i).ok_or_else(|| {
                format!("partition values of {relative} not of the columns' types")
            })?;
            part.statistics = Some(Arc::new(stats.file(i, size, file.num_records())));
            files.push(part);
        }
        Ok(SnapshotScan {
            schema,
            layout,
            to_layout,
            store,
            files,
        })
    }

    /// Sizes the variable-width columns as DataFusion's Parquet source does: by their
    /// uncompressed column-chunk bytes, per row of the table's largest file, times each
    /// file's rows. One footer read per table, through the session's metadata cache, so
    /// the scan does not read it again. The planner collects a join's build side by
    /// these sizes; without them a string column is a share of the compressed file,
    /// which is larger than its dictionary-encoded pages. If the footer cannot be read,
    /// the shares stay (logged).
    pub(crate) async fn sized_by_footer(mut self, ctx: &SessionContext) -> Self {
        let Some(largest) = self.files.iter().max_by_key(|f| f.object_meta.size) else {
            return self;
        };
        let runtime = ctx.runtime_env();
        let Ok(store) = runtime.object_store(&self.store) else {
            return self;
        };
        let cache = runtime.cache_manager.get_file_metadata_cache();
        let footer = DFParquetMetadata::new(store.as_ref(), &largest.object_meta)
            .with_file_metadata_cache(Some(cache))
            .fetch_metadata()
            .await;
        let metadata = match footer {
            Ok(metadata) => metadata,
            Err(e) => {
                let file = &largest.object_meta.location;
                tracing::debug!(%file, "column sizes from shares of the file: {e}");
                return self;
            }
        };
        let rows = metadata.file_metadata().num_rows();
        if rows <= 0 {
            return self;
        }
        let per_row: Vec<Option<f64>> = (self.layout.file_schema().fields().iter())
            .map(|f| {
                f.data_type().primitive_width().is_none().then(|| {
                    let chunks = metadata.row_groups().iter().flat_map(|g| g.columns());
                    let bytes: i64 = chunks
                        .filter(|c| c.column_path().parts().first() == Some(f.name()))
                        .map(|c| c.uncompressed_size())
                        .sum();
                    bytes as f64 / rows as f64
                })
            })
            .collect();
        for file in &mut self.files {
            let Some(stats) = file.statistics.as_mut() else {
                continue;
            };
            let Precision::Exact(n) = stats.num_rows else {
                continue;
            };
            let columns = &mut Arc::make_mut(stats).column_statistics;
            for (column, per_row) in columns.iter_mut().zip(&per_row) {
                if let Some(b) = per_row {
                    column.byte_size = Precision::Inexact((b * n as f64) as usize);
                }
            }
        }
        self
    }

    /// The files that `filters` may select, by their statistics and partition values.
    fn pruned(&self, state: &dyn Session, filters: &[Expr]) -> DfResult<Vec<PartitionedFile>> {
        let Some(predicate) = conjunction(filters.iter().cloned()) else {
            return Ok(self.files.clone());
        };
        let schema = self.layout.table_schema().clone();
        let df_schema = DFSchema::try_from(schema.as_ref().clone())?;
        let physical = state.create_physical_expr(predicate, &df_schema)?;
        let Some(pruning) = PruningPredicateBuilder::new()
            .with_file_schema(schema)
            .build(physical)
        else {
            return Ok(self.files.clone());
        };
        let keep = pruning.prune(&FileStats {
            files: &self.files,
            schema: self.layout.table_schema(),
        })?;
        Ok(self
            .files
            .iter()
            .zip(keep)
            .filter(|(_, keep)| *keep)
            .map(|(f, _)| f.clone())
            .collect())
    }
}

/// The statistics of `files` (every file of a scan has them).
fn file_statistics<'a>(
    files: impl IntoIterator<Item = &'a PartitionedFile>,
) -> impl Iterator<Item = &'a Statistics> {
    files.into_iter().filter_map(|f| f.statistics.as_deref())
}

/// The object store URL a table's files are read through, and the table's folder in it.
fn store_of(url: &Url) -> Result<(ObjectStoreUrl, Path), String> {
    let store = match url.scheme() {
        "file" => ObjectStoreUrl::local_filesystem(),
        "s3" => ObjectStoreUrl::parse(format!("s3://{}", url.host_str().unwrap_or_default()))
            .map_err(|e| e.to_string())?,
        other => return Err(format!("a table in a {other}:// store")),
    };
    let root = Path::from_url_path(url.path()).map_err(|e| e.to_string())?;
    Ok((store, root))
}

#[async_trait]
impl TableProvider for SnapshotScan {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    /// Every filter is also applied above the scan: statistics only rule files out.
    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let projection: Vec<usize> = match projection {
            Some(p) => p.iter().map(|&i| self.to_layout[i]).collect(),
            None => self.to_layout.clone(),
        };
        let files = self.pruned(state, filters)?;
        if files.is_empty() {
            let schema = self.layout.table_schema().project(&projection)?;
            return Ok(Arc::new(EmptyExec::new(Arc::new(schema))));
        }
        let schema = self.layout.table_schema();
        let groups = FileGroup::new(files)
            .split_files(state.config().target_partitions())
            .into_iter()
            .map(|g| {
                let stats = Statistics::try_merge_iter(file_statistics(g.files()), schema)?;
                Ok(g.with_statistics(Arc::new(stats)))
            })
            .collect::<DfResult<Vec<_>>>()?;
        let all = groups.iter().flat_map(|g| g.files());
        let statistics = Statistics::try_merge_iter(file_statistics(all), schema)?;
        let format = ParquetFormat::default().with_options(state.table_options().parquet.clone());
        let source = format.file_source(self.layout.clone());
        let config = FileScanConfigBuilder::new(self.store.clone(), source)
            .with_file_groups(groups)
            .with_statistics(statistics)
            .with_projection_indices(Some(projection))?
            .with_limit(limit)
            .build();
        format.create_physical_plan(state, config).await
    }
}

/// The log's statistics of every live file, as arrays in the scan's column order (one
/// row per file, in the log's file order).
struct LogStats {
    columns: Vec<ColumnArrays>,
    /// How many of `columns`, at the end, are partition columns.
    partitions: usize,
}

struct ColumnArrays {
    /// The width of a value of a fixed-width type.
    width: Option<usize>,
    min: Option<ArrayRef>,
    max: Option<ArrayRef>,
    nulls: Option<UInt64Array>,
}

impl LogStats {
    fn read(log: &impl PruningStatistics, layout: &Schema, partitions: usize) -> Self {
        let typed =
            |array: Option<ArrayRef>, to: &DataType| array.and_then(|a| cast(a.as_ref(), to).ok());
        let counts = |array: Option<ArrayRef>| {
            typed(array, &DataType::UInt64)
                .and_then(|a| a.as_any().downcast_ref::<UInt64Array>().cloned())
        };
        let columns = layout
            .fields()
            .iter()
            .map(|f| {
                let column = Column::new_unqualified(f.name());
                ColumnArrays {
                    width: f.data_type().primitive_width(),
                    min: typed(log.min_values(&column), f.data_type()),
                    max: typed(log.max_values(&column), f.data_type()),
                    // delta-rs reads a column's null counts as values of the column's
                    // own type, which fails but for `long` columns: an error each
                    // (with a backtrace under `RUST_BACKTRACE`) and no counts.
                    nulls: (f.data_type() == &DataType::Int64)
                        .then(|| counts(log.null_counts(&column)))
                        .flatten(),
                }
            })
            .collect();
        LogStats {
            columns,
            partitions,
        }
    }

    fn partition_columns(&self) -> &[ColumnArrays] {
        &self.columns[self.columns.len() - self.partitions..]
    }

    /// File `i`'s partition values, typed; `None` when the log's cannot be read as the
    /// columns' types.
    fn partition_values(&self, i: usize) -> Option<Vec<ScalarValue>> {
        self.partition_columns()
            .iter()
            .map(|c| ScalarValue::try_from_array(c.min.as_ref()?, i).ok())
            .collect()
    }

    /// File `i`'s statistics, given its row count. Row and null counts are exact (the log's); column bounds
    /// are inexact, because writers truncate long strings and timestamps (to the
    /// millisecond: a maximum is widened by 999 µs, as delta-kernel's skipping does).
    /// A partition column's value is exact: every row has it.
    ///
    /// The log has no sizes per column, and the planner sizes a projection by them
    /// (whether a join's build side is small enough to collect): a fixed-width column
    /// is rows × width, any other an even share of the file.
    fn file(&self, i: usize, size: u64, rows: Option<usize>) -> Statistics {
        let file_columns = self.columns.len() - self.partitions;
        let share = Precision::Inexact(size as usize / file_columns.max(1));
        let bytes = |width: Option<usize>| match (width, rows) {
            (Some(w), Some(r)) => Precision::Inexact(w * r),
            (None, _) => share,
            (Some(_), None) => Precision::Absent,
        };
        let column_statistics = self
            .columns
            .iter()
            .enumerate()
            .map(|(c, arrays)| {
                let value = |a: &Option<ArrayRef>| {
                    a.as_ref()
                        .and_then(|a| ScalarValue::try_from_array(a, i).ok())
                        .filter(|v| !v.is_null())
                };
                if c >= file_columns {
                    let stats = match arrays.min {
                        Some(_) => partition_statistics(value(&arrays.min), rows),
                        None => ColumnStatistics::new_unknown(),
                    };
                    return ColumnStatistics {
                        byte_size: bytes(arrays.width.or(Some(0))),
                        ..stats
                    };
                }
                let nulls = arrays
                    .nulls
                    .as_ref()
                    .filter(|n| n.is_valid(i) && rows.is_some())
                    .map(|n| n.value(i) as usize);
                ColumnStatistics {
                    null_count: nulls.map_or(Precision::Absent, Precision::Exact),
                    min_value: value(&arrays.min).map_or(Precision::Absent, Precision::Inexact),
                    max_value: value(&arrays.max)
                        .map(widen_truncated)
                        .map_or(Precision::Absent, Precision::Inexact),
                    byte_size: bytes(arrays.width),
                    ..ColumnStatistics::new_unknown()
                }
            })
            .collect();
        Statistics {
            num_rows: rows.map_or(Precision::Absent, Precision::Exact),
            // Unknown, as DataFusion's Parquet source leaves it: a projection of
            // statistics keeps the total, so the file's would size a two-column build
            // side as the whole table. The planner then sizes a scan by its rows, and
            // what is above it (joins) by the column sizes.
            total_byte_size: Precision::Absent,
            column_statistics,
        }
    }
}

/// A partition column's statistics in one file: its one value, or all NULL.
fn partition_statistics(value: Option<ScalarValue>, rows: Option<usize>) -> ColumnStatistics {
    match value {
        Some(v) => ColumnStatistics {
            null_count: Precision::Exact(0),
            min_value: Precision::Exact(v.clone()),
            max_value: Precision::Exact(v),
            distinct_count: Precision::Exact(1),
            ..ColumnStatistics::new_unknown()
        },
        None => ColumnStatistics {
            null_count: rows.map_or(Precision::Absent, Precision::Exact),
            ..ColumnStatistics::new_unknown()
        },
    }
}

/// A timestamp maximum the log holds truncated to the millisecond, widened to the
/// largest value it may stand for.
fn widen_truncated(max: ScalarValue) -> ScalarValue {
    match max {
        ScalarValue::TimestampMicrosecond(Some(v), tz) => {
            ScalarValue::TimestampMicrosecond(Some(v.saturating_add(999)), tz)
        }
        ScalarValue::TimestampNanosecond(Some(v), tz) => {
            ScalarValue::TimestampNanosecond(Some(v.saturating_add(999_999)), tz)
        }
        other => other,
    }
}

/// The files' statistics, for pruning them with a predicate.
struct FileStats<'a> {
    files: &'a [PartitionedFile],
    schema: &'a SchemaRef,
}

impl FileStats<'_> {
    fn column(&self, column: &Column) -> Option<usize> {
        self.schema.index_of(&column.name).ok()
    }

    fn values(
        &self,
        column: &Column,
        pick: impl Fn(&ColumnStatistics) -> &Precision<ScalarValue>,
    ) -> Option<ArrayRef> {
        let c = self.column(column)?;
        let data_type = self.schema.field(c).data_type();
        let values = self.files.iter().map(|f| {
            f.statistics
                .as_ref()
                .and_then(|s| pick(&s.column_statistics[c]).get_value().cloned())
                .unwrap_or_else(|| ScalarValue::try_from(data_type).unwrap_or(ScalarValue::Null))
        });
        ScalarValue::iter_to_array(values).ok()
    }

    /// A count of each file's statistics (NULL where it is unknown).
    fn counts(&self, pick: impl Fn(&Statistics) -> &Precision<usize>) -> ArrayRef {
        let counts: UInt64Array = self
            .files
            .iter()
            .map(|f| {
                f.statistics
                    .as_deref()
                    .and_then(|s| pick(s).get_value())
                    .map(|&n| n as u64)
            })
            .collect();
        Arc::new(counts)
    }
}

impl PruningStatistics for FileStats<'_> {
    fn min_values(&self, column: &Column) -> Option<ArrayRef> {
        self.values(column, |s| &s.min_value)
    }

    fn max_values(&self, column: &Column) -> Option<ArrayRef> {
        self.values(column, |s| &s.max_value)
    }

    fn num_containers(&self) -> usize {
        self.files.len()
    }

    fn null_counts(&self, column: &Column) -> Option<ArrayRef> {
        let c = self.column(column)?;
        Some(self.counts(|s| &s.column_statistics[c].null_count))
    }

    fn row_counts(&self) -> Option<ArrayRef> {
        Some(self.counts(|s| &s.num_rows))
    }

    fn contained(&self, _column: &Column, _values: &HashSet<ScalarValue>) -> Option<BooleanArray> {
        None
    }
}
