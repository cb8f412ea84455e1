//! Spark SQL: how sqlparser parses it for quern (sqlparser's `SparkSqlDialect` and the
//! backslash escapes Spark's own parser reads in string literals), and the rewrites
//! that give Spark's SQL forms DataFusion's meaning: `explode(x)` in a select list is
//! DataFusion's `unnest(x)` (a column named `col`, as Spark names it), `posexplode(x)`
//! is two of them (`pos` and `col`), `LATERAL VIEW explode(…)` is a subquery with
//! `unnest`, and
//! `struct(a, b)` names its fields as Spark does (`a` for a column, else `col2`, …), and
//! `map(k1, v1, k2, v2)` is DataFusion's `map(array(k1, k2), array(v1, v2))`, and
//! `first(x, true)` is `first_value(x) IGNORE NULLS`.

use std::ops::ControlFlow;

use datafusion::sql::parser::Statement;
use datafusion::sql::sqlparser::ast::{
    self, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, ObjectName, ObjectNamePart,
    SelectItem, TableFactor, Value,
};
use datafusion::sql::sqlparser::dialect::{Dialect as SqlDialect, SparkSqlDialect};
use datafusion::sql::sqlparser::parser::{Parser, ParserError};

/// Spark SQL as sqlparser's `SparkSqlDialect` parses it, plus what Spark's own parser
/// does that sqlparser's does not: backslash escapes in string literals (`'a\tb'`).
#[derive(Debug)]
pub(crate) struct SparkSql;

impl SqlDialect for SparkSql {
    fn dialect(&self) -> std::any::TypeId {
        std::any::TypeId::of::<SparkSqlDialect>()
    }
    fn is_delimited_identifier_start(&self, ch: char) -> bool {
        SparkSqlDialect.is_delimited_identifier_start(ch)
    }
    fn is_identifier_start(&self, ch: char) -> bool {
        SparkSqlDialect.is_identifier_start(ch)
    }
    fn is_identifier_part(&self, ch: char) -> bool {
        SparkSqlDialect.is_identifier_part(ch)
    }
    fn supports_string_literal_backslash_escape(&self) -> bool {
        true
    }
    fn supports_filter_during_aggregation(&self) -> bool {
        true
    }
    fn supports_group_by_expr(&self) -> bool {
        true
    }
    fn supports_group_by_with_modifier(&self) -> bool {
        true
    }
    fn supports_lambda_functions(&self) -> bool {
        true
    }
    fn supports_select_wildcard_except(&self) -> bool {
        true
    }
    fn supports_struct_literal(&self) -> bool {
        true
    }
    fn supports_nested_comments(&self) -> bool {
        true
    }
    fn supports_long_type_as_bigint(&self) -> bool {
        true
    }
    fn supports_values_as_table_factor(&self) -> bool {
        true
    }
    fn require_interval_qualifier(&self) -> bool {
        true
    }
    fn supports_bang_not_operator(&self) -> bool {
        true
    }
    fn supports_select_item_multi_column_alias(&self) -> bool {
        true
    }
    fn supports_cte_without_as(&self) -> bool {
        true
    }
    fn supports_map_literal_with_angle_brackets(&self) -> bool {
        true
    }
    fn parse_infix(
        &self,
        parser: &mut Parser,
        expr: &ast::Expr,
        precedence: u8,
    ) -> Option<std::result::Result<ast::Expr, ParserError>> {
        SparkSqlDialect.parse_infix(parser, expr, precedence)
    }
}

/// Rewrites Spark's forms in `statement` into DataFusion's (see the module's doc).
pub(crate) fn rewrite(statement: &mut Statement) {
    if let Statement::Statement(s) = statement {
        let _ = ast::VisitMut::visit(s.as_mut(), &mut Rewrite);
    }
}

struct Rewrite;

impl ast::VisitorMut for Rewrite {
    type Break = ();

