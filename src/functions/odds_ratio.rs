//! `odds_ratio(exposed, outcome)`: the sample odds ratio of the 2×2 table of two
//! boolean columns, with its 95% Wald confidence interval (Woolf's method, as scipy's
//! `odds_ratio(table, kind="sample").confidence_interval(0.95)`).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Array, Int64Array, StructArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields};
use datafusion::common::{exec_err, Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{Accumulator, AggregateUDFImpl, Signature, Volatility};

/// The 97.5% quantile of the standard normal distribution.
const Z_975: f64 = 1.959_963_984_540_054;

#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct OddsRatio {
    signature: Signature,
}

impl OddsRatio {
    pub(crate) fn new() -> Self {
        OddsRatio {
            signature: Signature::exact(
                vec![DataType::Boolean, DataType::Boolean],
                Volatility::Immutable,
            ),
        }
    }
}

fn result_fields() -> Fields {
    Fields::from(vec![
        Field::new("odds_ratio", DataType::Float64, true),
        Field::new("ci_low", DataType::Float64, true),
        Field::new("ci_high", DataType::Float64, true),
        Field::new("exposed_outcome", DataType::Int64, false),
        Field::new("exposed_no_outcome", DataType::Int64, false),
        Field::new("unexposed_outcome", DataType::Int64, false),
        Field::new("unexposed_no_outcome", DataType::Int64, false),
    ])
}

impl AggregateUDFImpl for OddsRatio {
    fn name(&self) -> &str {
        "odds_ratio"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Struct(result_fields()))
    }

    fn accumulator(&self, _acc_args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(Cells::default()))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(["a", "b", "c", "d"]
            .iter()
            .map(|c| {
                Arc::new(Field::new(
                    format!("{}_{c}", args.name),
                    DataType::Int64,
                    false,
                ))
            })
            .collect())
    }
}

/// The four cells: exposed & outcome (a), exposed & no outcome (b), not exposed &
/// outcome (c), neither (d). Rows with a NULL in either column are not counted.
#[derive(Debug, Default)]
struct Cells([i64; 4]);

impl Accumulator for Cells {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let (exposed, outcome) = (values[0].as_boolean(), values[1].as_boolean());
        for i in 0..exposed.len() {
            if exposed.is_null(i) || outcome.is_null(i) {
                continue;
            }
            let cell = match (exposed.value(i), outcome.value(i)) {
                (true, true) => 0,
                (true, false) => 1,
                (false, true) => 2,
                (false, false) => 3,
            };
            self.0[cell] += 1;
        }
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let [a, b, c, d] = self.0.map(|x| x as f64);
        let (ratio, low, high) = if a * b * c * d > 0.0 {
            let or = (a * d) / (b * c);
            let se = (1.0 / a + 1.0 / b + 1.0 / c + 1.0 / d).sqrt();
            (
                Some(or),
                Some((or.ln() - Z_975 * se).exp()),
                Some((or.ln() + Z_975 * se).exp()),
            )
        } else {
            (None, None, None)
        };
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(Float64Array::from(vec![ratio])),
            Arc::new(Float64Array::from(vec![low])),
            Arc::new(Float64Array::from(vec![high])),
        ];
        for n in self.0 {
            columns.push(Arc::new(Int64Array::from(vec![n])));
        }
        let array = StructArray::try_new(result_fields(), columns, None)?;
        Ok(ScalarValue::Struct(Arc::new(array)))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(self
            .0
            .iter()
            .map(|n| ScalarValue::Int64(Some(*n)))
            .collect())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        if states.len() != 4 {
            return exec_err!("odds_ratio: expected 4 state columns, got {}", states.len());
        }
        for (cell, state) in states.iter().enumerate() {
            let counts = state.as_primitive::<datafusion::arrow::datatypes::Int64Type>();
            self.0[cell] += counts.iter().flatten().sum::<i64>();
        }
        Ok(())
    }
}
