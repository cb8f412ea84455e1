//! Spark's date functions that read and write text with Java's `DateTimeFormatter`
//! patterns (`yyyy-MM-dd HH:mm:ss`), in the session time zone; calendar fields;
//! `months_between`.
//!
//! A Spark `TIMESTAMP` is an instant shown in the session time zone; in quern it is the
//! wall-clock time in that zone, a timestamp without a zone (as DataFusion's own
//! `TIMESTAMP '…'` literals are), so that it prints and compares as Spark's does.

use std::sync::Arc;

use chrono::format::{Item, Parsed, StrftimeItems};
use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, TimeZone, Timelike};
use datafusion::arrow::array::timezone::Tz;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Date32Array, Float64Array, Int32Array, Int64Array, StringArray,
    TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Int64Type, TimeUnit, TimestampMicrosecondType};
use datafusion::common::{exec_datafusion_err, exec_err};
use datafusion::config::ConfigOptions;
use datafusion::error::Result;
use datafusion::logical_expr::ScalarUDF;

use super::{arg, arg_as, constant_string, Simple};

const DEFAULT_TIMESTAMP: &str = "yyyy-MM-dd HH:mm:ss";

pub(super) fn all() -> Vec<ScalarUDF> {
    let timestamp = DataType::Timestamp(TimeUnit::Microsecond, None);
    let mut all = vec![
        Simple::udf("date_format", (2, 2), DataType::Utf8, date_format),
        Simple::udf("to_date", (1, 2), DataType::Date32, to_date),
        Simple::udf("to_timestamp", (1, 2), timestamp.clone(), to_timestamp),
        Simple::udf("unix_timestamp", (1, 2), DataType::Int64, unix_timestamp),
        Simple::udf("to_unix_timestamp", (1, 2), DataType::Int64, unix_timestamp),
        Simple::udf("from_unixtime", (1, 2), DataType::Utf8, from_unixtime),
        Simple::udf("months_between", (2, 3), DataType::Float64, months_between),
        Simple::udf("dayname", (1, 1), DataType::Utf8, dayname),
        Simple::udf(
            "convert_timezone",
            (2, 3),
            timestamp.clone(),
            convert_timezone,
        ),
        Simple::udf("timestampdiff", (3, 3), DataType::Int64, timestampdiff),
        Simple::udf(
            "to_time",
            (1, 2),
            DataType::Time64(TimeUnit::Microsecond),
            to_time,
        ),
        Simple::udf(
            "make_timestamp_ltz",
            (6, 7),
            timestamp.clone(),
            make_timestamp,
        ),
        Simple::udf(
            "try_make_timestamp",
            (6, 7),
            timestamp.clone(),
            make_timestamp,
        ),
        Simple::udf(
            "try_make_timestamp_ltz",
            (6, 7),
            timestamp.clone(),
            make_timestamp,
        ),
        Simple::udf(
            "timestamp_seconds",
            (1, 1),
            timestamp.clone(),
            from_epoch::<1_000_000>,
        ),
        Simple::udf(
            "timestamp_millis",
            (1, 1),
            timestamp.clone(),
            from_epoch::<1_000>,
        ),
        Simple::udf("timestamp_micros", (1, 1), timestamp, from_epoch::<1>),
    ];
    let fields: [super::Compute; 8] = [
        field::<0>, field::<1>, field::<2>, field::<3>, field::<4>, field::<5>, field::<6>,
        field::<7>,
    ];
    for ((name, _), compute) in FIELDS.iter().zip(fields) {
        all.push(Simple::udf(name, (1, 1), DataType::Int32, compute));
    }
    all
}

/// The calendar fields, by function name.
/// A calendar field of a wall-clock time.
type Field = fn(&NaiveDateTime) -> i32;

const FIELDS: [(&str, Field); 8] = [
    ("year", |t| t.year()),
    ("quarter", |t| (t.month0() / 3 + 1) as i32),
    ("month", |t| t.month() as i32),
    ("day", |t| t.day() as i32),
    ("dayofmonth", |t| t.day() as i32),
    ("dayofyear", |t| t.ordinal() as i32),
    // Sunday is 1, Saturday 7.
    ("dayofweek", |t| {
        t.weekday().num_days_from_sunday() as i32 + 1
    }),
    // The ISO week: weeks start on Monday, week 1 has more than 3 days.
    ("weekofyear", |t| t.iso_week().week() as i32),
];

