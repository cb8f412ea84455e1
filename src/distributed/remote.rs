//! The client's side of a distributed run: a query planner that plans as an embedded
//! session does, then hands each part of the plan that reads files and can be sent
//! whole (every node one the executors can rebuild) to the cluster, as a
//! [`RemoteExec`] that submits it when executed and streams its result back.
//!
//! What cannot be sent stays above, on the client: quern's expectation and
//! row-counting nodes, delta-rs' write and merge nodes, the scan of a table delta-rs
//! reads itself (deletion vectors, column mapping).

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use ballista_core::execution_plans::execute_physical_plan;
use ballista_core::extension::SessionConfigExt;
use datafusion::catalog::Session;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::Result as DfResult;
use datafusion::execution::context::QueryPlanner;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning,
    PlanProperties,
};
use datafusion_proto::physical_plan::AsExecutionPlan;
use datafusion_proto::protobuf::PhysicalPlanNode;
use deltalake::delta_datafusion::planner::DeltaPlanner;
use futures::TryStreamExt;

use super::codec::QuernCodec;

/// The scheduler an environment sends its queries to (`[engine] ballista`).
#[derive(Debug)]
pub(crate) struct Cluster {
    /// `http://host:port` of the scheduler's gRPC service.
    scheduler: String,
    /// One Ballista session per engine, so executors keep one runtime (object-store
    /// clients, footer cache) for all of its queries.
    session_id: String,
    codec: QuernCodec,
}

impl Cluster {
    /// The cluster of the scheduler at `host:port`.
    pub(crate) fn new(host: &str, port: u16) -> Self {
        Cluster {
            scheduler: format!("http://{host}:{port}"),
            session_id: format!("quern-{}", uuid_like()),
            codec: QuernCodec::new(),
        }
    }

    /// Whether `plan` is worth sending and can be sent: it reads files, and every node
    /// and function in it encodes.
    fn can_run(&self, plan: &Arc<dyn ExecutionPlan>) -> bool {
        reads_files(plan)
            && PhysicalPlanNode::try_from_physical_plan(plan.clone(), &self.codec).is_ok()
    }
}

/// A process-unique id without another dependency: the time and the process id.
fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{:x}-{nanos:x}", std::process::id())
}

fn reads_files(plan: &Arc<dyn ExecutionPlan>) -> bool {
    plan.exists(|node| {
        Ok(node.downcast_ref::<DataSourceExec>().is_some_and(|scan| {
            scan.data_source()
                .downcast_ref::<FileScanConfig>()
                .is_some()
        }))
    })
    .unwrap_or(false)
}

/// Plans as delta-rs' planner does (quern's embedded sessions use it), then sends the
/// parts of the plan the cluster can run there.
#[derive(Debug)]
pub(crate) struct DistributedPlanner {
    cluster: Arc<Cluster>,
}

impl DistributedPlanner {
    pub(crate) fn new(cluster: Arc<Cluster>) -> Self {
        DistributedPlanner { cluster }
    }
}

#[async_trait]
impl QueryPlanner for DistributedPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session: &dyn Session,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let plan = DeltaPlanner::new()
            .create_physical_plan(logical_plan, session)
            .await?;
        distribute(plan, &self.cluster)
    }
}

/// The operators of delta-rs' own scan, which run where the table was planned.
const DELTA_RS_SCANS: [&str; 3] = ["DeltaScan", "DeltaScanExec", "DeltaScanMetaExec"];

