//! The run log's rows, typed: one struct per log table, turned into an Arrow batch
//! with the table's columns (every column nullable, as the tables were created), and
//! typed readers for the columns of a query over the log.

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use datafusion::arrow::array::{
    ArrayRef, AsArray, Date32Array, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type};
use datafusion::arrow::error::ArrowError;

/// A Rust type stored as one Arrow column of a log table.
pub(super) trait LogColumn {
    /// The column of `values`.
    fn column<'a>(values: impl Iterator<Item = &'a Self>) -> ArrayRef
    where
        Self: 'a;
}

impl LogColumn for String {
    fn column<'a>(values: impl Iterator<Item = &'a Self>) -> ArrayRef {
        Arc::new(StringArray::from_iter_values(values))
    }
}

impl LogColumn for Option<String> {
    fn column<'a>(values: impl Iterator<Item = &'a Self>) -> ArrayRef {
        Arc::new(values.map(Option::as_deref).collect::<StringArray>())
    }
}

impl LogColumn for &'static str {
    fn column<'a>(values: impl Iterator<Item = &'a Self>) -> ArrayRef {
        Arc::new(StringArray::from_iter_values(values.copied()))
    }
}

impl LogColumn for i64 {
    fn column<'a>(values: impl Iterator<Item = &'a Self>) -> ArrayRef {
        Arc::new(Int64Array::from_iter_values(values.copied()))
    }
}

impl LogColumn for Option<i64> {
    fn column<'a>(values: impl Iterator<Item = &'a Self>) -> ArrayRef {
        Arc::new(values.copied().collect::<Int64Array>())
    }
}

impl LogColumn for f64 {
    fn column<'a>(values: impl Iterator<Item = &'a Self>) -> ArrayRef {
        Arc::new(Float64Array::from_iter_values(values.copied()))
    }
}

impl LogColumn for Option<f64> {
    fn column<'a>(values: impl Iterator<Item = &'a Self>) -> ArrayRef {
        Arc::new(values.copied().collect::<Float64Array>())
    }
}

impl LogColumn for NaiveDate {
    fn column<'a>(values: impl Iterator<Item = &'a Self>) -> ArrayRef {
        let epoch = NaiveDate::default();
        Arc::new(Date32Array::from_iter_values(
            values.map(|d| (*d - epoch).num_days() as i32),
        ))
    }
}

impl LogColumn for DateTime<Utc> {
    fn column<'a>(values: impl Iterator<Item = &'a Self>) -> ArrayRef {
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(values.map(|t| t.timestamp_micros()))
                .with_timezone("UTC"),
        )
    }
}

/// A row type of one log table: `TABLE` is its folder under `_quern/`.
pub(super) trait LogRow: Sized {
    /// The table's name.
    const TABLE: &'static str;
    /// `rows` as one batch with the table's columns.
    fn batch(rows: &[Self]) -> Result<RecordBatch, ArrowError>;
}