    fn pre_visit_select(&mut self, select: &mut ast::Select) -> ControlFlow<()> {
        lateral_views(select);
        // Spark names the column of a select-list `explode(x)` `col`; `posexplode(x)`
        // is two columns, `pos` (from 0) and `col`.
        let mut projection = Vec::with_capacity(select.projection.len());
        for item in std::mem::take(&mut select.projection) {
            let SelectItem::UnnamedExpr(expr) = &item else {
                projection.push(item);
                continue;
            };
            match function_name(expr).as_deref() {
                Some("explode") => projection.push(SelectItem::ExprWithAlias {
                    expr: expr.clone(),
                    alias: Ident::new("col"),
                }),
                Some("posexplode") => projection.extend(posexplode(expr)),
                // A struct of the values, unnested into one column each (c0, c1, …).
                Some("json_tuple") => projection.push(SelectItem::UnnamedExpr(
                    parse_expr(&format!("unnest({expr})")).unwrap_or_else(|| expr.clone()),
                )),
                _ => projection.push(item),
            }
        }
        select.projection = projection;
        ControlFlow::Continue(())
    }

    fn post_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        // `FROM explode(xs) AS t` is `FROM (SELECT unnest(xs) AS col) AS t`.
        if let TableFactor::Table {
            name,
            args: Some(args),
            alias,
            ..
        } = factor
        {
            let function = name.to_string().to_lowercase();
            let names = alias
                .as_ref()
                .map(|a| a.columns.iter().map(|c| c.name.clone()).collect::<Vec<_>>())
                .unwrap_or_default();
            let table = alias
                .as_ref()
                .map_or(function.clone(), |a| a.name.to_string());
            if let Some(items) = generator_sql(&function, &args.args, &names) {
                if let Some(derived) =
                    parse_from(&format!("SELECT 1 FROM (SELECT {items}) AS {table}"))
                {
                    *factor = derived;
                }
            }
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Some(e) = scaled_floor_or_ceil(expr) {
            *expr = e;
            return ControlFlow::Continue(());
        }
        if let Expr::Struct { values, fields } = expr {
            if let Some(e) = fields.is_empty().then(|| struct_call(values)).flatten() {
                *expr = e;
            }
            return ControlFlow::Continue(());
        }
        let Expr::Function(f) = expr else {
            return ControlFlow::Continue(());
        };
        if let Some(e) = scaled_call(f) {
            *expr = e;
            return ControlFlow::Continue(());
        }
        int_literals(f);
        if let Some(e) = template(f) {
            *expr = e;
            return ControlFlow::Continue(());
        }
        match function_name(&Expr::Function(f.clone())).as_deref() {
            // Spark's ranking functions take (and ignore) the ordering columns.
            Some("rank" | "dense_rank" | "percent_rank" | "cume_dist" | "row_number")
                if f.over.is_some() =>
            {
                if let FunctionArguments::List(list) = &mut f.args {
                    list.args.clear();
                }
            }
            Some("explode") => f.name = ObjectName::from(vec![Ident::new("unnest")]),
            Some("struct") => name_struct_fields(f),
            Some("map") => pair_map(f),
            // DataFusion's nvl coerces `nvl(NULL, array('2'))` to text; coalesce does not.
            Some("nvl" | "ifnull") => f.name = ObjectName::from(vec![Ident::new("coalesce")]),
            Some("collect_set") => *expr = sorted(f),
            Some("equal_null") => {
                if let Some(e) = equal_null(f) {
                    *expr = e;
                }
            }
            Some("unix_timestamp") if no_arguments(f) => {
                if let Some(now) = parse_expr("unix_timestamp(current_timestamp())") {
                    *expr = now;
                }
            }
            Some(name @ ("first" | "last" | "first_value" | "last_value")) => {
                first_or_last(f, name.starts_with("first"))
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

/// The lower-cased name of the function `expr` calls, if it is an unqualified call.
fn function_name(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Function(f) => match f.name.0.as_slice() {
            [ObjectNamePart::Identifier(id)] => Some(id.value.to_lowercase()),
            _ => None,
        },
        _ => None,
    }
}

/// The name Spark gives field `i` of `struct(…)`: the column's name for a column, the
/// alias for `x AS name`, else `col` and its position.
fn field_name(e: &Expr, i: usize) -> String {
    match e {
        Expr::Identifier(id) => id.value.clone(),
        Expr::CompoundIdentifier(ids) => ids.last().map(|id| id.value.clone()).unwrap_or_default(),
        Expr::Named { name, .. } => name.value.clone(),
        _ => format!("col{}", i + 1),
    }
}

/// `struct(a, 1 AS b)` (sqlparser's struct literal) as `named_struct('a', a, 'b', 1)`.
fn struct_call(values: &[Expr]) -> Option<Expr> {
    let args: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let value = match e {
                Expr::Named { expr, .. } => expr.as_ref(),
                other => other,
            };
            let name = field_name(e, i).replace('\'', "''");
            format!("'{name}', {value}")
        })
        .collect();
    let sql = format!("named_struct({})", args.join(", "));
    Parser::new(&SparkSql)
        .try_with_sql(&sql)
        .ok()?
        .parse_expr()
        .ok()
}

/// `struct(a, 1)` as `named_struct('a', a, 'col2', 1)`: Spark names a field after the
/// column it is, else `col` and its position.
fn name_struct_fields(f: &mut ast::Function) {
    let FunctionArguments::List(list) = &mut f.args else {
        return;
    };
    let mut args = Vec::with_capacity(list.args.len() * 2);
    for (i, arg) in list.args.iter().enumerate() {
        let FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) = arg else {
            return;
        };
        let name = Expr::Value(Value::SingleQuotedString(field_name(e, i)).into());
        args.push(FunctionArg::Unnamed(FunctionArgExpr::Expr(name)));
        args.push(arg.clone());
    }
    list.args = args;
    f.name = ObjectName::from(vec![Ident::new("named_struct")]);
}

