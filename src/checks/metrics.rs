//! Metrics: a named SQL query over the run's tables returning one number (or one per
//! group), judged against thresholds, including the change from the previous
//! successful run's value.

use std::collections::BTreeMap;
use std::path::PathBuf;

use datafusion::arrow::array::{Array, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::arrow::util::display::array_value_to_string;
use datafusion::sql::parser::Statement;

use crate::config::{MetricConfig, PipelineName, TaskName};

/// A metric planned with its run.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PlannedMetric {
    /// The pipeline whose metric it is.
    pub pipeline: PipelineName,
    /// The metric's name.
    pub name: TaskName,
    /// Where it is defined (`sql/<pipeline>/pipeline.toml#metrics.<name>`).
    pub file: PathBuf,
    /// The rendered query.
    pub sql: String,
    /// Its thresholds.
    pub config: MetricConfig,
    /// Whether it is computed per group (a group column, then the number).
    pub grouped: bool,
    pub(crate) statement: Statement,
    /// The dialect its statement is planned in.
    pub(crate) dialect: crate::config::Dialect,
}

/// One value of a metric in a run, judged.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct MetricValue {
    /// The pipeline whose metric it is.
    pub pipeline: PipelineName,
    /// The metric.
    pub metric: String,
    /// The group, for a metric computed per group.
    pub group: Option<String>,
    /// The value (NULL when the query's number was NULL).
    pub value: Option<f64>,
    /// The same metric's (and group's) value in the previous successful run.
    pub previous: Option<f64>,
    /// Why the value breaches a threshold, if it does.
    pub breach: Option<String>,
}

/// Why a metric cannot be planned or computed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetricError {
    /// The query does not return one number, or a group column and a number.
    #[error("{0}")]
    Shape(String),
    /// The query failed to plan or run.
    #[error(transparent)]
    Query(#[from] datafusion::error::DataFusionError),
    /// The value could not be read as a number or the group as text.
    #[error("cannot read the metric's value")]
    Value(#[from] datafusion::arrow::error::ArrowError),
}

/// Checks a metric query's output columns: one number, or a group then a number.
pub(crate) fn check_shape(schema: &Schema) -> Result<(), MetricError> {
    let fields = schema.fields();
    let numeric = |t: &DataType| t.is_numeric();
    match fields.len() {
        1 if numeric(fields[0].data_type()) => Ok(()),
        2 if numeric(fields[1].data_type()) => Ok(()),
        n => Err(MetricError::Shape(format!(
            "a metric query returns one number, or a group column and a number; this one returns {n} column(s): {}",
            fields
                .iter()
                .map(|f| format!("{} {}", f.name(), f.data_type()))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// A metric query's result: (group, value) pairs; the group is `None` for a single number.
pub(crate) type GroupValues = Vec<(Option<String>, Option<f64>)>;

/// The (group, value) pairs of a metric query's result.
pub(crate) fn values(batches: &[RecordBatch], grouped: bool) -> Result<GroupValues, MetricError> {
    let mut out = Vec::new();
    for b in batches {
        let value_col = cast(b.column(b.num_columns() - 1), &DataType::Float64)?;
        let values = value_col
            .as_any()
            .downcast_ref::<datafusion::arrow::array::Float64Array>()
            .ok_or_else(|| MetricError::Shape("the metric's number is not numeric".into()))?;
        for r in 0..b.num_rows() {
            let group = if b.num_columns() == 2 {
                let g = b.column(0);
                if g.is_null(r) {
                    None
                } else {
                    Some(array_value_to_string(g, r)?)
                }
            } else {
                None
            };
            let v = (!values.is_null(r)).then(|| values.value(r));
            out.push((group, v));
        }
    }
    // No groups is an answer; no number for an ungrouped metric is not.
    if out.is_empty() && !grouped {
        return Err(MetricError::Shape(
            "the metric query returned no rows; it must return one number (use an aggregate)"
                .into(),
        ));
    }
    if out.iter().all(|(g, _)| g.is_none()) && out.len() > 1 {
        return Err(MetricError::Shape(format!(
            "the metric query returned {} rows for one number; add a group column or aggregate",
            out.len()
        )));
    }
    Ok(out)
}

/// Judges `value` against the thresholds and the previous value.
///
/// A NULL value (e.g. an average over no rows) is not judged; write
/// `COALESCE(…, 0)` in the query to judge it as a number.
pub(crate) fn judge(
    config: &MetricConfig,
    value: Option<f64>,
    previous: Option<f64>,
) -> Option<String> {
    let v = value?;
    if let Some(min) = config.min.filter(|m| v < *m) {
        return Some(format!("{v} is below the minimum {min}"));
    }
    if let Some(max) = config.max.filter(|m| v > *m) {
        return Some(format!("{v} is above the maximum {max}"));
    }
    let prev = previous.filter(|p| *p != 0.0)?;
    let change = (v - prev) / prev.abs() * 100.0;
    if let Some(limit) = config.max_drop_pct.filter(|l| -change > *l) {
        return Some(format!(
            "{v} fell {:.1}% from the previous run's {prev} (limit {limit}%)",
            -change
        ));
    }
    if let Some(limit) = config.max_rise_pct.filter(|l| change > *l) {
        return Some(format!(
            "{v} rose {change:.1}% from the previous run's {prev} (limit {limit}%)"
        ));
    }
    None
}

/// The latest previous value per (metric, group).
pub(crate) type Previous = BTreeMap<(String, Option<String>), f64>;

#[cfg(test)]
mod tests {
    use super::*;

    fn config(toml_text: &str) -> MetricConfig {
        toml::from_str(&format!("sql = \"SELECT 1\"\n{toml_text}")).unwrap()
    }

    #[test]
    fn thresholds_and_relative_change() {
        let c = config("min = 10\nmax = 100\nmax_drop_pct = 5");
        assert_eq!(judge(&c, Some(50.0), None), None);
        assert!(judge(&c, Some(5.0), None)
            .unwrap()
            .contains("below the minimum 10"));
        assert!(judge(&c, Some(500.0), None)
            .unwrap()
            .contains("above the maximum 100"));
        assert_eq!(judge(&c, Some(96.0), Some(100.0)), None);
        let why = judge(&c, Some(90.0), Some(100.0)).unwrap();
        assert!(
            why.contains("fell 10.0% from the previous run's 100 (limit 5%)"),
            "{why}"
        );
        let rise = config("max_rise_pct = 20");
        assert!(judge(&rise, Some(130.0), Some(100.0)).is_some());
        assert!(judge(&rise, Some(110.0), Some(100.0)).is_none());
    }
}
