//! Test data: TOML rows and CSV files into Arrow record batches, with column types
//! inferred from the values or declared as SQL types.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
use datafusion::arrow::array::{new_null_array, ArrayRef, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::catalog::Declared;
use datafusion::common::ScalarValue;
use datafusion::prelude::{CsvReadOptions, SessionContext};

/// A TOML value as a scalar: integers are Int64, floats Float64, dates Date32,
/// date-times timestamps in microseconds (UTC when an offset is given).
pub(crate) fn scalar(value: &toml::Value) -> Result<ScalarValue, String> {
    Ok(match value {
        toml::Value::Integer(i) => ScalarValue::Int64(Some(*i)),
        toml::Value::Float(f) => ScalarValue::Float64(Some(*f)),
        toml::Value::Boolean(b) => ScalarValue::Boolean(Some(*b)),
        toml::Value::String(s) => ScalarValue::Utf8(Some(s.clone())),
        toml::Value::Datetime(dt) => datetime(dt)?,
        toml::Value::Array(_) | toml::Value::Table(_) => {
            return Err(format!("{value} is not a single value"))
        }
    })
}

fn datetime(dt: &toml::value::Datetime) -> Result<ScalarValue, String> {
    let date = dt
        .date
        .and_then(|d| NaiveDate::from_ymd_opt(d.year.into(), d.month.into(), d.day.into()));
    let time = dt.time.and_then(|t| {
        NaiveTime::from_hms_nano_opt(
            t.hour.into(),
            t.minute.into(),
            t.second.into(),
            t.nanosecond,
        )
    });
    match (date, time) {
        (Some(d), None) => {
            let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
            Ok(ScalarValue::Date32(Some((d - epoch).num_days() as i32)))
        }
        (Some(d), Some(t)) => {
            let mut ts = NaiveDateTime::new(d, t).and_utc().timestamp_micros();
            let tz = match dt.offset {
                Some(toml::value::Offset::Z) => Some("UTC".into()),
                Some(toml::value::Offset::Custom { minutes }) => {
                    ts -= i64::from(minutes) * 60_000_000;
                    Some("UTC".into())
                }
                None => None,
            };
            Ok(ScalarValue::TimestampMicrosecond(Some(ts), tz))
        }
        _ => Err(format!(
            "{dt} is a time without a date; write it as a string"
        )),
    }
}

/// The type of a column from its values: one kind, or integers mixed with floats.
fn infer(column: &str, values: &[Option<ScalarValue>]) -> Result<DataType, String> {
    let mut found: Option<DataType> = None;
    for v in values.iter().flatten() {
        let t = v.data_type();
        found = Some(match found {
            None => t,
            Some(f) if f == t => f,
            Some(DataType::Int64) if t == DataType::Float64 => DataType::Float64,
            Some(DataType::Float64) if t == DataType::Int64 => DataType::Float64,
            Some(f) => {
                return Err(format!(
                    "column `{column}` mixes {f} and {t} values; declare its type in `columns`"
                ))
            }
        });
    }
    found.ok_or_else(|| {
        format!("column `{column}` has no value in any row; declare its type in `columns`")
    })
}

/// Rows given inline: columns in declared order, then the other keys in order.
pub(crate) fn rows_batch(
    declared: &[Declared],
    rows: &[toml::Table],
) -> Result<RecordBatch, String> {
    let mut names: Vec<String> = declared.iter().map(|d| d.name.clone()).collect();
    for row in rows {
        for key in row.keys() {
            if !names.contains(key) {
                names.push(key.clone());
            }
        }
    }
    let mut fields = Vec::new();
    let mut arrays: Vec<ArrayRef> = Vec::new();
    for name in &names {
        let values = rows
            .iter()
            .enumerate()
            .map(|(i, row)| {
                row.get(name)
                    .map(|v| scalar(v).map_err(|e| format!("row {}, column `{name}`: {e}", i + 1)))
                    .transpose()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let declared_type = declared
            .iter()
            .find(|d| &d.name == name)
            .map(|d| d.data_type.clone());
        let data_type = match declared_type {
            Some(t) => t,
            None => infer(name, &values)?,
        };
        let mut scalars = Vec::with_capacity(values.len());
        for (i, v) in values.into_iter().enumerate() {
            let s = match v {
                Some(s) => s.cast_to(&data_type).map_err(|e| {
                    format!(
                        "row {}, column `{name}`: cannot read {s} as {data_type}: {e}",
                        i + 1
                    )
                })?,
                None => ScalarValue::try_from(&data_type).map_err(|e| e.to_string())?,
            };
            scalars.push(s);
        }
        let array = if scalars.is_empty() {
            new_null_array(&data_type, 0)
        } else {
            ScalarValue::iter_to_array(scalars).map_err(|e| e.to_string())?
        };
        fields.push(Field::new(name, data_type, true));
        arrays.push(array);
    }
    let schema: SchemaRef = Arc::new(Schema::new(fields));
    if arrays.is_empty() {
        return Ok(RecordBatch::new_empty(schema));
    }
    RecordBatch::try_new(schema, arrays).map_err(|e| e.to_string())
}

/// A CSV file with a header line; declared columns are cast to their types.
pub(crate) async fn csv_batches(
    ctx: &SessionContext,
    path: &Path,
    declared: &[Declared],
) -> Result<(SchemaRef, Vec<RecordBatch>), String> {
    if !path.is_file() {
        return Err(format!("CSV file {} does not exist", path.display()));
    }
    let location = path.display().to_string();
    let ext = path
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    let df = ctx
        .read_csv(
            &location,
            CsvReadOptions::new().has_header(true).file_extension(&ext),
        )
        .await
        .map_err(|e| format!("cannot read {location}: {e}"))?;
    let batches = df
        .collect()
        .await
        .map_err(|e| format!("cannot read {location}: {e}"))?;
    let Some(first) = batches.first() else {
        return Err(format!("{location} has no rows"));
    };
    let schema = first.schema();
    let mut fields = Vec::new();
    for f in schema.fields() {
        let t = declared
            .iter()
            .find(|d| d.name == *f.name())
            .map_or_else(|| f.data_type().clone(), |d| d.data_type.clone());
        fields.push(Field::new(f.name(), t, true));
    }
    if let Some(d) = declared
        .iter()
        .find(|d| schema.field_with_name(&d.name).is_err())
    {
        return Err(format!("{location} has no column `{}`", d.name));
    }
    let target: SchemaRef = Arc::new(Schema::new(fields));
    let mut out = Vec::new();
    for b in &batches {
        let columns = b
            .columns()
            .iter()
            .zip(target.fields())
            .map(|(c, f)| {
                cast(c, f.data_type()).map_err(|e| {
                    format!(
                        "{location}: column `{}` is not {}: {e}",
                        f.name(),
                        f.data_type()
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        out.push(RecordBatch::try_new(target.clone(), columns).map_err(|e| e.to_string())?);
    }
    Ok((target, out))
}

/// Rows of record batches as maps from column name to value.
pub(crate) fn batch_rows(
    batches: &[RecordBatch],
) -> Result<Vec<BTreeMap<String, ScalarValue>>, String> {
    let mut rows = Vec::new();
    for b in batches {
        for r in 0..b.num_rows() {
            let mut row = BTreeMap::new();
            for (f, c) in b.schema().fields().iter().zip(b.columns()) {
                let v = ScalarValue::try_from_array(c, r).map_err(|e| e.to_string())?;
                row.insert(f.name().clone(), v);
            }
            rows.push(row);
        }
    }
    Ok(rows)
}
