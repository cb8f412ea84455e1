//! Why a model function has no model ([`ModelError`]), and what is wrong with an ONNX
//! graph or its scoring ([`OnnxError`]). Each message ends with its cause's, so the
//! CLI's `caused by` lines do not repeat it.

use std::path::PathBuf;

use crate::config::ModelUriError;
use crate::mlflow::MlflowError;

/// Why a model function's model could not be resolved, fetched or loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// The URI is none of the forms quern reads.
    #[error(transparent)]
    Uri(#[from] ModelUriError),
    /// A registry URI, but the environment names no MLflow server.
    #[error("a registry model needs an MLflow server: add [mlflow] uri = \"http://…\" to {}", file.display())]
    NoRegistry {
        /// The environment file.
        file: PathBuf,
    },
    /// The model an executor fetched is not the one the client scored with.
    #[error("the model fetched from {} has SHA-256 {found}, but the run was planned with {expected}: the model changed since (a file replaced, a version overwritten); run again to plan with the current one", file.display())]
    ChecksumMismatch {
        /// Where it was fetched to.
        file: PathBuf,
        /// The client's checksum.
        expected: String,
        /// This file's.
        found: String,
    },
    /// A model file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A local model folder could not be listed.
    #[error("cannot list {}: {source}", path.display())]
    ListFolder {
        /// The folder.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A download could not be stored in the model cache.
    #[error("cannot {action} {}: {source}", path.display())]
    Cache {
        /// `create` (a folder) or `write` (a file).
        action: &'static str,
        /// The folder or file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The cache path of a download has no parent folder.
    #[error("cache path {} has no folder", path.display())]
    CachePath {
        /// The cache path.
        path: PathBuf,
    },
    /// The registry does not have the alias, version or run.
    #[error("{what} does not exist in the MLflow registry at {server}: {source}")]
    NotInRegistry {
        /// What was asked for (`alias @champion of registered model churn`…).
        what: String,
        /// The server, without credentials.
        server: String,
        /// The server's answer.
        #[source]
        source: Box<MlflowError>,
    },
    /// The server refused the request (HTTP 401 or 403).
    #[error("the MLflow server at {server} refused the request for {what} (check [mlflow] token or $MLFLOW_TRACKING_TOKEN): {source}")]
    RegistryRefused {
        /// What was asked for.
        what: String,
        /// The server, without credentials.
        server: String,
        /// The server's answer.
        #[source]
        source: Box<MlflowError>,
    },
    /// The registry could not be reached, or answered with another error.
    #[error("cannot reach the MLflow registry at {server} for {what}: {source}")]
    RegistryUnreachable {
        /// What was asked for.
        what: String,
        /// The server, without credentials.
        server: String,
        /// The request's error.
        #[source]
        source: Box<MlflowError>,
    },
    /// Listing or downloading the model's artifacts failed.
    #[error(transparent)]
    Mlflow(#[from] MlflowError),
    /// The registry's answer lacks the model version.
    #[error("unexpected registry answer: {answer}")]
    UnexpectedAnswer {
        /// The answer.
        answer: serde_json::Value,
    },
    /// The registry gave no download location for a model version.
    #[error("the registry gave no artifact_uri for {model}")]
    NoDownloadUri {
        /// `name/version`.
        model: String,
    },
    /// The run has no artifact location.
    #[error("run {run_id} has no artifact_uri")]
    RunWithoutArtifactUri {
        /// The MLflow run id.
        run_id: String,
    },
    /// The artifacts are stored where quern does not read them (not through the
    /// server's artifact proxy).
    #[error("the model's artifacts are at {location}, which quern reads only through the MLflow server's artifact proxy; start `mlflow server` with artifact serving (the default, --serve-artifacts) so model versions are stored under mlflow-artifacts:/")]
    NotProxied {
        /// The artifact location.
        location: String,
    },
    /// An MLflow model folder without an `onnx` flavor or `.onnx` file.
    #[error("{location}: the MLflow model has no onnx flavor; log it with mlflow.onnx.log_model (quern scores ONNX models)")]
    NoOnnxFlavor {
        /// The model folder.
        location: String,
    },
    /// An empty artifact folder.
    #[error("{location}: there are no artifacts there (MLflow 3 keeps a model logged with log_model under the logged model, not the run: use its registry URI, or log the .onnx file with log_artifact)")]
    NoArtifacts {
        /// The folder.
        location: String,
    },
    /// A folder without a `.onnx` file.
    #[error("{location}: no .onnx file among the model's artifacts ({})", files.join(", "))]
    NoOnnxFile {
        /// The folder.
        location: String,
        /// What it holds.
        files: Vec<String>,
    },
    /// A folder with more than one `.onnx` file.
    #[error("{location}: several .onnx files among the model's artifacts ({}); point the URI at one", files.join(", "))]
    SeveralOnnxFiles {
        /// The folder.
        location: String,
        /// Its `.onnx` files.
        files: Vec<String>,
    },
    /// The file is not an ONNX model quern can score.
    #[error("{}: {source}", file.display())]
    Onnx {
        /// The file that was loaded (the cache path for downloaded models).
        file: PathBuf,
        /// What is wrong with it.
        #[source]
        source: OnnxError,
    },
    /// The function name is taken by a built-in SQL function.
    #[error("this is the name of a built-in SQL function; give the model function another name")]
    ShadowsBuiltin,
}

impl ModelError {
    /// A failed registry request for `what` (`alias @champion of registered model
    /// churn`…) to `server`, worded by what the server said.
    pub(crate) fn registry(what: &str, server: String, source: MlflowError) -> Self {
        let (what, source) = (what.to_string(), Box::new(source));
        if source.is_not_found() || source.error_code() == Some("INVALID_PARAMETER_VALUE") {
            ModelError::NotInRegistry {
                what,
                server,
                source,
            }
        } else if matches!(source.status(), Some(401 | 403)) {
            ModelError::RegistryRefused {
                what,
                server,
                source,
            }
        } else {
            ModelError::RegistryUnreachable {
                what,
                server,
                source,
            }
        }
    }
}

/// What is wrong with an ONNX model (its file, its graph, a node's attributes), or why
/// scoring a batch failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OnnxError {
    /// The bytes are not an ONNX protobuf.
    #[error("the file is not a valid ONNX model: {0}")]
    Decode(#[source] prost::DecodeError),
    /// The model has no graph.
    #[error("the ONNX model has no graph")]
    NoGraph,
    /// The graph has no input besides its initializers.
    #[error("the model has no input")]
    NoInput,
    /// An input is not a tensor (a sequence or a map).
    #[error("input '{input}' is not a tensor")]
    InputNotTensor {
        /// The input's name.
        input: String,
    },
    /// An input's element type is neither float nor double.
    #[error("input '{input}' has element type {elem} (ONNX type {code}); quern feeds float or double tensors")]
    InputType {
        /// The input's name.
        input: String,
        /// The type's name.
        elem: &'static str,
        /// ONNX's code of the type.
        code: i32,
    },
    /// An input's shape is not `[N]` or `[N, k]` with a fixed `k`.
    #[error(
        "input '{input}' has shape {dims:?}; quern scores inputs of shape [N, k] with a fixed k"
    )]
    InputShape {
        /// The input's name.
        input: String,
        /// Its dimensions (`None`: symbolic).
        dims: Vec<Option<i64>>,
    },
    /// The requested output is not in the graph.
    #[error("the model has no output '{name}'; its outputs are {}", outputs.join(", "))]
    NoSuchOutput {
        /// The requested output.
        name: String,
        /// The graph's outputs.
        outputs: Vec<String>,
    },
    /// No output holds probabilities or floating-point values.
    #[error("the model has no floating-point output to score; its outputs are {}", outputs.join(", "))]
    NoFloatOutput {
        /// The graph's outputs.
        outputs: Vec<String>,
    },
    /// An operator quern evaluates neither natively nor with tract.
    #[error("operator {op} (node '{node}') is not supported; quern evaluates LinearClassifier, LinearRegressor, TreeEnsembleClassifier, TreeEnsembleRegressor, Scaler, Normalizer, Imputer, ArrayFeatureExtractor, Cast, ZipMap and Identity natively, and graphs of standard ONNX operators with tract")]
    Unsupported {
        /// The operator (`domain:Op`).
        op: String,
        /// The node's name.
        node: String,
    },
    /// A standard operator beside ONNX-ML ones that the native evaluator lacks.
    #[error("operator {op} (node '{node}') appears in a graph with ONNX-ML operators, where only Identity, Cast, Concat, Softmax and Sigmoid are supported beside them; export the network and the ONNX-ML part as separate models")]
    UnsupportedBesideMl {
        /// The operator.
        op: String,
        /// The node's name.
        node: String,
    },
    /// The scored output has no columns.
    #[error("the scored output has no columns")]
    EmptyOutput,
    /// A classifier's labels do not match its probability columns.
    #[error("the classifier has {labels} labels but its probability output has {width} columns")]
    LabelCount {
        /// The number of labels.
        labels: usize,
        /// The number of probability columns.
        width: usize,
    },
    /// A node that cannot be compiled; the cause says why.
    #[error("node '{node}' ({op}): {source}")]
    Node {
        /// The node's name.
        node: String,
        /// Its operator.
        op: String,
        /// What is wrong with it.
        #[source]
        source: Box<OnnxError>,
    },
    /// The scored output is not computed by the kept nodes.
    #[error("output '{output}' is not computed by the graph")]
    OutputNotComputed {
        /// The output.
        output: String,
    },
    /// A `Cast` on the scored path to a type other than float or double.
    #[error("a cast to {elem} on the scored path is not supported")]
    CastTo {
        /// The target type's name.
        elem: &'static str,
    },
    /// A `Softmax` or `Concat` along an axis other than the features'.
    #[error("axis {axis} is not supported (only the feature axis)")]
    Axis {
        /// The axis.
        axis: i64,
    },
    /// A `Normalizer` norm other than MAX, L1 and L2.
    #[error("unknown norm '{norm}'")]
    UnknownNorm {
        /// The norm.
        norm: String,
    },
    /// A classifier whose label output, not its probabilities, is scored.
    #[error("its label output is not scored; score the probabilities")]
    LabelOutput,
    /// A tensor attribute of the wrong element type.
    #[error("tensor '{tensor}' has element type {elem}; expected {expected}")]
    TensorType {
        /// The tensor's name.
        tensor: String,
        /// Its element type.
        elem: &'static str,
        /// What the attribute takes (`float or double`, `integers`).
        expected: &'static str,
    },
    /// A `post_transform` ONNX-ML does not define.
    #[error("{op}: unknown post_transform {name}")]
    UnknownPostTransform {
        /// The operator.
        op: String,
        /// The transform.
        name: String,
    },
    /// `post_transform = PROBIT`, which quern does not evaluate.
    #[error("{op}: post_transform PROBIT is not supported")]
    Probit {
        /// The operator.
        op: String,
    },
    /// `ArrayFeatureExtractor` with computed indices.
    #[error("only constant indices are supported")]
    ConstantIndicesOnly,
    /// `ArrayFeatureExtractor` with a negative index.
    #[error("index {index}")]
    NegativeIndex {
        /// The index.
        index: i64,
    },
    /// A constant (initializer) where a native step takes data.
    #[error("constant input '{input}' is not supported here")]
    ConstantInput {
        /// The input.
        input: String,
    },
    /// A node reads a tensor a later node produces.
    #[error("input '{input}' is produced after this node")]
    InputAfterNode {
        /// The input.
        input: String,
    },
    /// A node reads a tensor nothing produces.
    #[error("input '{input}' is not in the graph")]
    UnknownInput {
        /// The input.
        input: String,
    },
    /// A `Scaler` attribute whose length is neither 1 nor the number of features.
    #[error("Scaler: {attribute} has {values} values for {features} features")]
    ScalerWidth {
        /// `offset` or `scale`.
        attribute: &'static str,
        /// Its number of values.
        values: usize,
        /// The number of features.
        features: usize,
    },
    /// An `Imputer` whose values are neither 1 nor one per feature.
    #[error("Imputer: {values} imputed values for {features} features")]
    ImputerWidth {
        /// The number of imputed values.
        values: usize,
        /// The number of features.
        features: usize,
    },
    /// A linear model's coefficients do not fit its outputs and features.
    #[error("{coefficients} coefficients for {outputs} outputs of {features} features")]
    Coefficients {
        /// The number of coefficients.
        coefficients: usize,
        /// The number of outputs.
        outputs: usize,
        /// The number of features.
        features: usize,
    },
    /// Trees that read a feature the input lacks.
    #[error("the trees read feature {feature} of {features}")]
    TreeFeature {
        /// The highest feature read.
        feature: usize,
        /// The number of features.
        features: usize,
    },
    /// `ArrayFeatureExtractor` with an index past the columns.
    #[error("ArrayFeatureExtractor: index {index} of {columns} columns")]
    SelectIndex {
        /// The index.
        index: usize,
        /// The number of columns.
        columns: usize,
    },
    /// A tree ensemble's `nodes_*` attributes differ in length.
    #[error("{op}: the nodes_* attributes differ in length")]
    TreeNodeLengths {
        /// The operator.
        op: String,
    },
    /// A tree ensemble's leaf weight attributes differ in length.
    #[error("{op}: the leaf weight attributes differ in length")]
    TreeLeafLengths {
        /// The operator.
        op: String,
    },
    /// An `aggregate_function` other than SUM, AVERAGE, MIN and MAX.
    #[error("{op}: unknown aggregate_function {name}")]
    UnknownAggregate {
        /// The operator.
        op: String,
        /// The function.
        name: String,
    },
    /// A negative tree node id.
    #[error("{op}: negative node id")]
    NegativeNodeId {
        /// The operator.
        op: String,
    },
    /// A node mode ONNX-ML does not define.
    #[error("{op}: unknown node mode {mode}")]
    UnknownNodeMode {
        /// The operator.
        op: String,
        /// The mode.
        mode: String,
    },
    /// A leaf weight for an output past the ensemble's outputs.
    #[error("{op}: leaf weight for output {output} of {outputs}")]
    LeafOutput {
        /// The operator.
        op: String,
        /// The weight's output.
        output: i64,
        /// The number of outputs.
        outputs: usize,
    },
    /// A leaf weight for a node the trees do not have.
    #[error("{op}: a weight for tree {tree} node {node}, which does not exist")]
    WeightWithoutNode {
        /// The operator.
        op: String,
        /// The tree id.
        tree: i64,
        /// The node id.
        node: i64,
    },
    /// A tree with a gap in its node ids.
    #[error("{op}: tree {tree} has no node {node}")]
    MissingNode {
        /// The operator.
        op: String,
        /// The tree (in order of first appearance).
        tree: usize,
        /// The missing node id.
        node: usize,
    },
    /// A branch pointing past its tree's nodes.
    #[error("{op}: tree {tree} points at a node it does not have")]
    DanglingChild {
        /// The operator.
        op: String,
        /// The tree.
        tree: usize,
    },
    /// A node reached twice: a cycle or a shared child.
    #[error("{op}: tree {tree} is not a tree (a node is reached twice)")]
    NotATree {
        /// The operator.
        op: String,
        /// The tree.
        tree: usize,
    },
    /// PROBIT on a binary classifier with one score per row.
    #[error("{op}: post_transform PROBIT on a binary single-score ensemble is not supported")]
    ProbitSingleScore {
        /// The operator.
        op: String,
    },
    /// tract could not load, optimise or run the graph. (tract's errors are `anyhow`
    /// chains, not `std::error::Error`s: the message shows the whole chain.)
    #[error("tract: {0:#}")]
    Tract(tract_onnx::prelude::TractError),
    /// The scored output of a tract graph has a symbolic width.
    #[error("output '{output}' has no fixed width")]
    NoFixedWidth {
        /// The output.
        output: String,
    },
    /// The scored output of a tract graph is not `[N]` or `[N, k]`.
    #[error("output '{output}' has shape {shape}; expected [N] or [N, k]")]
    OutputShape {
        /// The output.
        output: String,
        /// Its shape, as tract shows it.
        shape: String,
    },
    /// A batch could not be made into an input tensor.
    #[error("{0:#}")]
    Tensor(tract_onnx::prelude::TractError),
    /// tract's output could not be read as doubles.
    #[error("tract output: {0:#}")]
    TractOutput(tract_onnx::prelude::TractError),
    /// tract returned the wrong number of values.
    #[error("the model returned {values} values for {rows} rows of {width} columns")]
    OutputSize {
        /// Values returned.
        values: usize,
        /// Rows scored.
        rows: usize,
        /// Columns expected.
        width: usize,
    },
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    fn answer(status: u16, error_code: Option<&str>) -> MlflowError {
        MlflowError::Status {
            endpoint: "registered-models/alias".into(),
            status,
            error_code: error_code.map(str::to_string),
            message: "Registered model alias nope not found.".into(),
        }
    }

    #[test]
    fn registry_errors_are_worded_by_what_the_server_said() {
        let what = "alias @nope of registered model churn";
        let e = ModelError::registry(what, "http://h".into(), answer(404, None));
        assert!(matches!(e, ModelError::NotInRegistry { .. }), "{e:?}");
        assert_eq!(
            e.to_string(),
            "alias @nope of registered model churn does not exist in the MLflow registry at http://h: MLflow registered-models/alias: HTTP 404 Not Found: Registered model alias nope not found."
        );
        let e = ModelError::registry(
            what,
            "http://h".into(),
            answer(400, Some("INVALID_PARAMETER_VALUE")),
        );
        assert!(matches!(e, ModelError::NotInRegistry { .. }), "{e:?}");
        let e = ModelError::registry(what, "http://h".into(), answer(403, None));
        assert!(matches!(e, ModelError::RegistryRefused { .. }), "{e:?}");
        let e = ModelError::registry(what, "http://h".into(), answer(500, None));
        assert!(matches!(e, ModelError::RegistryUnreachable { .. }), "{e:?}");
    }

    #[test]
    fn each_message_ends_with_its_cause() {
        // What the CLI relies on to print a cause only when the message lacks it.
        let errors = [
            ModelError::Onnx {
                file: "m.onnx".into(),
                source: OnnxError::Node {
                    node: "n".into(),
                    op: "Cast".into(),
                    source: Box::new(OnnxError::CastTo { elem: "int64" }),
                },
            },
            ModelError::registry("run r", "http://h".into(), answer(404, None)),
            ModelError::Io {
                path: "m.onnx".into(),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            },
        ];
        for e in errors {
            let mut text = e.to_string();
            let mut cause = e.source();
            while let Some(c) = cause {
                assert!(text.ends_with(&c.to_string()), "{text:?} / {c}");
                text = c.to_string();
                cause = c.source();
            }
        }
    }
}
