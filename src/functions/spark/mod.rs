//! The session of a `spark` pipeline: Spark's functions — the `datafusion-spark` crate's
//! and quern's own, replacing DataFusion's of the same names (`concat`, `floor`,
//! `trunc`, …) — where DataFusion built-ins that Spark does not have are not functions
//! at all (a query calling one is told it is a `datafusion` function); Spark's
//! expression planning (`EXTRACT`, `SUBSTRING … FROM`), and Spark's arithmetic: `/`
//! between integers is fractional, `DIV` is integer division.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use datafusion::arrow::datatypes::DataType;
use datafusion::common::DFSchema;
use datafusion::error::Result as DfResult;
use datafusion::execution::session_state::{SessionState, SessionStateBuilder};
use datafusion::logical_expr::expr::Cast;
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::{
    binary_expr, AggregateUDF, Expr, ExprSchemable, HigherOrderUDF, Operator, ScalarUDF, WindowUDF,
};
use datafusion::sql::sqlparser::ast::BinaryOperator;

use crate::config::Dialect;
use crate::error::Error;
use crate::pipeline::ParsedTask;

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
    let spark = registry();
    let mut planners: Vec<Arc<dyn ExprPlanner>> = vec![
        Arc::new(SparkOperators),
        Arc::new(datafusion_spark::planner::SparkFunctionPlanner),
    ];
    planners.extend(state.expr_planners().iter().cloned());
    let mut builder = SessionStateBuilder::new_from_existing(state).with_expr_planners(planners);
    // The session's own functions (quern's, models) stay; DataFusion's built-ins give
    // way to the dialect's.
    let own = |name: &str| !spark.builtin.contains(name);
    replace_builtins(
        builder.scalar_functions(),
        &spark.scalars,
        |f| own(f.name()),
    );
    replace_builtins(builder.aggregate_functions(), &spark.aggregates, |f| {
        own(f.name())
    });
    replace_builtins(
        builder.window_functions(),
        &spark.windows,
        |f| own(f.name()),
    );
    replace_builtins(builder.higher_order_functions(), &spark.lambdas, |f| {
        own(f.name())
    });
    let mut state = builder.build();
    let parser = &mut state.config_mut().options_mut().sql_parser;
    parser.dialect = datafusion::config::Dialect::Spark;
    // Spark types `2.5` as DECIMAL(2,1), `2.5e0` as DOUBLE.
    parser.parse_float_as_decimal = true;
    state
}

/// The `spark` dialect's scalar function `name`, as a session of that dialect has it.
pub(crate) fn spark_scalar(name: &str) -> Option<Arc<ScalarUDF>> {
    registry()
        .scalars
        .iter()
        .find(|f| f.name() == name)
        .cloned()
}

/// The `spark` dialect's aggregate function `name`.
pub(crate) fn spark_aggregate(name: &str) -> Option<Arc<AggregateUDF>> {
    registry()
        .aggregates
        .iter()
        .find(|f| f.name() == name)
        .cloned()
}

/// `round` and `bround` (`f`), rounding a DECIMAL in decimal arithmetic; `f` itself for
/// every other function.
fn with_decimal_rounding(f: Arc<ScalarUDF>) -> Arc<ScalarUDF> {
    match f.name() {
        "round" => coerce::or_decimals(f, scalars::decimal_round(false)),
        "bround" => coerce::or_decimals(f, scalars::decimal_round(true)),
        _ => f,
    }
}

/// `functions` without DataFusion's built-ins (`own` keeps the others), then `spark`'s.
fn replace_builtins<T>(
    functions: &mut Option<Vec<Arc<T>>>,
    spark: &[Arc<T>],
    own: impl Fn(&T) -> bool,
) {
    let functions = functions.get_or_insert_with(Vec::new);
    functions.retain(|f| own(f));
    functions.extend(spark.iter().cloned());
}

