//! The two cluster roles of the quern binary, Ballista's scheduler and executor with
//! quern's aggregate functions, codec and object stores: `quern scheduler` and
//! `quern executor`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use ballista_core::extension::SessionConfigExt;
use ballista_core::registry::BallistaFunctionRegistry;
use ballista_core::utils::default_session_builder;
use ballista_core::{ConfigProducer, RuntimeProducer};
use ballista_executor::executor_process::{start_executor_process, ExecutorProcessConfig};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::start_server;
use ballista_scheduler::SessionBuilder;
use datafusion::error::DataFusionError;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::FunctionRegistry;
use datafusion::prelude::SessionConfig;

use super::codec::{ModelLoader, QuernCodec};
use crate::catalog::Catalog;
use crate::error::{Error, Result};

/// Where `quern scheduler` listens.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SchedulerOptions {
    /// The address of its gRPC service, for clients and executors (`0.0.0.0:50050`).
    pub bind: SocketAddr,
    /// How long an executor may go without a heartbeat before its tasks are run
    /// elsewhere (default 30 s; quern's executors beat every 5 s).
    pub executor_timeout: std::time::Duration,
}

impl SchedulerOptions {
    /// A scheduler listening on `bind`.
    pub fn new(bind: SocketAddr) -> Self {
        SchedulerOptions {
            bind,
            executor_timeout: std::time::Duration::from_secs(30),
        }
    }

    /// Declares an executor lost after `timeout` without a heartbeat (less than 6 s,
    /// an executor's heartbeat interval and a second, counts as 6 s).
    #[must_use]
    pub fn with_executor_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.executor_timeout = timeout;
        self
    }
}

/// How often an executor tells its scheduler it is alive (Ballista's default, 60 s,
/// makes a lost executor take minutes to notice).
const HEARTBEAT_INTERVAL_SECONDS: u64 = 5;

/// How `quern executor` joins its scheduler.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ExecutorOptions {
    /// The scheduler's host.
    pub scheduler_host: String,
    /// The scheduler's port.
    pub scheduler_port: u16,
    /// Where the executor serves the results of its tasks (Arrow Flight), to other
    /// executors and to clients.
    pub bind: SocketAddr,
    /// The port the scheduler sends tasks to (default: the next after `bind`'s).
    pub grpc_port: Option<u16>,
    /// How many tasks it runs at once (default: its cores).
    pub concurrent_tasks: Option<usize>,
    /// Where it keeps shuffle files (default: a new temporary folder).
    pub work_dir: Option<PathBuf>,
}

impl ExecutorOptions {
    /// An executor of the scheduler at `host:port`, serving on `bind`.
    pub fn new(scheduler_host: impl Into<String>, scheduler_port: u16, bind: SocketAddr) -> Self {
        ExecutorOptions {
            scheduler_host: scheduler_host.into(),
            scheduler_port,
            bind,
            grpc_port: None,
            concurrent_tasks: None,
            work_dir: None,
        }
    }

    /// Runs at most `n` tasks at once.
    #[must_use]
    pub fn with_concurrent_tasks(mut self, n: usize) -> Self {
        self.concurrent_tasks = Some(n.max(1));
        self
    }

    /// Keeps shuffle files under `dir`.
    #[must_use]
    pub fn with_work_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.work_dir = Some(dir.into());
        self
    }

    /// Takes tasks on `port`.
    #[must_use]
    pub fn with_grpc_port(mut self, port: u16) -> Self {
        self.grpc_port = Some(port);
        self
    }
}

fn cluster_error(
    role: &'static str,
    address: String,
    source: impl std::error::Error + Send + Sync + 'static,
) -> Error {
    Error::Cluster {
        role,
        address,
        source: Box::new(source),
    }
}

/// The settings every node starts a job's session from; the client's own settings
/// are applied over them.
fn config_producer() -> ConfigProducer {
    Arc::new(SessionConfig::new_with_ballista)
}

/// DataFusion's functions, Ballista's, and quern's aggregates.
fn registry() -> std::result::Result<BallistaFunctionRegistry, DataFusionError> {
    let mut registry = BallistaFunctionRegistry::from(&default_session_builder(
        SessionConfig::new_with_ballista(),
    )?);
    for udaf in crate::functions::aggregates() {
        registry
            .aggregate_functions
            .insert(udaf.name().to_string(), Arc::new(udaf));
    }
    Ok(registry)
}

/// Runs a Ballista scheduler until SIGTERM or Ctrl-C.
pub async fn serve_scheduler(options: SchedulerOptions) -> Result<()> {
    let mut signals = Signals::listen();
    let address = options.bind.to_string();
    let session_builder: SessionBuilder = Arc::new(|config: SessionConfig| {
        let runtime = RuntimeEnvBuilder::new()
            .with_object_store_registry(Arc::new(NoAccessStores::default()))
            .build_arc()?;
        let state = default_session_builder(config)?;
        let mut state = datafusion::execution::SessionStateBuilder::new_from_existing(state)
            .with_runtime_env(runtime)
            .build();
        for udaf in crate::functions::aggregates() {
            state.register_udaf(Arc::new(udaf))?;
        }
        Ok(state)
    });
    let mut config = SchedulerConfig::default()
        .with_port(options.bind.port())
        .with_override_config_producer(config_producer())
        .with_override_session_builder(session_builder);
    config.bind_host = options.bind.ip().to_string();
    let timeout = options
        .executor_timeout
        .as_secs()
        .max(HEARTBEAT_INTERVAL_SECONDS + 1);
    config.executor_timeout_seconds = timeout;
    config.no_executors_grace_period_seconds = timeout;
    config.expire_dead_executor_interval_seconds = timeout.div_ceil(3).clamp(1, 15);
    config.override_physical_codec = Some(Arc::new(QuernCodec::new()));
    let cluster = BallistaCluster::new_from_config(&config)
        .await
        .map_err(|e| cluster_error("scheduler", address.clone(), e))?;
    tracing::info!(%address, "quern scheduler starting");
    let server = start_server(cluster, options.bind, Arc::new(config));
    tokio::select! {
        served = server => served.map_err(|e| cluster_error("scheduler", address.clone(), e)),
        () = signals.stopped() => {
            tracing::info!(%address, "quern scheduler stopping");
            Ok(())
        }
    }
}

