//! Spark's own documented function examples (tests/fixtures/spark/examples.jsonl, and
//! targets.jsonl for the target functions that file lacks), each
//! run as `quern query --dialect spark` runs it, in the `America/Los_Angeles` session
//! time zone Spark computed them in, and compared with the documented output: values
//! printed as Spark prints them, rows in any order, floats within 1e-9.
//!
//! Every example must match, but for the functions listed below: [`UNSUPPORTED`] (what
//! quern will not do, with the reason) and [`NOT_YET`] (what it does not do yet). The
//! lists cannot go stale: a listed function whose examples all match fails the test.
//! Non-deterministic examples must run; their output is not compared. The per-group
//! counts are printed (`cargo test spark_examples -- --nocapture`).

use std::collections::BTreeMap;
use std::sync::Arc;

use quern::datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use quern::datafusion::arrow::compute::cast;
use quern::datafusion::arrow::datatypes::{
    DataType, DurationMicrosecondType, Float32Type, Float64Type, IntervalMonthDayNanoType,
    IntervalUnit, IntervalYearMonthType, TimeUnit,
};
use quern::datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use quern::{Dialect, Engine};

use crate::common::{repo_root, TempProject};

/// Functions quern does not provide in its `spark` dialect, and why.
const UNSUPPORTED: &[(&str, &str)] = &[
    (
        "collate",
        "Spark's collations (UTF8_LCASE, ICU locales) are not DataFusion's string model",
    ),
    (
        "collations",
        "Spark's collations (UTF8_LCASE, ICU locales) are not DataFusion's string model",
    ),
    (
        "current_catalog",
        "Spark's catalog name (spark_catalog) has no meaning in quern",
    ),
    ("distributed_id", "an id from Spark's partitioned execution"),
    (
        "from_protobuf",
        "Protobuf descriptors are a Spark connector's, not SQL",
    ),
    ("from_xml", "XML is not read by quern"),
    (
        "hll_union_agg",
        "its sketches are Apache DataSketches binaries, which quern does not read or write",
    ),
    (
        "input_file_block_length",
        "HDFS block metadata of a Spark scan",
    ),
    ("java_method", "calls Java methods by reflection"),
    (
        "parse_json",
        "Spark's VARIANT type has no Arrow or Delta counterpart quern writes",
    ),
    ("reflect", "calls Java methods by reflection"),
    (
        "schema_of_variant_agg",
        "Spark's VARIANT type has no Arrow or Delta counterpart quern writes",
    ),
    ("to_avro", "Avro encoding is a Spark connector's, not SQL"),
    (
        "to_protobuf",
        "Protobuf descriptors are a Spark connector's, not SQL",
    ),
    (
        "to_variant_object",
        "Spark's VARIANT type has no Arrow or Delta counterpart quern writes",
    ),
    (
        "variant_explode_outer",
        "Spark's VARIANT type has no Arrow or Delta counterpart quern writes",
    ),
    (
        "variant_get",
        "Spark's VARIANT type has no Arrow or Delta counterpart quern writes",
    ),
    ("xpath_double", "XML is not read by quern"),
    ("xpath_int", "XML is not read by quern"),
    ("xpath_number", "XML is not read by quern"),
];

/// Functions with at least one example that does not match yet (issue 13's open work).
const NOT_YET: &[&str] = &[
    "aes_decrypt",
    "aggregate",
    "array_sort",
    "arrays_zip",
    "current_timezone",
    "date_part",
    "datepart",
    "div",
    "extract",
    "filter",
    "ilike",
    "map_filter",
    "map_zip_with",
    "monotonically_increasing_id",
    "percentile_cont",
    "randn",
    "randstr",
    "reduce",
    "schema_of_csv",
    "sequence",
    "shiftright",
    "shiftrightunsigned",
    "sign",
    "signum",
    "stack",
    "sum",
    "transform_keys",
    "transform_values",
    "try_add",
    "try_divide",
    "uniform",
    "window",
    "window_time",
    "zip_with",
];

