//! Spark calls written as DataFusion expressions: `struct(…)` field names, `map(k, v, …)`,
//! `first(x, true)`, INT literals, `floor(x, d)`, and the functions that are an expression
//! of their arguments ([`TEMPLATES`]).

use datafusion::sql::sqlparser::ast::{
    self, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, ObjectName, Value,
};
use datafusion::sql::sqlparser::parser::Parser;

use super::{function_name, parse_expr, SparkSql};

/// The name Spark gives field `i` of `struct(…)`: the column's name for a column, the
/// alias for `x AS name`, else `col` and its position.
pub(super) fn field_name(e: &Expr, i: usize) -> String {
    match e {
        Expr::Identifier(id) => id.value.clone(),
        Expr::CompoundIdentifier(ids) => ids.last().map(|id| id.value.clone()).unwrap_or_default(),
        Expr::Named { name, .. } => name.value.clone(),
        _ => format!("col{}", i + 1),
    }
}

/// `struct(a, 1 AS b)` (sqlparser's struct literal) as `named_struct('a', a, 'b', 1)`.
pub(super) fn struct_call(values: &[Expr]) -> Option<Expr> {
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
pub(super) fn name_struct_fields(f: &mut ast::Function) {
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
pub(super) fn pair_map(f: &mut ast::Function) {
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
pub(super) fn first_or_last(f: &mut ast::Function, first: bool) {
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

/// Functions whose integer literal arguments stay literals (see [`int_literals`]).
const KEEP_LITERALS: &[&str] = &["round", "bround"];

/// Integer literals passed to a function as Spark types them: `INT` when they fit in
/// 32 bits (DataFusion's are `BIGINT`), so `date_add(d, 1)` finds Spark's signature.
pub(super) fn int_literals(f: &mut ast::Function) {
    // A window function's offsets and bucket counts must stay plain literals, as must
    // the decimals of a rounding, which its result type depends on.
    if f.over.is_some() || KEEP_LITERALS.contains(&f.name.to_string().to_lowercase().as_str()) {
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

pub(super) fn no_arguments(f: &ast::Function) -> bool {
    match &f.args {
        FunctionArguments::None => true,
        FunctionArguments::List(l) => l.args.is_empty(),
        FunctionArguments::Subquery(_) => false,
    }
}

/// `collect_set(x)` as `array_sort(collect_set(x))`: Spark leaves the order of a set's
/// elements to its hash table; quern gives them in order, the same on every run.
pub(super) fn sorted(f: &ast::Function) -> Expr {
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
pub(super) fn equal_null(f: &ast::Function) -> Option<Expr> {
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
pub(super) fn scaled_floor_or_ceil(expr: &Expr) -> Option<Expr> {
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
pub(super) fn scaled_call(f: &ast::Function) -> Option<Expr> {
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

pub(super) fn scaled(function: &str, x: &Expr, digits: i32) -> Option<Expr> {
    let power = format!("1{}", "0".repeat(digits.unsigned_abs().min(30) as usize));
    let sql = match digits >= 0 {
        true => format!("{function}(({x}) * {power}) / {power}"),
        false => format!("{function}(({x}) / {power}) * {power}"),
    };
    parse_expr(&sql)
}

/// Spark functions that are a DataFusion expression of their arguments (`{0}`, `{1}`):
/// name, number of arguments, the expression.
pub(super) const TEMPLATES: &[(&str, usize, &str)] = &[
    ("e", 0, "exp(1.0)"),
    // Spark sorts NULLs last.
    ("array_sort", 1, "array_sort({0}, 'ASC', 'NULLS LAST')"),
    ("validate_utf8", 1, "CAST({0} AS STRING)"),
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
pub(super) fn template(f: &ast::Function) -> Option<Expr> {
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

/// Spark's `decode(x, search1, result1, …[, default])` (more than two arguments) as
/// `CASE WHEN x IS NOT DISTINCT FROM search1 THEN result1 … ELSE default END`.
pub(super) fn decode_case(f: &ast::Function) -> Option<Expr> {
    let FunctionArguments::List(list) = &f.args else {
        return None;
    };
    if list.args.len() < 3 {
        return None;
    }
    let args: Vec<String> = list
        .args
        .iter()
        .map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e.to_string()),
            _ => None,
        })
        .collect::<Option<_>>()?;
    let (x, rest) = args.split_first()?;
    let mut sql = String::from("CASE");
    for pair in rest.chunks(2) {
        match pair {
            [search, result] => sql.push_str(&format!(
                " WHEN ({x}) IS NOT DISTINCT FROM ({search}) THEN {result}"
            )),
            [default] => sql.push_str(&format!(" ELSE {default}")),
            _ => {}
        }
    }
    sql.push_str(" END");
    parse_expr(&sql)
}

/// `forall(xs, x -> p)` as `NOT array_any_match(xs, x -> NOT (p))`: false if some
/// element fails, NULL if none fails but some is unknown, else true.
pub(super) fn forall(f: &ast::Function) -> Option<Expr> {
    let FunctionArguments::List(list) = &f.args else {
        return None;
    };
    let [FunctionArg::Unnamed(FunctionArgExpr::Expr(xs)), FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Lambda(l)))] =
        list.args.as_slice()
    else {
        return None;
    };
    parse_expr(&format!(
        "NOT array_any_match({xs}, {} -> NOT ({}))",
        l.params, l.body
    ))
}

/// `timestampdiff(HOUR, a, b)`: the unit, a keyword in Spark, as a string argument.
pub(super) fn unit_as_string(f: &mut ast::Function) {
    let FunctionArguments::List(list) = &mut f.args else {
        return;
    };
    if list.args.len() != 3 {
        return;
    }
    if let FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Identifier(unit))) = &list.args[0] {
        let unit = Expr::Value(Value::SingleQuotedString(unit.value.to_uppercase()).into());
        list.args[0] = FunctionArg::Unnamed(FunctionArgExpr::Expr(unit));
    }
}