/// `map(k1, v1, k2, v2, …)` as `map(array(k1, k2, …), array(v1, v2, …))`.
fn pair_map(f: &mut ast::Function) {
    let FunctionArguments::List(list) = &f.args else {
        return;
    };
    if list.args.is_empty() || list.args.len() % 2 != 0 {
        // Left for the planner to reject with its own message.
        return;
    }
    let args = list.args.clone();
    let array = |args: Vec<FunctionArg>| {
        let mut call = f.clone();
        call.name = ObjectName::from(vec![Ident::new("array")]);
        if let FunctionArguments::List(l) = &mut call.args {
            l.args = args;
        }
        FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Function(call)))
    };
    let keys = array(args.iter().step_by(2).cloned().collect());
    let values = array(args.iter().skip(1).step_by(2).cloned().collect());
    if let FunctionArguments::List(list) = &mut f.args {
        list.args = vec![keys, values];
    }
}

/// Spark's `first(x[, ignore_nulls])` (and `last`, `first_value`, `last_value`) as
/// DataFusion's `first_value(x)` / `last_value(x)`, with `IGNORE NULLS` when the second
/// argument is `true`.
fn first_or_last(f: &mut ast::Function, first: bool) {
    let FunctionArguments::List(list) = &mut f.args else {
        return;
    };
    if list.args.len() == 2 {
        let ignore = match &list.args[1] {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(v))) => {
                matches!(v.value, Value::Boolean(true))
            }
            _ => return,
        };
        list.args.truncate(1);
        if ignore {
            f.null_treatment = Some(ast::NullTreatment::IgnoreNulls);
        }
    }
    let name = if first { "first_value" } else { "last_value" };
    f.name = ObjectName::from(vec![Ident::new(name)]);
}

/// The one argument of a generator call (positional or named, as in
/// `explode(collection => xs)`), as SQL text.
fn only_argument(args: &[FunctionArg]) -> Option<String> {
    match args {
        [FunctionArg::Unnamed(FunctionArgExpr::Expr(x))]
        | [FunctionArg::Named {
            arg: FunctionArgExpr::Expr(x),
            ..
        }] => Some(x.to_string()),
        _ => None,
    }
}