/// The functions issue 13 names as the ones ETL jobs use most.
const TARGETS: &[&str] = &[
    "date_add",
    "date_sub",
    "datediff",
    "date_format",
    "to_date",
    "to_timestamp",
    "unix_timestamp",
    "from_unixtime",
    "months_between",
    "add_months",
    "trunc",
    "date_trunc",
    "last_day",
    "weekofyear",
    "dayofweek",
    "explode",
    "posexplode",
    "collect_list",
    "collect_set",
    "concat_ws",
    "regexp_extract",
    "regexp_replace",
    "split",
    "nvl",
    "nvl2",
    "coalesce",
    "percentile_approx",
    "approx_count_distinct",
    "first",
    "last",
    "size",
    "array_contains",
    "element_at",
    "get_json_object",
    "from_json",
    "to_json",
    "struct",
    "named_struct",
    "map",
    "substring_index",
    "lpad",
    "rpad",
    "trim",
    "sha2",
    "md5",
    "crc32",
    "hash",
    "xxhash64",
    "round",
    "bround",
    "floor",
    "ceil",
];

/// The session time zone Spark's documented outputs were computed in.
const TIME_ZONE: &str = "America/Los_Angeles";

#[derive(serde::Deserialize)]
struct Example {
    function: String,
    group: String,
    sql: String,
    expected: String,
    deterministic: bool,
}

#[derive(Default)]
struct Counts {
    examples: usize,
    comparable: usize,
    ran: usize,
    matched: usize,
}

enum Outcome {
    Matched,
    /// Ran, output not compared (a non-deterministic example).
    Ran,
    Differs(String),
    Failed(String),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spark_examples() {
    let project = TempProject::new();
    project.write(
        "environments/spark_examples.toml",
        &format!(
            "[warehouse]\nroot = \"warehouse\"\n\n[engine]\ntarget_partitions = 1\ntime_zone = \"{TIME_ZONE}\"\n"
        ),
    );
    let engine = project.engine("spark_examples");
    let mut examples: Vec<(&str, Example)> = Vec::new();
    for file in ["examples.jsonl", "targets.jsonl"] {
        let path = repo_root().join("tests/fixtures/spark").join(file);
        let text = std::fs::read_to_string(&path).expect("examples");
        examples.extend(text.lines().map(|l| {
            (
                file,
                serde_json::from_str::<Example>(l).expect("an example"),
            )
        }));
    }
    // Per file: comparable examples and how many of them match.
    let mut files: BTreeMap<&str, (usize, usize)> = BTreeMap::new();

    let mut groups: BTreeMap<String, Counts> = BTreeMap::new();
    // Per function: whether every example of it matched (or ran, if not comparable).
    let mut all_good: BTreeMap<&str, bool> = BTreeMap::new();
    let mut unexpected = Vec::new();
    for (file, e) in &examples {
        let outcome = run(&engine, e).await;
        let tally = files.entry(file).or_default();
        tally.0 += usize::from(e.deterministic);
        tally.1 += usize::from(matches!(outcome, Outcome::Matched));
        let counts = groups.entry(e.group.clone()).or_default();
        counts.examples += 1;
        counts.comparable += usize::from(e.deterministic);
        let good = match &outcome {
            Outcome::Matched => {
                counts.ran += 1;
                counts.matched += 1;
                true
            }
            Outcome::Ran => {
                counts.ran += 1;
                true
            }
            Outcome::Differs(got) => {
                counts.ran += 1;
                if !listed(&e.function) {
                    unexpected.push(format!(
                        "{}: {}\n  expected: {:?}\n  got:      {got:?}",
                        e.function, e.sql, e.expected
                    ));
                }
                false
            }
            Outcome::Failed(error) => {
                if !listed(&e.function) {
                    unexpected.push(format!("{}: {}\n  error: {error}", e.function, e.sql));
                }
                false
            }
        };
        if !good {
            // Shown with `--nocapture`: what is left to do.
            println!(
                "{}: {}\n  expected: {:?}\n  {}",
                e.function,
                e.sql,
                e.expected,
                describe(&outcome)
            );
        }
        *all_good.entry(&e.function).or_insert(true) &= good;
    }
    print_counts(&groups);
    for (file, (comparable, matched)) in &files {
        let share = percent(*matched, *comparable);
        println!("{file}: {matched} of {comparable} comparable examples match ({share:.1}%)");
    }
    let targets: Vec<String> = TARGETS
        .iter()
        .map(|f| match all_good.get(f) {
            Some(true) => format!("{f} ok"),
            Some(false) => format!("{f} NOT YET"),
            None => format!("{f} (no example)"),
        })
        .collect();
    println!("targets: {}", targets.join(", "));
    let stale: Vec<&str> = all_good
        .iter()
        .filter(|(f, good)| **good && listed(f))
        .map(|(f, _)| *f)
        .collect();
    assert!(
        unexpected.is_empty(),
        "{} examples of functions that are not listed as unsupported or not yet done do not match:\n{}",
        unexpected.len(),
        unexpected.join("\n")
    );
    assert!(
        stale.is_empty(),
        "every example of these listed functions matches; take them off the list: {stale:?}"
    );
}

fn describe(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Differs(got) => format!("got:      {got:?}"),
        Outcome::Failed(error) => format!("error:    {error}"),
        Outcome::Matched | Outcome::Ran => String::new(),
    }
}

