//! Spark's regular-expression functions, with Java's semantics where they differ from
//! DataFusion's: `regexp_replace` replaces every match (from position `pos`) and reads
//! `$1` in the replacement, `regexp_extract` gives `''` when nothing matches, and
//! `split` cuts at a regular expression, keeping trailing empty strings; and
//! `to_char`/`to_varchar` with Spark's number formats (`99G999D9S`), date patterns and
//! binary encodings.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, ListBuilder, StringArray, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::{exec_datafusion_err, exec_err};
use datafusion::config::ConfigOptions;
use datafusion::error::Result;
use datafusion::logical_expr::ScalarUDF;
use regex::Regex;

use super::{arg, constant_string, integers, Simple};

pub(super) fn all() -> Vec<ScalarUDF> {
    let strings = DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)));
    vec![
        Simple::udf("regexp_extract", (2, 3), DataType::Utf8, regexp_extract),
        Simple::udf(
            "regexp_extract_all",
            (2, 3),
            strings.clone(),
            regexp_extract_all,
        ),
        Simple::udf("regexp_replace", (3, 4), DataType::Utf8, regexp_replace),
        Simple::udf("split", (2, 3), strings, split),
        Simple::udf("to_char", (2, 2), DataType::Utf8, to_char),
        Simple::udf("to_varchar", (2, 2), DataType::Utf8, to_char),
        Simple::udf("format_number", (2, 2), DataType::Utf8, format_number),
        Simple::udf(
            "sentences",
            (1, 3),
            DataType::List(Arc::new(Field::new(
                "item",
                DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
                true,
            ))),
            sentences,
        ),
    ]
}

/// The pattern of argument `i` (the same on every row), compiled.
fn pattern(args: &[ArrayRef], i: usize, function: &str) -> Result<Option<Regex>> {
    let Some(p) = constant_string(args, i, function)? else {
        return Ok(None);
    };
    Regex::new(&p)
        .map(Some)
        .map_err(|e| exec_datafusion_err!("{function}: `{p}` is not a regular expression: {e}"))
}

/// The text of group `group` of the first match, `""` when nothing matches.
fn regexp_extract(args: &[ArrayRef], _: &ConfigOptions) -> Result<ArrayRef> {
    let text = arg(args, 0, &DataType::Utf8)?;
    let Some(re) = pattern(args, 1, "regexp_extract")? else {
        return Ok(Arc::new(StringArray::new_null(text.len())));
    };
    let groups = integers(args, 2, Some(1))?;
    let out = text
        .as_string::<i32>()
        .iter()
        .zip(&groups)
        .map(|(t, g)| {
            let (Some(t), Some(g)) = (t, g) else {
                return Ok(None);
            };
            let g = group_index(&re, *g, "regexp_extract")?;
            let found = re.captures(t).and_then(|c| c.get(g)).map(|m| m.as_str());
            Ok(Some(found.unwrap_or("").to_string()))
        })
        .collect::<Result<StringArray>>()?;
    Ok(Arc::new(out))
}

fn group_index(re: &Regex, group: i64, function: &str) -> Result<usize> {
    let count = re.captures_len() - 1;
    match usize::try_from(group) {
        Ok(g) if g <= count => Ok(g),
        _ => exec_err!(
            "{function}: the regular expression has {count} group(s), so group {group} does not exist"
        ),
    }
}

/// The text of group `group` of every match.
fn regexp_extract_all(args: &[ArrayRef], _: &ConfigOptions) -> Result<ArrayRef> {
    let text = arg(args, 0, &DataType::Utf8)?;
    let re = pattern(args, 1, "regexp_extract_all")?;
    let groups = integers(args, 2, Some(1))?;
    let mut out = ListBuilder::new(StringBuilder::new());
    for (t, g) in text.as_string::<i32>().iter().zip(&groups) {
        let (Some(t), Some(g), Some(re)) = (t, g, &re) else {
            out.append_null();
            continue;
        };
        let g = group_index(re, *g, "regexp_extract_all")?;
        for c in re.captures_iter(t) {
            out.values()
                .append_value(c.get(g).map_or("", |m| m.as_str()));
        }
        out.append(true);
    }
    Ok(Arc::new(out.finish()))
}