/// The scheduler's object stores: it rebuilds each job's plan (whose scans name their
/// stores) but reads no file, so it holds no storage secret. A bucket's store here is
/// one without credentials, which any read would be refused by.
#[derive(Debug, Default)]
struct NoAccessStores {
    inner: datafusion::execution::object_store::DefaultObjectStoreRegistry,
}

impl datafusion::execution::object_store::ObjectStoreRegistry for NoAccessStores {
    fn register_store(
        &self,
        url: &url::Url,
        store: Arc<dyn object_store::ObjectStore>,
    ) -> Option<Arc<dyn object_store::ObjectStore>> {
        self.inner.register_store(url, store)
    }

    fn get_store(
        &self,
        url: &url::Url,
    ) -> datafusion::error::Result<Arc<dyn object_store::ObjectStore>> {
        if let Ok(store) = self.inner.get_store(url) {
            return Ok(store);
        }
        let store = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(url.host_str().unwrap_or_default())
            .with_region("us-east-1")
            .with_skip_signature(true)
            .build()
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let store: Arc<dyn object_store::ObjectStore> = Arc::new(store);
        self.inner.register_store(url, store.clone());
        Ok(store)
    }
}

/// SIGTERM and SIGINT, listened to from the start of a role: until a listener exists a
/// signal ends the process by its default action (a SIGTERM sent while Ballista was
/// still starting ended the executor with "signal: 15" instead of exit 0).
struct Signals {
    term: Option<tokio::signal::unix::Signal>,
    int: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn listen() -> Signals {
        use tokio::signal::unix::{signal, SignalKind};
        Signals {
            term: signal(SignalKind::terminate()).ok(),
            int: signal(SignalKind::interrupt()).ok(),
        }
    }

    /// Resolves at the first SIGTERM or SIGINT; never when neither could be listened to.
    async fn stopped(&mut self) {
        match (&mut self.term, &mut self.int) {
            (Some(term), Some(int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => std::future::pending().await,
        }
    }
}

/// Runs a Ballista executor of `catalog`'s environment until SIGTERM or Ctrl-C (or its
/// scheduler stops it): it reads the environment's buckets with this process's
/// storage secrets, and loads models from the project (`project_root`) or the
/// environment's MLflow server.
pub(crate) async fn serve_executor(
    catalog: Catalog,
    project_root: PathBuf,
    options: ExecutorOptions,
) -> Result<()> {
    let mut signals = Signals::listen();
    let address = options.bind.to_string();
    let env = catalog.environment().clone();
    // The stores are checked now, so a bad secret fails the start, not a task.
    catalog.register_stores(&RuntimeEnvBuilder::new().build().map_err(Error::query)?)?;
    let work_dir = match &options.work_dir {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!("quern-executor-{}", options.bind.port())),
    };
    std::fs::create_dir_all(&work_dir).map_err(|source| Error::Io {
        path: work_dir.clone(),
        source,
    })?;
    let catalog = Arc::new(catalog);
    let spill_dir = work_dir.clone();
    let runtime_producer: RuntimeProducer = Arc::new(move |_config: &SessionConfig| {
        let runtime = RuntimeEnvBuilder::new()
            .with_temp_file_path(spill_dir.clone())
            .build()?;
        catalog
            .register_stores(&runtime)
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        Ok(Arc::new(runtime))
    });
    let models = Arc::new(ModelLoader::new(project_root, env));
    let codec = Arc::new(QuernCodec::with_models(models));
    let registry = registry().map_err(Error::query)?;
    let config = ExecutorProcessConfig {
        bind_host: options.bind.ip().to_string(),
        external_host: Some(options.bind.ip().to_string()),
        port: options.bind.port(),
        grpc_port: options
            .grpc_port
            .unwrap_or_else(|| options.bind.port().saturating_add(1)),
        scheduler_host: options.scheduler_host.clone(),
        scheduler_port: options.scheduler_port,
        vcores: options.concurrent_tasks.unwrap_or(0),
        executor_heartbeat_interval_seconds: HEARTBEAT_INTERVAL_SECONDS,
        work_dir: Some(work_dir.to_string_lossy().into_owned()),
        override_function_registry: Some(Arc::new(registry)),
        override_config_producer: Some(config_producer()),
        override_runtime_producer: Some(runtime_producer),
        override_physical_codec: Some(codec),
        ..Default::default()
    };
    tracing::info!(%address, scheduler = %format!("{}:{}", options.scheduler_host, options.scheduler_port), "quern executor starting");
    let process = start_executor_process(Arc::new(config));
    tokio::pin!(process);
    tokio::select! {
        served = &mut process => served.map_err(|e| cluster_error("executor", address, e)),
        () = signals.stopped() => {
            tracing::info!(%address, "quern executor stopping");
            // Once started, Ballista stops the executor itself on the same signal: it
            // tells the scheduler and lets its running tasks finish. A signal that came
            // while it was still starting reaches only this listener.
            match tokio::time::timeout(STOP_GRACE, &mut process).await {
                Ok(served) => served.map_err(|e| cluster_error("executor", address, e)),
                Err(_) => Ok(()),
            }
        }
    }
}

/// How long a stopping executor waits for Ballista's own shutdown.
const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(5);
