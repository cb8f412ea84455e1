//! The SQL quoting filters and the output formatter that keeps plain strings out of
//! the rendered SQL.

use std::collections::HashSet;

use minijinja::value::{Value, ValueKind};
use minijinja::{Environment, Error, ErrorKind, Output, State};

pub(super) fn register(jinja: &mut Environment<'static>) {
    jinja.add_filter("sql_string", sql_string);
    jinja.add_filter("sql_ident", sql_ident);
    jinja.add_filter("sql_list", sql_list);
}

/// `{{ x | sql_string }}`: a single-quoted SQL string literal, quotes doubled. Numbers
/// and booleans are quoted as their text; anything else is an error.
fn sql_string(value: Value) -> Result<Value, Error> {
    Ok(Value::from_safe_string(quote_literal(&value)?))
}

/// `{{ x | sql_ident }}`: a double-quoted SQL identifier, double quotes doubled.
fn sql_ident(value: Value) -> Result<Value, Error> {
    let Some(s) = value.as_str() else {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("sql_ident needs a string, got {}", value.kind()),
        ));
    };
    if s.is_empty() || s.contains('\0') {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            "sql_ident needs a non-empty identifier without NUL characters",
        ));
    }
    Ok(Value::from_safe_string(format!(
        "\"{}\"",
        s.replace('"', "\"\"")
    )))
}

/// `{{ xs | sql_list }}`: `('a', 'b', 3)` for use with `IN`; an empty list is an error
/// because `IN ()` is not SQL.
fn sql_list(value: Value) -> Result<Value, Error> {
    if !matches!(value.kind(), ValueKind::Seq | ValueKind::Iterable) {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("sql_list needs a list, got {}", value.kind()),
        ));
    }
    let mut items = Vec::new();
    for item in value.try_iter()? {
        items.push(match item.kind() {
            ValueKind::Number | ValueKind::Bool => item.to_string(),
            _ => quote_literal(&item)?,
        });
    }
    if items.is_empty() {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            "sql_list got an empty list, and `IN ()` is not valid SQL; guard it with {% if … %}",
        ));
    }
    Ok(Value::from_safe_string(format!("({})", items.join(", "))))
}

fn quote_literal(value: &Value) -> Result<String, Error> {
    let text = match value.kind() {
        ValueKind::String => value.as_str().unwrap_or_default().to_string(),
        ValueKind::Number | ValueKind::Bool => value.to_string(),
        other => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("cannot quote a {other} as an SQL string"),
            ))
        }
    };
    if text.contains('\0') {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            "an SQL string cannot contain a NUL character",
        ));
    }
    Ok(format!("'{}'", text.replace('\'', "''")))
}

/// How `{{ value }}` is written into the SQL.
///
/// Numbers and booleans are written as literals, `none` as `NULL`, strings as they are
/// (templates pass SQL fragments to macros as strings) — except a string that is the
/// value of a var: vars come from outside the template (environment files, `--var`),
/// so pasting one raw would let it inject SQL. Such a string must go through
/// `| sql_string`, `| sql_ident` or `| sql_list`.
pub(super) fn formatter(
    env: &crate::config::Environment,
    overrides: &super::Vars,
) -> impl Fn(&mut Output, &State, &Value) -> Result<(), Error> + Send + Sync + 'static {
    let mut var_strings: HashSet<String> = HashSet::new();
    let values = env.vars.values().chain(overrides.iter().map(|(_, v)| v));
    for value in values {
        collect_strings(value, &mut var_strings);
    }
    move |out: &mut Output, _state: &State, value: &Value| {
        let write = |out: &mut Output, s: &str| {
            out.write_str(s).map_err(|e| {
                Error::new(ErrorKind::WriteFailure, "cannot write output").with_source(e)
            })
        };
        if value.is_safe() {
            return write(out, value.as_str().unwrap_or_default());
        }
        match value.kind() {
            ValueKind::Number | ValueKind::Bool => write(out, &value.to_string()),
            // Only the missing `else` of an inline `if` (`{{ ',' if not loop.last }}`)
            // gets here: minijinja's strict mode refuses a genuinely undefined name
            // before the formatter sees it. Jinja2 prints it as nothing.
            ValueKind::Undefined => Ok(()),
            ValueKind::None => write(out, "NULL"),
            ValueKind::String => {
                let s = value.as_str().unwrap_or_default();
                if var_strings.contains(s) {
                    Err(Error::new(
                        ErrorKind::InvalidOperation,
                        format!(
                            "the var value {s:?} would be pasted into SQL unquoted; write `| sql_string` for a string literal or `| sql_ident` for an identifier"
                        ),
                    ))
                } else {
                    write(out, s)
                }
            }
            ValueKind::Seq | ValueKind::Iterable => Err(Error::new(
                ErrorKind::InvalidOperation,
                "a list cannot be pasted into SQL; write `| sql_list` for `(a, b, …)`",
            )),
            other => Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("a {other} cannot be written into SQL"),
            )),
        }
    }
}

fn collect_strings(value: &toml::Value, into: &mut HashSet<String>) {
    match value {
        toml::Value::String(s) if !s.is_empty() => {
            into.insert(s.clone());
        }
        toml::Value::Array(items) => items.iter().for_each(|v| collect_strings(v, into)),
        toml::Value::Table(t) => t.values().for_each(|v| collect_strings(v, into)),
        _ => {}
    }
}
