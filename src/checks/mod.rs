//! Checks on a task's output: expectations, evaluated while the output streams into
//! its table.

mod alerts;
mod expectations;
mod metrics;
mod mlflow;
mod runlog;

pub(crate) use alerts::send as send_alerts;
pub use alerts::{AlertConfig, AlertDelivery, AlertEvent, AlertKind};
pub(crate) use expectations::{CompiledExpectations, ExpectationConfig, ExpectationsTable};
pub use expectations::{ExpectationOutcome, Severity};
pub(crate) use metrics::{check_shape, judge, values, Previous};
pub use metrics::{MetricValue, PlannedMetric};
pub(crate) use mlflow::log_run as log_to_mlflow;
pub(crate) use runlog::RunLog;
pub use runlog::{MetricPoint, RunHistory, RunRecord};
