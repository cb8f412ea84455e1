//! Spark's ANSI interval literals. A year-month one (`INTERVAL '1' MONTH`,
//! `INTERVAL '1-2' YEAR TO MONTH`, `interval 1 year`) is Spark's YEAR-MONTH INTERVAL
//! type, printed `1-2`: it becomes `make_ym_interval(0, months)`, an Arrow
//! `Interval(YearMonth)`. A day-time range (`INTERVAL '1 02:03:04.5' DAY TO SECOND`),
//! which DataFusion does not read, becomes the interval of its days, hours, minutes and
//! seconds. Single day-time units are DataFusion's intervals as they are.

use datafusion::sql::sqlparser::ast::{self, DateTimeField, Expr, UnaryOperator, Value};

use super::parse_expr;

/// `interval` as the expression Spark means by it, when it is one DataFusion types or
/// reads otherwise.
pub(super) fn ansi(interval: &ast::Interval) -> Option<Expr> {
    let (negative, text) = literal(&interval.value)?;
    let leading = interval.leading_field.as_ref()?;
    let sql = match (unit(leading)?, interval.last_field.as_ref().map(unit)) {
        (Unit::Year, None) => {
            let (negative, years) = signed(negative, text.trim());
            ym_sql(negative, years, "0")?
        }
        (Unit::Month, None) => {
            let (negative, months) = signed(negative, text.trim());
            ym_sql(negative, "0", months)?
        }
        (Unit::Year, Some(Some(Unit::Month))) => {
            let (negative, text) = signed(negative, text.trim());
            let (years, months) = text.split_once('-')?;
            ym_sql(negative, years, months)?
        }
        (from, Some(Some(to))) if from >= Unit::Day && to > from => {
            return day_time(negative, text, from, to)
        }
        _ => return None,
    };
    parse_expr(&sql)
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Unit {
    Year,
    Month,
    Day,
    Hour,
    Minute,
    Second,
}

fn unit(field: &DateTimeField) -> Option<Unit> {
    Some(match field {
        DateTimeField::Year | DateTimeField::Years => Unit::Year,
        DateTimeField::Month | DateTimeField::Months => Unit::Month,
        DateTimeField::Day | DateTimeField::Days => Unit::Day,
        DateTimeField::Hour | DateTimeField::Hours => Unit::Hour,
        DateTimeField::Minute | DateTimeField::Minutes => Unit::Minute,
        DateTimeField::Second | DateTimeField::Seconds => Unit::Second,
        _ => return None,
    })
}

/// The literal's text and whether a minus precedes it (`-'100'`).
fn literal(value: &Expr) -> Option<(bool, String)> {
    match value {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => Some((false, s.clone())),
            Value::Number(n, _) => Some((false, n.clone())),
            _ => None,
        },
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => literal(expr).map(|(negative, text)| (!negative, text)),
        _ => None,
    }
}

/// A sign inside the text (`'-1-2'`) combined with one outside it.
fn signed(negative: bool, text: &str) -> (bool, &str) {
    match text.strip_prefix('-') {
        Some(rest) => (!negative, rest),
        None => (negative, text.strip_prefix('+').unwrap_or(text)),
    }
}

/// `make_ym_interval` of whole years and months, both unsigned (the sign is
/// `negative`); `None` when either is not digits (the literal is then left for
/// DataFusion to say what is wrong). A sign inside either would print as `--`, which
/// SQL reads as a comment.
fn ym_sql(negative: bool, years: &str, months: &str) -> Option<String> {
    let (years, months) = (years.trim(), months.trim());
    let valid = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    if !valid(years) || !valid(months) {
        return None;
    }
    let sign = if negative { "-" } else { "" };
    Some(format!("make_ym_interval({sign}{years}, {sign}{months})"))
}

