//! Airflow's template variables and date macros, with the names and values Airflow
//! gives a daily DAG run, so SQL written for Airflow's Jinja renders unchanged: `ds`,
//! `ds_nodash`, `ts`, `ts_nodash`, `logical_date`, `data_interval_start`,
//! `data_interval_end` (the run's day, `[ds, next_ds)`), `prev_ds`, `next_ds`,
//! `yesterday_ds`, `tomorrow_ds`, and `macros.ds_add` / `macros.ds_format` (also
//! `ds_add` on its own).

use chrono::{Days, NaiveDate};
use minijinja::value::Value;
use minijinja::{Error, ErrorKind};

use super::RunDate;

/// The variables a run on `ds` renders with.
pub(super) fn context(ds: RunDate) -> Value {
    let day = ds.date();
    let next = RunDate::from_date(day.checked_add_days(Days::new(1)).unwrap_or(day));
    let prev = RunDate::from_date(day.checked_sub_days(Days::new(1)).unwrap_or(day));
    let safe = Value::from_safe_string;
    // Airflow renders timestamps as ISO 8601 in UTC with the offset: 2024-03-01T00:00:00+00:00.
    let ts = |d: RunDate| format!("{}T00:00:00+00:00", d.ds());
    minijinja::context! {
        ds => safe(ds.ds()),
        ds_nodash => safe(ds.ds_nodash()),
        ts => safe(ts(ds)),
        ts_nodash => safe(format!("{}T000000", ds.ds_nodash())),
        logical_date => safe(ts(ds)),
        data_interval_start => safe(ts(ds)),
        data_interval_end => safe(ts(next)),
        prev_ds => safe(prev.ds()),
        next_ds => safe(next.ds()),
        yesterday_ds => safe(prev.ds()),
        tomorrow_ds => safe(next.ds()),
        macros => minijinja::context! {
            ds_add => Value::from_function(ds_add),
            ds_format => Value::from_function(ds_format),
        },
    }
}

/// `ds_add(ds, days)`: the date `days` after (or before, when negative) `ds`, as
/// Airflow's `macros.ds_add`.
pub(super) fn ds_add(ds: &str, days: i64) -> Result<Value, Error> {
    let date = parse(ds, "%Y-%m-%d", "ds_add")?;
    let moved = if days >= 0 {
        date.checked_add_days(Days::new(days.unsigned_abs()))
    } else {
        date.checked_sub_days(Days::new(days.unsigned_abs()))
    };
    let moved = moved.ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("ds_add({ds:?}, {days}) is outside the calendar"),
        )
    })?;
    Ok(Value::from_safe_string(
        moved.format("%Y-%m-%d").to_string(),
    ))
}

/// `macros.ds_format(ds, input_format, output_format)`: `ds` read with one strftime
/// format and written with another, as Airflow's.
fn ds_format(ds: &str, input_format: &str, output_format: &str) -> Result<Value, Error> {
    let date = parse(ds, input_format, "ds_format")?;
    let mut out = String::new();
    use std::fmt::Write;
    write!(out, "{}", date.format(output_format)).map_err(|_| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("ds_format: {output_format:?} is not a valid strftime format"),
        )
    })?;
    Ok(Value::from_safe_string(out))
}

fn parse(ds: &str, format: &str, function: &str) -> Result<NaiveDate, Error> {
    NaiveDate::parse_from_str(ds, format).map_err(|e| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("{function}: {ds:?} does not read as a date in the format {format:?}: {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macros_match_airflow() {
        assert_eq!(ds_add("2015-01-01", 5).unwrap().to_string(), "2015-01-06");
        assert_eq!(ds_add("2015-01-06", -5).unwrap().to_string(), "2015-01-01");
        assert_eq!(
            ds_format("2015-01-01", "%Y-%m-%d", "%m-%d-%y")
                .unwrap()
                .to_string(),
            "01-01-15"
        );
        assert!(ds_add("2015-13-01", 1).is_err());
        assert!(ds_format("2015-01-01", "%d/%m/%Y", "%Y").is_err());
        assert!(ds_format("2015-01-01", "%Y-%m-%d", "%Q").is_err());
    }
}
