//! Spark's `round(x, d)` and `bround(x, d)` of a DECIMAL: exact, in decimal arithmetic,
//! and typed as Spark types them — `round(2.5, 0)` is the DECIMAL(2,0) `3`, not the
//! DOUBLE `3.0`. Halves go away from zero (`round`) or to the even neighbour (`bround`).
//! The other types are the wrapped function's (see [`super::super::coerce::or_decimals`]).

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, Decimal128Array};
use datafusion::arrow::datatypes::{DataType, Decimal128Type, Field, FieldRef};
use datafusion::common::{plan_err, ScalarValue};
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};

/// The most digits a DECIMAL has.
const MAX_PRECISION: u8 = 38;

/// `round` (`half_even` false) or `bround` of a DECIMAL.
pub(super) fn udf(half_even: bool) -> ScalarUDF {
    ScalarUDF::from(DecimalRound {
        name: if half_even { "bround" } else { "round" },
        half_even,
        signature: Signature::user_defined(Volatility::Immutable),
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct DecimalRound {
    name: &'static str,
    half_even: bool,
    signature: Signature,
}

/// Spark's result type of rounding a DECIMAL(`p`, `s`) to `d` decimals: one more integral
/// digit for the carry (`9.9` → `10`), the scale `min(s, d)`, or 0 for a negative `d`.
fn rounded_type(p: u8, s: i8, d: i32) -> (u8, i8) {
    let integral = i32::from(p) - i32::from(s) + 1;
    let (precision, scale) = match d < 0 {
        true => (integral.max(1 - d), 0),
        false => {
            let scale = i32::from(s).min(d);
            (integral + scale, scale)
        }
    };
    let max = i32::from(MAX_PRECISION);
    (precision.clamp(1, max) as u8, scale.clamp(0, max) as i8)
}

/// The digits argument, which Spark requires to be a constant (default 0).
fn digits(name: &str, scalar: Option<&ScalarValue>, given: bool) -> Result<i32> {
    match (scalar, given) {
        (_, false) => Ok(0),
        (Some(s), true) => match s.cast_to(&DataType::Int32)? {
            ScalarValue::Int32(Some(d)) => Ok(d),
            _ => Ok(0),
        },
        (None, true) => plan_err!("{name} of a DECIMAL takes a constant number of decimals"),
    }
}

impl ScalarUDFImpl for DecimalRound {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        match arg_types {
            [x] => Ok(vec![x.clone()]),
            // An integer literal stays one (a cast would hide the constant the result
            // type depends on).
            [x, d] if d.is_integer() => Ok(vec![x.clone(), d.clone()]),
            [x, _] => Ok(vec![x.clone(), DataType::Int32]),
            _ => plan_err!("{} takes a number and a number of decimals", self.name),
        }
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(arg_types[0].clone())
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let DataType::Decimal128(p, s) = args.arg_fields[0].data_type() else {
            return plan_err!("{} of decimals takes a DECIMAL", self.name);
        };
        let given = args.arg_fields.len() > 1;
        let scalar = args.scalar_arguments.get(1).copied().flatten();
        let (p, s) = rounded_type(*p, *s, digits(self.name, scalar, given)?);
        Ok(Arc::new(Field::new(
            self.name,
            DataType::Decimal128(p, s),
            true,
        )))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let DataType::Decimal128(_, from) = args.arg_fields[0].data_type() else {
            return plan_err!("{} of decimals takes a DECIMAL", self.name);
        };
        let DataType::Decimal128(p, to) = args.return_field.data_type() else {
            return plan_err!("{} of decimals returns a DECIMAL", self.name);
        };
        let d = match args.args.get(1) {
            Some(ColumnarValue::Scalar(s)) => digits(self.name, Some(s), true)?,
            // Not a constant: digits' error.
            Some(ColumnarValue::Array(_)) => digits(self.name, None, true)?,
            None => 0,
        };
        let scalar = matches!(args.args[0], ColumnarValue::Scalar(_));
        let x = args.args[0].to_array(args.number_rows)?;
        // Units of 10^-from rounded to units of 10^-d, then written with the scale `to`.
        let (drop, keep) = (i32::from(*from) - d, i32::from(*to) - d);
        let out: Decimal128Array = x
            .as_primitive::<Decimal128Type>()
            .iter()
            .map(|v| {
                v.map(|v| match drop > 0 {
                    true => round_units(v, drop, self.half_even) * pow10(keep),
                    // More decimals asked than there are: the value as it is.
                    false => v,
                })
            })
            .collect();
        let out: ArrayRef = Arc::new(out.with_precision_and_scale(*p, *to)?);
        super::columnar(out, scalar)
    }
}

/// `10^n`, or 0 past what an i128 holds (and for a negative `n`).
fn pow10(n: i32) -> i128 {
    u32::try_from(n)
        .ok()
        .and_then(|n| 10i128.checked_pow(n))
        .unwrap_or(0)
}

/// `v / 10^drop` (`drop` > 0) rounded to an integer (halves away from zero or to even);
/// 0 when every digit is dropped.
fn round_units(v: i128, drop: i32, half_even: bool) -> i128 {
    let unit = pow10(drop);
    if unit == 0 {
        return 0;
    }
    let (q, r) = (v / unit, v % unit);
    let twice = r.unsigned_abs() * 2;
    let up = match twice.cmp(&unit.unsigned_abs()) {
        std::cmp::Ordering::Greater => true,
        std::cmp::Ordering::Equal => !half_even || q % 2 != 0,
        std::cmp::Ordering::Less => false,
    };
    match (up, v < 0) {
        (false, _) => q,
        (true, false) => q + 1,
        (true, true) => q - 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_follow_spark() {
        assert_eq!(rounded_type(2, 1, 0), (2, 0));
        assert_eq!(rounded_type(6, 4, 2), (5, 2));
        assert_eq!(rounded_type(3, 1, 5), (4, 1));
        assert_eq!(rounded_type(2, 0, -1), (3, 0));
        assert_eq!(rounded_type(38, 10, 2), (31, 2));
        assert_eq!(rounded_type(38, 0, 0), (38, 0));
    }

    #[test]
    fn halves() {
        // 2.5 and -2.5 to units.
        assert_eq!(round_units(25, 1, false), 3);
        assert_eq!(round_units(25, 1, true), 2);
        assert_eq!(round_units(-25, 1, false), -3);
        assert_eq!(round_units(-25, 1, true), -2);
        assert_eq!(round_units(35, 1, true), 4);
        // 1.2345 to 2 decimals, 25 to tens.
        assert_eq!(round_units(12345, 2, false), 123);
        assert_eq!(round_units(25, 1, true), 2);
        assert_eq!(round_units(7, 40, false), 0);
    }
}
