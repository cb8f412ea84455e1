//! quern's own Spark functions, for what `datafusion-spark` does not have: Java date
//! patterns (`date_format`, `to_date`, `to_timestamp`, `unix_timestamp`,
//! `from_unixtime`), calendar fields, regular expressions with Java's semantics, JSON,
//! Spark's `hash`, `bround` and `element_at`.

mod arithmetic;
mod bytes;
mod collections;
mod datetime;
mod from_json;
mod hash;
mod intervals;
mod json;
mod numbers;
mod round;
mod strings;

use std::sync::Arc;

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{exec_err, ScalarValue};
use datafusion::config::ConfigOptions;
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// Every function of this module, to register over DataFusion's and datafusion-spark's.
pub(super) fn all() -> Vec<Arc<ScalarUDF>> {
    let mut all = Vec::new();
    all.extend(datetime::all());
    all.extend(strings::all());
    all.extend(json::all());
    all.extend(hash::all());
    all.extend(collections::all());
    all.push(from_json::udf());
    all.extend(arithmetic::all());
    all.extend(bytes::all());
    all.extend(numbers::all());
    all.extend(intervals::all());
    all.into_iter().map(Arc::new).collect()
}

/// Spark's `lpad` (`left`) or `rpad` of bytes, for [`super::coerce::or_bytes`].
pub(super) fn pad_bytes(left: bool) -> Arc<ScalarUDF> {
    Arc::new(bytes::pad(left))
}

/// `round` (or `bround`, `half_even`) of a DECIMAL, for [`super::coerce::or_decimals`].
pub(super) fn decimal_round(half_even: bool) -> Arc<ScalarUDF> {
    Arc::new(round::udf(half_even))
}

/// `octet_length` of bytes, for [`super::coerce::or_bytes`].
pub(super) fn byte_length() -> Arc<ScalarUDF> {
    Arc::new(bytes::byte_length())
}

/// How a [`Simple`] function computes: its arguments as arrays of one length (scalars
/// expanded), the session's settings; one array of that length out.
type Compute = fn(&[ArrayRef], &ConfigOptions) -> Result<ArrayRef>;

/// A scalar function given by its name, how many arguments it takes, its return type
/// and a [`Compute`].
#[derive(Debug)]
pub(super) struct Simple {
    name: &'static str,
    signature: Signature,
    arity: (usize, usize),
    returns: Returns,
    compute: Compute,
}

/// A [`Simple`] function's return type: one type, or one computed from the arguments'.
#[derive(Debug, Clone)]
enum Returns {
    Always(DataType),
    Of(fn(&[DataType]) -> DataType),
}

impl Simple {
    /// `name` taking `min..=max` arguments (at least one) of any type (each
    /// [`Compute`] converts what it takes).
    pub(super) fn udf(
        name: &'static str,
        arity: (usize, usize),
        returns: DataType,
        compute: Compute,
    ) -> ScalarUDF {
        Self::build(name, arity, Returns::Always(returns), compute)
    }

    /// [`Simple::udf`] whose return type `returns` computes from the arguments' types.
    pub(super) fn udf_returning(
        name: &'static str,
        arity: (usize, usize),
        returns: fn(&[DataType]) -> DataType,
        compute: Compute,
    ) -> ScalarUDF {
        Self::build(name, arity, Returns::Of(returns), compute)
    }

    fn build(
        name: &'static str,
        arity: (usize, usize),
        returns: Returns,
        compute: Compute,
    ) -> ScalarUDF {
        ScalarUDF::from(Simple {
            name,
            signature: Signature::variadic_any(Volatility::Immutable),
            arity,
            returns,
            compute,
        })
    }
}

/// A function's result: one value when every argument was one (`scalar`), else the
/// array.
pub(super) fn columnar(out: ArrayRef, scalar: bool) -> Result<ColumnarValue> {
    Ok(match scalar {
        true => ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?),
        false => ColumnarValue::Array(out),
    })
}

/// Two functions are the same function when they have the same name (no two share one).
impl PartialEq for Simple {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for Simple {}

impl std::hash::Hash for Simple {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl ScalarUDFImpl for Simple {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        let (min, max) = self.arity;
        if arg_types.len() < min || arg_types.len() > max {
            let takes = match min == max {
                true => format!("{min}"),
                false => format!("{min} to {max}"),
            };
            return datafusion::common::plan_err!(
                "{} takes {takes} argument(s), not {}",
                self.name,
                arg_types.len()
            );
        }
        Ok(match &self.returns {
            Returns::Always(t) => t.clone(),
            Returns::Of(f) => f(arg_types),
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let out = (self.compute)(&arrays, &args.config_options)?;
        if out.len() != arrays.first().map_or(0, |a| a.len()) {
            return exec_err!("{} computed the wrong number of values", self.name);
        }
        columnar(out, scalar)
    }
}

/// Argument `i` of `args` cast to `to`, or `None` if the call has fewer.
pub(super) fn arg_as(args: &[ArrayRef], i: usize, to: &DataType) -> Result<Option<ArrayRef>> {
    args.get(i)
        .map(|a| datafusion::arrow::compute::cast(a, to).map_err(Into::into))
        .transpose()
}

/// Argument `i`, which the function's arity makes present, cast to `to`.
pub(super) fn arg(args: &[ArrayRef], i: usize, to: &DataType) -> Result<ArrayRef> {
    arg_as(args, i, to)?
        .ok_or_else(|| datafusion::common::exec_datafusion_err!("argument {} is missing", i + 1))
}

/// Argument `i` as one integer per row (`default` on every row when the call has
/// fewer arguments).
pub(super) fn integers(
    args: &[ArrayRef],
    i: usize,
    default: Option<i64>,
) -> Result<Vec<Option<i64>>> {
    use datafusion::arrow::array::{Array, AsArray};
    Ok(match arg_as(args, i, &DataType::Int64)? {
        Some(a) => a
            .as_primitive::<datafusion::arrow::datatypes::Int64Type>()
            .iter()
            .collect(),
        None => vec![default; args.first().map_or(0, |a| a.len())],
    })
}

/// The value of a constant argument (the same on every row) that must be given as a
/// literal, such as a format pattern; `None` when it is NULL.
pub(super) fn constant_string(
    args: &[ArrayRef],
    i: usize,
    function: &str,
) -> Result<Option<String>> {
    use datafusion::arrow::array::{Array, AsArray};
    let Some(a) = arg_as(args, i, &DataType::Utf8)? else {
        return Ok(None);
    };
    if a.is_empty() || a.is_null(0) {
        return Ok(None);
    }
    let strings = a.as_string::<i32>();
    let first = strings.value(0);
    if strings.iter().any(|v| v.is_some_and(|v| v != first)) {
        return exec_err!(
            "{function}: argument {} must be the same on every row",
            i + 1
        );
    }
    Ok(Some(first.to_string()))
}
