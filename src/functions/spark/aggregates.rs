//! Spark's `percentile_approx(col, percentage[, accuracy])` (and its alias
//! `approx_percentile`): the smallest value of the column such that no more than
//! `percentage` of the values are below it, for one percentage or an array of them;
//! and `percentile(col, percentage)`, the exact percentile interpolated between values;
//! `skewness(col)`, the population skewness. Both percentiles take intervals too (a
//! year-month interval's in months, a day-time interval's in microseconds).
//!
//! Spark answers from a Greenwald–Khanna sketch whose error is at most 1/accuracy of
//! the rank; quern keeps the group's values and answers exactly, which is within any
//! accuracy and gives Spark's documented results. Its memory grows with the group (8
//! bytes a value), where Spark's sketch is bounded.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, DurationMicrosecondArray, Float64Array, IntervalYearMonthArray,
    ListArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    DataType, Field, FieldRef, Float64Type, IntervalMonthDayNanoType, IntervalUnit,
    IntervalYearMonthType, TimeUnit,
};
use datafusion::common::{exec_err, plan_err, ScalarValue};
use datafusion::error::Result;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Signature, Volatility,
};

pub(super) fn all() -> Vec<Arc<AggregateUDF>> {
    let percentile = |name: &'static str, aliases: &[&str], interpolate| {
        Arc::new(AggregateUDF::from(PercentileApprox {
            name,
            signature: Signature::variadic_any(Volatility::Immutable),
            aliases: aliases.iter().map(|a| a.to_string()).collect(),
            interpolate,
        }))
    };
    vec![
        percentile("percentile_approx", &["approx_percentile"], false),
        percentile("percentile", &[], true),
        Arc::new(AggregateUDF::from(Skewness {
            signature: Signature::numeric(1, Volatility::Immutable),
        })),
    ]
}

/// `percentile_approx` (a value of the column), or `percentile` (`interpolate`: the
/// exact percentile, interpolated linearly between the two nearest values, a double).
#[derive(Debug, PartialEq, Eq, Hash)]
struct PercentileApprox {
    name: &'static str,
    signature: Signature,
    aliases: Vec<String>,
    interpolate: bool,
}

fn is_number(t: &DataType) -> bool {
    t.is_numeric() || *t == DataType::Null || interval_value(t).is_some()
}

/// The type a percentile of an interval column is: a year-month interval stays one;
/// a day-time one (DataFusion's month-day-nano interval, which Spark's day-time
/// literals are, or a duration) is a duration of microseconds, Spark's DAY TO SECOND.
fn interval_value(t: &DataType) -> Option<DataType> {
    match t {
        DataType::Interval(IntervalUnit::YearMonth) => Some(t.clone()),
        DataType::Interval(IntervalUnit::MonthDayNano) | DataType::Duration(_) => {
            Some(DataType::Duration(TimeUnit::Microsecond))
        }
        _ => None,
    }
}

/// `values` as doubles: numbers cast, intervals in months or microseconds.
fn as_doubles(values: &ArrayRef) -> Result<ArrayRef> {
    let doubles: Float64Array = match values.data_type() {
        DataType::Interval(IntervalUnit::YearMonth) => values
            .as_primitive::<IntervalYearMonthType>()
            .iter()
            .map(|m| m.map(f64::from))
            .collect(),
        DataType::Interval(IntervalUnit::MonthDayNano) => values
            .as_primitive::<IntervalMonthDayNanoType>()
            .iter()
            .map(|v| match v {
                Some(v) if v.months != 0 => exec_err!(
                    "percentile of an interval with months ({} months) is not supported: \
                     a percentile takes year-month or day-time intervals",
                    v.months
                ),
                Some(v) => Ok(Some(
                    f64::from(v.days) * 86_400e6 + (v.nanoseconds / 1000) as f64,
                )),
                None => Ok(None),
            })
            .collect::<Result<_>>()?,
        DataType::Duration(_) => {
            let micros = cast(values, &DataType::Duration(TimeUnit::Microsecond))?;
            let micros = cast(&micros, &DataType::Int64)?;
            return Ok(cast(&micros, &DataType::Float64)?);
        }
        _ => return Ok(cast(values, &DataType::Float64)?),
    };
    Ok(Arc::new(doubles))
}

