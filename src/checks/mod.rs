//! Checks on a task's output: expectations, evaluated while the output streams into
//! its table, and metrics, judged against their thresholds and the previous run.

mod expectations;
mod metrics;

pub(crate) use expectations::{plan_input, CompiledExpectations, ExpectationsTable};
pub use expectations::{ExpectationError, ExpectationOutcome};
pub(crate) use metrics::{check_shape, judge, values, GroupValues, Previous};
pub use metrics::{MetricError, MetricValue, PlannedMetric};
