//! Airflow's template variables and date macros, with the names and values Airflow
//! gives a daily DAG run, so SQL written for Airflow's Jinja renders unchanged: `ds`,
//! `ds_nodash`, `ts`, `ts_nodash`, `logical_date`, `data_interval_start`,
//! `data_interval_end` (the run's day, `[ds, next_ds)`), `prev_ds`, `next_ds`,
//! `yesterday_ds`, `tomorrow_ds`, and `macros.ds_add` / `macros.ds_format` (also
//! `ds_add` on its own).

use chrono::{DateTime, Days, NaiveDate, Utc};
use minijinja::value::Value;
use minijinja::{Error, ErrorKind};

use super::RunDate;

/// A run's data interval other than its day, as a scheduler gives it (Airflow's
/// `data_interval_start`, `data_interval_end`), in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataInterval {
    /// The start (inclusive): also `ts` and `logical_date`.
    pub start: DateTime<Utc>,
    /// The end (exclusive).
    pub end: DateTime<Utc>,
}

impl DataInterval {
    /// The interval from `start` to `end`, RFC 3339 timestamps
    /// (`2024-03-01T06:00:00Z`, `2024-03-01T06:00:00+00:00`); the start must be
    /// before the end, and on `ds` (the run date is the interval's first day).
    pub fn parse(start: &str, end: &str, ds: RunDate) -> crate::Result<Self> {
        let ts = |what: &'static str, text: &str| {
            DateTime::parse_from_rfc3339(text)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| crate::Error::InvalidArgument {
                    what,
                    value: text.to_string(),
                    message: format!(
                        "expected an RFC 3339 timestamp such as 2024-03-01T06:00:00Z ({e})"
                    ),
                })
        };
        let (start, end) = (
            ts("--data-interval-start", start)?,
            ts("--data-interval-end", end)?,
        );
        let invalid = |message: String| crate::Error::InvalidArgument {
            what: "--data-interval-start",
            value: start.to_rfc3339(),
            message,
        };
        if start >= end {
            return Err(invalid(format!(
                "the interval ends at {end}, not after it starts"
            )));
        }
        if start.date_naive() != ds.date() {
            return Err(invalid(format!(
                "the interval starts on another day than --ds {ds}; give --ds {}",
                start.date_naive()
            )));
        }
        Ok(DataInterval { start, end })
    }
}

/// Airflow's form of a timestamp: ISO 8601 in UTC with the offset.
fn airflow_ts(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%:z").to_string()
}

/// The variables a run on `ds` renders with; `interval` replaces the day `[ds, next_ds)`.
pub(super) fn context(ds: RunDate, interval: Option<&DataInterval>) -> Value {
    let day = ds.date();
    let next = RunDate::from_date(day.checked_add_days(Days::new(1)).unwrap_or(day));
    let prev = RunDate::from_date(day.checked_sub_days(Days::new(1)).unwrap_or(day));
    let safe = Value::from_safe_string;
    let midnight = |d: RunDate| d.date().and_time(chrono::NaiveTime::MIN).and_utc();
    let (start, end) = match interval {
        Some(i) => (i.start, i.end),
        None => (midnight(ds), midnight(next)),
    };
    minijinja::context! {
        ds => safe(ds.ds()),
        ds_nodash => safe(ds.ds_nodash()),
        ts => safe(airflow_ts(start)),
        ts_nodash => safe(start.format("%Y%m%dT%H%M%S").to_string()),
        logical_date => safe(airflow_ts(start)),
        data_interval_start => safe(airflow_ts(start)),
        data_interval_end => safe(airflow_ts(end)),
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
    fn a_data_interval_replaces_the_day() {
        let ds: RunDate = "2024-03-01".parse().unwrap();
        let i =
            DataInterval::parse("2024-03-01T06:00:00Z", "2024-03-01T07:00:00+00:00", ds).unwrap();
        let ctx = context(ds, Some(&i));
        let get = |k: &str| ctx.get_attr(k).unwrap().to_string();
        assert_eq!(get("data_interval_start"), "2024-03-01T06:00:00+00:00");
        assert_eq!(get("data_interval_end"), "2024-03-01T07:00:00+00:00");
        assert_eq!(get("ts_nodash"), "20240301T060000");
        assert_eq!(get("ds"), "2024-03-01");
        assert!(DataInterval::parse("2024-03-01T07:00:00Z", "2024-03-01T06:00:00Z", ds).is_err());
        assert!(DataInterval::parse("2024-03-02T06:00:00Z", "2024-03-02T07:00:00Z", ds).is_err());
        let err = DataInterval::parse("yesterday", "2024-03-01T07:00:00Z", ds).unwrap_err();
        assert!(
            err.is_usage() && err.to_string().contains("RFC 3339"),
            "{err}"
        );
    }

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
