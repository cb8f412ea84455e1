//! Spark's JSON functions over JSON text: `get_json_object` (Spark's JSON path subset:
//! `$`, `.name`, `['name']`, `[n]`, `[*]`, `.*`), `json_array_length`,
//! `json_object_keys`, and `to_json` of a struct, map or array.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Int32Array, ListBuilder, StringArray, StringBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::arrow::json::writer::{make_encoder, EncoderOptions};
use datafusion::common::exec_err;
use datafusion::config::ConfigOptions;
use datafusion::error::Result;
use datafusion::logical_expr::ScalarUDF;
use serde_json::Value;

use super::{arg, constant_string, Simple};

pub(super) fn all() -> Vec<ScalarUDF> {
    let strings = DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)));
    vec![
        Simple::udf("get_json_object", (2, 2), DataType::Utf8, get_json_object),
        Simple::udf(
            "json_array_length",
            (1, 1),
            DataType::Int32,
            json_array_length,
        ),
        Simple::udf("json_object_keys", (1, 1), strings, json_object_keys),
        Simple::udf("to_json", (1, 2), DataType::Utf8, to_json),
    ]
}

/// One step of a JSON path.
#[derive(Debug, PartialEq)]
enum Step {
    Key(String),
    Index(usize),
    /// `[*]` or `.*`: every element (or member value).
    All,
}

/// Spark's JSON path: `$` then steps; `None` if it is not one (Spark returns NULL).
fn parse_path(path: &str) -> Option<Vec<Step>> {
    let mut rest = path.strip_prefix('$')?;
    let mut steps = Vec::new();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix(".*") {
            steps.push(Step::All);
            rest = r;
        } else if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            if end == 0 {
                return None;
            }
            steps.push(Step::Key(r[..end].to_string()));
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix("['") {
            let end = r.find("']")?;
            steps.push(Step::Key(r[..end].to_string()));
            rest = &r[end + 2..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            let inside = r[..end].trim();
            steps.push(match inside {
                "*" => Step::All,
                n => Step::Index(n.parse().ok()?),
            });
            rest = &r[end + 1..];
        } else {
            return None;
        }
    }
    Some(steps)
}

/// The values `steps` reach from `value`.
fn walk<'a>(value: &'a Value, steps: &[Step]) -> Vec<&'a Value> {
    let Some((step, rest)) = steps.split_first() else {
        return vec![value];
    };
    match (step, value) {
        (Step::Key(k), Value::Object(m)) => m.get(k).map_or(vec![], |v| walk(v, rest)),
        (Step::Index(i), Value::Array(a)) => a.get(*i).map_or(vec![], |v| walk(v, rest)),
        (Step::All, Value::Array(a)) => a.iter().flat_map(|v| walk(v, rest)).collect(),
        (Step::All, Value::Object(m)) => m.values().flat_map(|v| walk(v, rest)).collect(),
        _ => vec![],
    }
}

/// A JSON value as Spark's JSON functions return it: a string bare, anything else as
/// compact JSON text, JSON null as NULL.
fn as_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn get_json_object(args: &[ArrayRef], _: &ConfigOptions) -> Result<ArrayRef> {
    let json = arg(args, 0, &DataType::Utf8)?;
    let steps = constant_string(args, 1, "get_json_object")?.and_then(|p| parse_path(&p));
    let Some(steps) = steps else {
        return Ok(Arc::new(StringArray::new_null(json.len())));
    };
    let out: StringArray = json
        .as_string::<i32>()
        .iter()
        .map(|j| {
            let value: Value = serde_json::from_str(j?).ok()?;
            let found = walk(&value, &steps);
            match found.as_slice() {
                [] => None,
                [one] => as_text(one),
                many => Some(Value::Array(many.iter().map(|v| (*v).clone()).collect()).to_string()),
            }
        })
        .collect();
    Ok(Arc::new(out))
}

fn json_array_length(args: &[ArrayRef], _: &ConfigOptions) -> Result<ArrayRef> {
    let json = arg(args, 0, &DataType::Utf8)?;
    let out: Int32Array = json
        .as_string::<i32>()
        .iter()
        .map(|j| match serde_json::from_str(j?).ok()? {
            Value::Array(a) => Some(a.len() as i32),
            _ => None,
        })
        .collect();
    Ok(Arc::new(out))
}

fn json_object_keys(args: &[ArrayRef], _: &ConfigOptions) -> Result<ArrayRef> {
    let json = arg(args, 0, &DataType::Utf8)?;
    let mut out = ListBuilder::new(StringBuilder::new());
    for j in json.as_string::<i32>().iter() {
        // serde_json's map keeps the keys in the order they are written.
        match j.and_then(|j| serde_json::from_str::<Value>(j).ok()) {
            Some(Value::Object(m)) => {
                for k in m.keys() {
                    out.values().append_value(k);
                }
                out.append(true);
            }
            _ => out.append_null(),
        }
    }
    Ok(Arc::new(out.finish()))
}

/// A struct, map or array as JSON text; struct fields that are NULL are left out, as
/// Spark's `to_json` does.
fn to_json(args: &[ArrayRef], _: &ConfigOptions) -> Result<ArrayRef> {
    let array = &args[0];
    match array.data_type() {
        DataType::Struct(_) | DataType::Map(_, _) | DataType::List(_) | DataType::LargeList(_) => {}
        other => return exec_err!("to_json takes a struct, a map or an array, not {other}"),
    }
    let field = Arc::new(Field::new("v", array.data_type().clone(), true));
    let options = EncoderOptions::default();
    let mut encoder = make_encoder(&field, array.as_ref(), &options)?;
    let mut buffer = Vec::new();
    let out: StringArray = (0..array.len())
        .map(|i| {
            if array.is_null(i) {
                return None;
            }
            buffer.clear();
            encoder.encode(i, &mut buffer);
            Some(String::from_utf8_lossy(&buffer).into_owned())
        })
        .collect();
    Ok(Arc::new(out))
}

#[cfg(test)]
mod tests {
    use super::{parse_path, Step};

    #[test]
    fn json_paths() {
        assert_eq!(
            parse_path("$.a[0]['b c'][*]"),
            Some(vec![
                Step::Key("a".into()),
                Step::Index(0),
                Step::Key("b c".into()),
                Step::All
            ])
        );
        assert_eq!(parse_path("a.b"), None);
    }
}