/// A day-time range `'d hh:mm:ss.f'` (the fields from `from` to `to`) as the interval of
/// its parts, `INTERVAL '1 days 2 hours …'` (built, since the Spark dialect's parser
/// requires a unit after the text).
fn day_time(negative: bool, text: String, from: Unit, to: Unit) -> Option<Expr> {
    let (negative, text) = signed(negative, text.trim());
    let (days, clock) = match from {
        Unit::Day => match text.split_once(' ') {
            Some((d, rest)) => (Some(d), rest),
            None => (Some(text), ""),
        },
        _ => (None, text),
    };
    let mut parts: Vec<(String, &str)> = Vec::new();
    if let Some(d) = days {
        parts.push((d.to_string(), "days"));
    }
    let units = [
        (Unit::Hour, "hours"),
        (Unit::Minute, "minutes"),
        (Unit::Second, "seconds"),
    ];
    let wanted = units
        .iter()
        .filter(|(u, _)| *u >= from.max(Unit::Hour) && *u <= to);
    let mut clock = clock.split(':');
    for (_, name) in wanted {
        parts.push((clock.next()?.trim().to_string(), name));
    }
    let number = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    if clock.next().is_some() || !parts.iter().all(|(n, _)| number(n)) {
        return None;
    }
    let sign = if negative { "-" } else { "" };
    let body: Vec<String> = parts
        .iter()
        .map(|(n, u)| format!("{sign}{n} {u}"))
        .collect();
    Some(Expr::Interval(ast::Interval {
        value: Box::new(Expr::value(Value::SingleQuotedString(body.join(" ")))),
        leading_field: None,
        leading_precision: None,
        last_field: None,
        fractional_seconds_precision: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(sql: &str) -> String {
        let Some(Expr::Interval(i)) = parse_expr(sql) else {
            panic!("{sql} is not an interval");
        };
        ansi(&i).map_or("unchanged".into(), |e| e.to_string())
    }

    #[test]
    fn year_month_intervals_are_typed() {
        assert_eq!(rewritten("INTERVAL '1' MONTH"), "make_ym_interval(0, 1)");
        assert_eq!(rewritten("interval 3 year"), "make_ym_interval(3, 0)");
        assert_eq!(
            rewritten("INTERVAL -'100' YEAR"),
            "make_ym_interval(-100, -0)"
        );
        assert_eq!(
            rewritten("INTERVAL '-1-1' YEAR TO MONTH"),
            "make_ym_interval(-1, -1)"
        );
        assert_eq!(
            rewritten("INTERVAL '2021-11' YEAR TO MONTH"),
            "make_ym_interval(2021, 11)"
        );
    }

    #[test]
    fn a_sign_inside_the_text_combines_with_one_outside_it() {
        assert_eq!(rewritten("INTERVAL -'-5' MONTH"), "make_ym_interval(0, 5)");
        assert_eq!(rewritten("INTERVAL '-5' MONTH"), "make_ym_interval(-0, -5)");
        assert_eq!(rewritten("INTERVAL '+2' YEAR"), "make_ym_interval(2, 0)");
        assert_eq!(
            rewritten("INTERVAL -'-1-2' YEAR TO MONTH"),
            "make_ym_interval(1, 2)"
        );
        // A month part of its own sign is not Spark's syntax: left for DataFusion.
        assert_eq!(rewritten("INTERVAL '1--2' YEAR TO MONTH"), "unchanged");
        assert_eq!(rewritten("INTERVAL '' MONTH"), "unchanged");
    }

    #[test]
    fn day_time_ranges_are_their_parts() {
        assert_eq!(
            rewritten("INTERVAL '123 23:55:59.002001' DAY TO SECOND"),
            "INTERVAL '123 days 23 hours 55 minutes 59.002001 seconds'"
        );
        assert_eq!(
            rewritten("INTERVAL '-1 02' DAY TO HOUR"),
            "INTERVAL '-1 days -02 hours'"
        );
        assert_eq!(
            rewritten("INTERVAL '10:30' MINUTE TO SECOND"),
            "INTERVAL '10 minutes 30 seconds'"
        );
        assert_eq!(rewritten("INTERVAL '1' DAY"), "unchanged");
        assert_eq!(rewritten("INTERVAL '1:2:3:4' HOUR TO SECOND"), "unchanged");
    }
}