/// The select items (as SQL text) a generator call in a select list, a FROM clause or
/// a LATERAL VIEW stands for, with its columns named `names` (Spark's defaults when
/// empty).
fn generator_items(call: &Expr, names: &[Ident]) -> Option<String> {
    let Expr::Function(f) = call else {
        return None;
    };
    let FunctionArguments::List(list) = &f.args else {
        return None;
    };
    generator_sql(&function_name(call)?, &list.args, names)
}

fn generator_sql(function: &str, args: &[FunctionArg], names: &[Ident]) -> Option<String> {
    let x = only_argument(args)?;
    let name =
        |i: usize, default: &str| names.get(i).map_or(default.to_string(), |n| n.to_string());
    match function {
        "explode" => Some(format!("unnest({x}) AS {}", name(0, "col"))),
        // The positions count from 0, for a non-empty array.
        "posexplode" => Some(format!(
            "unnest(CASE WHEN size({x}) > 0 THEN sequence(0, size({x}) - 1) END) AS {}, unnest({x}) AS {}",
            name(0, "pos"),
            name(1, "col")
        )),
        _ => None,
    }
}

fn parse_items(sql: &str) -> Option<Vec<SelectItem>> {
    let mut parser = Parser::new(&SparkSql).try_with_sql(sql).ok()?;
    parser.parse_projection().ok()
}

/// `posexplode(x)` in a select list: the columns `pos` (from 0) and `col`.
fn posexplode(call: &Expr) -> Vec<SelectItem> {
    generator_items(call, &[])
        .and_then(|sql| parse_items(&sql))
        .unwrap_or_else(|| vec![SelectItem::UnnamedExpr(call.clone())])
}

/// `FROM t LATERAL VIEW explode(t.xs) v AS x` as `FROM (SELECT *, unnest(t.xs) AS x
/// FROM t) AS t`, one subquery per view, with `v.x` read as `x`. Left as it is (for
/// DataFusion to refuse) when the FROM is not one table or subquery, for `OUTER`, and
/// for generators other than `explode` and `posexplode`.
fn lateral_views(select: &mut ast::Select) {
    if select.lateral_views.is_empty()
        || select.lateral_views.iter().any(|v| v.outer)
        || select.from.len() != 1
        || !select.from[0].joins.is_empty()
    {
        return;
    }
    let mut relation = select.from[0].relation.clone();
    let alias = match &relation {
        TableFactor::Table { alias: Some(a), .. } | TableFactor::Derived { alias: Some(a), .. } => {
            a.name.clone()
        }
        TableFactor::Table { name, .. } => match name.0.last() {
            Some(ObjectNamePart::Identifier(id)) => id.clone(),
            _ => return,
        },
        _ => return,
    };
    let mut view_names = Vec::new();
    for view in &select.lateral_views {
        let Some(items) = generator_items(&view.lateral_view, &view.lateral_col_alias) else {
            return;
        };
        let sql = format!("SELECT 1 FROM (SELECT *, {items} FROM {relation}) AS {alias}");
        let Some(derived) = parse_from(&sql) else {
            return;
        };
        relation = derived;
        view_names.push(view.lateral_view_name.to_string());
    }
    select.from[0].relation = relation;
    select.lateral_views.clear();
    // A view's columns are columns of the subquery now: `v.x` is `x`.
    let _ = ast::visit_expressions_mut(select, |e| {
        if let Expr::CompoundIdentifier(ids) = e {
            if ids.len() == 2
                && view_names
                    .iter()
                    .any(|v| v.eq_ignore_ascii_case(&ids[0].value))
            {
                *e = Expr::Identifier(ids[1].clone());
            }
        }
        ControlFlow::<()>::Continue(())
    });
}

/// The FROM item of a parsed `SELECT … FROM <item>`.
fn parse_from(sql: &str) -> Option<TableFactor> {
    let statement = Parser::new(&SparkSql)
        .try_with_sql(sql)
        .ok()?
        .parse_statement()
        .ok()?;
    let ast::Statement::Query(query) = statement else {
        return None;
    };
    let ast::SetExpr::Select(select) = *query.body else {
        return None;
    };
    select.from.into_iter().next().map(|f| f.relation)
}

