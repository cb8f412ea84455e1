//! The one engine builder: an [`Engine`] holds a project and an environment and makes
//! the DataFusion session every caller uses (CLI, tests, embedders), with delta-rs'
//! planner installed so plans can be written to Delta tables.

mod backfill;
mod command;
mod conjunction;
mod events;
mod graph;
mod memory;
mod plan;
mod run;
mod runtime_filter;
mod shared_subplan;

pub use backfill::{BackfillOptions, BackfillReport, DayOutcome, DayStatus};
pub use command::CommandError;
pub use events::{RowCount, RunEvent, RunObserver};
pub use plan::{PlannedTask, RunPlan};

use std::sync::Arc;

use datafusion::execution::SessionStateBuilder;
use datafusion::physical_optimizer::optimizer::PhysicalOptimizer;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::prelude::{DataFrame, SessionConfig, SessionContext};
use deltalake::delta_datafusion::planner::DeltaPlanner;
use deltalake::delta_datafusion::DeltaTableFactory;

use crate::catalog::Catalog;
use crate::config::Environment;
use crate::error::{Error, Result};
use crate::models::ResolvedModel;
use crate::pipeline::{Dag, Project, Selector};
use crate::report::RunReport;
use crate::runlog::{RunHistory, RunLog};
use crate::template::{DataInterval, RenderedTask, Renderer, RunDate, Vars};

/// What a render, plan or run is for: the run date, var overrides and a task selection.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RunOptions {
    /// The run's logical date.
    pub ds: RunDate,
    /// Values overriding the environment's `[vars]`.
    pub vars: Vars,
    /// Which tasks to run; all when empty.
    pub select: Vec<Selector>,
    /// Stop the run at the first failed task: start no other task, and cancel the
    /// running ones before they commit.
    pub fail_fast: bool,
    /// The data interval, when a scheduler gives one other than the day of `ds`.
    pub data_interval: Option<DataInterval>,
    /// Whether tasks' `retries` apply (`--no-retries` turns them off when a scheduler,
    /// such as the Airflow DAGs `quern airflow` writes, retries the task itself).
    pub retries: bool,
    /// Set from outside (a signal handler) to stop the run.
    pub(crate) cancel: Option<Arc<std::sync::atomic::AtomicBool>>,
}

impl RunOptions {
    /// Options for a run on `ds`, with no overrides and every task.
    pub fn new(ds: RunDate) -> Self {
        RunOptions {
            ds,
            vars: Vars::new(),
            select: Vec::new(),
            fail_fast: false,
            data_interval: None,
            retries: true,
            cancel: None,
        }
    }

    /// Stops the run when `flag` is set (e.g. by a SIGTERM handler): no other task
    /// starts, running writes stop before their commit, and running command tasks are
    /// killed with their process groups; they are reported cancelled.
    #[must_use]
    pub fn with_cancel(mut self, flag: Arc<std::sync::atomic::AtomicBool>) -> Self {
        self.cancel = Some(flag);
        self
    }

    /// Whether tasks' `retries` apply (default true).
    #[must_use]
    pub fn with_retries(mut self, retries: bool) -> Self {
        self.retries = retries;
        self
    }

    /// Overrides the var `name`.
    #[must_use]
    pub fn with_var(mut self, name: impl Into<String>, value: impl Into<toml::Value>) -> Self {
        self.vars = self.vars.with(name, value);
        self
    }

    /// Stops at the first failed task (`--fail-fast`).
    #[must_use]
    pub fn with_fail_fast(mut self, fail_fast: bool) -> Self {
        self.fail_fast = fail_fast;
        self
    }

    /// Adds a selector (`task`, `pipeline/task`, `pipeline`, `tag:name`, with `+`s).
    #[must_use]
    pub fn with_select(mut self, selector: Selector) -> Self {
        self.select.push(selector);
        self
    }
}

/// A project bound to one environment: renders, plans and runs its pipelines.
#[derive(Debug, Clone)]
pub struct Engine {
    project: Arc<Project>,
    env: Arc<Environment>,
    target_partitions: Option<usize>,
    batch_size: Option<usize>,
    max_concurrent_tasks: usize,
    /// The memory pool and spill disk every session of this engine shares.
    memory: memory::Memory,
    /// The Ballista cluster queries run on (`[engine] ballista`); embedded when `None`.
    cluster: Option<Arc<crate::distributed::Cluster>>,
}

