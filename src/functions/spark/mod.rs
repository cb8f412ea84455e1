//! The session of a `spark` pipeline: Spark's functions — the `datafusion-spark` crate's
//! and quern's own, replacing DataFusion's of the same names (`concat`, `floor`,
//! `trunc`, …) — where DataFusion built-ins that Spark does not have are not functions
//! at all (a query calling one is told it is a `datafusion` function); Spark's
//! expression planning (`EXTRACT`, `SUBSTRING … FROM`), and Spark's arithmetic: `/`
//! between integers is fractional, `DIV` is integer division.

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, OnceLock};

use datafusion::arrow::datatypes::DataType;
use datafusion::common::DFSchema;
use datafusion::error::Result as DfResult;
use datafusion::execution::session_state::{SessionState, SessionStateBuilder};
use datafusion::logical_expr::expr::Cast;
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::{binary_expr, Expr, ExprSchemable, Operator};
use datafusion::sql::sqlparser::ast::BinaryOperator;

use crate::config::Dialect;

mod aggregates;
mod coerce;
mod scalars;

/// `state` made to plan SQL of `dialect`: for `spark`, a copy with Spark's functions
/// and planners (tables and settings are shared with `state`); for `datafusion`,
/// `state` itself.
pub(crate) fn state_for(state: SessionState, dialect: Dialect) -> SessionState {
    if dialect != Dialect::Spark {
        return state;
    }
    let mut planners: Vec<Arc<dyn ExprPlanner>> = vec![
        Arc::new(SparkOperators),
        Arc::new(datafusion_spark::planner::SparkFunctionPlanner),
    ];
    planners.extend(state.expr_planners().iter().cloned());
    let mut builder = SessionStateBuilder::new_from_existing(state).with_expr_planners(planners);
    let functions = builder.scalar_functions().get_or_insert_with(Vec::new);
    let mut spark: Vec<_> = datafusion_spark::all_default_scalar_functions()
        .into_iter()
        .map(coerce::with_spark_casts)
        .map(coerce::or_arrays)
        .map(coerce::seconds_with_fraction)
        .collect();
    spark.extend(scalars::all());
    for f in functions.iter_mut() {
        if let Some(names) = spark_names_of(f.name()) {
            *f = Arc::new(f.as_ref().clone().with_aliases(names.iter().copied()));
        }
    }
    functions.retain(|f| {
        in_spark(f.name(), f.aliases())
            && !spark.iter().any(|s| s.name() == f.name())
            && !NOT_SPARKS.contains(&f.name())
    });
    functions.extend(spark);
    for f in functions.iter_mut() {
        match f.name() {
            "reverse" => *f = coerce::or_arrays(f.clone()),
            "lpad" => *f = coerce::or_bytes(f.clone(), scalars::pad_bytes(true)),
            "rpad" => *f = coerce::or_bytes(f.clone(), scalars::pad_bytes(false)),
            "octet_length" => *f = coerce::or_bytes(f.clone(), scalars::byte_length()),
            _ => {}
        }
    }
    let aggregates = builder.aggregate_functions().get_or_insert_with(Vec::new);
    let mut spark = datafusion_spark::all_default_aggregate_functions();
    spark.extend(aggregates::all());
    for f in aggregates.iter_mut() {
        if let Some(names) = spark_names_of(f.name()) {
            *f = Arc::new(f.as_ref().clone().with_aliases(names.iter().copied()));
        }
    }
    aggregates
        .retain(|f| in_spark(f.name(), f.aliases()) && !spark.iter().any(|s| s.name() == f.name()));
    aggregates.extend(spark);
    // Spark's names for DataFusion's lambda functions.
    if let Some(lambdas) = builder.higher_order_functions() {
        for f in lambdas.iter_mut() {
            let spark = match f.name() {
                "array_transform" => "transform",
                "array_filter" => "filter",
                "array_any_match" => "exists",
                _ => continue,
            };
            *f = Arc::new(f.as_ref().clone().with_aliases([spark]));
        }
    }
    let windows = builder.window_functions().get_or_insert_with(Vec::new);
    windows.retain(|f| in_spark(f.name(), f.aliases()));
    let mut state = builder.build();
    state.config_mut().options_mut().sql_parser.dialect = datafusion::config::Dialect::Spark;
    state
}

