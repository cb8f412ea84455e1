//! STL decomposition (trend / seasonal / remainder, with a given period) of a daily
//! series per group, and a forecast from it, as aggregate functions: one pass over the
//! rows trains and estimates.
//!
//! - `stl_decompose(day, value, period)` → a list of `{day, observed, trend, seasonal,
//!   remainder}`, one per input day;
//! - `stl_forecast(day, value, period, horizon)` → a list of `{day, forecast}` for the
//!   `horizon` days after the last one: the last trend value plus its average daily
//!   change over the last period (drift), plus the seasonal value of the same day of
//!   the last period (seasonal naive on the decomposed series).
//!
//! The decomposition uses the `stlrs` crate with statsmodels' STL defaults (seasonal
//! smoother 7, degree 1 smoothers, jumps of 1, 5 inner loops, no robustness
//! iterations), so its values match `statsmodels.tsa.seasonal.STL(x, period)`. A
//! group needs one value per day, with no gaps or repeats, and at least two periods;
//! a shorter series gives NULL.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Date32Array, Float64Array, ListArray, StructArray,
};
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Field, FieldRef, Fields, Float64Type, Int64Type,
};
use datafusion::common::utils::SingleRowListArrayBuilder;
use datafusion::common::{exec_err, plan_err, Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{Accumulator, AggregateUDFImpl, Signature, Volatility};

#[derive(Debug, PartialEq, Eq, Hash, Clone, Copy)]
enum Kind {
    Decompose,
    Forecast,
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct Stl {
    kind: Kind,
    signature: Signature,
}

impl Stl {
    pub(crate) fn decompose() -> Self {
        Stl {
            kind: Kind::Decompose,
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }

    pub(crate) fn forecast() -> Self {
        Stl {
            kind: Kind::Forecast,
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }

    fn arity(&self) -> usize {
        match self.kind {
            Kind::Decompose => 3,
            Kind::Forecast => 4,
        }
    }

    fn item_fields(&self) -> Fields {
        let f = |n: &str, t: DataType| Field::new(n, t, true);
        match self.kind {
            Kind::Decompose => Fields::from(vec![
                f("day", DataType::Date32),
                f("observed", DataType::Float64),
                f("trend", DataType::Float64),
                f("seasonal", DataType::Float64),
                f("remainder", DataType::Float64),
            ]),
            Kind::Forecast => Fields::from(vec![
                f("day", DataType::Date32),
                f("forecast", DataType::Float64),
            ]),
        }
    }
}

impl AggregateUDFImpl for Stl {
    fn name(&self) -> &str {
        match self.kind {
            Kind::Decompose => "stl_decompose",
            Kind::Forecast => "stl_forecast",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if arg_types.len() != self.arity() {
            let usage = match self.kind {
                Kind::Decompose => "stl_decompose(day, value, period)",
                Kind::Forecast => "stl_forecast(day, value, period, horizon)",
            };
            return plan_err!(
                "{usage} takes {} arguments, not {}",
                self.arity(),
                arg_types.len()
            );
        }
        if !matches!(
            arg_types[0],
            DataType::Date32 | DataType::Date64 | DataType::Utf8 | DataType::Utf8View
        ) {
            return plan_err!(
                "{}: the first argument is a day (DATE), not {}",
                self.name(),
                arg_types[0]
            );
        }
        if !arg_types[1].is_numeric() {
            return plan_err!(
                "{}: the value is a number, not {}",
                self.name(),
                arg_types[1]
            );
        }
        for t in &arg_types[2..] {
            if !t.is_integer() {
                return plan_err!("{}: period and horizon are integers, not {t}", self.name());
            }
        }
        let mut out = vec![DataType::Date32, DataType::Float64, DataType::Int64];
        if self.kind == Kind::Forecast {
            out.push(DataType::Int64);
        }
        Ok(out)
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::List(Arc::new(Field::new(
            "item",
            DataType::Struct(self.item_fields()),
            true,
        ))))
    }

    fn accumulator(&self, _acc_args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(Series {
            kind: self.kind,
            fields: self.item_fields(),
            days: Vec::new(),
            values: Vec::new(),
            period: None,
            horizon: None,
        }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let list = |t: DataType| DataType::List(Arc::new(Field::new("item", t, true)));
        Ok(vec![
            Arc::new(Field::new(
                format!("{}_days", args.name),
                list(DataType::Date32),
                true,
            )),
            Arc::new(Field::new(
                format!("{}_values", args.name),
                list(DataType::Float64),
                true,
            )),
            Arc::new(Field::new(
                format!("{}_period", args.name),
                DataType::Int64,
                true,
            )),
            Arc::new(Field::new(
                format!("{}_horizon", args.name),
                DataType::Int64,
                true,
            )),
        ])
    }
}

#[derive(Debug)]
struct Series {
    kind: Kind,
    fields: Fields,
    days: Vec<i32>,
    values: Vec<f64>,
    period: Option<i64>,
    horizon: Option<i64>,
}

impl Series {
    fn set(slot: &mut Option<i64>, value: Option<i64>, what: &str) -> Result<()> {
        match (*slot, value) {
            (_, None) => Ok(()),
            (None, v) => {
                *slot = v;
                Ok(())
            }
            (Some(a), Some(b)) if a == b => Ok(()),
            (Some(a), Some(b)) => {
                exec_err!("the {what} must be the same for every row of a group ({a} and {b})")
            }
        }
    }
}

impl Accumulator for Series {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let days = values[0].as_primitive::<Date32Type>();
        let xs = values[1].as_primitive::<Float64Type>();
        let periods = values[2].as_primitive::<Int64Type>();
        for i in 0..days.len() {
            if days.is_null(i) || xs.is_null(i) {
                continue;
            }
            self.days.push(days.value(i));
            self.values.push(xs.value(i));
            Self::set(
                &mut self.period,
                (!periods.is_null(i)).then(|| periods.value(i)),
                "period",
            )?;
            if self.kind == Kind::Forecast {
                let h = values[3].as_primitive::<Int64Type>();
                Self::set(
                    &mut self.horizon,
                    (!h.is_null(i)).then(|| h.value(i)),
                    "horizon",
                )?;
            }
        }
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let mut points: Vec<(i32, f64)> = self
            .days
            .iter()
            .copied()
            .zip(self.values.iter().copied())
            .collect();
        points.sort_by_key(|p| p.0);
        let null = || {
            ScalarValue::try_from(&DataType::List(Arc::new(Field::new(
                "item",
                DataType::Struct(self.fields.clone()),
                true,
            ))))
        };
        let Some(period) = self.period.filter(|p| *p >= 2) else {
            return match self.period {
                Some(p) => exec_err!("the period must be at least 2, not {p}"),
                None => null(),
            };
        };
        let period = period as usize;
        for w in points.windows(2) {
            if w[1].0 != w[0].0 + 1 {
                let day = |d: i32| {
                    chrono::NaiveDate::from_num_days_from_ce_opt(d + 719_163)
                        .map(|d| d.to_string())
                        .unwrap_or_default()
                };
                let what = if w[1].0 == w[0].0 {
                    "repeats"
                } else {
                    "is followed by a gap at"
                };
                return exec_err!(
                    "STL needs one value per day: {} {what} {}",
                    day(w[0].0),
                    day(w[0].0 + 1)
                );
            }
        }
        if points.len() < 2 * period {
            return null();
        }
        let series: Vec<f64> = points.iter().map(|p| p.1).collect();
        let mut low_pass = period + 1;
        if low_pass.is_multiple_of(2) {
            low_pass += 1;
        }
        let fit = stlrs::params()
            .seasonal_length(7)
            .seasonal_degree(1)
            .trend_degree(1)
            .low_pass_degree(1)
            .low_pass_length(low_pass)
            .seasonal_jump(1)
            .trend_jump(1)
            .low_pass_jump(1)
            .inner_loops(5)
            .outer_loops(0)
            .fit(&series, period);
        let fit = match fit {
            Ok(f) => f,
            Err(e) => return exec_err!("STL: {e}"),
        };
        let (trend, seasonal, remainder) = (fit.trend(), fit.seasonal(), fit.remainder());
        let columns: Vec<ArrayRef> = match self.kind {
            Kind::Decompose => vec![
                Arc::new(Date32Array::from(
                    points.iter().map(|p| p.0).collect::<Vec<_>>(),
                )),
                Arc::new(Float64Array::from(series.clone())),
                Arc::new(Float64Array::from(trend.to_vec())),
                Arc::new(Float64Array::from(seasonal.to_vec())),
                Arc::new(Float64Array::from(remainder.to_vec())),
            ],
            Kind::Forecast => {
                let horizon = self.horizon.unwrap_or(0).max(0) as usize;
                let n = series.len();
                let last = trend[n - 1];
                let drift = (trend[n - 1] - trend[n - 1 - period]) / period as f64;
                let last_day = points[n - 1].0;
                let mut days = Vec::with_capacity(horizon);
                let mut values = Vec::with_capacity(horizon);
                for h in 1..=horizon {
                    // The same day of the last observed period.
                    let season = seasonal[n - period + (h - 1) % period];
                    days.push(last_day + h as i32);
                    values.push(last + drift * h as f64 + season);
                }
                vec![
                    Arc::new(Date32Array::from(days)),
                    Arc::new(Float64Array::from(values)),
                ]
            }
        };
        let items = StructArray::try_new(self.fields.clone(), columns, None)?;
        Ok(SingleRowListArrayBuilder::new(Arc::new(items)).build_list_scalar())
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.days.capacity() * 4 + self.values.capacity() * 8
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let days = SingleRowListArrayBuilder::new(Arc::new(Date32Array::from(self.days.clone())))
            .build_list_scalar();
        let values =
            SingleRowListArrayBuilder::new(Arc::new(Float64Array::from(self.values.clone())))
                .build_list_scalar();
        Ok(vec![
            days,
            values,
            ScalarValue::Int64(self.period),
            ScalarValue::Int64(self.horizon),
        ])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let days: &ListArray = states[0].as_list();
        let values: &ListArray = states[1].as_list();
        let periods = states[2].as_primitive::<Int64Type>();
        let horizons = states[3].as_primitive::<Int64Type>();
        for row in 0..days.len() {
            if days.is_null(row) {
                continue;
            }
            let d = days.value(row);
            let v = values.value(row);
            self.days
                .extend(d.as_primitive::<Date32Type>().iter().flatten());
            self.values
                .extend(v.as_primitive::<Float64Type>().iter().flatten());
            Self::set(
                &mut self.period,
                (!periods.is_null(row)).then(|| periods.value(row)),
                "period",
            )?;
            Self::set(
                &mut self.horizon,
                (!horizons.is_null(row)).then(|| horizons.value(row)),
                "horizon",
            )?;
        }
        Ok(())
    }
}
