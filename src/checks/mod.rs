//! Checks on a task's output: expectations, evaluated while the output streams into
//! its table.

mod expectations;

pub(crate) use expectations::{CompiledExpectations, ExpectationConfig, ExpectationsTable};
pub use expectations::{ExpectationOutcome, Severity};
