//! Spark's generators as DataFusion's `unnest`: `explode`, `posexplode`, `inline` (and
//! their `_outer` forms) in a
//! select list, in FROM, and in `LATERAL VIEW` (a subquery per view).

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    self, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, ObjectNamePart, SelectItem,
    TableFactor,
};
use datafusion::sql::sqlparser::parser::Parser;

use super::{function_name, SparkSql};

/// The one argument of a generator call (positional or named, as in
/// `explode(collection => xs)`), as SQL text.
pub(super) fn only_argument(args: &[FunctionArg]) -> Option<String> {
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
pub(super) fn generator_items(call: &Expr, names: &[Ident]) -> Option<String> {
    let Expr::Function(f) = call else {
        return None;
    };
    let FunctionArguments::List(list) = &f.args else {
        return None;
    };
    generator_sql(&function_name(call)?, &list.args, names)
}

pub(super) fn generator_sql(
    function: &str,
    args: &[FunctionArg],
    names: &[Ident],
) -> Option<String> {
    let x = only_argument(args)?;
    let name =
        |i: usize, default: &str| names.get(i).map_or(default.to_string(), |n| n.to_string());
    // `_outer`: an empty or NULL array is one row of NULLs.
    let outer = format!("CASE WHEN size({x}) > 0 THEN {x} ELSE array(NULL) END");
    match function {
        "explode" => Some(format!("unnest({x}) AS {}", name(0, "col"))),
        "explode_outer" => Some(format!("unnest({outer}) AS {}", name(0, "col"))),
        // An array of structs: a column per field.
        "inline" => Some(format!("unnest(unnest({x}))")),
        "inline_outer" => Some(format!("unnest(unnest({outer}))")),
        // The positions count from 0, for a non-empty array.
        "posexplode" => Some(format!(
            "unnest(CASE WHEN size({x}) > 0 THEN sequence(0, size({x}) - 1) END) AS {}, unnest({x}) AS {}",
            name(0, "pos"),
            name(1, "col")
        )),
        _ => None,
    }
}

pub(super) fn parse_items(sql: &str) -> Option<Vec<SelectItem>> {
    let mut parser = Parser::new(&SparkSql).try_with_sql(sql).ok()?;
    parser.parse_projection().ok()
}

/// A generator in a select list: its columns (`col`; `pos` and `col`; one per field).
pub(super) fn generator_columns(call: &Expr) -> Vec<SelectItem> {
    generator_items(call, &[])
        .and_then(|sql| parse_items(&sql))
        .unwrap_or_else(|| vec![SelectItem::UnnamedExpr(call.clone())])
}

/// `FROM t LATERAL VIEW explode(t.xs) v AS x` as `FROM (SELECT *, unnest(t.xs) AS x
/// FROM t) AS t`, one subquery per view, with `v.x` read as `x`. Left as it is (for
/// DataFusion to refuse) when the FROM is not one table or subquery, for `OUTER`, and
/// for generators other than `explode` and `posexplode`.
pub(super) fn lateral_views(select: &mut ast::Select) {
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
pub(super) fn parse_from(sql: &str) -> Option<TableFactor> {
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