/// Field `F` of [`FIELDS`] of each row's wall-clock time.
fn field<const F: usize>(args: &[ArrayRef], config: &ConfigOptions) -> Result<ArrayRef> {
    let times = wall_clock(&args[0], &session_zone(config)?)?;
    let values: Int32Array = times.iter().map(|t| t.as_ref().map(FIELDS[F].1)).collect();
    Ok(Arc::new(values))
}

/// The session time zone (`[engine] time_zone`, default UTC).
pub(super) fn session_zone(config: &ConfigOptions) -> Result<Tz> {
    let name = config.execution.time_zone.as_deref().unwrap_or("+00:00");
    name.parse()
        .map_err(|e| exec_datafusion_err!("session time zone `{name}`: {e}"))
}

/// Each value of `array` (a date, a timestamp, or text Spark would read as one) as a
/// wall-clock time in the session zone; text that is not a date or time is NULL.
fn wall_clock(array: &ArrayRef, zone: &Tz) -> Result<Vec<Option<NaiveDateTime>>> {
    Ok(match array.data_type() {
        DataType::Date32 | DataType::Date64 => {
            let dates = datafusion::arrow::compute::cast(array, &DataType::Date32)?;
            dates
                .as_primitive::<datafusion::arrow::datatypes::Date32Type>()
                .iter()
                .map(|d| {
                    d.and_then(date_from_days)
                        .map(|d| d.and_time(Default::default()))
                })
                .collect()
        }
        DataType::Timestamp(_, zoned) => {
            let micros = datafusion::arrow::compute::cast(
                array,
                &DataType::Timestamp(TimeUnit::Microsecond, None),
            )?;
            let micros = micros.as_primitive::<TimestampMicrosecondType>();
            micros
                .iter()
                .map(|v| {
                    let utc = DateTime::from_timestamp_micros(v?)?;
                    Some(match zoned {
                        Some(_) => utc.with_timezone(zone).naive_local(),
                        None => utc.naive_utc(),
                    })
                })
                .collect()
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null => {
            let text = datafusion::arrow::compute::cast(array, &DataType::Utf8)?;
            text.as_string::<i32>()
                .iter()
                .map(|v| v.and_then(parse_default))
                .collect()
        }
        other => return exec_err!("expected a date, a timestamp or a string, not {other}"),
    })
}

fn date_from_days(days: i32) -> Option<NaiveDate> {
    NaiveDate::from_ymd_opt(1970, 1, 1)?.checked_add_signed(chrono::Duration::days(days.into()))
}

/// Text as Spark casts it to a timestamp: `yyyy-MM-dd`, optionally followed by a time
/// (`HH:mm[:ss[.fraction]]`, after a space or a `T`).
fn parse_default(text: &str) -> Option<NaiveDateTime> {
    let text = text.trim();
    let (date, time) = match text.find([' ', 'T']) {
        Some(i) => (&text[..i], Some(text[i + 1..].trim())),
        None => (text, None),
    };
    let date = NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
    let time = match time {
        None | Some("") => Default::default(),
        Some(t) => ["%H:%M:%S%.f", "%H:%M"]
            .iter()
            .find_map(|f| chrono::NaiveTime::parse_from_str(t, f).ok())?,
    };
    Some(date.and_time(time))
}

/// A Java `DateTimeFormatter` pattern as chrono's format items.
pub(super) fn java_pattern(pattern: &str) -> Result<Vec<Item<'static>>> {
    let mut out = String::new();
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            // 'text' is literal text; '' is a quote.
            let end = chars[i + 1..].iter().position(|&q| q == '\'');
            match end {
                Some(0) => out.push('\''),
                Some(n) => out.extend(chars[i + 1..i + 1 + n].iter()),
                None => return exec_err!("unclosed quote in date pattern `{pattern}`"),
            }
            i += end.unwrap_or(0) + 2;
            continue;
        }
        let run = chars[i..].iter().take_while(|&&x| x == c).count();
        i += run;
        if !c.is_ascii_alphabetic() {
            for _ in 0..run {
                match c {
                    '%' => out.push_str("%%"),
                    c => out.push(c),
                }
            }
            continue;
        }
        let item = match (c, run) {
            ('y', 2) => "%y",
            ('y', _) => "%Y",
            ('M' | 'L', 1) => "%-m",
            ('M' | 'L', 2) => "%m",
            ('M' | 'L', 3) => "%b",
            ('M' | 'L', _) => "%B",
            ('d', 1) => "%-d",
            ('d', _) => "%d",
            ('D', 1) => "%-j",
            ('D', _) => "%j",
            ('H', 1) => "%-H",
            ('H', _) => "%H",
            ('h', 1) => "%-I",
            ('h', _) => "%I",
            ('m', 1) => "%-M",
            ('m', _) => "%M",
            ('s', 1) => "%-S",
            ('s', _) => "%S",
            ('S', 1..=3) => "%3f",
            ('S', 4..=6) => "%6f",
            ('S', _) => "%9f",
            ('a', _) => "%p",
            ('E', 1..=3) => "%a",
            ('E', _) => "%A",
            ('Z', _) | ('x', _) => "%z",
            ('X', _) => "%:z",
            ('z', _) => "%Z",
            _ => {
                return exec_err!(
                    "date pattern `{pattern}`: the letter `{c}` is not supported; use y, M, d, D, H, h, m, s, S, a, E, z, Z or X, and quote literal text ('T')"
                )
            }
        };
        out.push_str(item);
    }
    StrftimeItems::new(&out)
        .parse_to_owned()
        .map_err(|e| exec_datafusion_err!("date pattern `{pattern}`: {e}"))
}