/// Java's replacement syntax (`$1`, `\$` for a dollar) in the regex crate's (`${1}`, `$$`).
fn replacement(java: &str) -> String {
    let mut out = String::with_capacity(java.len());
    let mut chars = java.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('$') => out.push_str("$$"),
                Some(other) => out.push(other),
                None => {}
            },
            '$' => {
                let mut digits = String::new();
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    digits.push(*d);
                    chars.next();
                }
                match digits.is_empty() {
                    true => out.push_str("$$"),
                    false => out.push_str(&format!("${{{digits}}}")),
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// Every match from character `pos` (1-based) on replaced.
fn regexp_replace(args: &[ArrayRef], _: &ConfigOptions) -> Result<ArrayRef> {
    let text = arg(args, 0, &DataType::Utf8)?;
    let re = pattern(args, 1, "regexp_replace")?;
    let with = arg(args, 2, &DataType::Utf8)?;
    let with = with.as_string::<i32>();
    let positions = integers(args, 3, Some(1))?;
    let out = text
        .as_string::<i32>()
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let (Some(t), Some(re), Some(pos)) = (t, &re, positions[i]) else {
                return Ok(None);
            };
            if with.is_null(i) {
                return Ok(None);
            }
            if pos < 1 {
                return exec_err!("regexp_replace: the position must be 1 or more, not {pos}");
            }
            let start = t
                .char_indices()
                .nth(pos as usize - 1)
                .map_or(t.len(), |(b, _)| b);
            let (head, tail) = t.split_at(start);
            let replaced = re.replace_all(tail, replacement(with.value(i)).as_str());
            Ok(Some(format!("{head}{replaced}")))
        })
        .collect::<Result<StringArray>>()?;
    Ok(Arc::new(out))
}

/// `split(text, regex[, limit])`: at most `limit` pieces when it is positive (the last
/// holds the rest), else all of them.
fn split(args: &[ArrayRef], _: &ConfigOptions) -> Result<ArrayRef> {
    let text = arg(args, 0, &DataType::Utf8)?;
    let re = pattern(args, 1, "split")?;
    let limits = integers(args, 2, Some(-1))?;
    let mut out = ListBuilder::new(StringBuilder::new());
    for (t, limit) in text.as_string::<i32>().iter().zip(&limits) {
        let (Some(t), Some(re), Some(limit)) = (t, &re, limit) else {
            out.append_null();
            continue;
        };
        if re.as_str().is_empty() {
            // An empty pattern cuts between characters.
            for (n, c) in t.chars().enumerate() {
                if *limit > 0 && n as i64 == *limit - 1 {
                    out.values()
                        .append_value(&t[t.char_indices().nth(n).map_or(0, |(b, _)| b)..]);
                    break;
                }
                out.values().append_value(c.to_string());
            }
        } else if *limit > 0 {
            for piece in re.splitn(t, *limit as usize) {
                out.values().append_value(piece);
            }
        } else {
            for piece in re.split(t) {
                out.values().append_value(piece);
            }
        }
        out.append(true);
    }
    Ok(Arc::new(out.finish()))
}

