//! A model as a DataFusion scalar function: arguments are checked and cast at plan time,
//! and each batch is scored in one call over its columns.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, FixedSizeListArray, Float64Array, Int64Array, StringArray,
    StructArray,
};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Fields, Float64Type};
use datafusion::common::{exec_datafusion_err, plan_err, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use super::onnx::{Labels, OnnxModel, OutputKind};
use super::ModelDescriptor;

/// The scalar function of one model.
#[derive(Debug)]
pub(crate) struct ModelFunction {
    name: String,
    model: Arc<OnnxModel>,
    signature: Signature,
    return_type: DataType,
    /// How another process loads the same model (absent for a model given in memory).
    descriptor: Option<ModelDescriptor>,
}

impl ModelFunction {
    pub(crate) fn new(name: &str, model: Arc<OnnxModel>) -> Self {
        ModelFunction {
            name: name.to_string(),
            return_type: return_type(&model),
            model,
            signature: Signature::user_defined(Volatility::Immutable),
            descriptor: None,
        }
    }

    /// The function of a model resolved for a run, which can be sent to executors.
    pub(crate) fn resolved(resolved: &super::ResolvedModel) -> Self {
        Self::shipped(resolved.descriptor(), resolved.model.clone())
    }

    /// The function `descriptor` names, scoring with `model` (loaded from it).
    pub(crate) fn shipped(descriptor: ModelDescriptor, model: Arc<OnnxModel>) -> Self {
        ModelFunction {
            descriptor: Some(descriptor.clone()),
            ..Self::new(&descriptor.function, model)
        }
    }

    /// How another process loads this function's model.
    pub(crate) fn descriptor(&self) -> Option<&ModelDescriptor> {
        self.descriptor.as_ref()
    }

    /// The SQL type it returns.
    pub(crate) fn returns(&self) -> &DataType {
        &self.return_type
    }
}

impl PartialEq for ModelFunction {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && Arc::ptr_eq(&self.model, &other.model)
    }
}

impl Eq for ModelFunction {}

impl Hash for ModelFunction {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state);
        (Arc::as_ptr(&self.model) as usize).hash(state);
    }
}

/// The SQL type a model function returns (see the module documentation of `models`).
pub(crate) fn return_type(model: &OnnxModel) -> DataType {
    match &model.kind {
        OutputKind::Probabilities(labels) if labels.len() == 2 => DataType::Float64,
        OutputKind::Probabilities(labels) => DataType::Struct(struct_fields(labels)),
        OutputKind::Values if model.width == 1 => DataType::Float64,
        OutputKind::Values => DataType::FixedSizeList(
            Arc::new(Field::new("item", DataType::Float64, true)),
            model.width as i32,
        ),
    }
}

fn struct_fields(labels: &Labels) -> Fields {
    let label_type = match labels {
        Labels::Int(_) => DataType::Int64,
        Labels::Str(_) => DataType::Utf8,
    };
    let mut fields = vec![Field::new("label", label_type, true)];
    for i in 0..labels.len() {
        fields.push(Field::new(
            format!("p_{}", labels.name(i)),
            DataType::Float64,
            true,
        ));
    }
    Fields::from(fields)
}

impl ScalarUDFImpl for ModelFunction {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let n = self.model.n_features();
        if arg_types.len() != n {
            let inputs: Vec<String> = self
                .model
                .inputs
                .iter()
                .map(|i| format!("{} [{}]", i.name, i.width))
                .collect();
            return plan_err!(
                "model function {}() takes {n} features (model input {}), but is called with {} arguments",
                self.name,
                inputs.join(", "),
                arg_types.len()
            );
        }
        arg_types
            .iter()
            .enumerate()
            .map(|(i, t)| {
                if t.is_numeric() || t.is_null() || matches!(t, DataType::Boolean) {
                    Ok(DataType::Float64)
                } else {
                    plan_err!(
                        "argument {} of model function {}() is {t}; a model's features are numbers (cast or encode it first)",
                        i + 1,
                        self.name
                    )
                }
            })
            .collect()
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(self.return_type.clone())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let arrays: Vec<ArrayRef> = args
            .args
            .iter()
            .map(|a| {
                let array = a.to_array(rows)?;
                Ok(if array.data_type() == &DataType::Float64 {
                    array
                } else {
                    cast(&array, &DataType::Float64)?
                })
            })
            .collect::<Result<_>>()?;
        let nulls = arrays.iter().fold(None, |acc: Option<NullBuffer>, a| {
            NullBuffer::union(acc.as_ref(), a.logical_nulls().as_ref())
        });
        let features: Vec<&[f64]> = arrays
            .iter()
            .map(|a| a.as_primitive::<Float64Type>().values().as_ref())
            .collect();
        let mut out = self
            .model
            .score(&features, rows)
            .map_err(|e| exec_datafusion_err!("model function {}(): {e}", self.name))?;
        let array: ArrayRef = match (&self.model.kind, &self.return_type) {
            (OutputKind::Probabilities(_), DataType::Float64) => {
                Arc::new(Float64Array::new(out.swap_remove(1).into(), nulls))
            }
            (OutputKind::Probabilities(labels), DataType::Struct(fields)) => {
                let best: Vec<usize> = (0..rows)
                    .map(|i| {
                        let mut best = 0;
                        for k in 1..out.len() {
                            if out[k][i] > out[best][i] {
                                best = k;
                            }
                        }
                        best
                    })
                    .collect();
                let label: ArrayRef = match labels {
                    Labels::Int(l) => Arc::new(Int64Array::new(
                        best.iter().map(|b| l[*b]).collect(),
                        nulls.clone(),
                    )),
                    Labels::Str(l) => Arc::new(StringArray::from_iter(
                        best.iter().enumerate().map(|(i, b)| {
                            let valid = nulls.as_ref().is_none_or(|n| n.is_valid(i));
                            valid.then(|| l[*b].as_str())
                        }),
                    )),
                };
                let mut columns = vec![label];
                for col in out {
                    columns.push(Arc::new(Float64Array::new(col.into(), nulls.clone())));
                }
                Arc::new(StructArray::try_new(fields.clone(), columns, nulls)?)
            }
            (_, DataType::FixedSizeList(field, width)) => {
                let w = *width as usize;
                let mut flat = Vec::with_capacity(rows * w);
                for i in 0..rows {
                    flat.extend(out.iter().map(|c| c[i]));
                }
                Arc::new(FixedSizeListArray::try_new(
                    field.clone(),
                    *width,
                    Arc::new(Float64Array::from(flat)),
                    nulls,
                )?)
            }
            _ => Arc::new(Float64Array::new(out.swap_remove(0).into(), nulls)),
        };
        Ok(ColumnarValue::Array(array))
    }
}