fn listed(function: &str) -> bool {
    UNSUPPORTED.iter().any(|(f, _)| *f == function) || NOT_YET.contains(&function)
}

async fn run(engine: &Engine, e: &Example) -> Outcome {
    let batches = match engine.query_in(&e.sql, Dialect::Spark).await {
        Ok(df) => df.collect().await,
        Err(err) => return Outcome::Failed(err.full_message()),
    };
    let batches = match batches {
        Ok(b) => b,
        Err(err) => return Outcome::Failed(err.to_string()),
    };
    let got = match spark_rows(&batches) {
        Ok(rows) => rows,
        Err(err) => return Outcome::Failed(err),
    };
    if !e.deterministic {
        return Outcome::Ran;
    }
    let mut expected: Vec<String> = e.expected.lines().map(str::to_string).collect();
    // An empty output is one empty value (or no rows).
    if expected.is_empty() && got.len() == 1 {
        expected.push(String::new());
    }
    if same_rows(&got, &expected) {
        Outcome::Matched
    } else {
        Outcome::Differs(got.join("\n"))
    }
}

fn print_counts(groups: &BTreeMap<String, Counts>) {
    let mut total = Counts::default();
    println!(
        "{:<20} {:>8} {:>10} {:>5} {:>7} {:>6}",
        "group", "examples", "comparable", "ran", "matched", "%"
    );
    for (group, c) in groups {
        println!(
            "{group:<20} {:>8} {:>10} {:>5} {:>7} {:>5.0}%",
            c.examples,
            c.comparable,
            c.ran,
            c.matched,
            percent(c.matched, c.comparable)
        );
        total.examples += c.examples;
        total.comparable += c.comparable;
        total.ran += c.ran;
        total.matched += c.matched;
    }
    println!(
        "{:<20} {:>8} {:>10} {:>5} {:>7} {:>5.0}%",
        "all",
        total.examples,
        total.comparable,
        total.ran,
        total.matched,
        percent(total.matched, total.comparable)
    );
}

fn percent(part: usize, whole: usize) -> f64 {
    100.0 * part as f64 / whole.max(1) as f64
}