/// The wall-clock time `text` holds in `items`' format; the zone it names, if any,
/// converted to the session's.
pub(super) fn parse_with(text: &str, items: &[Item<'_>], zone: &Tz) -> Option<NaiveDateTime> {
    let mut p = Parsed::new();
    chrono::format::parse(&mut p, text, items.iter()).ok()?;
    if p.year().is_none() && p.year_mod_100().is_none() {
        p.set_year(1970).ok()?;
    }
    if p.ordinal().is_none() {
        if p.month().is_none() {
            p.set_month(1).ok()?;
        }
        if p.day().is_none() {
            p.set_day(1).ok()?;
        }
    }
    if p.hour_div_12().is_none() && p.hour_mod_12().is_none() {
        p.set_hour(0).ok()?;
    }
    if p.minute().is_none() {
        p.set_minute(0).ok()?;
    }
    if p.second().is_none() {
        p.set_second(0).ok()?;
    }
    let naive = p.to_naive_date().ok()?.and_time(p.to_naive_time().ok()?);
    match p.offset() {
        Some(offset) => {
            let utc = naive - chrono::Duration::seconds(offset.into());
            Some(zone.from_utc_datetime(&utc).naive_local())
        }
        None => Some(naive),
    }
}

/// Each row's wall-clock time: argument 0 read with the pattern of argument 1 when
/// given (for text), else as Spark reads dates and timestamps.
fn read_times(
    args: &[ArrayRef],
    config: &ConfigOptions,
    name: &str,
) -> Result<Vec<Option<NaiveDateTime>>> {
    let zone = session_zone(config)?;
    let is_text = matches!(
        args[0].data_type(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    );
    match (is_text, args.len() > 1) {
        (true, true) => {
            let Some(pattern) = constant_string(args, 1, name)? else {
                return Ok(vec![None; args[0].len()]);
            };
            let items = java_pattern(&pattern)?;
            let text = arg(args, 0, &DataType::Utf8)?;
            Ok(text
                .as_string::<i32>()
                .iter()
                .map(|v| v.and_then(|v| parse_with(v, &items, &zone)))
                .collect())
        }
        _ => wall_clock(&args[0], &zone),
    }
}

fn to_date(args: &[ArrayRef], config: &ConfigOptions) -> Result<ArrayRef> {
    let times = read_times(args, config, "to_date")?;
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("the epoch");
    let days: Date32Array = times
        .iter()
        .map(|t| t.map(|t| (t.date() - epoch).num_days() as i32))
        .collect();
    Ok(Arc::new(days))
}

fn to_timestamp(args: &[ArrayRef], config: &ConfigOptions) -> Result<ArrayRef> {
    let times = read_times(args, config, "to_timestamp")?;
    let micros: TimestampMicrosecondArray = times
        .iter()
        .map(|t| t.map(|t| t.and_utc().timestamp_micros()))
        .collect();
    Ok(Arc::new(micros))
}

/// Seconds since the epoch of the instant a wall-clock time is in `zone` (the earlier
/// of two in a repeated hour, the hour after in a skipped one).
fn instant(t: &NaiveDateTime, zone: &Tz) -> Option<i64> {
    let local = zone.from_local_datetime(t).earliest().or_else(|| {
        zone.from_local_datetime(&(*t + chrono::Duration::hours(1)))
            .earliest()
    })?;
    Some(local.timestamp())
}

fn unix_timestamp(args: &[ArrayRef], config: &ConfigOptions) -> Result<ArrayRef> {
    let zone = session_zone(config)?;
    if let DataType::Timestamp(_, Some(_)) = args[0].data_type() {
        let seconds = datafusion::arrow::compute::cast(
            &datafusion::arrow::compute::cast(
                &args[0],
                &DataType::Timestamp(TimeUnit::Second, None),
            )?,
            &DataType::Int64,
        )?;
        return Ok(seconds);
    }
    let mut args = args.to_vec();
    let is_text = matches!(
        args[0].data_type(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    );
    if is_text && args.len() == 1 {
        args.push(Arc::new(StringArray::from(vec![
            DEFAULT_TIMESTAMP;
            args[0].len()
        ])));
    }
    let times = read_times(&args, config, "unix_timestamp")?;
    let seconds: Int64Array = times
        .iter()
        .map(|t| t.as_ref().and_then(|t| instant(t, &zone)))
        .collect();
    Ok(Arc::new(seconds))
}

fn from_unixtime(args: &[ArrayRef], config: &ConfigOptions) -> Result<ArrayRef> {
    let zone = session_zone(config)?;
    let pattern = match args.len() {
        1 => Some(DEFAULT_TIMESTAMP.to_string()),
        _ => constant_string(args, 1, "from_unixtime")?,
    };
    let Some(pattern) = pattern else {
        return Ok(Arc::new(StringArray::new_null(args[0].len())));
    };
    let items = java_pattern(&pattern)?;
    let seconds = arg(args, 0, &DataType::Int64)?;
    let texts = seconds
        .as_primitive::<Int64Type>()
        .iter()
        .map(|s| {
            let Some(utc) = s.and_then(|s| DateTime::from_timestamp(s, 0)) else {
                return Ok(None);
            };
            format_time(&utc.with_timezone(&zone), &items).map(Some)
        })
        .collect::<Result<StringArray>>()?;
    Ok(Arc::new(texts))
}

fn format_time<Z: TimeZone>(t: &DateTime<Z>, items: &[Item<'_>]) -> Result<String>
where
    Z::Offset: std::fmt::Display,
{
    use std::fmt::Write;
    let mut out = String::new();
    write!(out, "{}", t.format_with_items(items.iter()))
        .map_err(|_| exec_datafusion_err!("the date pattern cannot format this value"))?;
    Ok(out)
}

pub(super) fn date_format(args: &[ArrayRef], config: &ConfigOptions) -> Result<ArrayRef> {
    let zone = session_zone(config)?;
    let Some(pattern) = constant_string(args, 1, "date_format")? else {
        return Ok(Arc::new(StringArray::new_null(args[0].len())));
    };
    let items = java_pattern(&pattern)?;
    let times = wall_clock(&args[0], &zone)?;
    let texts = times
        .iter()
        .map(|t| {
            let Some(t) = t else { return Ok(None) };
            match zone.from_local_datetime(t).earliest() {
                Some(local) => format_time(&local, &items).map(Some),
                None => format_time(&t.and_utc(), &items).map(Some),
            }
        })
        .collect::<Result<StringArray>>()?;
    Ok(Arc::new(texts))
}

/// Spark's `months_between(later, earlier[, round])`: whole months when both days are
/// the same day of the month or both the last, else a fraction of 31-day months, rounded
/// to 8 digits unless `round` is false.
fn months_between(args: &[ArrayRef], config: &ConfigOptions) -> Result<ArrayRef> {
    let zone = session_zone(config)?;
    let (a, b) = (wall_clock(&args[0], &zone)?, wall_clock(&args[1], &zone)?);
    let round = arg_as(args, 2, &DataType::Boolean)?;
    let round = round.as_ref().map(|r| r.as_boolean().clone());
    let out: Float64Array = (0..a.len())
        .map(|i| {
            let (x, y) = (a[i]?, b[i]?);
            let months =
                f64::from((x.year() - y.year()) * 12 + x.month() as i32 - y.month() as i32);
            let last = |t: &NaiveDateTime| t.date().succ_opt().is_some_and(|n| n.day() == 1);
            if x.day() == y.day() || (last(&x) && last(&y)) {
                return Some(months);
            }
            let seconds =
                |t: &NaiveDateTime| f64::from(t.day() * 86_400 + t.num_seconds_from_midnight());
            let value = months + (seconds(&x) - seconds(&y)) / (31.0 * 86_400.0);
            let round = round
                .as_ref()
                .map_or(Some(true), |r| (!r.is_null(i)).then(|| r.value(i)))?;
            Some(if round {
                (value * 1e8).round() / 1e8
            } else {
                value
            })
        })
        .collect();
    Ok(Arc::new(out))
}

/// The day of the week's short English name (`Wed`).
fn dayname(args: &[ArrayRef], config: &ConfigOptions) -> Result<ArrayRef> {
    let times = wall_clock(&args[0], &session_zone(config)?)?;
    let names: StringArray = times
        .iter()
        .map(|t| t.map(|t| t.format("%a").to_string()))
        .collect();
    Ok(Arc::new(names))
}

/// `timestamp_seconds`/`_millis`/`_micros`: the instant that many units (`MICROS`
/// microseconds each) after the epoch, as a wall-clock time in the session zone.
fn from_epoch<const MICROS: i64>(args: &[ArrayRef], config: &ConfigOptions) -> Result<ArrayRef> {
    let zone = session_zone(config)?;
    let counts = arg(args, 0, &DataType::Int64)?;
    let out: TimestampMicrosecondArray = counts
        .as_primitive::<Int64Type>()
        .iter()
        .map(|n| {
            let utc = DateTime::from_timestamp_micros(n?.checked_mul(MICROS)?)?;
            Some(
                utc.with_timezone(&zone)
                    .naive_local()
                    .and_utc()
                    .timestamp_micros(),
            )
        })
        .collect();
    Ok(Arc::new(out))
}

/// `make_timestamp(year, month, day, hour, minute, second[, zone])`: seconds may have
/// a fraction, and 60 is the next minute; a zone reads the fields in it. Fields that
/// are not a time give NULL.
fn make_timestamp(args: &[ArrayRef], config: &ConfigOptions) -> Result<ArrayRef> {
    let session = session_zone(config)?;
    let ints: Vec<Vec<Option<i64>>> = (0..5)
        .map(|i| {
            let a = arg(args, i, &DataType::Int64)?;
            Ok(a.as_primitive::<Int64Type>().iter().collect())
        })
        .collect::<Result<_>>()?;
    let seconds = arg(args, 5, &DataType::Float64)?;
    let seconds = seconds.as_primitive::<datafusion::arrow::datatypes::Float64Type>();
    let zones = arg_as(args, 6, &DataType::Utf8)?;
    let out: TimestampMicrosecondArray = (0..seconds.len())
        .map(|row| {
            let field = |i: usize| ints[i][row].and_then(|v| u32::try_from(v).ok());
            let year = i32::try_from(ints[0][row]?).ok()?;
            let date = NaiveDate::from_ymd_opt(year, field(1)?, field(2)?)?;
            let second = (!seconds.is_null(row)).then(|| seconds.value(row))?;
            if !(0.0..=60.0).contains(&second) {
                return None;
            }
            let micros = (second * 1e6).round() as i64;
            let time = chrono::NaiveTime::from_hms_opt(field(3)?, field(4)?, 0)?;
            let local = date.and_time(time) + chrono::Duration::microseconds(micros);
            let local = match &zones {
                Some(z) if !z.is_null(row) => {
                    let zone: Tz = z.as_string::<i32>().value(row).parse().ok()?;
                    let instant = zone.from_local_datetime(&local).earliest()?;
                    instant.with_timezone(&session).naive_local()
                }
                _ => local,
            };
            Some(local.and_utc().timestamp_micros())
        })
        .collect();
    Ok(Arc::new(out))
}

/// `convert_timezone([from,] to, t)`: the wall-clock time `t` in zone `from` (default
/// the session's), as a wall-clock time in zone `to`.
fn convert_timezone(args: &[ArrayRef], config: &ConfigOptions) -> Result<ArrayRef> {
    let session = session_zone(config)?;
    let (from, to, t) = match args.len() {
        2 => (None, &args[0], &args[1]),
        _ => (Some(&args[0]), &args[1], &args[2]),
    };
    let zones = |a: &ArrayRef| -> Result<Vec<Option<Tz>>> {
        let names = datafusion::arrow::compute::cast(a, &DataType::Utf8)?;
        names
            .as_string::<i32>()
            .iter()
            .map(|n| {
                n.map(|n| {
                    n.parse::<Tz>()
                        .map_err(|e| exec_datafusion_err!("convert_timezone: `{n}`: {e}"))
                })
                .transpose()
            })
            .collect()
    };
    let to = zones(to)?;
    let from = match from {
        Some(f) => zones(f)?,
        None => vec![Some(session); to.len()],
    };
    let times = wall_clock(t, &session)?;
    let out: TimestampMicrosecondArray = (0..times.len())
        .map(|i| {
            let (t, from, to) = (times[i]?, from[i]?, to[i]?);
            let instant = from.from_local_datetime(&t).earliest()?;
            Some(
                instant
                    .with_timezone(&to)
                    .naive_local()
                    .and_utc()
                    .timestamp_micros(),
            )
        })
        .collect();
    Ok(Arc::new(out))
}

/// `timestampdiff(unit, a, b)`: whole `unit`s from `a` to `b` (negative when `b` is
/// earlier), for MICROSECOND up to WEEK by elapsed time and MONTH, QUARTER, YEAR by the
/// calendar.
fn timestampdiff(args: &[ArrayRef], config: &ConfigOptions) -> Result<ArrayRef> {
    let zone = session_zone(config)?;
    let Some(unit) = constant_string(args, 0, "timestampdiff")? else {
        return Ok(Arc::new(Int64Array::new_null(args[0].len())));
    };
    let micros_per = match unit.to_ascii_uppercase().as_str() {
        "MICROSECOND" => Some(1),
        "MILLISECOND" => Some(1_000),
        "SECOND" => Some(1_000_000),
        "MINUTE" => Some(60_000_000),
        "HOUR" => Some(3_600_000_000),
        "DAY" => Some(86_400_000_000),
        "WEEK" => Some(7 * 86_400_000_000),
        "MONTH" | "QUARTER" | "YEAR" => None,
        other => return exec_err!("timestampdiff: `{other}` is not a unit; use YEAR, QUARTER, MONTH, WEEK, DAY, HOUR, MINUTE, SECOND, MILLISECOND or MICROSECOND"),
    };
    let months_per = match unit.to_ascii_uppercase().as_str() {
        "QUARTER" => 3,
        "YEAR" => 12,
        _ => 1,
    };
    let (a, b) = (wall_clock(&args[1], &zone)?, wall_clock(&args[2], &zone)?);
    let out: Int64Array = a
        .iter()
        .zip(&b)
        .map(|(a, b)| {
            let (a, b) = ((*a)?, (*b)?);
            let micros = (b - a).num_microseconds()?;
            if let Some(per) = micros_per {
                return Some(micros / per);
            }
            let mut months =
                i64::from((b.year() - a.year()) * 12 + b.month() as i32 - a.month() as i32);
            // A month not yet complete does not count.
            let rest = |t: &NaiveDateTime| (t.day(), t.time());
            if months > 0 && rest(&b) < rest(&a) {
                months -= 1;
            } else if months < 0 && rest(&b) > rest(&a) {
                months += 1;
            }
            Some(months / months_per)
        })
        .collect();
    Ok(Arc::new(out))
}

/// `to_time(text[, pattern])`: a time of day, read with a Java pattern (default
/// `HH:mm:ss` with an optional fraction); text that is not one is an error, as in Spark.
fn to_time(args: &[ArrayRef], _: &ConfigOptions) -> Result<ArrayRef> {
    let items = match args.len() {
        1 => None,
        _ => constant_string(args, 1, "to_time")?
            .map(|p| java_pattern(&p))
            .transpose()?,
    };
    let text = arg(args, 0, &DataType::Utf8)?;
    let out = text
        .as_string::<i32>()
        .iter()
        .map(|t| {
            let Some(t) = t else { return Ok(None) };
            let time = match &items {
                Some(items) => {
                    let mut p = Parsed::new();
                    chrono::format::parse(&mut p, t, items.iter())
                        .ok()
                        .and_then(|_| {
                            if p.minute().is_none() {
                                p.set_minute(0).ok()?;
                            }
                            if p.second().is_none() {
                                p.set_second(0).ok()?;
                            }
                            p.to_naive_time().ok()
                        })
                }
                None => chrono::NaiveTime::parse_from_str(t, "%H:%M:%S%.f").ok(),
            };
            match time {
                Some(time) => {
                    let micros = i64::from(time.num_seconds_from_midnight()) * 1_000_000
                        + i64::from(time.nanosecond() / 1_000);
                    Ok(Some(micros))
                }
                None => exec_err!("to_time: `{t}` is not a time in the pattern given"),
            }
        })
        .collect::<Result<datafusion::arrow::array::Time64MicrosecondArray>>()?;
    Ok(Arc::new(out))
}