/// The functions of the `spark` dialect, the same for every session: DataFusion's
/// built-ins that are Spark's (some under Spark's names, some dispatching to bytes or
/// arrays), datafusion-spark's and quern's own replacing those of the same names.
struct Registry {
    /// The names and aliases of DataFusion's built-ins, which a session's own functions
    /// are not.
    builtin: HashSet<String>,
    scalars: Vec<Arc<ScalarUDF>>,
    aggregates: Vec<Arc<AggregateUDF>>,
    windows: Vec<Arc<WindowUDF>>,
    lambdas: Vec<Arc<HigherOrderUDF>>,
}

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let mut defaults = SessionStateBuilder::new().with_default_features();
        let builtin = {
            let state = defaults.clone().build();
            let scalars = state.scalar_functions().keys();
            let aggregates = state.aggregate_functions().keys();
            let windows = state.window_functions().keys();
            let lambdas = state.higher_order_functions().keys();
            scalars
                .chain(aggregates)
                .chain(windows)
                .chain(lambdas)
                .cloned()
                .collect()
        };
        let mut spark: Vec<_> = datafusion_spark::all_default_scalar_functions()
            .into_iter()
            .map(coerce::with_spark_casts)
            .map(coerce::or_arrays)
            .map(coerce::seconds_with_fraction)
            .collect();
        spark.extend(scalars::all());
        let mut scalars: Vec<Arc<ScalarUDF>> = defaults
            .scalar_functions()
            .take()
            .unwrap_or_default()
            .into_iter()
            .map(|f| match spark_names_of(f.name()) {
                Some(names) => Arc::new(f.as_ref().clone().with_aliases(names.iter().copied())),
                None => f,
            })
            .filter(|f| {
                in_spark(f.name(), f.aliases())
                    && !spark.iter().any(|s| s.name() == f.name())
                    && !NOT_SPARKS.contains(&f.name())
            })
            .map(|f| match f.name() {
                "reverse" => coerce::or_arrays(f),
                "lpad" => coerce::or_bytes(f, scalars::pad_bytes(true)),
                "rpad" => coerce::or_bytes(f, scalars::pad_bytes(false)),
                "octet_length" => coerce::or_bytes(f, scalars::byte_length()),
                _ => f,
            })
            .collect();
        scalars.extend(spark);
        let scalars = scalars.into_iter().map(with_decimal_rounding).collect();
        let mut spark = datafusion_spark::all_default_aggregate_functions();
        spark.extend(aggregates::all());
        let mut aggregates: Vec<Arc<AggregateUDF>> = defaults
            .aggregate_functions()
            .take()
            .unwrap_or_default()
            .into_iter()
            .map(|f| match spark_names_of(f.name()) {
                Some(names) => Arc::new(f.as_ref().clone().with_aliases(names.iter().copied())),
                None => f,
            })
            .filter(|f| {
                in_spark(f.name(), f.aliases()) && !spark.iter().any(|s| s.name() == f.name())
            })
            .collect();
        aggregates.extend(spark);
        let windows = defaults
            .window_functions()
            .take()
            .unwrap_or_default()
            .into_iter()
            .filter(|f| in_spark(f.name(), f.aliases()))
            .collect();
        // Spark's names for DataFusion's lambda functions.
        let lambdas = defaults
            .higher_order_functions()
            .take()
            .unwrap_or_default()
            .into_iter()
            .map(|f| {
                let spark = match f.name() {
                    "array_transform" => "transform",
                    "array_filter" => "filter",
                    "array_any_match" => "exists",
                    _ => return f,
                };
                Arc::new(f.as_ref().clone().with_aliases([spark]))
            })
            .collect();
        Registry {
            builtin,
            scalars,
            aggregates,
            windows,
            lambdas,
        }
    })
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

/// Whether a DataFusion built-in belongs in the `spark` dialect: it is one of Spark's
/// functions, by its name or an alias.
fn in_spark(name: &str, aliases: &[String]) -> bool {
    static SPARK: OnceLock<HashSet<&'static str>> = OnceLock::new();
    let spark = SPARK.get_or_init(|| {
        include_str!("names.txt")
            .lines()
            .filter(|l| !l.starts_with('#'))
            .collect()
    });
    spark.contains(name) || aliases.iter().any(|a| spark.contains(a.as_str()))
}

/// Whether `name` is a scalar, aggregate or window function of `state`.
fn has_function(state: &SessionState, name: &str) -> bool {
    state.scalar_functions().contains_key(name)
        || state.higher_order_functions().contains_key(name)
        || state.aggregate_functions().contains_key(name)
        || state.window_functions().contains_key(name)
}

/// Why `parsed` (the rendered SQL `sql` of `task`, from `file`) did not plan, when it
/// calls a function that its dialect does not have and the other dialect has: the
/// error names the function, the line that first calls it and the dialect that has
/// it. `state` is the session's own (the `datafusion` dialect).
pub(crate) fn wrong_dialect(
    state: &SessionState,
    parsed: &ParsedTask,
    task: &str,
    file: &Path,
    sql: &str,
) -> Option<Error> {
    let here = state_for(state.clone(), parsed.dialect);
    let missing: Vec<&String> = parsed
        .functions
        .iter()
        .filter(|f| !has_function(&here, f))
        .collect();
    if missing.is_empty() {
        return None;
    }
    let other = parsed.dialect.other();
    let there = state_for(state.clone(), other);
    let function = missing.into_iter().find(|f| has_function(&there, f))?;
    Some(Error::wrong_dialect(
        task,
        file,
        sql,
        (function.clone(), parsed.dialect, other),
    ))
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