/// The rows as Spark's `spark-sql` shell prints them: columns joined by tabs.
fn spark_rows(batches: &[RecordBatch]) -> Result<Vec<String>, String> {
    let mut rows = Vec::new();
    for batch in batches {
        let columns: Vec<ArrayRef> = batch
            .columns()
            .iter()
            .map(|c| local_times(c).map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?;
        for row in 0..batch.num_rows() {
            let cells: Vec<String> = columns
                .iter()
                .map(|c| spark_text(c, row, false))
                .collect::<Result<_, _>>()?;
            rows.push(cells.join("\t"));
        }
    }
    Ok(rows)
}

/// `array` with timestamps that have a time zone shown in the session's (the instant is
/// the same; only the zone it is shown in changes).
fn local_times(array: &ArrayRef) -> Result<ArrayRef, quern::datafusion::arrow::error::ArrowError> {
    match array.data_type() {
        DataType::Timestamp(unit, Some(_)) => cast(
            array,
            &DataType::Timestamp(*unit, Some(Arc::from(TIME_ZONE))),
        ),
        _ => Ok(array.clone()),
    }
}

/// One value as Spark prints it: strings bare at the top level and quoted inside
/// arrays, maps and structs; NULL as `NULL` at the top and `null` inside; doubles as
/// Java prints them (`1.0`, `1.0E10`).
fn spark_text(array: &ArrayRef, row: usize, nested: bool) -> Result<String, String> {
    if array.is_null(row) {
        return Ok(if nested { "null" } else { "NULL" }.to_string());
    }
    Ok(match array.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let text = display(array, row)?;
            if nested {
                format!("\"{text}\"")
            } else {
                text
            }
        }
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => {
            let bytes = cast(array, &DataType::LargeBinary).map_err(|e| e.to_string())?;
            String::from_utf8_lossy(bytes.as_binary::<i64>().value(row)).into_owned()
        }
        DataType::Float64 => java_double(array.as_primitive::<Float64Type>().value(row)),
        DataType::Float32 => java_float(array.as_primitive::<Float32Type>().value(row)),
        DataType::Timestamp(_, _) => {
            let text = display(array, row)?;
            spark_timestamp(&text)
        }
        DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(_, _) => {
            let values = match array.data_type() {
                DataType::List(_) => array.as_list::<i32>().value(row),
                DataType::LargeList(_) => array.as_list::<i64>().value(row),
                _ => array.as_fixed_size_list().value(row),
            };
            let items: Vec<String> = (0..values.len())
                .map(|i| spark_text(&values, i, true))
                .collect::<Result<_, _>>()?;
            format!("[{}]", items.join(","))
        }
        DataType::Struct(fields) => {
            let s = array.as_struct();
            let items: Vec<String> = fields
                .iter()
                .zip(s.columns())
                .map(|(f, c)| Ok(format!("\"{}\":{}", f.name(), spark_text(c, row, true)?)))
                .collect::<Result<_, String>>()?;
            format!("{{{}}}", items.join(","))
        }
        DataType::Map(_, _) => {
            let entries = array.as_map().value(row);
            let (keys, values) = (entries.column(0), entries.column(1));
            let items: Vec<String> = (0..entries.len())
                .map(|i| {
                    Ok(format!(
                        "{}:{}",
                        spark_text(keys, i, true)?,
                        spark_text(values, i, true)?
                    ))
                })
                .collect::<Result<_, String>>()?;
            format!("{{{}}}", items.join(","))
        }
        // Spark's calendar interval text: `1 years 2 months 3 days 4 hours 5.5 seconds`.
        DataType::Interval(IntervalUnit::MonthDayNano) => {
            let v = array.as_primitive::<IntervalMonthDayNanoType>().value(row);
            let (years, months) = (v.months / 12, v.months % 12);
            let nanos = v.nanoseconds;
            let (hours, minutes) = (nanos / 3_600_000_000_000, nanos / 60_000_000_000 % 60);
            let seconds = (nanos % 60_000_000_000) as f64 / 1e9;
            let mut parts = Vec::new();
            for (n, unit) in [(years, "years"), (months, "months"), (v.days, "days")] {
                if n != 0 {
                    parts.push(format!("{n} {unit}"));
                }
            }
            for (n, unit) in [(hours, "hours"), (minutes, "minutes")] {
                if n != 0 {
                    parts.push(format!("{n} {unit}"));
                }
            }
            if seconds != 0.0 || parts.is_empty() {
                parts.push(format!(
                    "{} seconds",
                    format!("{seconds:.9}")
                        .trim_end_matches('0')
                        .trim_end_matches('.')
                ));
            }
            parts.join(" ")
        }
        // Spark's year-month interval text: `1-2`, `-0-11`.
        DataType::Interval(IntervalUnit::YearMonth) => {
            let months = array.as_primitive::<IntervalYearMonthType>().value(row);
            let sign = if months < 0 { "-" } else { "" };
            let months = months.unsigned_abs();
            format!("{sign}{}-{}", months / 12, months % 12)
        }
        // Spark's day-time interval text: days, then hh:mm:ss and nanoseconds.
        DataType::Duration(_) => {
            let micros = cast(array, &DataType::Duration(TimeUnit::Microsecond))
                .map_err(|e| e.to_string())?;
            let v = micros.as_primitive::<DurationMicrosecondType>().value(row);
            let (sign, v) = if v < 0 { ("-", -v) } else { ("", v) };
            let (days, rest) = (v / 86_400_000_000, v % 86_400_000_000);
            let (h, m, s) = (
                rest / 3_600_000_000,
                rest / 60_000_000 % 60,
                rest / 1_000_000 % 60,
            );
            format!(
                "{sign}{days} {h:02}:{m:02}:{s:02}.{:06}000",
                rest % 1_000_000
            )
        }
        DataType::Dictionary(_, value) => {
            let plain = cast(array, value).map_err(|e| e.to_string())?;
            spark_text(&plain, row, nested)?
        }
        _ => display(array, row)?,
    })
}

fn display(array: &ArrayRef, row: usize) -> Result<String, String> {
    let options = FormatOptions::default()
        .with_timestamp_format(Some("%Y-%m-%d %H:%M:%S%.f"))
        .with_timestamp_tz_format(Some("%Y-%m-%d %H:%M:%S%.f"));
    let formatter = ArrayFormatter::try_new(array.as_ref(), &options).map_err(|e| e.to_string())?;
    Ok(formatter.value(row).to_string())
}