/// DataFusion functions named as Spark's that do something else: Spark's
/// `array_remove` removes every match, DataFusion's only the first (Spark's is
/// DataFusion's `array_remove_all`, under [`spark_names_of`]).
const NOT_SPARKS: &[&str] = &["array_remove"];

/// Spark's names for DataFusion functions that do what Spark's of those names do.
fn spark_names_of(datafusion_name: &str) -> Option<&'static [&'static str]> {
    Some(match datafusion_name {
        "upper" => &["ucase"],
        "lower" => &["lcase"],
        "signum" => &["sign"],
        "cardinality" => &["array_size"],
        "approx_distinct" => &["approx_count_distinct"],
        "bool_and" => &["every"],
        "bool_or" => &["some", "any"],
        "stddev" => &["std"],
        "var_samp" => &["variance"],
        "array_remove_all" => &["array_remove"],
        _ => return None,
    })
}

/// Whether a function of the session belongs in the `spark` dialect: it is one of
/// Spark's (by its name or an alias), or it is not a DataFusion built-in (quern's own
/// functions, models).
fn in_spark(name: &str, aliases: &[String]) -> bool {
    static SPARK: OnceLock<HashSet<&'static str>> = OnceLock::new();
    static BUILTIN: OnceLock<HashSet<String>> = OnceLock::new();
    let spark = SPARK.get_or_init(|| {
        include_str!("names.txt")
            .lines()
            .filter(|l| !l.starts_with('#'))
            .collect()
    });
    let builtin = BUILTIN.get_or_init(|| {
        let state = SessionStateBuilder::new().with_default_features().build();
        let scalars = state.scalar_functions().keys();
        let aggregates = state.aggregate_functions().keys();
        let windows = state.window_functions().keys();
        scalars.chain(aggregates).chain(windows).cloned().collect()
    });
    !builtin.contains(name)
        || spark.contains(name)
        || aliases.iter().any(|a| spark.contains(a.as_str()))
}

/// Whether `name` is a scalar, aggregate or window function of `state`.
fn has_function(state: &SessionState, name: &str) -> bool {
    state.scalar_functions().contains_key(name)
        || state.higher_order_functions().contains_key(name)
        || state.aggregate_functions().contains_key(name)
        || state.window_functions().contains_key(name)
}

/// The first of `functions` (lower-cased names a query calls) that SQL of `dialect`
/// does not have and the other dialect has, with both dialects; `state` is the session's
/// own (the `datafusion` dialect).
pub(crate) fn other_dialects(
    state: &SessionState,
    dialect: Dialect,
    functions: &BTreeSet<String>,
) -> Option<(String, Dialect, Dialect)> {
    let here = state_for(state.clone(), dialect);
    let missing: Vec<&String> = functions
        .iter()
        .filter(|f| !has_function(&here, f))
        .collect();
    if missing.is_empty() {
        return None;
    }
    let other = dialect.other();
    let there = state_for(state.clone(), other);
    missing
        .into_iter()
        .find(|f| has_function(&there, f))
        .map(|f| (f.clone(), dialect, other))
}

/// Spark's operator semantics: `a / b` of two integers divides as doubles, and
/// `a DIV b` is integer division.
#[derive(Debug)]
struct SparkOperators;

impl ExprPlanner for SparkOperators {
    fn plan_binary_op(
        &self,
        expr: RawBinaryExpr,
        schema: &DFSchema,
    ) -> DfResult<PlannerResult<RawBinaryExpr>> {
        let cast = |e: Expr, t: DataType| Expr::Cast(Cast::new(Box::new(e), t));
        if expr.op == BinaryOperator::MyIntegerDivide {
            // `a DIV b`: the quotient truncated toward zero, as a BIGINT.
            let quotient = binary_expr(expr.left, Operator::Divide, expr.right);
            return Ok(PlannerResult::Planned(cast(quotient, DataType::Int64)));
        }
        if expr.op != BinaryOperator::Divide {
            return Ok(PlannerResult::Original(expr));
        }
        let integer = |e: &Expr| {
            e.get_type(schema)
                .map(|t| t.is_integer() || t == DataType::Null)
        };
        if !(integer(&expr.left)? && integer(&expr.right)?) {
            return Ok(PlannerResult::Original(expr));
        }
        Ok(PlannerResult::Planned(binary_expr(
            cast(expr.left, DataType::Float64),
            Operator::Divide,
            cast(expr.right, DataType::Float64),
        )))
    }
}
