//! Spark SQL: how sqlparser parses it for quern (sqlparser's `SparkSqlDialect` and the
//! backslash escapes Spark's own parser reads in string literals), and the rewrites
//! that give Spark's SQL forms DataFusion's meaning: generators (`explode`,
//! `posexplode`, `LATERAL VIEW`) as `unnest` ([`generators`]), Spark calls as
//! DataFusion expressions ([`calls`]: `struct(a, b)` field names, `map(k1, v1, …)`,
//! `first(x, true)`, `floor(x, d)`, …), and text sqlparser does not read ([`text`]).

use std::ops::ControlFlow;

use datafusion::sql::parser::Statement;
use datafusion::sql::sqlparser::ast::{
    self, Expr, FunctionArguments, Ident, ObjectName, ObjectNamePart, SelectItem, TableFactor,
};
use datafusion::sql::sqlparser::dialect::{Dialect as SqlDialect, SparkSqlDialect};
use datafusion::sql::sqlparser::parser::{Parser, ParserError};

mod calls;
mod generators;
mod intervals;
mod text;

pub(crate) use text::plain_sql;

use calls::{
    decode_case, equal_null, first_or_last, forall, int_literals, name_struct_fields, no_arguments,
    pair_map, scaled_call, scaled_floor_or_ceil, sorted, struct_call, template, unit_as_string,
};
use generators::{generator_columns, generator_sql, lateral_views, parse_from};

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
        // is two columns, `pos` (from 0) and `col`; `inline` a column per field.
        let mut projection = Vec::with_capacity(select.projection.len());
        for item in std::mem::take(&mut select.projection) {
            let SelectItem::UnnamedExpr(expr) = &item else {
                projection.push(item);
                continue;
            };
            match function_name(expr).as_deref() {
                Some("explode" | "explode_outer" | "posexplode" | "inline" | "inline_outer") => {
                    projection.extend(generator_columns(expr))
                }
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
        if let Expr::Interval(interval) = expr {
            if let Some(e) = intervals::ansi(interval) {
                *expr = e;
            }
            return ControlFlow::Continue(());
        }
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
            Some("timestampdiff") => unit_as_string(f),
            Some("try_make_interval") => {
                f.name = ObjectName::from(vec![Ident::new("make_interval")])
            }
            Some("forall") => {
                if let Some(e) = forall(f) {
                    *expr = e;
                }
            }
            Some("decode") => {
                if let Some(e) = decode_case(f) {
                    *expr = e;
                }
            }
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

fn parse_expr(sql: &str) -> Option<Expr> {
    Parser::new(&SparkSql)
        .try_with_sql(sql)
        .ok()?
        .parse_expr()
        .ok()
}
