//! Built-in SQL functions for statistics: `odds_ratio(exposed, outcome)`, and STL
//! time-series decomposition and forecasting per group, `stl_decompose(day, value,
//! period)` and `stl_forecast(day, value, period, horizon)`; and the functions of each
//! SQL dialect (`spark`).

mod odds_ratio;
mod spark;
mod stl;

pub(crate) use spark::{spark_aggregate, spark_scalar, state_for, wrong_dialect};

use datafusion::logical_expr::AggregateUDF;

/// Every built-in aggregate function, registered by the engine builder.
pub(crate) fn aggregates() -> Vec<AggregateUDF> {
    vec![
        AggregateUDF::from(odds_ratio::OddsRatio::new()),
        AggregateUDF::from(stl::Stl::decompose()),
        AggregateUDF::from(stl::Stl::forecast()),
    ]
}