/// Declares a log table's row struct; its fields are the table's columns, in order.
macro_rules! log_row {
    ($(#[$doc:meta])* $name:ident in $table:literal { $($(#[$fdoc:meta])* $field:ident: $ty:ty,)* }) => {
        $(#[$doc])*
        pub(super) struct $name {
            $($(#[$fdoc])* pub(super) $field: $ty,)*
        }

        impl LogRow for $name {
            const TABLE: &'static str = $table;
            fn batch(rows: &[Self]) -> Result<RecordBatch, ArrowError> {
                RecordBatch::try_from_iter_with_nullable([
                    $((stringify!($field), <$ty as LogColumn>::column(rows.iter().map(|r| &r.$field)), true),)*
                ])
            }
        }
    };
}

log_row!(
    /// `_quern/runs`: one row per run.
    RunRow in "runs" {
        run_id: String,
        pipeline: String,
        env: String,
        ds: NaiveDate,
        started_at: DateTime<Utc>,
        finished_at: DateTime<Utc>,
        /// `succeeded` or `failed`.
        status: &'static str,
        tasks_ok: i64,
        tasks_failed: i64,
        rows_written: i64,
        breaches: i64,
        /// What the run was of: `pipeline` or `*` (the project), then ` --select …`
        /// when it was a selection; a backfill skips the days a run of the same
        /// selection succeeded.
        selection: String,
    }
);

log_row!(
    /// `_quern/tasks`: one row per task of a run.
    TaskRow in "tasks" {
        run_id: String,
        pipeline: String,
        task: String,
        materialized: &'static str,
        /// `succeeded`, `failed` or `skipped`.
        status: &'static str,
        rows: Option<i64>,
        version: Option<i64>,
        seconds: f64,
        error: Option<String>,
        /// 1 for the first attempt; a retried attempt's row has status `retried`.
        attempt: i64,
        /// A command task's last lines of output.
        output: Option<String>,
    }
);

log_row!(
    /// `_quern/expectations`: one row per expectation of a task of a run.
    ExpectationRow in "expectations" {
        run_id: String,
        pipeline: String,
        task: String,
        expectation: String,
        severity: &'static str,
        violations: i64,
    }
);

log_row!(
    /// `_quern/metrics`: one row per metric value (and group) of a run.
    MetricRow in "metrics" {
        run_id: String,
        pipeline: String,
        ds: NaiveDate,
        recorded_at: DateTime<Utc>,
        metric: String,
        grp: Option<String>,
        value: Option<f64>,
        previous: Option<f64>,
        breach: Option<String>,
    }
);

log_row!(
    /// `_quern/models`: one row per model function a run scored with.
    ModelRow in "models" {
        run_id: String,
        pipeline: String,
        function: String,
        uri: String,
        version: Option<String>,
        sha256: String,
    }
);

/// Column `i` of a query's batch as text (any string or other type, cast).
pub(super) fn strings(batch: &RecordBatch, i: usize) -> Result<Vec<Option<String>>, ArrowError> {
    let column = cast(batch.column(i), &DataType::Utf8)?;
    Ok(column
        .as_string::<i32>()
        .iter()
        .map(|v| v.map(str::to_string))
        .collect())
}

/// Column `i` as 64-bit integers.
pub(super) fn ints(batch: &RecordBatch, i: usize) -> Result<Vec<Option<i64>>, ArrowError> {
    let column = cast(batch.column(i), &DataType::Int64)?;
    Ok(column.as_primitive::<Int64Type>().iter().collect())
}

/// Column `i` as doubles.
pub(super) fn floats(batch: &RecordBatch, i: usize) -> Result<Vec<Option<f64>>, ArrowError> {
    let column = cast(batch.column(i), &DataType::Float64)?;
    Ok(column.as_primitive::<Float64Type>().iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_become_batches_with_the_tables_columns() {
        let rows = [MetricRow {
            run_id: "r".into(),
            pipeline: "p".into(),
            ds: NaiveDate::from_ymd_opt(2024, 3, 1).unwrap(),
            recorded_at: DateTime::<Utc>::from_timestamp(0, 0).unwrap(),
            metric: "m".into(),
            grp: None,
            value: Some(1.5),
            previous: None,
            breach: Some("too low".into()),
        }];
        let batch = MetricRow::batch(&rows).unwrap();
        let names: Vec<&str> = batch
            .schema_ref()
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        assert_eq!(
            names,
            [
                "run_id",
                "pipeline",
                "ds",
                "recorded_at",
                "metric",
                "grp",
                "value",
                "previous",
                "breach"
            ]
        );
        assert!(batch.schema_ref().fields().iter().all(|f| f.is_nullable()));
        assert_eq!(batch.column(2).data_type(), &DataType::Date32);
        assert_eq!(floats(&batch, 6).unwrap(), [Some(1.5)]);
        assert_eq!(strings(&batch, 5).unwrap(), [None]);
        assert_eq!(
            strings(&batch, 2).unwrap(),
            [Some("2024-03-01".to_string())]
        );
        assert_eq!(ints(&batch, 6).unwrap(), [Some(1)]);
    }
}