/// A timestamp without the trailing zeros of its fraction (`… 00:04:59.999999`, `… 00:05:00`).
fn spark_timestamp(text: &str) -> String {
    match text.split_once('.') {
        Some((whole, fraction)) => {
            let fraction = fraction.trim_end_matches('0');
            if fraction.is_empty() {
                whole.to_string()
            } else {
                format!("{whole}.{fraction}")
            }
        }
        None => text.to_string(),
    }
}

/// A double as Java's `Double.toString` writes it.
fn java_double(x: f64) -> String {
    java_number(
        x.is_nan(),
        x.is_infinite(),
        x.is_sign_negative(),
        x.abs(),
        || (format!("{x}"), format!("{x:e}")),
    )
}

fn java_float(x: f32) -> String {
    java_number(
        x.is_nan(),
        x.is_infinite(),
        x.is_sign_negative(),
        f64::from(x.abs()),
        || (format!("{x}"), format!("{x:e}")),
    )
}

fn java_number(
    nan: bool,
    infinite: bool,
    negative: bool,
    magnitude: f64,
    texts: impl Fn() -> (String, String),
) -> String {
    if nan {
        return "NaN".into();
    }
    if infinite {
        return if negative { "-Infinity" } else { "Infinity" }.into();
    }
    let (plain, scientific) = texts();
    if magnitude == 0.0 || (1e-3..1e7).contains(&magnitude) {
        return if plain.contains('.') {
            plain
        } else {
            format!("{plain}.0")
        };
    }
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let mantissa = if mantissa.contains('.') {
        mantissa.to_string()
    } else {
        format!("{mantissa}.0")
    };
    format!("{mantissa}E{exponent}")
}

/// Whether the rows are the same, in this order or another, with numbers written as
/// floats equal within 1e-9 (relative).
fn same_rows(got: &[String], expected: &[String]) -> bool {
    if got.len() != expected.len() {
        return false;
    }
    if got.iter().zip(expected).all(|(g, e)| same_text(g, e)) {
        return true;
    }
    let (mut g, mut e) = (got.to_vec(), expected.to_vec());
    g.sort();
    e.sort();
    g.iter().zip(&e).all(|(g, e)| same_text(g, e))
}

/// The documented outputs have the spaces at either end of a row trimmed, so both sides
/// are compared trimmed.
fn same_text(got: &str, expected: &str) -> bool {
    let (got, expected) = (got.trim(), expected.trim());
    if got == expected {
        return true;
    }
    let (g, e) = (tokens(got), tokens(expected));
    g.len() == e.len()
        && g.iter().zip(&e).all(|(a, b)| {
            a == b
                || match (float_token(a), float_token(b)) {
                    (Some(x), Some(y)) => (x - y).abs() <= 1e-9 * x.abs().max(y.abs()),
                    _ => false,
                }
        })
}

/// A number written as a float (with a point or an exponent), as its value.
fn float_token(t: &str) -> Option<f64> {
    if !(t.contains('.') || t.contains('E')) {
        return None;
    }
    t.parse().ok()
}

/// `text` cut into numbers (`-1.5E-3`) and runs of anything else.
fn tokens(text: &str) -> Vec<&str> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let (mut start, mut i) = (0, 0);
    while i < bytes.len() {
        let number_start = bytes[i].is_ascii_digit()
            || (bytes[i] == b'-' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit));
        if !number_start {
            i += 1;
            continue;
        }
        if start < i {
            out.push(&text[start..i]);
        }
        let begin = i;
        i += 1;
        while i < bytes.len()
            && (bytes[i].is_ascii_digit()
                || bytes[i] == b'.'
                || bytes[i] == b'E'
                || (bytes[i] == b'-' && bytes[i - 1] == b'E'))
        {
            i += 1;
        }
        out.push(&text[begin..i]);
        start = i;
    }
    if start < bytes.len() {
        out.push(&text[start..]);
    }
    out
}

#[test]
fn java_doubles() {
    assert_eq!(java_double(1.5), "1.5");
    assert_eq!(java_double(100.0), "100.0");
    assert_eq!(java_double(1e7), "1.0E7");
    assert_eq!(java_double(1.5e-5), "1.5E-5");
    assert_eq!(java_double(-0.001), "-0.001");
    assert_eq!(java_double(f64::NAN), "NaN");
    assert!(same_text("[1.0000000000000002,x]", "[1.0,x]"));
    assert!(!same_text("3", "3.0"));
    assert!(same_rows(
        &["b\t2".into(), "a\t1".into()],
        &["a\t1".into(), "b\t2".into()]
    ));
}