/// Integer literals passed to a function as Spark types them: `INT` when they fit in
/// 32 bits (DataFusion's are `BIGINT`), so `date_add(d, 1)` finds Spark's signature.
fn int_literals(f: &mut ast::Function) {
    // A window function's offsets and bucket counts must stay plain literals.
    if f.over.is_some() {
        return;
    }
    let FunctionArguments::List(list) = &mut f.args else {
        return;
    };
    for arg in &mut list.args {
        let FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) = arg else {
            continue;
        };
        let fits = match e {
            Expr::Value(v) => {
                matches!(&v.value, Value::Number(n, false) if n.parse::<i32>().is_ok())
            }
            Expr::UnaryOp {
                op: ast::UnaryOperator::Minus,
                expr,
            } => matches!(
                expr.as_ref(),
                Expr::Value(v) if matches!(&v.value, Value::Number(n, false) if format!("-{n}").parse::<i32>().is_ok())
            ),
            _ => false,
        };
        if fits {
            *e = Expr::Cast {
                kind: ast::CastKind::Cast,
                expr: Box::new(e.clone()),
                data_type: ast::DataType::Int(None),
                array: false,
                format: None,
            };
        }
    }
}

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

fn parse_expr(sql: &str) -> Option<Expr> {
    Parser::new(&SparkSql)
        .try_with_sql(sql)
        .ok()?
        .parse_expr()
        .ok()
}

fn no_arguments(f: &ast::Function) -> bool {
    match &f.args {
        FunctionArguments::None => true,
        FunctionArguments::List(l) => l.args.is_empty(),
        FunctionArguments::Subquery(_) => false,
    }
}

/// `collect_set(x)` as `array_sort(collect_set(x))`: Spark leaves the order of a set's
/// elements to its hash table; quern gives them in order, the same on every run.
fn sorted(f: &ast::Function) -> Expr {
    let call = Expr::Function(f.clone());
    let mut sort = f.clone();
    sort.name = ObjectName::from(vec![Ident::new("array_sort")]);
    sort.over = None;
    sort.filter = None;
    sort.null_treatment = None;
    sort.within_group = vec![];
    if let FunctionArguments::List(list) = &mut sort.args {
        list.duplicate_treatment = None;
        list.clauses = vec![];
        list.args = vec![FunctionArg::Unnamed(FunctionArgExpr::Expr(call))];
    }
    Expr::Function(sort)
}

/// `equal_null(a, b)` as `a IS NOT DISTINCT FROM b`.
fn equal_null(f: &ast::Function) -> Option<Expr> {
    let FunctionArguments::List(list) = &f.args else {
        return None;
    };
    match list.args.as_slice() {
        [FunctionArg::Unnamed(FunctionArgExpr::Expr(a)), FunctionArg::Unnamed(FunctionArgExpr::Expr(b))] => {
            Some(Expr::IsNotDistinctFrom(
                Box::new(a.clone()),
                Box::new(b.clone()),
            ))
        }
        _ => None,
    }
}

/// `floor(x, d)` / `ceil(x, d)` (sqlparser's scaled forms) as `floor(x * 10^d) / 10^d`,
/// or `floor(x / 10^-d) * 10^-d` for a negative `d`.
fn scaled_floor_or_ceil(expr: &Expr) -> Option<Expr> {
    let (function, x, field) = match expr {
        Expr::Floor { expr, field } => ("floor", expr, field),
        Expr::Ceil { expr, field } => ("ceil", expr, field),
        _ => return None,
    };
    let ast::CeilFloorKind::Scale(scale) = field else {
        return None;
    };
    let Value::Number(digits, _) = &scale.value else {
        return None;
    };
    scaled(function, x, digits.parse().ok()?)
}

/// `floor(x, -3)`, which sqlparser reads as a plain call, as [`scaled_floor_or_ceil`].
fn scaled_call(f: &ast::Function) -> Option<Expr> {
    let function = match function_name(&Expr::Function(f.clone()))?.as_str() {
        "floor" => "floor",
        "ceil" | "ceiling" => "ceil",
        _ => return None,
    };
    let FunctionArguments::List(list) = &f.args else {
        return None;
    };
    match list.args.as_slice() {
        [FunctionArg::Unnamed(FunctionArgExpr::Expr(x)), FunctionArg::Unnamed(FunctionArgExpr::Expr(d))] => {
            scaled(function, x, d.to_string().replace(' ', "").parse().ok()?)
        }
        _ => None,
    }
}

