//! Spark's implicit casts for the `datafusion-spark` date functions whose signatures
//! take exact types: `date_add('2016-07-30', 1)` reads the text as a date (as does a
//! timestamp), and a BIGINT day count is an INT, as Spark casts them; `rint` of a
//! DECIMAL reads it as a DOUBLE.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, FieldRef};
use datafusion::error::Result;
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};

/// The functions wrapped: a date first, then (for some) a number of days or months.
const DATE_FIRST: &[&str] = &[
    "add_months",
    "date_add",
    "date_sub",
    "last_day",
    "next_day",
    "weekday",
    "monthname",
];

/// The functions of a timestamp, which Spark also gives text.
const TIMESTAMP_FIRST: &[&str] = &["hour", "minute", "second"];

/// The functions of a DOUBLE, which Spark also gives a DECIMAL (`rint(12.3456)`).
const DOUBLE_ONLY: &[&str] = &["rint"];

/// `f`, taking Spark's implicit casts if it is one of [`DATE_FIRST`],
/// [`TIMESTAMP_FIRST`] or [`DOUBLE_ONLY`].
pub(super) fn with_spark_casts(f: Arc<ScalarUDF>) -> Arc<ScalarUDF> {
    let first = if DATE_FIRST.contains(&f.name()) {
        Some(DataType::Date32)
    } else if TIMESTAMP_FIRST.contains(&f.name()) {
        Some(DataType::Timestamp(
            datafusion::arrow::datatypes::TimeUnit::Microsecond,
            None,
        ))
    } else if DOUBLE_ONLY.contains(&f.name()) {
        None
    } else {
        return f;
    };
    Arc::new(ScalarUDF::from(Casting {
        signature: Signature::user_defined(Volatility::Immutable),
        inner: f,
        first,
    }))
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Casting {
    inner: Arc<ScalarUDF>,
    signature: Signature,
    /// What the first argument is cast to when it is text (or a date or timestamp);
    /// `None`: the function takes DOUBLEs, and a DECIMAL is cast to one.
    first: Option<DataType>,
}

impl ScalarUDFImpl for Casting {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        Ok(arg_types
            .iter()
            .enumerate()
            .map(|(i, t)| match (i, t, &self.first) {
                (_, DataType::Decimal128(_, _), None) => DataType::Float64,
                (0, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View, Some(first))
                | (
                    0,
                    DataType::Timestamp(_, None) | DataType::Date32 | DataType::Date64,
                    Some(first),
                ) => first.clone(),
                (_, DataType::Int64 | DataType::UInt32 | DataType::UInt64, Some(_)) => {
                    DataType::Int32
                }
                (_, DataType::Utf8View | DataType::LargeUtf8, _) => DataType::Utf8,
                (_, other, _) => other.clone(),
            })
            .collect())
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn simplify(&self, args: Vec<Expr>, info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        self.inner.simplify(args, info)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        self.inner.invoke_with_args(args)
    }
}

/// Spark's `concat` and `reverse` take arrays as well as text: `f` for text, and
/// DataFusion's `array_concat` / `array_reverse` when the first argument is an array.
pub(super) fn or_arrays(f: Arc<ScalarUDF>) -> Arc<ScalarUDF> {
    use datafusion::functions_nested::{concat::array_concat_udf, reverse::array_reverse_udf};
    let arrays = match f.name() {
        "concat" => array_concat_udf(),
        "reverse" => array_reverse_udf(),
        _ => return f,
    };
    by_first(f, arrays, is_array)
}

/// Spark's `lpad` and `rpad` take bytes as well as text: `f` for text, `bytes` for
/// binary.
pub(super) fn or_bytes(f: Arc<ScalarUDF>, bytes: Arc<ScalarUDF>) -> Arc<ScalarUDF> {
    by_first(f, bytes, |t| {
        matches!(
            t,
            Some(DataType::Binary | DataType::LargeBinary | DataType::BinaryView)
        )
    })
}

/// Spark rounds a DECIMAL in decimal arithmetic: `f` for the other types, `decimals`
/// for a DECIMAL.
pub(super) fn or_decimals(f: Arc<ScalarUDF>, decimals: Arc<ScalarUDF>) -> Arc<ScalarUDF> {
    by_first(f, decimals, |t| {
        matches!(t, Some(DataType::Decimal128(_, _)))
    })
}

fn by_first(
    default: Arc<ScalarUDF>,
    alternative: Arc<ScalarUDF>,
    takes: fn(Option<&DataType>) -> bool,
) -> Arc<ScalarUDF> {
    Arc::new(ScalarUDF::from(ByFirst {
        signature: Signature::user_defined(Volatility::Immutable),
        default,
        alternative,
        takes,
    }))
}

/// A function that is `alternative` when its first argument's type is one `takes`,
/// else `default`.
#[derive(Debug)]
struct ByFirst {
    default: Arc<ScalarUDF>,
    alternative: Arc<ScalarUDF>,
    signature: Signature,
    takes: fn(Option<&DataType>) -> bool,
}

fn is_array(t: Option<&DataType>) -> bool {
    matches!(
        t,
        Some(DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(_, _))
    )
}

/// The two functions make the wrapper (`takes` follows from them).
impl PartialEq for ByFirst {
    fn eq(&self, other: &Self) -> bool {
        self.default == other.default && self.alternative == other.alternative
    }
}

impl Eq for ByFirst {}

impl std::hash::Hash for ByFirst {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.default.hash(state);
        self.alternative.hash(state);
    }
}

