//! Comparing a task's output with the expected rows, and describing the difference:
//! which rows are missing, which are extra, which values differ.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::util::display::array_value_to_string;
use datafusion::common::ScalarValue;

/// Rows as column name → value; a missing column is NULL.
pub(crate) type Row = BTreeMap<String, ScalarValue>;

/// How the comparison is made.
pub(crate) struct Comparison<'a> {
    pub schema: &'a SchemaRef,
    pub columns: &'a BTreeSet<String>,
    pub ordered: bool,
    pub tolerance: f64,
}

impl Comparison<'_> {
    /// `None` when `actual` matches `expected`, else a readable description.
    pub(crate) fn diff(&self, expected: &[Row], actual: &[Row]) -> Option<String> {
        let output: BTreeSet<String> = self
            .schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let missing_cols: Vec<&String> = self.columns.difference(&output).collect();
        let extra_cols: Vec<&String> = output.difference(self.columns).collect();
        if !missing_cols.is_empty() || !extra_cols.is_empty() {
            let mut s = String::new();
            if !missing_cols.is_empty() {
                let _ = writeln!(
                    s,
                    "expected columns not in the output: {}",
                    join(&missing_cols)
                );
            }
            if !extra_cols.is_empty() {
                let _ = writeln!(s, "output columns not expected: {}", join(&extra_cols));
            }
            let _ = write!(
                s,
                "the output's columns: {}",
                join(&output.iter().collect::<Vec<_>>())
            );
            return Some(s);
        }
        // Cast the expected values to the output's types.
        let mut typed = Vec::with_capacity(expected.len());
        for (i, row) in expected.iter().enumerate() {
            let mut out = Row::new();
            for f in self.schema.fields() {
                let value = match row.get(f.name()) {
                    Some(v) if !v.is_null() => v.cast_to(f.data_type()).map_err(|e| {
                        format!(
                            "expected row {}: column `{}`: cannot read {} as {}: {e}",
                            i + 1,
                            f.name(),
                            show(v),
                            f.data_type()
                        )
                    }),
                    _ => ScalarValue::try_from(f.data_type()).map_err(|e| e.to_string()),
                };
                match value {
                    Ok(v) => out.insert(f.name().clone(), v),
                    Err(message) => return Some(message),
                };
            }
            typed.push(out);
        }
        if self.ordered {
            self.diff_ordered(&typed, actual)
        } else {
            self.diff_unordered(typed, actual.to_vec())
        }
    }

    fn diff_ordered(&self, expected: &[Row], actual: &[Row]) -> Option<String> {
        let mut s = String::new();
        for (i, (e, a)) in expected.iter().zip(actual).enumerate() {
            let differing = self.differing(e, a);
            if !differing.is_empty() {
                let _ = writeln!(s, "  row {}: {}", i + 1, differing.join(", "));
            }
        }
        for (i, e) in expected.iter().enumerate().skip(actual.len()) {
            let _ = writeln!(s, "- row {} missing: {}", i + 1, show_row(e));
        }
        for (i, a) in actual.iter().enumerate().skip(expected.len()) {
            let _ = writeln!(s, "+ row {} extra: {}", i + 1, show_row(a));
        }
        (!s.is_empty()).then(|| format!("rows differ (in order):\n{}", s.trim_end()))
    }

    fn diff_unordered(&self, expected: Vec<Row>, mut actual: Vec<Row>) -> Option<String> {
        let mut missing = Vec::new();
        for e in expected {
            match actual.iter().position(|a| self.differing(&e, a).is_empty()) {
                Some(i) => {
                    actual.swap_remove(i);
                }
                None => missing.push(e),
            }
        }
        if missing.is_empty() && actual.is_empty() {
            return None;
        }
        // Pair a missing row with the extra row sharing most of its values, to show
        // which values differ rather than two unrelated lists.
        let mut s = String::new();
        let mut unpaired = Vec::new();
        for e in missing {
            let best = actual
                .iter()
                .enumerate()
                .map(|(i, a)| (i, self.schema.fields().len() - self.differing(&e, a).len()))
                .filter(|(_, same)| *same * 2 >= self.schema.fields().len() && *same > 0)
                .max_by_key(|(_, same)| *same);
            match best {
                Some((i, _)) => {
                    let a = actual.swap_remove(i);
                    let _ = writeln!(
                        s,
                        "~ {}\n    {}",
                        show_row(&e),
                        self.differing(&e, &a).join(", ")
                    );
                }
                None => unpaired.push(e),
            }
        }
        for e in &unpaired {
            let _ = writeln!(s, "- missing: {}", show_row(e));
        }
        for a in &actual {
            let _ = writeln!(s, "+ extra:   {}", show_row(a));
        }
        Some(format!("rows differ (- expected but not produced, + produced but not expected, ~ values differ):\n{}", s.trim_end()))
    }

    /// The columns where `expected` and `actual` differ, as "col: expected X, got Y".
    fn differing(&self, expected: &Row, actual: &Row) -> Vec<String> {
        let mut out = Vec::new();
        for f in self.schema.fields() {
            let (e, a) = (&expected[f.name()], &actual[f.name()]);
            if !self.equal(f.data_type(), e, a) {
                out.push(format!(
                    "{}: expected {}, got {}",
                    f.name(),
                    show(e),
                    show(a)
                ));
            }
        }
        out
    }

    fn equal(&self, data_type: &DataType, e: &ScalarValue, a: &ScalarValue) -> bool {
        if e.is_null() || a.is_null() {
            return e.is_null() && a.is_null();
        }
        let numeric = matches!(
            data_type,
            DataType::Float16
                | DataType::Float32
                | DataType::Float64
                | DataType::Decimal128(..)
                | DataType::Decimal256(..)
        );
        if numeric {
            if let (Ok(ScalarValue::Float64(Some(x))), Ok(ScalarValue::Float64(Some(y)))) =
                (e.cast_to(&DataType::Float64), a.cast_to(&DataType::Float64))
            {
                if x.is_nan() || y.is_nan() {
                    return x.is_nan() && y.is_nan();
                }
                return (x - y).abs() <= self.tolerance * x.abs().max(1.0);
            }
        }
        e == a
    }
}

fn join(items: &[&String]) -> String {
    items
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn show(v: &ScalarValue) -> String {
    if v.is_null() {
        return "NULL".into();
    }
    match v {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => {
            format!("{s:?}")
        }
        // Arrow's formatting shows dates and timestamps as text, not as numbers.
        other => other
            .to_array()
            .ok()
            .and_then(|a| array_value_to_string(&a, 0).ok())
            .unwrap_or_else(|| other.to_string()),
    }
}

fn show_row(row: &Row) -> String {
    let cells: Vec<String> = row
        .iter()
        .map(|(k, v)| format!("{k}: {}", show(v)))
        .collect();
    format!("{{{}}}", cells.join(", "))
}