/// `to_char(x, format)`: a number with a number format, a date or timestamp with a Java
/// date pattern (as `date_format`), bytes as `base64`, `hex` or `utf-8` text.
fn to_char(args: &[ArrayRef], config: &ConfigOptions) -> Result<ArrayRef> {
    use base64::Engine as _;
    let Some(format) = constant_string(args, 1, "to_char")? else {
        return Ok(Arc::new(StringArray::new_null(args[0].len())));
    };
    let t = args[0].data_type();
    if matches!(
        t,
        DataType::Date32 | DataType::Date64 | DataType::Timestamp(_, _)
    ) {
        return super::datetime::date_format(args, config);
    }
    if matches!(
        t,
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView
    ) {
        let bytes = arg(args, 0, &DataType::Binary)?;
        let encode = |b: &[u8]| -> Result<String> {
            Ok(match format.to_ascii_lowercase().as_str() {
                "base64" => base64::engine::general_purpose::STANDARD.encode(b),
                "hex" => b.iter().map(|x| format!("{x:02X}")).collect(),
                "utf-8" | "utf8" => String::from_utf8_lossy(b).into_owned(),
                other => {
                    return exec_err!(
                        "to_char of bytes takes 'base64', 'hex' or 'utf-8', not '{other}'"
                    )
                }
            })
        };
        let out = bytes
            .as_binary::<i32>()
            .iter()
            .map(|b| b.map(encode).transpose())
            .collect::<Result<StringArray>>()?;
        return Ok(Arc::new(out));
    }
    let numbers = arg(args, 0, &DataType::Float64)?;
    let out = numbers
        .as_primitive::<datafusion::arrow::datatypes::Float64Type>()
        .iter()
        .map(|x| x.map(|x| number_format(x, &format)).transpose())
        .collect::<Result<StringArray>>()?;
    Ok(Arc::new(out))
}

/// `x` written with a Spark number format: `0`/`9` digits (`0` pads with zeros), `.`/`D`
/// the decimal point, `,`/`G` grouping, `$`, and `S` (a `+` or `-`) or `MI` (a `-`) at
/// either end.
fn number_format(x: f64, format: &str) -> Result<String> {
    let upper = format.to_ascii_uppercase();
    let (mut body, mut sign_start, mut sign_end) = (upper.as_str(), None, None);
    for (token, mark) in [("S", 'S'), ("MI", 'M')] {
        if let Some(rest) = body.strip_prefix(token) {
            (body, sign_start) = (rest, Some(mark));
        }
        if let Some(rest) = body.strip_suffix(token) {
            (body, sign_end) = (rest, Some(mark));
        }
    }
    let dollar = body.starts_with('$');
    let body = body.trim_start_matches('$');
    let (int_pattern, fraction_pattern) = match body.find(['.', 'D']) {
        Some(i) => (&body[..i], &body[i + 1..]),
        None => (body, ""),
    };
    if let Some(c) = body.chars().find(|c| !"09.,DG".contains(*c)) {
        return exec_err!(
            "to_char: `{c}` is not part of a number format (0, 9, D, G, ., ,, $, S, MI)"
        );
    }
    let fraction_digits = fraction_pattern
        .chars()
        .filter(|c| *c == '0' || *c == '9')
        .count();
    let written = format!("{:.*}", fraction_digits, x.abs());
    let (int_digits, fraction) = written.split_once('.').unwrap_or((&written, ""));
    let int_digits = int_digits.trim_start_matches('0');
    let mut digits = int_digits.chars().rev().peekable();
    let mut int_part = Vec::new();
    for c in int_pattern.chars().rev() {
        if c == ',' || c == 'G' {
            // A separator only between digits that are written.
            if !int_part.is_empty() && digits.peek().is_some() {
                int_part.push(',');
            }
            continue;
        }
        match (c, digits.next()) {
            (_, Some(d)) => int_part.push(d),
            ('0', None) => int_part.push('0'),
            _ => {}
        }
    }
    // Digits the format has no room for are still written.
    int_part.extend(digits);
    let mut out: String = int_part.into_iter().rev().collect();
    if out.is_empty() {
        out.push('0');
    }
    if fraction_digits > 0 {
        out = format!("{out}.{fraction}");
    }
    if dollar {
        out = format!("${out}");
    }
    let sign = |mark: char| match (mark, x < 0.0) {
        (_, true) => "-",
        ('S', false) => "+",
        _ => " ",
    };
    Ok(match (sign_start, sign_end) {
        (Some(m), _) => format!("{}{out}", sign(m)),
        (None, Some(m)) => format!("{out}{}", sign(m)),
        (None, None) if x < 0.0 => format!("-{out}"),
        _ => out,
    })
}