/// Percentiles computed as doubles, as `to` (an interval's truncated to whole months or
/// microseconds).
fn from_doubles(picked: Vec<Option<f64>>, to: &DataType) -> Result<ArrayRef> {
    Ok(match to {
        DataType::Interval(IntervalUnit::YearMonth) => Arc::new(
            picked
                .into_iter()
                .map(|v| v.map(|v| v.trunc() as i32))
                .collect::<IntervalYearMonthArray>(),
        ),
        DataType::Duration(TimeUnit::Microsecond) => Arc::new(
            picked
                .into_iter()
                .map(|v| v.map(|v| v.trunc() as i64))
                .collect::<DurationMicrosecondArray>(),
        ),
        _ => cast(&(Arc::new(Float64Array::from(picked)) as ArrayRef), to)?,
    })
}

impl AggregateUDFImpl for PercentileApprox {
    fn name(&self) -> &str {
        self.name
    }

    fn aliases(&self) -> &[String] {
        &self.aliases
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        if !(2..=3).contains(&arg_types.len()) {
            return plan_err!("percentile_approx takes 2 or 3 arguments: the column, the percentage(s) and the accuracy");
        }
        if !is_number(&arg_types[0]) {
            return plan_err!(
                "percentile_approx of a {} is not supported; it takes numbers or intervals",
                arg_types[0]
            );
        }
        let value = match (interval_value(&arg_types[0]), self.interpolate) {
            (Some(interval), _) => interval,
            (None, true) => DataType::Float64,
            (None, false) => arg_types[0].clone(),
        };
        Ok(match &arg_types[1] {
            DataType::List(_) | DataType::FixedSizeList(_, _) | DataType::LargeList(_) => {
                DataType::List(Arc::new(Field::new("item", value, true)))
            }
            _ => value,
        })
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(Values {
            values: Vec::new(),
            percentages: None,
            returns: args.return_field.data_type().clone(),
            interpolate: self.interpolate,
        }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let list = DataType::List(Arc::new(Field::new("item", DataType::Float64, true)));
        Ok(vec![
            Arc::new(Field::new(
                format!("{}_values", args.name),
                list.clone(),
                true,
            )),
            Arc::new(Field::new(format!("{}_percentages", args.name), list, true)),
        ])
    }
}

#[derive(Debug)]
struct Values {
    values: Vec<f64>,
    /// The percentages asked for, once a row has said them.
    percentages: Option<Vec<f64>>,
    returns: DataType,
    interpolate: bool,
}

/// The `p` percentile of `sorted` (not empty): a value of it, or interpolated.
fn pick(sorted: &[f64], p: f64, interpolate: bool) -> f64 {
    let n = sorted.len();
    if interpolate {
        let position = p * (n - 1) as f64;
        let (low, high) = (position.floor() as usize, position.ceil() as usize);
        return sorted[low] + (position - low as f64) * (sorted[high] - sorted[low]);
    }
    let rank = (p * n as f64).ceil() as usize;
    sorted[rank.saturating_sub(1).min(n - 1)]
}

/// The percentages in row `row` of the percentage argument (one, or an array).
fn percentages_at(array: &ArrayRef, row: usize) -> Result<Vec<f64>> {
    let values = match array.data_type() {
        DataType::List(_) => array.as_list::<i32>().value(row),
        DataType::LargeList(_) => array.as_list::<i64>().value(row),
        DataType::FixedSizeList(_, _) => array.as_fixed_size_list().value(row),
        _ => array.slice(row, 1),
    };
    let values = cast(&values, &DataType::Float64)?;
    let out: Vec<f64> = values
        .as_primitive::<Float64Type>()
        .iter()
        .flatten()
        .collect();
    if let Some(p) = out.iter().find(|p| !(0.0..=1.0).contains(*p)) {
        return exec_err!("percentile_approx: the percentage must be between 0.0 and 1.0, not {p}");
    }
    Ok(out)
}

impl Values {
    fn add(&mut self, values: &ArrayRef) -> Result<()> {
        let values = as_doubles(values)?;
        self.values
            .extend(values.as_primitive::<Float64Type>().iter().flatten());
        Ok(())
    }
}

impl Accumulator for Values {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        if self.percentages.is_none() && !values[1].is_empty() {
            self.percentages = Some(percentages_at(&values[1], 0)?);
        }
        self.add(&values[0])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let (values, percentages) = (states[0].as_list::<i32>(), states[1].as_list::<i32>());
        for row in 0..values.len() {
            if !values.is_null(row) {
                self.add(&values.value(row))?;
            }
            if self.percentages.is_none() && !percentages.is_null(row) {
                let p = percentages.value(row);
                self.percentages = Some(p.as_primitive::<Float64Type>().iter().flatten().collect());
            }
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let list = |v: Vec<f64>| {
            ScalarValue::List(Arc::new(
                ListArray::from_iter_primitive::<Float64Type, _, _>([Some(
                    v.into_iter().map(Some).collect::<Vec<_>>(),
                )]),
            ))
        };
        let percentages = match &self.percentages {
            Some(p) => list(p.clone()),
            None => ScalarValue::List(Arc::new(ListArray::new_null(
                Arc::new(Field::new("item", DataType::Float64, true)),
                1,
            ))),
        };
        Ok(vec![list(self.values.clone()), percentages])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let element = match &self.returns {
            DataType::List(f) => f.data_type().clone(),
            other => other.clone(),
        };
        let percentages = self.percentages.clone().unwrap_or_default();
        let values = &mut self.values;
        values.sort_by(f64::total_cmp);
        let picked: Vec<Option<f64>> = percentages
            .iter()
            .map(|p| (!values.is_empty()).then(|| pick(values, *p, self.interpolate)))
            .collect();
        let picked = from_doubles(picked, &element)?;
        match &self.returns {
            DataType::List(f) => {
                if self.values.is_empty() {
                    return ScalarValue::try_from(&self.returns);
                }
                let offsets = datafusion::arrow::buffer::OffsetBuffer::from_lengths([picked.len()]);
                let list = ListArray::try_new(f.clone(), offsets, picked, None)?;
                Ok(ScalarValue::List(Arc::new(list)))
            }
            _ if picked.is_empty() => ScalarValue::try_from(&self.returns),
            _ => ScalarValue::try_from_array(&picked, 0),
        }
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.values.capacity() * 8
    }
}

/// `skewness(col)`: the third central moment over the second to the power 1.5.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Skewness {
    signature: Signature,
}