impl ByFirst {
    fn pick(&self, first: Option<&DataType>) -> &ScalarUDF {
        match (self.takes)(first) {
            true => &self.alternative,
            false => &self.default,
        }
    }
}

impl ScalarUDFImpl for ByFirst {
    fn name(&self) -> &str {
        self.default.name()
    }

    fn aliases(&self) -> &[String] {
        self.default.aliases()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let f = self.pick(arg_types.first());
        if let datafusion::logical_expr::TypeSignature::UserDefined = f.signature().type_signature {
            return f.coerce_types(arg_types);
        }
        let fields: Vec<FieldRef> = arg_types
            .iter()
            .map(|t| {
                Arc::new(datafusion::arrow::datatypes::Field::new(
                    "a",
                    t.clone(),
                    true,
                ))
            })
            .collect();
        Ok(
            datafusion::logical_expr::type_coercion::functions::fields_with_udf(&fields, f)?
                .iter()
                .map(|f| f.data_type().clone())
                .collect(),
        )
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.pick(arg_types.first()).return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let first = args.arg_fields.first().map(|f| f.data_type().clone());
        self.pick(first.as_ref()).return_field_from_args(args)
    }

    fn simplify(&self, args: Vec<Expr>, info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        let first = args.first().map(|a| info.get_data_type(a)).transpose()?;
        self.pick(first.as_ref()).simplify(args, info)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let first = args.arg_fields.first().map(|f| f.data_type().clone());
        self.pick(first.as_ref()).invoke_with_args(args)
    }
}

/// Spark's `date_part('SECONDS', ts)` (and `EXTRACT(SECONDS FROM ts)`) has the
/// microseconds as a fraction, a DECIMAL(8, 6): `f` for every other field.
pub(super) fn seconds_with_fraction(f: Arc<ScalarUDF>) -> Arc<ScalarUDF> {
    if f.name() != "date_part" {
        return f;
    }
    Arc::new(ScalarUDF::from(SecondsWithFraction { inner: f }))
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct SecondsWithFraction {
    inner: Arc<ScalarUDF>,
}

const SECONDS: DataType = DataType::Decimal128(8, 6);

impl ScalarUDFImpl for SecondsWithFraction {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        use datafusion::common::ScalarValue;
        let seconds = match args.scalar_arguments.first().copied().flatten() {
            Some(ScalarValue::Utf8(Some(u)) | ScalarValue::Utf8View(Some(u))) => {
                matches!(
                    u.to_ascii_uppercase().as_str(),
                    "SECOND" | "SECONDS" | "S" | "SEC" | "SECS"
                )
            }
            _ => false,
        };
        let timestamp = matches!(
            args.arg_fields.get(1).map(|f| f.data_type()),
            Some(DataType::Timestamp(_, None))
        );
        match seconds && timestamp {
            true => Ok(Arc::new(datafusion::arrow::datatypes::Field::new(
                self.name(),
                SECONDS,
                true,
            ))),
            false => self.inner.return_field_from_args(args),
        }
    }

    fn simplify(&self, args: Vec<Expr>, info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        let seconds = matches!(
            args.first(),
            Some(Expr::Literal(datafusion::common::ScalarValue::Utf8(Some(u)), _))
                if matches!(u.to_ascii_uppercase().as_str(), "SECOND" | "SECONDS" | "S" | "SEC" | "SECS")
        );
        let timestamp = match args.get(1) {
            Some(a) => matches!(info.get_data_type(a)?, DataType::Timestamp(_, None)),
            None => false,
        };
        match seconds && timestamp {
            true => Ok(ExprSimplifyResult::Original(args)),
            false => self.inner.simplify(args, info),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        use datafusion::arrow::array::{AsArray, Decimal128Array};
        use datafusion::arrow::datatypes::{TimeUnit, TimestampMicrosecondType};
        if args.return_type() != &SECONDS {
            return self.inner.invoke_with_args(args);
        }
        let scalar = matches!(args.args[1], ColumnarValue::Scalar(_));
        let times = args.args[1].to_array(args.number_rows)?;
        let micros = datafusion::arrow::compute::cast(
            &times,
            &DataType::Timestamp(TimeUnit::Microsecond, None),
        )?;
        let out = micros
            .as_primitive::<TimestampMicrosecondType>()
            .iter()
            .map(|v| v.map(|v| i128::from(v.rem_euclid(60_000_000))))
            .collect::<Decimal128Array>()
            .with_precision_and_scale(8, 6)?;
        let out: datafusion::arrow::array::ArrayRef = Arc::new(out);
        Ok(match scalar {
            true => {
                ColumnarValue::Scalar(datafusion::common::ScalarValue::try_from_array(&out, 0)?)
            }
            false => ColumnarValue::Array(out),
        })
    }
}