/// Builds an [`Engine`]; see [`Engine::builder`].
#[derive(Debug)]
#[must_use]
pub struct EngineBuilder {
    project: Project,
    environment: Option<String>,
    target_partitions: Option<usize>,
    max_concurrent_tasks: Option<usize>,
}

impl EngineBuilder {
    /// Uses environment `name` (default: `$QUERN_ENV`, else `local`).
    pub fn with_environment(mut self, name: impl Into<String>) -> Self {
        self.environment = Some(name.into());
        self
    }

    /// Overrides the environment's `engine.target_partitions` (query parallelism).
    pub fn with_target_partitions(mut self, n: usize) -> Self {
        self.target_partitions = Some(n);
        self
    }

    /// Overrides the environment's `engine.max_concurrent_tasks`.
    pub fn with_max_concurrent_tasks(mut self, n: usize) -> Self {
        self.max_concurrent_tasks = Some(n.max(1));
        self
    }

    /// Reads the environment and makes the engine. Secrets (`${VAR}`) are not resolved
    /// here but when a table is opened, so rendering needs none.
    pub fn build(self) -> Result<Engine> {
        let name = self
            .environment
            .or_else(|| std::env::var("QUERN_ENV").ok().filter(|s| !s.is_empty()))
            .unwrap_or_else(|| crate::config::DEFAULT_ENVIRONMENT.to_string());
        let env = self.project.environment(&name)?;
        let target_partitions = self.target_partitions.or(env.engine.target_partitions);
        let batch_size = env.engine.batch_size;
        let max_concurrent_tasks = self
            .max_concurrent_tasks
            .or(env.engine.max_concurrent_tasks)
            .unwrap_or(2);
        let memory = memory::Memory::for_environment(&env)?;
        // Checked when the environment was loaded.
        let cluster = match env.engine.ballista_scheduler() {
            Some(Ok((host, port))) => Some(Arc::new(crate::distributed::Cluster::new(&host, port))),
            _ => None,
        };
        Ok(Engine {
            project: Arc::new(self.project),
            env: Arc::new(env),
            target_partitions,
            batch_size,
            max_concurrent_tasks,
            memory,
            cluster,
        })
    }
}

impl Engine {
    /// Starts building an engine for `project`.
    ///
    /// ```
    /// # fn main() -> quern::Result<()> {
    /// use quern::{Engine, Project};
    ///
    /// // The project in the current folder, on its `local` environment.
    /// let engine = Engine::builder(Project::load(".")?)
    ///     .with_environment("local")
    ///     .with_max_concurrent_tasks(4)
    ///     .build()?;
    /// assert_eq!(engine.environment().name, "local");
    /// # Ok(())
    /// # }
    /// ```
    pub fn builder(project: Project) -> EngineBuilder {
        EngineBuilder {
            project,
            environment: None,
            target_partitions: None,
            max_concurrent_tasks: None,
        }
    }

