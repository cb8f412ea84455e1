//! The plan codec of the client, the scheduler and the executors: Ballista's own
//! (its shuffle nodes, DataFusion's nodes), plus how quern's functions travel.
//!
//! A function travels by name unless the codec writes a definition for it, and the
//! receiver looks a name up among its own functions. That is right for DataFusion's
//! built-ins and quern's aggregates, which every node registers; not for:
//! - a model function: its model is the client's, resolved when the run was planned.
//!   It travels as a [`ModelDescriptor`] (function, pinned URI, SHA-256, output); an
//!   executor fetches that model as the client does (the project's file, or MLflow),
//!   checks the checksum and keeps it by checksum, so later tasks do not load it again.
//!   The scheduler only passes plans on, so it keeps the descriptor without the model.
//! - a function of the `spark` dialect named as a DataFusion built-in (`concat`,
//!   `floor`): it travels marked as Spark's, and the receiver takes the dialect's.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use ballista_core::serde::BallistaPhysicalExtensionCodec;
use datafusion::arrow::datatypes::DataType;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{
    AggregateUDF, ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};
use prost::Message;

use crate::config::Environment;
use crate::models::{ModelDescriptor, ModelFunction, OnnxModel};

/// A function's definition on the wire.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Definition {
    /// A model function, and the type it returns (Arrow IPC's, as protobuf bytes).
    Model {
        model: ModelDescriptor,
        return_type: Vec<u8>,
    },
    /// The `spark` dialect's function of this name.
    Spark,
}

/// Models an executor loaded, by SHA-256, and where it loads them from.
#[derive(Debug)]
pub(crate) struct ModelLoader {
    project_root: PathBuf,
    env: Arc<Environment>,
    loaded: Mutex<HashMap<String, Arc<OnnxModel>>>,
}

impl ModelLoader {
    pub(crate) fn new(project_root: PathBuf, env: Arc<Environment>) -> Self {
        ModelLoader {
            project_root,
            env,
            loaded: Mutex::new(HashMap::new()),
        }
    }

