//! `element_at(array, index)` (1-based, negative from the end, NULL past either end) and
//! `element_at(map, key)`, planned as DataFusion's `array_element` and `map_extract`;
//! `bround(x[, d])`, rounding half to even; `sequence(start, stop[, step])` of integers;
//! `array_insert(xs, position, x)`.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Array};
use datafusion::arrow::array::{Int64Builder, ListBuilder};
use datafusion::arrow::datatypes::{DataType, Field, Float64Type, Int64Type};
use datafusion::common::{exec_err, plan_err};
use datafusion::config::ConfigOptions;
use datafusion::error::Result;
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::{
    lit, ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use super::{arg, integers, Simple};

pub(super) fn all() -> Vec<ScalarUDF> {
    vec![
        ScalarUDF::from(ElementAt {
            signature: Signature::any(2, Volatility::Immutable),
        }),
        Simple::udf_returning("bround", (1, 2), bround_type, bround),
        Simple::udf("log1p", (1, 1), DataType::Float64, log1p),
        Simple::udf_returning("array_insert", (3, 3), |args| args[0].clone(), array_insert),
        Simple::udf(
            "sequence",
            (2, 3),
            DataType::List(Arc::new(Field::new("item", DataType::Int64, true))),
            sequence,
        ),
    ]
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct ElementAt {
    signature: Signature,
}

impl ScalarUDFImpl for ElementAt {
    fn name(&self) -> &str {
        "element_at"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match &arg_types[0] {
            DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
                Ok(f.data_type().clone())
            }
            DataType::Map(entries, _) => match entries.data_type() {
                DataType::Struct(fields) if fields.len() == 2 => Ok(fields[1].data_type().clone()),
                other => plan_err!("element_at: a map's entries are {other}"),
            },
            other => plan_err!("element_at takes an array or a map, not {other}"),
        }
    }

    fn simplify(&self, args: Vec<Expr>, info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        use datafusion::functions_nested::expr_fn::{array_element, map_extract};
        let [collection, key]: [Expr; 2] = args.try_into().map_err(|_| {
            datafusion::common::plan_datafusion_err!("element_at takes 2 arguments")
        })?;
        Ok(ExprSimplifyResult::Simplified(
            match info.get_data_type(&collection)? {
                DataType::Map(_, _) => array_element(map_extract(collection, key), lit(1i64)),
                // DataFusion's array_element takes a BIGINT index.
                _ => array_element(
                    collection,
                    datafusion::logical_expr::cast(key, DataType::Int64),
                ),
            },
        ))
    }

    fn invoke_with_args(&self, _: ScalarFunctionArgs) -> Result<ColumnarValue> {
        exec_err!("element_at is planned as array_element or map_extract and never runs itself")
    }
}

/// `x` rounded to `d` decimals (default 0; negative rounds to tens, hundreds, …), halves
/// to the even neighbour.
fn bround(args: &[ArrayRef], _: &ConfigOptions) -> Result<ArrayRef> {
    let x = arg(args, 0, &DataType::Float64)?;
    let digits = integers(args, 1, Some(0))?;
    let out: Float64Array = x
        .as_primitive::<Float64Type>()
        .iter()
        .zip(digits)
        .map(|(x, d)| {
            let (x, d) = (x?, d?);
            let scale = 10f64.powi(d.clamp(-300, 300) as i32);
            Some((x * scale).round_ties_even() / scale)
        })
        .collect();
    // An integer stays an integer of its type (bround(25, -1) is 20).
    if args[0].data_type().is_integer() {
        let rounded: ArrayRef = Arc::new(out);
        let as_int = datafusion::arrow::compute::cast(&rounded, &DataType::Int64)?;
        return Ok(as_int);
    }
    Ok(Arc::new(out))
}

/// The integers from `start` to `stop`, both included, by `step` (default 1, or -1 when
/// `stop` is below `start`).
fn sequence(args: &[ArrayRef], _: &ConfigOptions) -> Result<ArrayRef> {
    let (starts, stops, steps) = (
        integers(args, 0, None)?,
        integers(args, 1, None)?,
        integers(args, 2, None)?,
    );
    let mut out = ListBuilder::new(Int64Builder::new());
    for i in 0..starts.len() {
        let (Some(start), Some(stop)) = (starts[i], stops[i]) else {
            out.append_null();
            continue;
        };
        let step = match (args.len() > 2, steps[i]) {
            (true, None) => {
                out.append_null();
                continue;
            }
            (true, Some(step)) => step,
            (false, _) => {
                if stop >= start {
                    1
                } else {
                    -1
                }
            }
        };
        if step == 0 || (stop > start && step < 0) || (stop < start && step > 0) {
            return exec_err!("sequence: a step of {step} does not go from {start} to {stop}");
        }
        let count = (stop - start) / step + 1;
        if count > 10_000_000 {
            return exec_err!("sequence: {count} elements is too many (at most 10000000)");
        }
        for k in 0..count {
            out.values().append_value(start + k * step);
        }
        out.append(true);
    }
    Ok(Arc::new(out.finish()))
}

/// `ln(1 + x)`, exact for small `x`.
fn log1p(args: &[ArrayRef], _: &ConfigOptions) -> Result<ArrayRef> {
    let x = arg(args, 0, &DataType::Float64)?;
    let out: Float64Array = x
        .as_primitive::<Float64Type>()
        .iter()
        .map(|x| x.map(f64::ln_1p))
        .collect();
    Ok(Arc::new(out))
}

fn bround_type(args: &[DataType]) -> DataType {
    match args.first() {
        Some(t) if t.is_integer() => DataType::Int64,
        _ => DataType::Float64,
    }
}

/// `array_insert(xs, position, x)`: `x` inserted at `position` (from 1; past the end
/// pads with NULLs; negative counts from the end, -1 after the last element).
fn array_insert(args: &[ArrayRef], _: &ConfigOptions) -> Result<ArrayRef> {
    let DataType::List(field) = args[0].data_type() else {
        return exec_err!("array_insert takes an array, not {}", args[0].data_type());
    };
    let lists = args[0].as_list::<i32>();
    let positions = arg(args, 1, &DataType::Int64)?;
    let positions = positions.as_primitive::<Int64Type>();
    let items = datafusion::arrow::compute::cast(&args[2], field.data_type())?;
    let null = datafusion::arrow::array::new_null_array(field.data_type(), 1);
    let mut pieces: Vec<ArrayRef> = Vec::new();
    let mut lengths = Vec::with_capacity(lists.len());
    let mut valid = Vec::with_capacity(lists.len());
    for row in 0..lists.len() {
        if lists.is_null(row) || positions.is_null(row) {
            lengths.push(0);
            valid.push(false);
            continue;
        }
        let values = lists.value(row);
        let n = values.len() as i64;
        let p = positions.value(row);
        let at = match p {
            0 => return exec_err!("array_insert: the position must not be 0"),
            p if p > 0 => p - 1,
            p => n + p + 1,
        };
        let (head, pad) = match at {
            at if at < 0 => (0, -at),
            at if at > n => (n, at - n),
            at => (at, 0),
        };
        let before = if at < 0 { 0 } else { pad };
        pieces.push(values.slice(0, head as usize));
        for _ in 0..before {
            pieces.push(null.clone());
        }
        pieces.push(items.slice(row, 1));
        if at < 0 {
            for _ in 0..pad {
                pieces.push(null.clone());
            }
        }
        pieces.push(values.slice(head as usize, (n - head) as usize));
        lengths.push((n + 1 + pad) as usize);
        valid.push(true);
    }
    let refs: Vec<&dyn Array> = pieces.iter().map(|a| a.as_ref()).collect();
    let values = match refs.is_empty() {
        true => datafusion::arrow::array::new_empty_array(field.data_type()),
        false => datafusion::arrow::compute::concat(&refs)?,
    };
    let offsets = datafusion::arrow::buffer::OffsetBuffer::from_lengths(lengths);
    let list = datafusion::arrow::array::ListArray::try_new(
        field.clone(),
        offsets,
        values,
        Some(valid.into()),
    )?;
    Ok(Arc::new(list))
}
