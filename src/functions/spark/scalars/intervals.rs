//! Spark's `make_ym_interval(years[, months])`: a YEAR-MONTH INTERVAL, Arrow's
//! `Interval(YearMonth)` (a count of months), which Spark's year-month interval
//! literals also become (`pipeline/spark_sql/intervals.rs`).

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, IntervalYearMonthArray};
use datafusion::arrow::datatypes::{DataType, IntervalUnit};
use datafusion::common::exec_err;
use datafusion::config::ConfigOptions;
use datafusion::error::Result;
use datafusion::logical_expr::ScalarUDF;

use super::{integers, Simple};

pub(super) fn all() -> Vec<ScalarUDF> {
    vec![Simple::udf(
        "make_ym_interval",
        (1, 2),
        DataType::Interval(IntervalUnit::YearMonth),
        make_ym_interval,
    )]
}

/// `years * 12 + months` months; an error past what Spark's 32-bit months hold.
fn make_ym_interval(args: &[ArrayRef], _: &ConfigOptions) -> Result<ArrayRef> {
    let (years, months) = (integers(args, 0, None)?, integers(args, 1, Some(0))?);
    let out = years
        .iter()
        .zip(&months)
        .map(|(y, m)| {
            let (Some(y), Some(m)) = (y, m) else {
                return Ok(None);
            };
            match y.checked_mul(12).and_then(|y| y.checked_add(*m)) {
                Some(total) if i32::try_from(total).is_ok() => Ok(Some(total as i32)),
                _ => exec_err!("make_ym_interval: {y} years and {m} months is out of range"),
            }
        })
        .collect::<Result<IntervalYearMonthArray>>()?;
    Ok(Arc::new(out))
}