/// `plan` with its topmost parts that the cluster can run replaced by [`RemoteExec`]s.
pub(crate) fn distribute(
    plan: Arc<dyn ExecutionPlan>,
    cluster: &Arc<Cluster>,
) -> DfResult<Arc<dyn ExecutionPlan>> {
    let distributed = plan.transform_down(|node| {
        // delta-rs' own scan (a table with deletion vectors or column mapping) maps
        // the files it reads on the client (physical names, a dictionary-typed file id
        // column); neither it nor the files below it are sent.
        if DELTA_RS_SCANS.contains(&node.name()) {
            tracing::info!(
                scan = node.name(),
                "a Delta table read through delta-rs' scan (deletion vectors or column mapping) is read on the client"
            );
            return Ok(Transformed::new(node, false, TreeNodeRecursion::Jump));
        }
        // A part whose partitions are each sorted would come back as one stream in
        // another order; its parts below are sent instead.
        let sorted_partitions =
            node.output_partitioning().partition_count() > 1 && node.output_ordering().is_some();
        if sorted_partitions || !cluster.can_run(&node) {
            if reads_files(&node) && node.children().is_empty() {
                tracing::info!(
                    scan = %datafusion::physical_plan::displayable(node.as_ref()).one_line(),
                    "this scan runs on the client: the cluster cannot rebuild it"
                );
            }
            return Ok(Transformed::no(node));
        }
        let remote = RemoteExec::new(node.clone(), cluster.clone());
        // The nodes above expect the partitioning they were planned with.
        let partitioning = match node.output_partitioning() {
            Partitioning::UnknownPartitioning(1) => None,
            Partitioning::UnknownPartitioning(n) | Partitioning::RoundRobinBatch(n) => {
                Some(Partitioning::RoundRobinBatch(*n))
            }
            other if other.partition_count() == 1 => None,
            other => Some(other.clone()),
        };
        let replaced: Arc<dyn ExecutionPlan> = match partitioning {
            None => Arc::new(remote),
            Some(p) => Arc::new(RepartitionExec::try_new(Arc::new(remote), p)?),
        };
        Ok(Transformed::new(replaced, true, TreeNodeRecursion::Jump))
    })?;
    Ok(distributed.data)
}

/// A part of the plan run on the cluster: submitted to the scheduler as a job when its
/// one partition is executed; the job's result partitions stream back in turn.
#[derive(Debug)]
pub(crate) struct RemoteExec {
    plan: Arc<dyn ExecutionPlan>,
    cluster: Arc<Cluster>,
    properties: Arc<PlanProperties>,
}

impl RemoteExec {
    fn new(plan: Arc<dyn ExecutionPlan>, cluster: Arc<Cluster>) -> Self {
        // One stream keeps the plan's order only when the plan has one partition.
        let eq_properties = if plan.output_partitioning().partition_count() == 1 {
            plan.equivalence_properties().clone()
        } else {
            EquivalenceProperties::new(plan.schema())
        };
        let properties = Arc::new(PlanProperties::new(
            eq_properties,
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        ));
        RemoteExec {
            plan,
            cluster,
            properties,
        }
    }
}

impl DisplayAs for RemoteExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        match t {
            DisplayFormatType::TreeRender => write!(f, "scheduler={}", self.cluster.scheduler),
            _ => write!(
                f,
                "RemoteExec: scheduler={}, plan=[{}]",
                self.cluster.scheduler,
                datafusion::physical_plan::displayable(self.plan.as_ref()).one_line()
            ),
        }
    }
}

impl ExecutionPlan for RemoteExec {
    fn name(&self) -> &str {
        "RemoteExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        // The sent plan is not a child: the client's optimizers and executors must not
        // touch or run it.
        Vec::new()
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(
            &Arc<dyn datafusion::physical_expr::PhysicalExpr>,
        ) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        if partition != 0 {
            return Err(datafusion::error::DataFusionError::Internal(format!(
                "RemoteExec has one partition, not {partition}"
            )));
        }
        let (plan, cluster) = (self.plan.clone(), self.cluster.clone());
        // The client's settings go with the job (batch size, Parquet reading, the
        // restrictions Ballista needs); no secret is among them.
        let config = context.session_config().clone();
        let schema = plan.schema();
        let job = async move {
            execute_physical_plan::<PhysicalPlanNode>(
                cluster.scheduler.clone(),
                &config.ballista_config(),
                plan,
                &cluster.codec,
                cluster.session_id.clone(),
                config,
            )
            .await
            .map_err(|e| {
                e.context(format!(
                    "the job sent to the Ballista scheduler at {} ([engine] ballista) failed",
                    cluster.scheduler
                ))
            })
        };
        let stream = futures::stream::once(job).try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }
}
