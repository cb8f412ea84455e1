//! `to_number(text, format)` and `try_to_number`: text read with a Spark number format
//! (`999`, `000.00`, `99,999`, `$99.99`, `99G999D9S`) into the DECIMAL the format
//! describes (its digits, and those after the point as the scale). Text the format
//! does not describe is an error for `to_number` and NULL for `try_to_number`.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, Decimal128Array};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{exec_err, plan_err, ScalarValue};
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};

pub(super) fn all() -> Vec<ScalarUDF> {
    [("to_number", false), ("try_to_number", true)]
        .into_iter()
        .map(|(name, lenient)| {
            ScalarUDF::from(ToNumber {
                name,
                lenient,
                signature: Signature::any(2, Volatility::Immutable),
            })
        })
        .collect()
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct ToNumber {
    name: &'static str,
    lenient: bool,
    signature: Signature,
}

/// The (precision, scale) a number format describes.
fn decimal_of(format: &str) -> Result<(u8, i8)> {
    let upper = format.to_ascii_uppercase();
    let (int, fraction) = match upper.find(['.', 'D']) {
        Some(i) => (&upper[..i], &upper[i + 1..]),
        None => (upper.as_str(), ""),
    };
    let digits = |s: &str| s.chars().filter(|c| *c == '0' || *c == '9').count();
    let (p, s) = (digits(int) + digits(fraction), digits(fraction));
    if p == 0 || p > 38 {
        return plan_err!("to_number: the format `{format}` has {p} digits; it needs 1 to 38");
    }
    Ok((p as u8, s as i8))
}

/// The unscaled value of `text` at `scale`, if the text is a number the format allows.
fn read(text: &str, format: &str, precision: u8, scale: i8) -> Option<i128> {
    let upper = format.to_ascii_uppercase();
    let mut t = text.trim().to_string();
    let mut negative = false;
    if upper.ends_with('S') || upper.ends_with("MI") {
        if let Some(rest) = t.strip_suffix('-') {
            (t, negative) = (rest.to_string(), true);
        } else if let Some(rest) = t.strip_suffix('+') {
            t = rest.to_string();
        }
    }
    if upper.starts_with('S') || !negative {
        if let Some(rest) = t.strip_prefix('-') {
            (t, negative) = (rest.to_string(), true);
        }
    }
    if upper.contains('$') {
        t = t.strip_prefix('$')?.to_string();
    }
    if upper.contains(',') || upper.contains('G') {
        t = t.replace(',', "");
    }
    let (int, fraction) = t.split_once('.').unwrap_or((&t, ""));
    if int.is_empty() && fraction.is_empty()
        || !int
            .chars()
            .chain(fraction.chars())
            .all(|c| c.is_ascii_digit())
        || fraction.len() > scale as usize
        || int.trim_start_matches('0').len() > (precision as usize - scale as usize)
    {
        return None;
    }
    let padded = format!("{int}{fraction:0<width$}", width = scale as usize);
    let value: i128 = padded.parse().ok()?;
    Some(if negative { -value } else { value })
}

impl ScalarUDFImpl for ToNumber {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        plan_err!("{}'s type comes from its format", self.name)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let format = match args.scalar_arguments.get(1).copied().flatten() {
            Some(ScalarValue::Utf8(Some(f)) | ScalarValue::Utf8View(Some(f))) => f,
            _ => {
                return plan_err!(
                    "{}'s format must be a string literal, such as '999.99'",
                    self.name
                )
            }
        };
        let (p, s) = decimal_of(format)?;
        Ok(Arc::new(Field::new(
            self.name,
            DataType::Decimal128(p, s),
            true,
        )))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let DataType::Decimal128(precision, scale) = *args.return_type() else {
            return exec_err!("{} returns a decimal", self.name);
        };
        let scalar = matches!(args.args[0], ColumnarValue::Scalar(_));
        let formats = ColumnarValue::values_to_arrays(&args.args[1..2])?;
        let format = datafusion::arrow::compute::cast(&formats[0], &DataType::Utf8)?;
        let format = format.as_string::<i32>().value(0).to_string();
        let texts = args.args[0].to_array(args.number_rows)?;
        let texts = datafusion::arrow::compute::cast(&texts, &DataType::Utf8)?;
        let values = texts
            .as_string::<i32>()
            .iter()
            .map(|t| {
                let Some(t) = t else { return Ok(None) };
                match (read(t, &format, precision, scale), self.lenient) {
                    (Some(v), _) => Ok(Some(v)),
                    (None, true) => Ok(None),
                    (None, false) => exec_err!("to_number: `{t}` is not a number in the format `{format}`; try_to_number gives NULL instead"),
                }
            })
            .collect::<Result<Decimal128Array>>()?
            .with_precision_and_scale(precision, scale)?;
        let out: ArrayRef = Arc::new(values);
        super::columnar(out, scalar)
    }
}
