//! Spark SQL text that sqlparser does not read, written as text it does.

/// `sql` with `TRIM(BOTH FROM s)` written `TRIM(BOTH ' ' FROM s)`, and Spark's raw string literals (`r'\d+'`, `R"a\b"`: no escapes inside) written
/// as the plain literals they mean (`'\\d+'`), since sqlparser reads raw strings only in
/// its BigQuery and generic dialects. Nothing else changes, lines included.
pub(crate) fn plain_sql(sql: &str) -> std::borrow::Cow<'_, str> {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = String::with_capacity(sql.len());
    let mut changed = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match c {
            '\'' | '"' | '`' => {
                // A literal or quoted name, copied whole (a backslash escapes a quote).
                let end = (i + 1..chars.len())
                    .find(|&j| chars[j] == c && chars[j - 1] != '\\')
                    .unwrap_or(chars.len() - 1);
                out.extend(&chars[i..=end]);
                i = end + 1;
            }
            '-' if next == Some('-') => {
                let end = (i..chars.len())
                    .find(|&j| chars[j] == '\n')
                    .unwrap_or(chars.len());
                out.extend(&chars[i..end]);
                i = end;
            }
            'r' | 'R'
                if matches!(next, Some('\'' | '"'))
                    && !(i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_')) =>
            {
                let quote = next.expect("a quote");
                let Some(end) = (i + 2..chars.len()).find(|&j| chars[j] == quote) else {
                    out.extend(&chars[i..]);
                    break;
                };
                out.push(quote);
                for &ch in &chars[i + 2..end] {
                    if ch == '\\' {
                        out.push('\\');
                    }
                    out.push(ch);
                }
                out.push(quote);
                changed = true;
                i = end + 1;
            }
            c if c.is_alphabetic()
                && !(i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_')) =>
            {
                // A word; `TRIM(BOTH FROM s)` (no characters) trims spaces, which
                // sqlparser reads only when they are written: `BOTH ' ' FROM s`.
                let end = (i..chars.len())
                    .find(|&j| !(chars[j].is_alphanumeric() || chars[j] == '_'))
                    .unwrap_or(chars.len());
                let word: String = chars[i..end].iter().collect();
                out.push_str(&word);
                i = end;
                let upper = word.to_ascii_uppercase();
                if matches!(upper.as_str(), "TIMESTAMP_NTZ" | "TIMESTAMP_LTZ")
                    && chars[end..].iter().find(|c| !c.is_whitespace()) == Some(&'\'')
                {
                    // Typed literals: a timestamp is a wall-clock time in quern.
                    out.truncate(out.len() - word.len());
                    out.push_str("TIMESTAMP ");
                    changed = true;
                }
                if upper == "EXISTS" && is_call_not_subquery(&chars[end..]) {
                    // Spark's `exists(array, x -> …)` is DataFusion's array_any_match.
                    out.truncate(out.len() - word.len());
                    out.push_str("array_any_match");
                    changed = true;
                }
                if matches!(upper.as_str(), "BOTH" | "LEADING" | "TRAILING") {
                    let rest: String = chars[end..].iter().take(12).collect();
                    let rest = rest.trim_start().to_ascii_uppercase();
                    if rest.starts_with("FROM")
                        && !rest[4..].starts_with(|c: char| c.is_alphanumeric() || c == '_')
                    {
                        out.push_str(" ' '");
                        changed = true;
                    }
                }
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    if changed {
        out.into()
    } else {
        sql.into()
    }
}

/// Whether `rest` (what follows a word) opens a call whose first argument is not a
/// query: `(array(1), x -> …)`, not `(SELECT …)`.
fn is_call_not_subquery(rest: &[char]) -> bool {
    let text: String = rest.iter().take(40).collect();
    let Some(inside) = text.trim_start().strip_prefix('(') else {
        return false;
    };
    let inside = inside.trim_start().to_ascii_uppercase();
    !(inside.starts_with('(')
        || ["SELECT", "WITH", "VALUES", "FROM", "TABLE"]
            .iter()
            .any(|k| inside.starts_with(k)))
}

#[cfg(test)]
mod tests {
    use super::plain_sql;

    #[test]
    fn raw_strings_and_bare_trims_become_plain_sql() {
        assert_eq!(
            plain_sql(r"SELECT r'(\d+)', 'r''x', for_r'a'"),
            r"SELECT '(\\d+)', 'r''x', for_r'a'"
        );
        assert_eq!(
            plain_sql("SELECT 'a' -- r'x'\n, R\"b\\c\""),
            "SELECT 'a' -- r'x'\n, \"b\\\\c\""
        );
        assert_eq!(
            plain_sql("SELECT exists(xs, x -> x > 1) WHERE EXISTS (SELECT 1)"),
            "SELECT array_any_match(xs, x -> x > 1) WHERE EXISTS (SELECT 1)"
        );
        assert_eq!(
            plain_sql("SELECT timestamp_ntz'2021-12-06 00:00:00'"),
            "SELECT TIMESTAMP '2021-12-06 00:00:00'"
        );
        assert_eq!(
            plain_sql("SELECT trim(both  from s), trim(LEADING 'x' FROM s), both_from"),
            "SELECT trim(both ' '  from s), trim(LEADING 'x' FROM s), both_from"
        );
    }
}