    /// The project.
    ///
    /// ```
    /// # fn main() -> quern::Result<()> {
    /// # use quern::{Engine, Project, RunDate, RunOptions};
    /// # let engine = Engine::builder(Project::load(".")?).with_environment("local").build()?;
    /// # let options = RunOptions::new("2024-03-01".parse::<RunDate>()?);
    /// assert!(engine.project().pipelines().contains_key("events"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn project(&self) -> &Project {
        &self.project
    }

    /// The environment.
    ///
    /// ```
    /// # fn main() -> quern::Result<()> {
    /// # use quern::{Engine, Project, RunDate, RunOptions};
    /// # let engine = Engine::builder(Project::load(".")?).with_environment("local").build()?;
    /// # let options = RunOptions::new("2024-03-01".parse::<RunDate>()?);
    /// println!("writing with environment {}", engine.environment().name);
    /// # Ok(())
    /// # }
    /// ```
    pub fn environment(&self) -> &Environment {
        &self.env
    }

    /// A new DataFusion session for this environment: delta-rs' planner (needed to
    /// write plans to Delta), the `DELTATABLE` table factory, the environment's engine
    /// settings, quern's SQL functions and the information schema. Every query quern
    /// runs goes through here; its tables and models are registered by the caller
    /// (through the catalog), so embedders use [`Engine::query`] instead.
    ///
    /// With `[engine] ballista`, the parts of its plans that read files run on the
    /// cluster (see `distributed`), under the settings Ballista needs (no round-robin
    /// repartitions, sort-merge joins, no dynamic filters).
    pub(crate) fn session(&self) -> SessionContext {
        self.session_on(self.cluster.as_ref())
    }

    /// A session that runs every query in this process, even with `[engine] ballista`:
    /// for the run log and metrics, which stay with the client.
    pub(crate) fn embedded_session(&self) -> SessionContext {
        self.session_on(None)
    }

    fn session_on(&self, cluster: Option<&Arc<crate::distributed::Cluster>>) -> SessionContext {
        let mut config = SessionConfig::new()
            .with_information_schema(true)
            .with_default_catalog_and_schema("datafusion", "public");
        // Spans let a planning error point at its line of SQL.
        config.options_mut().sql_parser.collect_spans = true;
        if let Some(n) = self.target_partitions {
            config = config.with_target_partitions(n);
        }
        if let Some(n) = self.batch_size {
            config = config.with_batch_size(n);
        }
        // Absent, DataFusion's own default applies, which is UTC.
        if let Some(tz) = &self.env.engine.time_zone {
            config.options_mut().execution.time_zone = Some(tz.clone());
        }
        crate::delta::set_writer_options(
            &mut config.options_mut().execution.parquet,
            self.env.engine.compression(),
        );
        if cluster.is_some() {
            use ballista_core::extension::SessionConfigExt;
            config = config.upgrade_for_ballista();
        } else {
            // A join whose smaller side is estimated below 64 MiB and 2 M rows builds
            // one hash table from it that every partition probes (DataFusion: 1 MiB
            // and 128 K rows), instead of hash-repartitioning both sides: on 2 cores
            // that repartition of the larger side cost more than the join. TPC-H SF1
            // over Delta, 22 queries: 4.54 s → 4.07 s (Q17 ×0.69, Q3, Q5, Q18, Q20
            // ×0.7-0.8, none slower beyond noise; scripts/bench-tpch). The build side
            // is then held once, within the memory pool.
            let optimizer = &mut config.options_mut().optimizer;
            optimizer.hash_join_single_partition_threshold = 64 * 1024 * 1024;
            optimizer.hash_join_single_partition_threshold_rows = 2_000_000;
        }
        // The environment's own DataFusion settings last (checked when it was loaded).
        let mut row_group_size_set = false;
        for (key, value) in self.env.engine.datafusion_settings().flatten() {
            row_group_size_set |= key == "datafusion.execution.parquet.max_row_group_size";
            let _ = config.options_mut().set(&key, &value);
        }
        config = config.with_extension(Arc::new(crate::delta::RowGroupSizeSet(row_group_size_set)));
        let mut state = SessionStateBuilder::new()
            .with_default_features()
            .with_config(config);
        // A runtime is the engine's pool and disk and new, empty caches; making one was
        // checked when the engine was built.
        if let Ok(runtime) = self.memory.runtime() {
            state = state.with_runtime_env(runtime);
        }
        let state = match cluster {
            Some(cluster) => state.with_query_planner(Arc::new(
                crate::distributed::DistributedPlanner::new(cluster.clone()),
            )),
            // Last, after DataFusion's filter pushdown has placed the joins' dynamic
            // filters (a cluster plans on its scheduler, with Ballista's rules).
            None => state
                .with_query_planner(DeltaPlanner::new())
                .with_physical_optimizer_rules(embedded_physical_rules()),
        };
        let state = state
            .with_table_factory("DELTATABLE".into(), Arc::new(DeltaTableFactory {}))
            .build();
        let ctx = SessionContext::new_with_state(state);
        for udaf in crate::functions::aggregates() {
            ctx.register_udaf(udaf);
        }
        ctx
    }

    /// Renders every SQL task of `pipeline` that runs in the environment (in DAG order)
    /// for the options' ds and vars; command tasks have no SQL.
    ///
    /// ```
    /// # fn main() -> quern::Result<()> {
    /// # use quern::{Engine, Project, RunDate, RunOptions};
    /// # let engine = Engine::builder(Project::load(".")?).with_environment("local").build()?;
    /// # let options = RunOptions::new("2024-03-01".parse::<RunDate>()?);
    /// let options = options.with_var("lookback_days", 3);
    /// for task in engine.render("events", &options)? {
    ///     println!("-- {}\n{}", task.task, task.sql);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn render(&self, pipeline: &str, options: &RunOptions) -> Result<Vec<RenderedTask>> {
        self.render_with(&self.renderer(options)?, pipeline)
    }

    /// A renderer of the project's templates for the options' ds and vars.
    pub(crate) fn renderer(&self, options: &RunOptions) -> Result<Renderer> {
        Renderer::new(&self.project, &self.env, options.ds, &options.vars)
            .map(|r| r.with_data_interval(options.data_interval))
    }

    /// Renders every task of `pipeline` with `renderer`, upstream first.
    pub(crate) fn render_with(
        &self,
        renderer: &Renderer,
        pipeline: &str,
    ) -> Result<Vec<RenderedTask>> {
        let pipeline = self.project.pipeline(pipeline)?;
        let mut rendered = graph::render_tasks(renderer, &[pipeline], &self.env.name)?;
        let commands = graph::command_tasks(&[pipeline], &self.env.name);
        let calls = graph::calls_of(&rendered, &commands);
        // Upstream first when the refs form a DAG; a cycle is reported by plan and dag.
        if let Ok(dag) = graph::dag_of(self, Some(&pipeline.name), &rendered, &commands, &calls) {
            let position: std::collections::BTreeMap<_, _> = dag
                .order()
                .iter()
                .enumerate()
                .map(|(i, t)| (&t.task, i))
                .collect();
            rendered.sort_by_key(|r| position.get(&r.task).copied());
        }
        Ok(rendered)
    }

    /// The DAG of `pipeline`, from the refs its tasks make when rendered with `options`.
    ///
    /// ```
    /// # fn main() -> quern::Result<()> {
    /// # use quern::{Engine, Project, RunDate, RunOptions};
    /// # let engine = Engine::builder(Project::load(".")?).with_environment("local").build()?;
    /// # let options = RunOptions::new("2024-03-01".parse::<RunDate>()?);
    /// let dag = engine.dag("events", &options)?;
    /// let order: Vec<&str> = dag.order().iter().map(|t| t.task.as_str()).collect();
    /// assert_eq!(order.first(), Some(&"clean_events"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn dag(&self, pipeline: &str, options: &RunOptions) -> Result<Dag> {
        let pipeline = self.project.pipeline(pipeline)?;
        self.dag_of(Some(pipeline), options)
    }

    /// The DAG of `pipeline`'s tasks, or of the project's, in this environment.
    fn dag_of(
        &self,
        pipeline: Option<&crate::pipeline::Pipeline>,
        options: &RunOptions,
    ) -> Result<Dag> {
        let pipelines = graph::scope(&self.project, pipeline.map(|p| p.name.as_str()))?;
        let rendered = graph::render_tasks(&self.renderer(options)?, &pipelines, &self.env.name)?;
        let commands = graph::command_tasks(&pipelines, &self.env.name);
        let calls = graph::calls_of(&rendered, &commands);
        graph::dag_of(
            self,
            pipeline.map(|p| &p.name),
            &rendered,
            &commands,
            &calls,
        )
    }

    /// The DAG of every task of the project: refs between pipelines are edges.
    ///
    /// ```
    /// # fn main() -> quern::Result<()> {
    /// # use quern::{Engine, Project, RunDate, RunOptions};
    /// # let engine = Engine::builder(Project::load(".")?).with_environment("local").build()?;
    /// # let options = RunOptions::new("2024-03-01".parse::<RunDate>()?);
    /// let dag = engine.project_dag(&options)?;
    /// assert!(dag.pipeline().is_none());
    /// assert!(dag.order().iter().any(|t| t.to_string() == "events/clean_events"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn project_dag(&self, options: &RunOptions) -> Result<Dag> {
        self.dag_of(None, options)
    }

    /// Renders, parses and plans the selected tasks of `pipeline`; writes nothing.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> quern::Result<()> {
    /// # use quern::{Engine, Project, RunDate, RunOptions};
    /// # let engine = Engine::builder(Project::load(".")?).with_environment("local").build()?;
    /// # let options = RunOptions::new("2024-03-01".parse::<RunDate>()?);
    /// let plan = engine.plan("events", &options).await?;
    /// for task in &plan.tasks {
    ///     println!("{} -> {} column(s)", task.task, task.schema.fields().len());
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn plan(&self, pipeline: &str, options: &RunOptions) -> Result<RunPlan> {
        plan::plan(self, Some(pipeline), options).await
    }

    /// Renders, parses and plans the selected tasks of every pipeline as one DAG: a
    /// task reading another pipeline's task is planned against that task's planned
    /// output, so the whole project plans (and runs) from an empty warehouse. Selectors
    /// are `pipeline/task`, `pipeline` or `tag:name`, with `+`s. Writes nothing.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> quern::Result<()> {
    /// # use quern::{Engine, Project, RunDate, RunOptions};
    /// # let engine = Engine::builder(Project::load(".")?).with_environment("local").build()?;
    /// # let options = RunOptions::new("2024-03-01".parse::<RunDate>()?);
    /// let options = options.with_select("+events/daily_active_users".parse()?);
    /// let plan = engine.plan_project(&options).await?;
    /// assert_eq!(plan.pipelines.len(), 1);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn plan_project(&self, options: &RunOptions) -> Result<RunPlan> {
        plan::plan(self, None, options).await
    }

    /// Plans then executes the selected tasks of `pipeline`. Nothing is written unless
    /// every task plans.
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> quern::Result<()> {
    /// # use quern::{Engine, Project, RunDate, RunOptions};
    /// # let engine = Engine::builder(Project::load(".")?).with_environment("local").build()?;
    /// # let options = RunOptions::new("2024-03-01".parse::<RunDate>()?);
    /// let report = engine.run("events", &options).await?;
    /// if let Some(e) = report.first_error() {
    ///     eprintln!("{}", e.full_message());
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn run(&self, pipeline: &str, options: &RunOptions) -> Result<RunReport> {
        let plan = self.plan(pipeline, options).await?;
        Ok(self.execute(plan).await)
    }

    /// Plans then executes the selected tasks of the whole project (see
    /// [`Engine::plan_project`]); one run in the run log, with a `runs` row per pipeline.
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> quern::Result<()> {
    /// # use quern::{Engine, Project, RunDate, RunOptions};
    /// # let engine = Engine::builder(Project::load(".")?).with_environment("local").build()?;
    /// # let options = RunOptions::new("2024-03-01".parse::<RunDate>()?);
    /// let report = engine.run_project(&options.with_select("tag:daily".parse()?)).await?;
    /// println!("{} task(s) in {}", report.tasks.len(), report.pipelines_text());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn run_project(&self, options: &RunOptions) -> Result<RunReport> {
        let plan = self.plan_project(options).await?;
        Ok(self.execute(plan).await)
    }

    /// Runs `pipeline` (or, with `None`, the whole project) for each day of a range,
    /// in date order: each day is planned, then executed and logged like a run. Days a
    /// run of the same selection already succeeded on are skipped unless
    /// `backfill.force`, so the same backfill run again resumes. `observer` is told of
    /// each day as it starts and ends, and of each day's tasks. The first day is planned before anything is written; an
    /// error there (or `parallel` with a task whose result depends on the order of
    /// days) is returned.
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> quern::Result<()> {
    /// # use quern::{BackfillOptions, Engine, Project, RunDate, RunOptions};
    /// # let engine = Engine::builder(Project::load(".")?).with_environment("local").build()?;
    /// # let options = RunOptions::new("2024-03-01".parse::<RunDate>()?);
    /// let days = BackfillOptions::new("2024-03-01".parse()?, "2024-03-07".parse()?);
    /// let report = engine
    ///     .backfill(Some("events"), &options, &days, &|_: &quern::RunEvent<'_>| {})
    ///     .await?;
    /// assert!(report.succeeded());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn backfill(
        &self,
        pipeline: Option<&str>,
        options: &RunOptions,
        backfill: &BackfillOptions,
        observer: &dyn RunObserver,
    ) -> Result<BackfillReport> {
        backfill::backfill(self, pipeline, options, backfill, observer).await
    }

    /// Executes a plan made by [`Engine::plan`].
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> quern::Result<()> {
    /// # use quern::{Engine, Project, RunDate, RunOptions};
    /// # let engine = Engine::builder(Project::load(".")?).with_environment("local").build()?;
    /// # let options = RunOptions::new("2024-03-01".parse::<RunDate>()?);
    /// let plan = engine.plan("events", &options).await?;
    /// // … inspect the plan, then write it.
    /// let report = engine.execute(plan).await;
    /// assert!(report.succeeded());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn execute(&self, plan: RunPlan) -> RunReport {
        run::execute(self, plan, &events::Silent).await
    }

    /// [`Engine::execute`], telling `observer` of each task as it starts and ends (for
    /// a progress display, or a stream of events).
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> quern::Result<()> {
    /// # use quern::{Engine, Project, RunDate, RunOptions};
    /// # let engine = Engine::builder(Project::load(".")?).with_environment("local").build()?;
    /// # let options = RunOptions::new("2024-03-01".parse::<RunDate>()?);
    /// use quern::RunEvent;
    /// let plan = engine.plan("events", &options).await?;
    /// let report = engine
    ///     .execute_observed(plan, &|event: &RunEvent<'_>| {
    ///         if let RunEvent::TaskFinished { outcome, .. } = event {
    ///             eprintln!("{} done", outcome.task);
    ///         }
    ///     })
    ///     .await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn execute_observed(&self, plan: RunPlan, observer: &dyn RunObserver) -> RunReport {
        run::execute(self, plan, observer).await
    }

    /// Resolves every model function of the environment (registry aliases to versions,
    /// downloads into the cache) and loads the models, for `quern models`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> quern::Result<()> {
    /// # use quern::{Engine, Project, RunDate, RunOptions};
    /// # let engine = Engine::builder(Project::load(".")?).with_environment("local").build()?;
    /// # let options = RunOptions::new("2024-03-01".parse::<RunDate>()?);
    /// for model in engine.models().await? {
    ///     println!("{}", model.summary());
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn models(&self) -> Result<Vec<ResolvedModel>> {
        crate::models::resolve(self.project.root(), &self.env, None).await
    }

    /// Resolves the environment's model functions among `functions` (names some SQL
    /// calls) and registers them in `ctx`; returns what they resolved to.
    pub(crate) async fn register_models(
        &self,
        ctx: &SessionContext,
        functions: &std::collections::BTreeSet<String>,
    ) -> Result<Vec<ResolvedModel>> {
        let used = crate::models::used(&self.env, functions);
        if used.is_empty() {
            return Ok(Vec::new());
        }
        // A model must not silently replace a SQL function of the same name.
        let state = ctx.state();
        if let Some(name) = used.iter().find(|n| {
            state.scalar_functions().contains_key(n.as_str())
                || state.aggregate_functions().contains_key(n.as_str())
                || state.window_functions().contains_key(n.as_str())
        }) {
            return Err(Error::Model {
                function: name.clone(),
                uri: self.env.models[name].uri().to_string(),
                file: self.env.file.clone(),
                source: Box::new(crate::models::ModelError::ShadowsBuiltin),
            });
        }
        self.load_models(ctx, &used).await
    }

    /// Resolves the model functions `used` and registers them in `ctx`, replacing any
    /// registered before (a command task registered a new version).
    pub(crate) async fn load_models(
        &self,
        ctx: &SessionContext,
        used: &std::collections::BTreeSet<String>,
    ) -> Result<Vec<ResolvedModel>> {
        let resolved = crate::models::resolve(self.project.root(), &self.env, Some(used)).await?;
        for m in &resolved {
            ctx.register_udf(datafusion::logical_expr::ScalarUDF::from(
                crate::models::ModelFunction::resolved(m),
            ));
        }
        Ok(resolved)
    }

    /// Runs ad-hoc SQL over the environment: every `pipeline.task` table in the
    /// warehouse and every declared `source.table` can be read. `EXPLAIN [ANALYZE]
    /// [VERBOSE] <query>` gives DataFusion's plan of the query (run, with each
    /// operator's time, rows and spills, for ANALYZE).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use quern::{Engine, Project, RunDate, RunOptions};
    /// # let engine = Engine::builder(Project::load(".")?).with_environment("local").build()?;
    /// # let options = RunOptions::new("2024-03-01".parse::<RunDate>()?);
    /// let df = engine.query("SELECT count(*) AS n FROM raw.countries").await?;
    /// let batches = df.collect().await?;
    /// assert_eq!(batches[0].num_rows(), 1);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn query(&self, sql: &str) -> Result<DataFrame> {
        self.query_in(sql, self.project.dialect()).await
    }

    /// [`Engine::query`] with SQL of `dialect` (`quern query --dialect spark`).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use quern::{Dialect, Engine, Project};
    /// # let engine = Engine::builder(Project::load(".")?).with_environment("local").build()?;
    /// // Spark's `/` never truncates.
    /// let df = engine.query_in("SELECT 3 / 2 AS x", Dialect::Spark).await?;
    /// let batches = df.collect().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn query_in(&self, sql: &str, dialect: crate::config::Dialect) -> Result<DataFrame> {
        let ctx = self.session();
        // `EXPLAIN [ANALYZE] <query>`: the query is read (and its tables found) as any
        // other, then explained.
        let explain = crate::pipeline::explained(sql, dialect);
        let parsed = crate::pipeline::extract_relations(
            "query",
            std::path::Path::new("<query>"),
            explain.as_ref().map_or(sql, |(_, query)| query.as_str()),
            dialect,
        )?;
        let catalog = self.catalog()?;
        self.register_models(&ctx, &parsed.functions).await?;
        // A table that does not exist (yet) is left for DataFusion to report.
        catalog.register_all(&ctx, &parsed.relations).await?;
        let statement = match explain {
            Some((options, _)) => datafusion::sql::parser::Statement::Explain(
                datafusion::sql::parser::ExplainStatement {
                    options,
                    statement: Box::new(parsed.statement.clone()),
                },
            ),
            None => parsed.statement.clone(),
        };
        let plan = crate::functions::state_for(ctx.state(), dialect)
            .statement_to_plan(statement)
            .await
            .map_err(|source| {
                let file = std::path::Path::new("<query>");
                crate::functions::wrong_dialect(&ctx.state(), &parsed, "query", file, sql)
                    .unwrap_or_else(|| Error::query(source))
            })?;
        Ok(DataFrame::new(ctx.state(), plan))
    }

    /// The latest `limit` runs of `pipeline` in this environment's run log, and the
    /// values of its metrics in them.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> quern::Result<()> {
    /// # use quern::{Engine, Project, RunDate, RunOptions};
    /// # let engine = Engine::builder(Project::load(".")?).with_environment("local").build()?;
    /// # let options = RunOptions::new("2024-03-01".parse::<RunDate>()?);
    /// let history = engine.status("events", 10).await?;
    /// for run in &history.runs {
    ///     println!("{} {} {}", run.ds, run.status, run.rows);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn status(&self, pipeline: &str, limit: usize) -> Result<RunHistory> {
        let pipeline = self.project.pipeline(pipeline)?;
        let log = RunLog::new(self.catalog()?);
        log.history(&self.embedded_session(), pipeline.name.as_str(), limit)
            .await
    }

    /// The catalog of this environment's tables (resolves storage secrets).
    pub(crate) fn catalog(&self) -> Result<Catalog> {
        Catalog::new(self.project.clone(), self.env.clone())
    }

    /// Serves as a `quern executor` of a Ballista cluster for this environment, until
    /// SIGTERM or Ctrl-C: its tasks read the environment's tables and sources with this
    /// process's storage secrets and load models as the client does.
    ///
    /// ```no_run
    /// # #[tokio::main]
    /// # async fn main() -> quern::Result<()> {
    /// # use quern::{Engine, ExecutorOptions, Project};
    /// let engine = Engine::builder(Project::load(".")?).with_environment("prod").build()?;
    /// let options = ExecutorOptions::new("scheduler.internal", 50050, "0.0.0.0:50051".parse().unwrap());
    /// engine.serve_executor(options).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn serve_executor(&self, options: crate::distributed::ExecutorOptions) -> Result<()> {
        crate::distributed::serve_executor(
            self.catalog()?,
            self.project.root().to_path_buf(),
            options,
        )
        .await
    }

    pub(crate) fn max_concurrent_tasks(&self) -> usize {
        self.max_concurrent_tasks
    }
}

/// DataFusion's physical rules, with shared aggregates before the last filter pushdown
/// (which tells copies apart), runtime filters and one-mask conjunctions after it.
fn embedded_physical_rules() -> Vec<Arc<dyn PhysicalOptimizerRule + Send + Sync>> {
    let mut rules = PhysicalOptimizer::new().rules;
    let last_pushdown = rules
        .iter()
        .position(|rule| rule.name() == "FilterPushdown(Post)")
        .unwrap_or(rules.len());
    rules.insert(last_pushdown, Arc::new(shared_subplan::SharedSubplans));
    rules.push(Arc::new(runtime_filter::RuntimeFilters));
    rules.push(Arc::new(conjunction::Conjunctions));
    rules
}
