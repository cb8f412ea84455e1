//! Query results that print whole in every format: maps whose keys are not strings
//! become JSON objects keyed by the keys' text (as Spark's `to_json` does), NULLs are
//! written as `null` (a map entry or struct field with a NULL value is kept), and in
//! CSV a nested value (list, struct, map) is a cell holding its JSON text.

use std::sync::Arc;

use quern::datafusion::arrow::array::{
    Array, ArrayRef, AsArray, FixedSizeListArray, GenericListArray, MapArray, OffsetSizeTrait,
    RecordBatch, StringArray, StructArray,
};
use quern::datafusion::arrow::datatypes::{DataType, Field, Fields, Schema};
use quern::datafusion::arrow::error::ArrowError;
use quern::datafusion::arrow::json::writer::{make_encoder, EncoderOptions};
use quern::datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};

/// `batch` with every map's keys as strings, at any depth.
pub(super) fn json_ready(batch: &RecordBatch) -> Result<RecordBatch, ArrowError> {
    let columns = batch
        .columns()
        .iter()
        .map(string_keys)
        .collect::<Result<Vec<_>, _>>()?;
    with_columns(batch, columns)
}

/// `batch` with every nested column (list, struct, map) as the JSON text of each value.
pub(super) fn csv_ready(batch: &RecordBatch) -> Result<RecordBatch, ArrowError> {
    let columns = batch
        .columns()
        .iter()
        .map(|c| match is_nested(c.data_type()) {
            true => json_text(c),
            false => Ok(c.clone()),
        })
        .collect::<Result<Vec<_>, _>>()?;
    with_columns(batch, columns)
}

fn with_columns(batch: &RecordBatch, columns: Vec<ArrayRef>) -> Result<RecordBatch, ArrowError> {
    let fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .zip(&columns)
        .map(|(f, c)| Field::new(f.name(), c.data_type().clone(), f.is_nullable()))
        .collect();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}

fn is_nested(t: &DataType) -> bool {
    match t {
        DataType::List(_)
        | DataType::LargeList(_)
        | DataType::FixedSizeList(_, _)
        | DataType::ListView(_)
        | DataType::LargeListView(_)
        | DataType::Struct(_)
        | DataType::Map(_, _) => true,
        DataType::Dictionary(_, v) => is_nested(v),
        _ => false,
    }
}

/// Each value of `array` as JSON text (NULL stays NULL: an empty CSV cell).
fn json_text(array: &ArrayRef) -> Result<ArrayRef, ArrowError> {
    let array = string_keys(array)?;
    let field = Arc::new(Field::new("v", array.data_type().clone(), true));
    let options = EncoderOptions::default().with_explicit_nulls(true);
    let mut encoder = make_encoder(&field, array.as_ref(), &options)?;
    let mut buffer = Vec::new();
    let texts: StringArray = (0..array.len())
        .map(|i| {
            if array.is_null(i) {
                return None;
            }
            buffer.clear();
            encoder.encode(i, &mut buffer);
            Some(String::from_utf8_lossy(&buffer).into_owned())
        })
        .collect();
    Ok(Arc::new(texts))
}

/// `array` with the keys of every map in it, at any depth, as strings (their text as
/// quern prints them); other values unchanged.
fn string_keys(array: &ArrayRef) -> Result<ArrayRef, ArrowError> {
    Ok(match array.data_type() {
        DataType::Map(entries_field, sorted) => {
            let map = array.as_map();
            let keys = match map.keys().data_type() {
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => map.keys().clone(),
                _ => as_strings(map.keys())?,
            };
            let values = string_keys(map.values())?;
            let (key_field, value_field) = match entries_field.data_type() {
                DataType::Struct(f) if f.len() == 2 => (f[0].clone(), f[1].clone()),
                other => {
                    return Err(ArrowError::InvalidArgumentError(format!(
                        "a map's entries are not a key and a value: {other}"
                    )))
                }
            };
            let fields = Fields::from(vec![
                Field::new(key_field.name(), keys.data_type().clone(), false),
                Field::new(
                    value_field.name(),
                    values.data_type().clone(),
                    value_field.is_nullable(),
                ),
            ]);
            let entries = StructArray::try_new(fields, vec![keys, values], None)?;
            let entries_field = Field::new(
                entries_field.name(),
                entries.data_type().clone(),
                entries_field.is_nullable(),
            );
            Arc::new(MapArray::try_new(
                Arc::new(entries_field),
                map.offsets().clone(),
                entries,
                map.nulls().cloned(),
                *sorted,
            )?)
        }
        DataType::List(f) => list_with_string_keys::<i32>(array, f)?,
        DataType::LargeList(f) => list_with_string_keys::<i64>(array, f)?,
        DataType::FixedSizeList(f, size) => {
            let list = array.as_fixed_size_list();
            let values = string_keys(list.values())?;
            Arc::new(FixedSizeListArray::try_new(
                retyped(f, &values),
                *size,
                values,
                list.nulls().cloned(),
            )?)
        }
        DataType::Struct(fields) => {
            let s = array.as_struct();
            let columns = s
                .columns()
                .iter()
                .map(string_keys)
                .collect::<Result<Vec<_>, _>>()?;
            let fields: Fields = fields
                .iter()
                .zip(&columns)
                .map(|(f, c)| Field::new(f.name(), c.data_type().clone(), f.is_nullable()))
                .collect();
            Arc::new(StructArray::try_new(fields, columns, s.nulls().cloned())?)
        }
        _ => array.clone(),
    })
}

/// [`string_keys`] of a list (`i32` offsets) or large list (`i64`).
fn list_with_string_keys<O: OffsetSizeTrait>(
    array: &ArrayRef,
    field: &Arc<Field>,
) -> Result<ArrayRef, ArrowError> {
    let list = array.as_list::<O>();
    let values = string_keys(list.values())?;
    Ok(Arc::new(GenericListArray::<O>::try_new(
        retyped(field, &values),
        list.offsets().clone(),
        values,
        list.nulls().cloned(),
    )?))
}

fn retyped(field: &Arc<Field>, values: &ArrayRef) -> Arc<Field> {
    Arc::new(Field::new(
        field.name(),
        values.data_type().clone(),
        field.is_nullable(),
    ))
}

/// Each value of `array` as quern's table output prints it.
fn as_strings(array: &ArrayRef) -> Result<ArrayRef, ArrowError> {
    let formatter = ArrayFormatter::try_new(array.as_ref(), &FormatOptions::default())?;
    let texts: StringArray = (0..array.len())
        .map(|i| Some(formatter.value(i).to_string()))
        .collect();
    Ok(Arc::new(texts))
}
