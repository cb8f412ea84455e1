//! Filters of several conjuncts (`a AND b AND c`) evaluated with one selection mask.
//!
//! DataFusion evaluates `a AND b` by evaluating `a`, and when it keeps at most 20 % of
//! the rows, evaluating `b` on those rows only and scattering the result back. The
//! scatter walks each run of selected rows, slicing the result array and appending its
//! values one at a time, so on scattered selections it costs more than evaluating `b`
//! on every row: TPC-H Q12's filter over `lineitem` (five conjuncts, the later ones on
//! 1–15 % of the rows) spent about 50 ns per row, most of it there.
//!
//! This rule, run last, gives each `FilterExec` whose predicate is a conjunction an
//! [`AllOf`] predicate: the same conjuncts, in the same order, with the same choice
//! between the selected rows and every row (at most 20 % kept: the selected rows only),
//! and the results combined as bitmaps: a bitwise AND on every row, or the `scatter`
//! DataFusion's `CASE` uses (one pass over the selected rows' indices). A NULL conjunct
//! drops the row, as the filter would.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch};
use datafusion::arrow::buffer::BooleanBuffer;
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::common::cast::as_boolean_array;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{ColumnarValue, Operator};
use datafusion::physical_expr::expressions::BinaryExpr;
use datafusion::physical_expr::utils::split_conjunction;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr_common::utils::scatter;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::filter::{FilterExec, FilterExecBuilder};
use datafusion::physical_plan::ExecutionPlan;

/// At most this share of rows still selected: the next conjunct sees only them
/// (DataFusion's `PRE_SELECTION_THRESHOLD`).
const SELECTED_ONLY: f64 = 0.2;

/// The physical optimizer rule: an [`AllOf`] predicate for every filter of two or more
/// conjuncts.
#[derive(Debug, Default)]
pub(crate) struct Conjunctions;

impl PhysicalOptimizerRule for Conjunctions {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let Some(filter) = node.downcast_ref::<FilterExec>() else {
                return Ok(Transformed::no(node));
            };
            let predicate = filter.predicate();
            if predicate.downcast_ref::<AllOf>().is_some() {
                return Ok(Transformed::no(node));
            }
            let conjuncts: Vec<_> = split_conjunction(predicate).into_iter().cloned().collect();
            if conjuncts.len() < 2 {
                return Ok(Transformed::no(node));
            }
            let rewritten = FilterExecBuilder::from(filter)
                .with_predicate(Arc::new(AllOf { conjuncts }))
                .build()?;
            Ok(Transformed::yes(Arc::new(rewritten)))
        })
        .data()
    }

    fn name(&self) -> &str {
        "Conjunctions"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// `a AND b AND …` as a filter predicate: true where every conjunct is true, false
/// elsewhere (a NULL conjunct counts as false, so it is not a SQL `AND` outside a
/// filter). See the module docs.
#[derive(Debug, Eq)]
pub(crate) struct AllOf {
    conjuncts: Vec<Arc<dyn PhysicalExpr>>,
}

impl PartialEq for AllOf {
    fn eq(&self, other: &Self) -> bool {
        self.conjuncts == other.conjuncts
    }
}

impl Hash for AllOf {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.conjuncts.hash(state);
    }
}

/// Whether `conjunct` binds looser than `AND` (an `OR`), so it prints in parentheses,
/// as DataFusion prints the same conjunction.
fn needs_parentheses(conjunct: &Arc<dyn PhysicalExpr>) -> bool {
    conjunct
        .downcast_ref::<BinaryExpr>()
        .is_some_and(|b| b.op().precedence() < Operator::And.precedence())
}

impl fmt::Display for AllOf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.conjuncts.iter().enumerate() {
            if i > 0 {
                write!(f, " AND ")?;
            }
            match needs_parentheses(c) {
                true => write!(f, "({c})")?,
                false => write!(f, "{c}")?,
            }
        }
        Ok(())
    }
}

impl PhysicalExpr for AllOf {
    fn data_type(&self, _input_schema: &Schema) -> DfResult<DataType> {
        Ok(DataType::Boolean)
    }

    fn nullable(&self, _input_schema: &Schema) -> DfResult<bool> {
        Ok(false)
    }

    fn evaluate(&self, batch: &RecordBatch) -> DfResult<ColumnarValue> {
        let rows = batch.num_rows();
        let mut selected: Option<BooleanBuffer> = None;
        for conjunct in &self.conjuncts {
            let next = match &selected {
                None => truth(conjunct.evaluate(batch)?, rows)?,
                Some(mask) => {
                    let kept = mask.count_set_bits();
                    if kept == 0 {
                        break;
                    }
                    if kept as f64 <= rows as f64 * SELECTED_ONLY {
                        // Evaluated on the selected rows, scattered back to their
                        // places (NULL elsewhere, so false).
                        let mask_array = BooleanArray::new(mask.clone(), None);
                        let subset = filter_record_batch(batch, &mask_array)?;
                        let on_subset = conjunct.evaluate(&subset)?.into_array(kept)?;
                        let placed = scatter(&mask_array, &on_subset)?;
                        truth(ColumnarValue::Array(placed), rows)?
                    } else {
                        mask & &truth(conjunct.evaluate(batch)?, rows)?
                    }
                }
            };
            selected = Some(next);
        }
        let mask = selected.unwrap_or_else(|| BooleanBuffer::new_set(rows));
        Ok(ColumnarValue::Array(Arc::new(BooleanArray::new(
            mask, None,
        ))))
    }