fn scaled(function: &str, x: &Expr, digits: i32) -> Option<Expr> {
    let power = format!("1{}", "0".repeat(digits.unsigned_abs().min(30) as usize));
    let sql = match digits >= 0 {
        true => format!("{function}(({x}) * {power}) / {power}"),
        false => format!("{function}(({x}) / {power}) * {power}"),
    };
    parse_expr(&sql)
}

/// Spark functions that are a DataFusion expression of their arguments (`{0}`, `{1}`):
/// name, number of arguments, the expression.
const TEMPLATES: &[(&str, usize, &str)] = &[
    ("e", 0, "exp(1.0)"),
    ("to_timestamp_ltz", 1, "to_timestamp({0})"),
    ("to_timestamp_ltz", 2, "to_timestamp({0}, {1})"),
    ("try_to_timestamp", 1, "to_timestamp({0})"),
    ("try_to_timestamp", 2, "to_timestamp({0}, {1})"),
    ("date_from_unix_date", 1, "date_add(DATE '1970-01-01', {0})"),
    ("curdate", 0, "current_date()"),
    ("positive", 1, "({0})"),
    ("zeroifnull", 1, "coalesce({0}, 0)"),
    ("nullifzero", 1, "nullif({0}, 0)"),
    ("try_element_at", 2, "element_at({0}, {1})"),
    ("map_contains_key", 2, "array_contains(map_keys({0}), {1})"),
    // Spark's position of a missing element is 0, DataFusion's NULL.
    ("array_position", 2, "coalesce(array_position({0}, {1}), 0)"),
    ("max_by", 2, "first_value({0} ORDER BY {1} DESC)"),
    ("min_by", 2, "first_value({0} ORDER BY {1})"),
    // Spark's cast functions: DATE(x), INT(x), …
    ("date", 1, "CAST({0} AS DATE)"),
    ("timestamp", 1, "CAST({0} AS TIMESTAMP)"),
    ("string", 1, "CAST({0} AS STRING)"),
    ("boolean", 1, "CAST({0} AS BOOLEAN)"),
    ("tinyint", 1, "CAST({0} AS TINYINT)"),
    ("smallint", 1, "CAST({0} AS SMALLINT)"),
    ("int", 1, "CAST({0} AS INT)"),
    ("bigint", 1, "CAST({0} AS BIGINT)"),
    ("float", 1, "CAST({0} AS FLOAT)"),
    ("double", 1, "CAST({0} AS DOUBLE)"),
    ("binary", 1, "CAST({0} AS BINARY)"),
];

/// A call of one of [`TEMPLATES`] (not as a window function) as its expression.
fn template(f: &ast::Function) -> Option<Expr> {
    if f.over.is_some() {
        return None;
    }
    let name = function_name(&Expr::Function(f.clone()))?;
    let args: Vec<String> = match &f.args {
        FunctionArguments::None => vec![],
        FunctionArguments::List(list)
            if list.duplicate_treatment.is_none() && list.clauses.is_empty() =>
        {
            list.args
                .iter()
                .map(|a| match a {
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e.to_string()),
                    _ => None,
                })
                .collect::<Option<_>>()?
        }
        _ => return None,
    };
    let (_, _, sql) = TEMPLATES
        .iter()
        .find(|(n, arity, _)| *n == name && *arity == args.len())?;
    let mut sql = sql.to_string();
    for (i, arg) in args.iter().enumerate() {
        sql = sql.replace(&format!("{{{i}}}"), arg);
    }
    parse_expr(&sql)
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
            plain_sql("SELECT trim(both  from s), trim(LEADING 'x' FROM s), both_from"),
            "SELECT trim(both ' '  from s), trim(LEADING 'x' FROM s), both_from"
        );
    }
}