/// `format_number(x, d)`: `x` rounded to `d` decimals with `,` grouping
/// (`12,332.1235`); `format_number(x, '#,###.##')`: a `DecimalFormat` pattern's
/// grouping and most decimals, trailing zeros dropped where the pattern has `#`.
fn format_number(args: &[ArrayRef], _: &ConfigOptions) -> Result<ArrayRef> {
    let x = arg(args, 0, &DataType::Float64)?;
    let x = x.as_primitive::<datafusion::arrow::datatypes::Float64Type>();
    let pattern = match args[1].data_type().is_integer() {
        true => None,
        false => constant_string(args, 1, "format_number")?,
    };
    let decimals = integers(args, 1, Some(0))?;
    let out: StringArray = (0..x.len())
        .map(|i| {
            let v = (!x.is_null(i)).then(|| x.value(i))?;
            let (digits, grouped, trim) = match &pattern {
                Some(p) => {
                    let fraction = p.split_once('.').map_or("", |(_, f)| f);
                    (fraction.len(), p.contains(','), !fraction.contains('0'))
                }
                None => (usize::try_from(decimals[i]?).ok()?, true, false),
            };
            let mut text = format!("{:.*}", digits, v.abs());
            if trim && text.contains('.') {
                text = text.trim_end_matches('0').trim_end_matches('.').to_string();
            }
            let (int, fraction) = text
                .split_once('.')
                .map_or((text.as_str(), None), |(a, b)| (a, Some(b)));
            let int = match grouped {
                true => group_thousands(int),
                false => int.to_string(),
            };
            let sign = if v < 0.0 { "-" } else { "" };
            Some(match fraction {
                Some(f) => format!("{sign}{int}.{f}"),
                None => format!("{sign}{int}"),
            })
        })
        .collect();
    Ok(Arc::new(out))
}

fn group_thousands(digits: &str) -> String {
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `sentences(text[, language, country])`: the text's sentences (ended by `.`, `!` or
/// `?`), each as its words (letters, digits and apostrophes).
fn sentences(args: &[ArrayRef], _: &ConfigOptions) -> Result<ArrayRef> {
    let text = arg(args, 0, &DataType::Utf8)?;
    let mut out = ListBuilder::new(ListBuilder::new(StringBuilder::new()));
    for t in text.as_string::<i32>().iter() {
        let Some(t) = t else {
            out.append_null();
            continue;
        };
        for sentence in t.split(['.', '!', '?']) {
            let words: Vec<&str> = sentence
                .split(|c: char| !(c.is_alphanumeric() || c == '\''))
                .filter(|w| !w.is_empty())
                .collect();
            if words.is_empty() {
                continue;
            }
            for w in words {
                out.values().values().append_value(w);
            }
            out.values().append(true);
        }
        out.append(true);
    }
    Ok(Arc::new(out.finish()))
}

#[cfg(test)]
mod tests {
    use super::replacement;

    #[test]
    fn number_formats() {
        use super::number_format;
        assert_eq!(number_format(454.0, "999").unwrap(), "454");
        assert_eq!(number_format(454.0, "000D00").unwrap(), "454.00");
        assert_eq!(number_format(12454.0, "99G999").unwrap(), "12,454");
        assert_eq!(number_format(78.12, "$99.99").unwrap(), "$78.12");
        assert_eq!(number_format(-12454.8, "99G999D9S").unwrap(), "12,454.8-");
        assert_eq!(number_format(5.0, "0000").unwrap(), "0005");
    }

    #[test]
    fn java_replacements() {
        assert_eq!(replacement("$1-$2"), "${1}-${2}");
        assert_eq!(replacement("\\$x"), "$$x");
        assert_eq!(replacement("num"), "num");
    }
}