    fn children(&self) -> Vec<&Arc<dyn PhysicalExpr>> {
        self.conjuncts.iter().collect()
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn PhysicalExpr>>,
    ) -> DfResult<Arc<dyn PhysicalExpr>> {
        Ok(Arc::new(AllOf {
            conjuncts: children,
        }))
    }

    fn fmt_sql(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.conjuncts.iter().enumerate() {
            if i > 0 {
                write!(f, " AND ")?;
            }
            let parenthesized = needs_parentheses(c);
            if parenthesized {
                write!(f, "(")?;
            }
            c.fmt_sql(f)?;
            if parenthesized {
                write!(f, ")")?;
            }
        }
        Ok(())
    }
}

/// Where `value` (a boolean column or scalar over `rows` rows) is true; NULL is false.
fn truth(value: ColumnarValue, rows: usize) -> DfResult<BooleanBuffer> {
    let array: ArrayRef = value.into_array(rows)?;
    let array = as_boolean_array(&array)?;
    Ok(match array.nulls() {
        Some(nulls) if nulls.null_count() > 0 => array.values() & nulls.inner(),
        _ => array.values().clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::Field;
    use datafusion::physical_expr::expressions::{binary, col, lit};

    fn batch() -> RecordBatch {
        // x: 0..1000 with every 7th row NULL.
        let x: Int64Array = (0..1000i64).map(|v| (v % 7 != 3).then_some(v)).collect();
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, true)]));
        RecordBatch::try_new(schema, vec![Arc::new(x)]).unwrap()
    }

    fn cmp(op: Operator, v: i64, b: &RecordBatch) -> Arc<dyn PhysicalExpr> {
        binary(
            col("x", b.schema_ref()).unwrap(),
            op,
            lit(v),
            b.schema_ref(),
        )
        .unwrap()
    }

    /// The rows DataFusion's own `AND` keeps (true, not NULL).
    fn kept_by_and(conjuncts: &[Arc<dyn PhysicalExpr>], b: &RecordBatch) -> Vec<bool> {
        let and = (conjuncts.iter().cloned())
            .reduce(|l, r| binary(l, Operator::And, r, b.schema_ref()).unwrap())
            .unwrap();
        let out = and.evaluate(b).unwrap().into_array(b.num_rows()).unwrap();
        let out = as_boolean_array(&out).unwrap().clone();
        (0..out.len())
            .map(|i| out.is_valid(i) && out.value(i))
            .collect()
    }

    fn kept_by_all_of(conjuncts: &[Arc<dyn PhysicalExpr>], b: &RecordBatch) -> Vec<bool> {
        let all = AllOf {
            conjuncts: conjuncts.to_vec(),
        };
        let out = all.evaluate(b).unwrap().into_array(b.num_rows()).unwrap();
        let out = as_boolean_array(&out).unwrap().clone();
        assert_eq!(out.null_count(), 0);
        (0..out.len()).map(|i| out.value(i)).collect()
    }

    #[test]
    fn keeps_the_rows_a_sql_and_keeps_on_dense_sparse_and_empty_selections() {
        let b = batch();
        let cases: Vec<Vec<Arc<dyn PhysicalExpr>>> = vec![
            // Dense, then sparse (≤ 20 % kept: the selected rows only), then sparser.
            vec![
                cmp(Operator::Gt, 100, &b),
                cmp(Operator::Lt, 250, &b),
                cmp(Operator::NotEq, 200, &b),
            ],
            // Sparse from the first conjunct on, scattered by a modulo.
            vec![
                cmp(Operator::Lt, 150, &b),
                binary(
                    binary(
                        col("x", b.schema_ref()).unwrap(),
                        Operator::Modulo,
                        lit(3i64),
                        b.schema_ref(),
                    )
                    .unwrap(),
                    Operator::Eq,
                    lit(1i64),
                    b.schema_ref(),
                )
                .unwrap(),
                cmp(Operator::Gt, 10, &b),
            ],
            // Nothing left after the first conjunct.
            vec![cmp(Operator::Lt, 0, &b), cmp(Operator::Gt, 5, &b)],
            // A NULL literal drops every row.
            vec![
                cmp(Operator::Gt, 5, &b),
                lit(datafusion::common::ScalarValue::Boolean(None)),
            ],
            // Everything kept.
            vec![cmp(Operator::GtEq, 0, &b), cmp(Operator::Lt, 1000, &b)],
        ];
        for conjuncts in cases {
            assert_eq!(
                kept_by_all_of(&conjuncts, &b),
                kept_by_and(&conjuncts, &b),
                "{}",
                AllOf {
                    conjuncts: conjuncts.clone()
                }
            );
        }
    }

    #[test]
    fn prints_as_datafusion_prints_the_conjunction() {
        let b = batch();
        let or = binary(
            cmp(Operator::Eq, 1, &b),
            Operator::Or,
            cmp(Operator::Eq, 2, &b),
            b.schema_ref(),
        )
        .unwrap();
        let conjuncts = vec![or, cmp(Operator::Gt, 0, &b), cmp(Operator::Lt, 9, &b)];
        let and = (conjuncts.iter().cloned())
            .reduce(|l, r| binary(l, Operator::And, r, b.schema_ref()).unwrap())
            .unwrap();
        assert_eq!(AllOf { conjuncts }.to_string(), and.to_string());
    }
}
