//! Spark's `try_add`, `try_subtract`, `try_multiply`, `try_divide` and `try_mod`: the
//! operation, or NULL where Spark's would fail (an overflow of the result's type, a
//! division by zero). Integers stay integers (INT when both are, else BIGINT);
//! `try_divide` is a double, as `/` is; `try_add(date, n)` adds days, and a date or
//! timestamp plus an interval is calendar arithmetic. Intervals on their own are not
//! supported yet.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Date32Array, Float64Array, Int32Array, Int64Array,
};
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type};
use datafusion::common::{exec_err, plan_err};
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Op {
    Add,
    Subtract,
    Multiply,
    Divide,
    Mod,
}

pub(super) fn all() -> Vec<ScalarUDF> {
    [
        ("try_add", Op::Add),
        ("try_subtract", Op::Subtract),
        ("try_multiply", Op::Multiply),
        ("try_divide", Op::Divide),
        ("try_mod", Op::Mod),
    ]
    .into_iter()
    .map(|(name, op)| {
        ScalarUDF::from(Try {
            name,
            op,
            signature: Signature::any(2, Volatility::Immutable),
        })
    })
    .collect()
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Try {
    name: &'static str,
    op: Op,
    signature: Signature,
}

fn narrow_int(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::UInt8 | DataType::UInt16
    )
}

impl ScalarUDFImpl for Try {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        let (a, b) = (&arg_types[0], &arg_types[1]);
        let number = |t: &DataType| t.is_numeric() || *t == DataType::Null;
        Ok(match (self.op, a, b) {
            (Op::Add | Op::Subtract, DataType::Date32, b) if b.is_integer() => DataType::Date32,
            (
                Op::Add | Op::Subtract,
                t @ (DataType::Date32 | DataType::Timestamp(_, _)),
                DataType::Interval(_),
            ) => t.clone(),
            (_, a, b) if !(number(a) && number(b)) => {
                return plan_err!(
                    "{} of {a} and {b} is not supported; it takes numbers (and a date and days)",
                    self.name
                )
            }
            (Op::Divide, _, _) => DataType::Float64,
            (_, a, b)
                if (a.is_integer() || *a == DataType::Null)
                    && (b.is_integer() || *b == DataType::Null) =>
            {
                match narrow_int(a) && narrow_int(b) {
                    true => DataType::Int32,
                    false => DataType::Int64,
                }
            }
            _ => DataType::Float64,
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let out = self.compute(&arrays, args.return_type())?;
        super::columnar(out, scalar)
    }
}

impl Try {
    fn compute(&self, arrays: &[ArrayRef], returns: &DataType) -> Result<ArrayRef> {
        use datafusion::arrow::compute::cast;
        if matches!(arrays[1].data_type(), DataType::Interval(_)) {
            // A date or timestamp and an interval: arrow's calendar arithmetic.
            use datafusion::arrow::compute::kernels::numeric::{add, sub};
            let f = if self.op == Op::Add { add } else { sub };
            return Ok(f(&arrays[0], &arrays[1])?);
        }
        match returns {
            DataType::Int32 | DataType::Int64 | DataType::Date32 => {
                let a = cast(&arrays[0], &DataType::Int64)?;
                let b = cast(&arrays[1], &DataType::Int64)?;
                let (a, b) = (a.as_primitive::<Int64Type>(), b.as_primitive::<Int64Type>());
                let values = (0..a.len()).map(|i| {
                    if a.is_null(i) || b.is_null(i) {
                        return None;
                    }
                    let (x, y) = (a.value(i), b.value(i));
                    let v = match self.op {
                        Op::Add => x.checked_add(y),
                        Op::Subtract => x.checked_sub(y),
                        Op::Multiply => x.checked_mul(y),
                        Op::Mod => x.checked_rem(y),
                        Op::Divide => None,
                    }?;
                    match returns {
                        DataType::Int64 => Some(v),
                        _ => i32::try_from(v).ok().map(i64::from),
                    }
                });
                Ok(match returns {
                    DataType::Int64 => Arc::new(values.collect::<Int64Array>()),
                    DataType::Int32 => {
                        Arc::new(values.map(|v| v.map(|v| v as i32)).collect::<Int32Array>())
                    }
                    _ => Arc::new(values.map(|v| v.map(|v| v as i32)).collect::<Date32Array>()),
                })
            }
            DataType::Float64 => {
                let a = cast(&arrays[0], &DataType::Float64)?;
                let b = cast(&arrays[1], &DataType::Float64)?;
                let (a, b) = (
                    a.as_primitive::<Float64Type>(),
                    b.as_primitive::<Float64Type>(),
                );
                let out: Float64Array = a
                    .iter()
                    .zip(b.iter())
                    .map(|(x, y)| {
                        let (x, y) = (x?, y?);
                        let v = match self.op {
                            Op::Add => x + y,
                            Op::Subtract => x - y,
                            Op::Multiply => x * y,
                            Op::Divide if y == 0.0 => return None,
                            Op::Divide => x / y,
                            Op::Mod if y == 0.0 => return None,
                            Op::Mod => x % y,
                        };
                        v.is_finite().then_some(v)
                    })
                    .collect();
                Ok(Arc::new(out))
            }
            other => exec_err!("{} cannot return a {other}", self.name),
        }
    }
}