    /// The model of `descriptor`, loaded once per process.
    fn model(&self, descriptor: &ModelDescriptor) -> DfResult<Arc<OnnxModel>> {
        if let Some(model) = self.lock().get(&descriptor.sha256) {
            return Ok(model.clone());
        }
        // Decoding a plan is synchronous and runs on the executor's async workers; the
        // fetch (a file, or MLflow over HTTP) gets a thread and a runtime of its own.
        let (root, env, d) = (
            self.project_root.clone(),
            self.env.clone(),
            descriptor.clone(),
        );
        let loaded = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime
                .block_on(crate::models::load_shipped(&root, &env, &d))
                .map_err(|e| e.full_message())
        })
        .join()
        .map_err(|_| {
            DataFusionError::Execution(format!(
                "loading the model of {}() stopped unexpectedly",
                descriptor.function
            ))
        })?
        .map_err(DataFusionError::Execution)?;
        Ok(self
            .lock()
            .entry(descriptor.sha256.clone())
            .or_insert(loaded)
            .clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<OnnxModel>>> {
        self.loaded.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Ballista's codec and quern's functions (see the module docs).
#[derive(Debug)]
pub(crate) struct QuernCodec {
    inner: BallistaPhysicalExtensionCodec,
    /// On an executor, where models come from; elsewhere a model function is decoded
    /// as its descriptor, which cannot score.
    models: Option<Arc<ModelLoader>>,
}

impl QuernCodec {
    /// The codec of the client and the scheduler.
    pub(crate) fn new() -> Self {
        QuernCodec {
            inner: BallistaPhysicalExtensionCodec::default(),
            models: None,
        }
    }

    /// The codec of an executor, loading models with `models`.
    pub(crate) fn with_models(models: Arc<ModelLoader>) -> Self {
        QuernCodec {
            inner: BallistaPhysicalExtensionCodec::default(),
            models: Some(models),
        }
    }
}

fn codec_error(what: impl std::fmt::Display) -> DataFusionError {
    DataFusionError::Internal(format!("quern's plan codec: {what}"))
}

impl PhysicalExtensionCodec for QuernCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        self.inner.try_decode(buf, inputs, ctx, proto_converter)
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> DfResult<()> {
        self.inner.try_encode(node, buf, proto_converter)
    }

    fn try_encode_udf(&self, udf: &ScalarUDF, buf: &mut Vec<u8>) -> DfResult<()> {
        let definition = if let Some(f) = udf.inner().downcast_ref::<ModelFunction>() {
            let model = f.descriptor().cloned().ok_or_else(|| {
                codec_error(format!(
                    "model function {}() has no descriptor to send",
                    f.name()
                ))
            })?;
            model_definition(model, f.returns())?
        } else if let Some(shipped) = udf.inner().downcast_ref::<ShippedModel>() {
            model_definition(shipped.model.clone(), &shipped.return_type)?
        } else if crate::functions::spark_scalar(udf.name()).is_some_and(|s| s.as_ref() == udf) {
            Definition::Spark
        } else {
            return Ok(());
        };
        serde_json::to_writer(buf, &definition).map_err(codec_error)
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> DfResult<Arc<ScalarUDF>> {
        if buf.is_empty() {
            return self.inner.try_decode_udf(name, buf);
        }
        match serde_json::from_slice(buf).map_err(codec_error)? {
            Definition::Spark => crate::functions::spark_scalar(name).ok_or_else(|| {
                codec_error(format!("{name} is not a function of the spark dialect"))
            }),
            Definition::Model { model, return_type } => {
                let return_type = DataType::try_from(
                    &datafusion_proto::protobuf::ArrowType::decode(return_type.as_slice())
                        .map_err(codec_error)?,
                )
                .map_err(codec_error)?;
                let udf = match &self.models {
                    // A model that does not load fails the task when it scores, with
                    // the reason: Ballista reports a plan that does not decode only as
                    // a task that "could not be prepared".
                    Some(loader) => match loader.model(&model) {
                        Ok(loaded) => ScalarUDF::from(ModelFunction::shipped(model, loaded)),
                        Err(e) => {
                            tracing::error!(function = %model.function, "the model did not load: {e}");
                            let mut failed = ShippedModel::new(model, return_type);
                            failed.failure = Some(match e {
                                DataFusionError::Execution(why) => why,
                                other => other.to_string(),
                            });
                            ScalarUDF::from(failed)
                        }
                    },
                    None => ScalarUDF::from(ShippedModel::new(model, return_type)),
                };
                Ok(Arc::new(udf))
            }
        }
    }

    fn try_encode_udaf(&self, udaf: &AggregateUDF, buf: &mut Vec<u8>) -> DfResult<()> {
        if crate::functions::spark_aggregate(udaf.name()).is_some_and(|s| s.as_ref() == udaf) {
            serde_json::to_writer(buf, &Definition::Spark).map_err(codec_error)?;
        }
        Ok(())
    }

    fn try_decode_udaf(&self, name: &str, buf: &[u8]) -> DfResult<Arc<AggregateUDF>> {
        if buf.is_empty() {
            return self.inner.try_decode_udaf(name, buf);
        }
        match serde_json::from_slice(buf).map_err(codec_error)? {
            Definition::Spark => crate::functions::spark_aggregate(name).ok_or_else(|| {
                codec_error(format!(
                    "{name} is not an aggregate function of the spark dialect"
                ))
            }),
            Definition::Model { model, .. } => Err(codec_error(format!(
                "model function {}() sent as an aggregate",
                model.function
            ))),
        }
    }
}

fn model_definition(model: ModelDescriptor, returns: &DataType) -> DfResult<Definition> {
    let return_type = datafusion_proto::protobuf::ArrowType::try_from(returns)
        .map_err(codec_error)?
        .encode_to_vec();
    Ok(Definition::Model { model, return_type })
}

/// A model function as the scheduler holds it between the client and the executors:
/// its descriptor and type, no model. On an executor that could not load the model,
/// it holds why, and scoring fails with it.
#[derive(Debug, Clone)]
struct ShippedModel {
    model: ModelDescriptor,
    return_type: DataType,
    signature: Signature,
    failure: Option<String>,
}

impl ShippedModel {
    fn new(model: ModelDescriptor, return_type: DataType) -> Self {
        ShippedModel {
            model,
            return_type,
            signature: Signature::user_defined(Volatility::Immutable),
            failure: None,
        }
    }
}

impl PartialEq for ShippedModel {
    fn eq(&self, other: &Self) -> bool {
        self.model == other.model
    }
}

impl Eq for ShippedModel {}

impl Hash for ShippedModel {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.model.hash(state);
    }
}

impl ScalarUDFImpl for ShippedModel {
    fn name(&self) -> &str {
        &self.model.function
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> DfResult<Vec<DataType>> {
        Ok(vec![DataType::Float64; arg_types.len()])
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(self.return_type.clone())
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        if let Some(failure) = &self.failure {
            return Err(DataFusionError::Execution(failure.clone()));
        }
        Err(DataFusionError::Execution(format!(
            "model function {}() scores on executors, which load its model; this process has only its descriptor",
            self.model.function
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spark_functions_travel_marked_and_builtins_by_name() {
        let codec = QuernCodec::new();
        let spark = crate::functions::spark_scalar("concat").expect("spark has concat");
        let mut buf = Vec::new();
        codec.try_encode_udf(&spark, &mut buf).unwrap();
        assert!(
            !buf.is_empty(),
            "Spark's concat must not travel by name only"
        );
        let decoded = codec.try_decode_udf("concat", &buf).unwrap();
        assert!(decoded.as_ref() == spark.as_ref());

        let builtin = datafusion::functions::string::concat();
        let mut buf = Vec::new();
        codec.try_encode_udf(&builtin, &mut buf).unwrap();
        assert!(buf.is_empty(), "DataFusion's concat travels by name");
    }

    #[test]
    fn the_scheduler_keeps_a_model_descriptor_without_the_model() {
        let codec = QuernCodec::new();
        let model = ModelDescriptor {
            function: "churn".into(),
            uri: "models:/churn/3".into(),
            output: None,
            sha256: "ab".repeat(32),
        };
        let shipped = ScalarUDF::from(ShippedModel::new(model.clone(), DataType::Float64));
        let mut buf = Vec::new();
        codec.try_encode_udf(&shipped, &mut buf).unwrap();
        let decoded = codec.try_decode_udf("churn", &buf).unwrap();
        let back = decoded.inner().downcast_ref::<ShippedModel>().unwrap();
        assert_eq!(back.model, model);
        assert_eq!(back.return_type, DataType::Float64);
    }
}