impl AggregateUDFImpl for Skewness {
    fn name(&self) -> &str {
        "skewness"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn accumulator(&self, _: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(Moments::default()))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(["n", "s1", "s2", "s3"]
            .iter()
            .map(|m| {
                Arc::new(Field::new(
                    format!("{}_{m}", args.name),
                    DataType::Float64,
                    false,
                ))
            })
            .collect())
    }
}

/// The count and the sums of the values, their squares and cubes.
#[derive(Debug, Default)]
struct Moments([f64; 4]);

impl Accumulator for Moments {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let values = cast(&values[0], &DataType::Float64)?;
        for x in values.as_primitive::<Float64Type>().iter().flatten() {
            self.0[0] += 1.0;
            self.0[1] += x;
            self.0[2] += x * x;
            self.0[3] += x * x * x;
        }
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        for (sum, state) in self.0.iter_mut().zip(states) {
            *sum += state
                .as_primitive::<Float64Type>()
                .iter()
                .flatten()
                .sum::<f64>();
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(self
            .0
            .iter()
            .map(|v| ScalarValue::Float64(Some(*v)))
            .collect())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let [n, s1, s2, s3] = self.0;
        if n == 0.0 {
            return Ok(ScalarValue::Float64(None));
        }
        let mean = s1 / n;
        let m2 = s2 / n - mean * mean;
        let m3 = s3 / n - 3.0 * mean * s2 / n + 2.0 * mean * mean * mean;
        Ok(ScalarValue::Float64((m2 != 0.0).then(|| m3 / m2.powf(1.5))))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
    }
}
