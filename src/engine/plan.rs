//! Planning a run of one pipeline or of the whole project: render every task, parse
//! it, cross-check its tables with its refs and sources, order the DAG (in a run of the
//! project, refs between pipelines are edges too), and plan each selected task with
//! DataFusion against its upstream tasks' planned outputs, so even a first run plans
//! completely. Nothing is written here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::TableReference;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement;
use url::Url;

use super::graph::{command_tasks, dag_of, render_tasks, scope, selection_key};
use super::{Engine, RunOptions};
use crate::catalog::{table_url, Catalog, Resolved, Warehouse, WriteGuard};
use crate::checks::{CompiledExpectations, PlannedMetric};
use crate::config::{Materialization, OnSchemaChange, PipelineName, TaskConfig, TaskId, TaskName};
use crate::error::{Error, PlanError, Result};
use crate::models::ResolvedModel;
use crate::pipeline::{
    extract_relations, Dag, Metric, ParsedTask, Pipeline, Project, Selector, Task,
};
use crate::template::{RenderedTask, RunDate};

/// One task of a run, planned.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PlannedTask {
    /// The pipeline.
    pub pipeline: PipelineName,
    /// The task.
    pub task: TaskName,
    /// The template file (relative to the project).
    pub file: PathBuf,
    /// How it is written.
    pub materialization: Materialization,
    /// Its settings from `pipeline.toml`.
    pub config: TaskConfig,
    /// Whether the write changes the table's columns (`on_schema_change`).
    pub evolve_schema: bool,
    /// The rendered SQL (empty for a command task).
    pub sql: String,
    /// A command task's program and arguments, as they will run.
    pub command: Option<Vec<String>>,
    /// The output schema (a command task's declared `columns`).
    pub schema: SchemaRef,
    /// Where it is written (`None` for a view).
    pub table_url: Option<Url>,
    /// Whether the run executes it (views planned only because a selected task reads
    /// them are not selected).
    pub selected: bool,
    /// The tasks of this run it reads.
    pub upstream: Vec<TaskId>,
    pub(crate) expectations: Option<Arc<CompiledExpectations>>,
    pub(crate) work: Work,
}

/// What running a planned task does.
#[derive(Debug, Clone)]
pub(crate) enum Work {
    /// Plan the query again on the committed upstream tables and write it.
    Sql(Statement, crate::config::Dialect),
    /// Run the program.
    Command(Arc<super::command::PlannedCommand>),
}

impl PlannedTask {
    /// The task's id in the project.
    pub fn id(&self) -> TaskId {
        TaskId::new(self.pipeline.clone(), self.task.clone())
    }
}

/// A planned run of one pipeline or of the project; execute it with
/// [`Engine::execute`].
#[derive(Clone)]
#[non_exhaustive]
pub struct RunPlan {
    /// The pipeline run, or `None` for a run of the whole project.
    pub pipeline: Option<PipelineName>,
    /// The pipelines with selected tasks, by name.
    pub pipelines: Vec<PipelineName>,
    /// What the plan is of: `pipeline` or `*` (the project), then ` --select …`.
    pub selection: String,
    /// The environment's name.
    pub env: String,
    /// The run date.
    pub ds: RunDate,
    /// The planned tasks in run order.
    pub tasks: Vec<PlannedTask>,
    /// The metrics of each pipeline whose every task is selected, computed after its
    /// tasks succeed.
    pub metrics: Vec<PlannedMetric>,
    /// The model functions the run calls, resolved when it was planned.
    pub models: Vec<ResolvedModel>,
    pub(crate) ctx: SessionContext,
    /// The tables the plan was made against; execution writes and reads through it.
    pub(crate) catalog: Catalog,
    /// Model function → the pipelines whose planned SQL calls it.
    pub(crate) model_callers: BTreeMap<String, BTreeSet<PipelineName>>,
    /// Stop at the first failed task (`RunOptions::fail_fast`).
    pub(crate) fail_fast: bool,
    /// Whether tasks' `retries` apply (`RunOptions::retries`).
    pub(crate) retries: bool,
    /// Set from outside to stop the run (`RunOptions::with_cancel`).
    pub(crate) cancel: Option<Arc<std::sync::atomic::AtomicBool>>,
}

impl std::fmt::Debug for RunPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunPlan")
            .field("pipeline", &self.pipeline)
            .field("pipelines", &self.pipelines)
            .field("env", &self.env)
            .field("ds", &self.ds)
            .field("tasks", &self.tasks)
            .field("models", &self.models)
            .finish_non_exhaustive()
    }
}

pub(super) async fn plan(
    engine: &Engine,
    pipeline: Option<&str>,
    options: &RunOptions,
) -> Result<RunPlan> {
    let project = engine.project();
    let pipelines = scope(project, pipeline)?;
    // One renderer for the tasks and the metrics: making one compiles every template.
    let renderer = engine.renderer(options)?;
    let env = &engine.environment().name;
    let rendered = render_tasks(&renderer, &pipelines, env)?;
    let commands = command_tasks(&pipelines, env);
    let parsed = parse_and_check(engine, &rendered)?;
    let scope_name = pipeline.map(|_| &pipelines[0].name);
    let calls = parsed
        .iter()
        .map(|(id, p)| (id.clone(), p.functions.clone()))
        .collect();
    let dag = dag_of(engine, scope_name, &rendered, &commands, &calls)?;
    let selection = Selection::new(&dag, project, &options.select, env)?;
    // Refuse writes outside the environment's roots before touching any storage, and
    // before any secret is needed.
    guard_writes(engine, &dag, &selection)?;

    let dates = super::command::date_vars(options.ds, options.data_interval.as_ref());
    let mut planner = Planner::new(engine, &dag, &selection, &parsed, dates).await?;
    let by_task: BTreeMap<TaskId, &RenderedTask> = rendered
        .iter()
        .map(|r| (TaskId::new(r.pipeline.clone(), r.task.clone()), r))
        .collect();
    let mut tasks = Vec::new();
    for id in dag
        .order()
        .iter()
        .filter(|t| selection.to_plan.contains(*t))
    {
        let upstream = dag
            .upstream_of(id)
            .filter(|u| selection.to_plan.contains(*u))
            .cloned()
            .collect();
        let task = match by_task.get(id) {
            Some(r) => {
                planner
                    .plan_task(r, &parsed[id], &selection, upstream)
                    .await?
            }
            None => {
                let task = project.task(id).expect("a command task of the DAG");
                let selected = selection.selected.contains(id);
                planner.plan_command(task, selected, upstream).await?
            }
        };
        tasks.push(task);
    }
    // Metrics are planned with the run (against the tasks' planned outputs), so a
    // broken metric fails the run before anything is written. A pipeline's metrics
    // are computed after a run of all its tasks, not after a part of them.
    let mut metrics = Vec::new();
    for p in pipelines.iter().filter(|p| selection.covers(p)) {
        for metric in p.metrics.values() {
            let r = renderer.render_metric(metric)?;
            metrics.push(planner.plan_metric(metric, &r).await?);
        }
    }
    let ran: BTreeSet<&PipelineName> = selection.selected.iter().map(|t| &t.pipeline).collect();
    Ok(RunPlan {
        pipeline: scope_name.cloned(),
        pipelines: ran.into_iter().cloned().collect(),
        selection: selection_key(pipeline, &options.select),
        env: engine.environment().name.clone(),
        ds: options.ds,
        tasks,
        metrics,
        model_callers: planner.callers(),
        fail_fast: options.fail_fast,
        retries: options.retries,
        cancel: options.cancel.clone(),
        models: planner.models,
        ctx: planner.ctx,
        catalog: planner.catalog,
    })
}

/// Parses every rendered task and checks that the tables it reads are refs or sources.
fn parse_and_check(
    engine: &Engine,
    rendered: &[RenderedTask],
) -> Result<BTreeMap<TaskId, ParsedTask>> {
    let mut parsed = BTreeMap::new();
    for r in rendered {
        let p = extract_relations(r.task.as_str(), &r.file, &r.sql, r.dialect)?;
        for relation in &p.relations {
            check_relation(engine, r, relation)?;
        }
        parsed.insert(TaskId::new(r.pipeline.clone(), r.task.clone()), p);
    }
    Ok(parsed)
}

/// The tasks a run executes, and the ones it plans.
struct Selection {
    /// The selected tasks: the run executes them.
    selected: BTreeSet<TaskId>,
    /// The selected tasks and the views they read (planned to be inlined, not written).
    to_plan: BTreeSet<TaskId>,
    /// The environment (a pipeline's tasks limited to others are not in its runs).
    env: String,
}

impl Selection {
    fn new(dag: &Dag, project: &Project, select: &[Selector], env: &str) -> Result<Self> {
        let has_tag = |id: &TaskId, tag: &str| {
            let pipeline = &project.pipelines()[&id.pipeline];
            pipeline.tasks[&id.task].has_tag(&pipeline.tags, tag)
        };
        let selected: BTreeSet<TaskId> = match dag.select(select, has_tag) {
            Ok(chosen) => chosen.into_iter().collect(),
            Err(Error::UnknownTag { tag, .. }) => {
                return Err(Error::UnknownTag {
                    tag,
                    known: project_tags(project),
                })
            }
            Err(e) => return Err(e),
        };
        let mut to_plan = selected.clone();
        let mut stack: Vec<TaskId> = selected.iter().cloned().collect();
        while let Some(t) = stack.pop() {
            for up in dag.upstream_of(&t) {
                let is_view = project
                    .task(up)
                    .is_some_and(|u| u.config.materialized == Materialization::View);
                if is_view && to_plan.insert(up.clone()) {
                    stack.push(up.clone());
                }
            }
        }
        Ok(Selection {
            selected,
            to_plan,
            env: env.to_string(),
        })
    }

    /// Whether every task of `pipeline` that runs in the environment is selected (its
    /// metrics are then computed).
    fn covers(&self, pipeline: &Pipeline) -> bool {
        pipeline
            .tasks
            .values()
            .filter(|t| t.config.runs_in(&self.env))
            .all(|t| self.selected.contains(&t.id()))
    }
}

/// Every tag of the project's pipelines and tasks, sorted.
fn project_tags(project: &Project) -> Vec<String> {
    let mut tags = BTreeSet::new();
    for p in project.pipelines().values() {
        tags.extend(p.tags.iter().cloned());
        for t in p.tasks.values() {
            tags.extend(t.config.tags.iter().cloned());
        }
    }
    tags.into_iter().collect()
}

/// Checks every selected task that writes against the environment's write roots.
fn guard_writes(engine: &Engine, dag: &Dag, selection: &Selection) -> Result<()> {
    let (project, env) = (engine.project(), engine.environment());
    let guard = WriteGuard::new(project, env)?;
    let root = Warehouse::root_url(project, env)?;
    for id in dag
        .order()
        .iter()
        .filter(|t| selection.selected.contains(*t))
    {
        let writes = project.task(id).is_some_and(|t| t.writes_table());
        if writes {
            let url = table_url(&root, &id.pipeline, id.task.as_str());
            guard.check(id.task.as_str(), &url)?;
        }
    }
    Ok(())
}

/// Plans the tasks of one run, in DAG order, in one session: each task against its
/// upstream tasks' planned outputs, every other table through the catalog.
struct Planner<'a> {
    engine: &'a Engine,
    dag: &'a Dag,
    catalog: Catalog,
    ctx: SessionContext,
    /// Tables already registered (each is opened once per run).
    registered: BTreeSet<TableReference>,
    /// Functions the planned SQL calls, and the models among them, resolved once.
    functions: BTreeSet<String>,
    models: Vec<ResolvedModel>,
    in_run: BTreeSet<TaskId>,
    /// Function → the pipelines whose planned SQL calls it.
    called_by: BTreeMap<String, BTreeSet<PipelineName>>,
    /// The run's dates, as command tasks get them.
    dates: Vec<(String, String)>,
}

impl<'a> Planner<'a> {
    async fn new(
        engine: &'a Engine,
        dag: &'a Dag,
        selection: &Selection,
        parsed: &BTreeMap<TaskId, ParsedTask>,
        dates: Vec<(String, String)>,
    ) -> Result<Planner<'a>> {
        let ctx = engine.session();
        let catalog = engine.catalog()?;
        for pipeline in dag.pipelines() {
            crate::catalog::ensure_schema(&ctx, pipeline.as_str());
        }
        // Model functions are resolved once per run (a registry alias names one version).
        let functions: BTreeSet<String> = selection
            .to_plan
            .iter()
            .filter_map(|t| parsed.get(t))
            .flat_map(|p| p.functions.iter().cloned())
            .collect();
        let models = engine
            .register_models(&ctx, &functions)
            .await
            .map_err(|e| registered_in_run(engine, dag, selection, e))?;
        Ok(Planner {
            engine,
            dag,
            catalog,
            ctx,
            registered: BTreeSet::new(),
            functions,
            models,
            in_run: selection.to_plan.clone(),
            called_by: BTreeMap::new(),
            dates,
        })
    }

    /// Plans command task `task`: its program, its upstream tables (each must exist
    /// when the run does not write it) and its declared output, registered for the
    /// tasks downstream.
    async fn plan_command(
        &mut self,
        task: &Task,
        selected: bool,
        upstream: Vec<TaskId>,
    ) -> Result<PlannedTask> {
        let project = self.engine.project();
        let warehouse = self.catalog.warehouse();
        let mut tables = Vec::new();
        for dep in &task.depends_on {
            if !project.task(dep).is_some_and(|t| t.writes_table()) {
                continue;
            }
            let url = warehouse.table_url(&dep.pipeline, dep.task.as_str());
            let exists = || crate::delta::open(&url, self.catalog.storage());
            if selected && !self.in_run.contains(dep) && exists().await?.is_none() {
                let missing = PlanError::MissingTable {
                    table: format!("{}.{}", dep.pipeline, dep.task),
                    uri: url.to_string(),
                    hint: format!(
                        "run it first, or select +{} to run it with its upstream tasks",
                        self.dag.name_of(&task.id())
                    ),
                };
                return Err(Error::plan(task.name.as_str(), task.file.clone(), missing));
            }
            tables.push((dep.clone(), url));
        }
        let output = match task.config.produces {
            Some(_) => {
                let schema = crate::catalog::declared_schema(&self.ctx, &task.config.columns)
                    .await
                    .map_err(|message| Error::Config {
                        file: task.config_file(),
                        key: format!("tasks.{}.columns", task.name),
                        message,
                    })?;
                let reference = TableReference::partial(task.pipeline.as_str(), task.name.as_str());
                crate::catalog::register_planned(&self.ctx, reference, schema.clone())?;
                let url = warehouse.table_url(&task.pipeline, task.name.as_str());
                Some((url, schema))
            }
            None => None,
        };
        let cx = super::command::CommandContext {
            root: project.root(),
            env: self.engine.environment(),
            dates: &self.dates,
        };
        let command = super::command::plan(&cx, task, tables, output.clone())?;
        let empty = || Arc::new(datafusion::arrow::datatypes::Schema::empty());
        Ok(PlannedTask {
            pipeline: task.pipeline.clone(),
            task: task.name.clone(),
            file: task.file.clone(),
            materialization: Materialization::Command,
            config: task.config.clone(),
            evolve_schema: false,
            sql: String::new(),
            command: Some(command.argv.clone()),
            schema: output.as_ref().map_or_else(empty, |(_, s)| s.clone()),
            table_url: output.map(|(url, _)| url),
            selected,
            expectations: None,
            upstream,
            work: Work::Command(Arc::new(command)),
        })
    }

    /// Each resolved model function and the pipelines that call it.
    fn callers(&self) -> BTreeMap<String, BTreeSet<PipelineName>> {
        self.models
            .iter()
            .filter_map(|m| Some((m.function.clone(), self.called_by.get(&m.function)?.clone())))
            .collect()
    }

    fn record_calls(&mut self, pipeline: &PipelineName, functions: &BTreeSet<String>) {
        for f in functions {
            self.called_by
                .entry(f.clone())
                .or_default()
                .insert(pipeline.clone());
        }
    }

    /// Plans one task and registers its planned output for the tasks downstream.
    async fn plan_task(
        &mut self,
        r: &RenderedTask,
        p: &ParsedTask,
        selection: &Selection,
        upstream: Vec<TaskId>,
    ) -> Result<PlannedTask> {
        let id = TaskId::new(r.pipeline.clone(), r.task.clone());
        let engine = self.engine;
        let config = &engine.project().pipelines()[&r.pipeline].tasks[&r.task].config;
        self.record_calls(&r.pipeline, &p.functions);
        self.register_reads(r, &p.relations).await?;
        let plan: LogicalPlan = crate::functions::state_for(self.ctx.state(), p.dialect)
            .statement_to_plan(p.statement.clone())
            .await
            .map_err(|source| self.plan_failure(r, p, source))?;
        let schema: SchemaRef = Arc::new(plan.schema().as_arrow().clone());
        check_output(r, config, &schema)?;
        let expectations = self.compile_expectations(r, config, &schema)?;
        let reference = TableReference::partial(r.pipeline.as_str(), r.task.as_str());
        crate::catalog::register_planned(&self.ctx, reference, schema.clone())?;
        let table_url = config.materialized.writes().then(|| {
            self.catalog
                .warehouse()
                .table_url(&r.pipeline, r.task.as_str())
        });
        let selected = selection.selected.contains(&id);
        // Compare the output with the table it will be written to, before anything runs.
        let evolve_schema = match (&table_url, selected) {
            (Some(url), true) => self.schema_fits(r, config, url, &schema).await?,
            _ => false,
        };
        Ok(PlannedTask {
            pipeline: r.pipeline.clone(),
            task: r.task.clone(),
            file: r.file.clone(),
            materialization: config.materialized,
            config: config.clone(),
            evolve_schema,
            sql: r.sql.clone(),
            command: None,
            schema,
            table_url,
            selected,
            expectations,
            upstream,
            work: Work::Sql(p.statement.clone(), p.dialect),
        })
    }

    /// The task's expectations compiled against its output; unqualified, as they name
    /// the output's columns as they are written.
    fn compile_expectations(
        &self,
        r: &RenderedTask,
        config: &TaskConfig,
        schema: &SchemaRef,
    ) -> Result<Option<Arc<CompiledExpectations>>> {
        if config.expect.is_empty() {
            return Ok(None);
        }
        let df_schema = datafusion::common::DFSchema::try_from(schema.as_ref().clone())
            .map_err(|source| plan_error(r, source))?;
        let state = crate::functions::state_for(self.ctx.state(), r.dialect);
        let compiled =
            CompiledExpectations::compile(r.task.as_str(), &config.expect, &df_schema, |sql| {
                state.create_logical_expr(sql, &df_schema)
            })
            .map_err(|e| Error::plan(r.task.as_str(), r.file.clone(), e))?;
        Ok(Some(Arc::new(compiled)))
    }

    /// Whether writing `schema` to the table at `url` changes its columns (allowed by
    /// `on_schema_change`); an error when it may not.
    async fn schema_fits(
        &self,
        r: &RenderedTask,
        config: &TaskConfig,
        url: &Url,
        schema: &SchemaRef,
    ) -> Result<bool> {
        let Some(existing) = crate::delta::open(url, self.catalog.storage()).await? else {
            return Ok(false);
        };
        let diff = crate::delta::schema_diff(&existing, url, schema)
            .map_err(|e| Error::plan(r.task.as_str(), r.file.clone(), e))?;
        let evolving = config.on_schema_change == OnSchemaChange::AppendNewColumns;
        if !diff.changed.is_empty() || (!diff.is_empty() && !evolving) {
            return Err(Error::SchemaChange {
                task: r.task.to_string(),
                uri: url.to_string(),
                added: diff.added,
                removed: diff.removed,
                changed: diff.changed,
            });
        }
        Ok(!diff.is_empty())
    }

    /// Plans a metric against the tasks' planned outputs.
    async fn plan_metric(&mut self, metric: &Metric, r: &RenderedTask) -> Result<PlannedMetric> {
        let p = extract_relations(r.task.as_str(), &r.file, &r.sql, r.dialect)?;
        for relation in &p.relations {
            check_relation(self.engine, r, relation)?;
        }
        self.record_calls(&metric.pipeline, &p.functions);
        let new: BTreeSet<String> = p.functions.difference(&self.functions).cloned().collect();
        let more = self.engine.register_models(&self.ctx, &new).await?;
        self.models.extend(more);
        self.functions.extend(new);
        self.register_reads(r, &p.relations).await?;
        let plan = crate::functions::state_for(self.ctx.state(), p.dialect)
            .statement_to_plan(p.statement.clone())
            .await
            .map_err(|source| self.plan_failure(r, &p, source))?;
        crate::checks::check_shape(plan.schema().as_arrow())
            .map_err(|e| Error::plan(r.task.as_str(), r.file.clone(), e))?;
        Ok(PlannedMetric {
            pipeline: metric.pipeline.clone(),
            name: metric.name.clone(),
            file: r.file.clone(),
            sql: r.sql.clone(),
            config: metric.config.clone(),
            grouped: plan.schema().fields().len() == 2,
            statement: p.statement,
            dialect: p.dialect,
        })
    }

    /// Registers the tables a query reads that are not tasks of this run, through the
    /// catalog: sources, and tasks' tables as they are in the warehouse.
    async fn register_reads(
        &mut self,
        r: &RenderedTask,
        relations: &[TableReference],
    ) -> Result<()> {
        let mut reads = Vec::new();
        for relation in relations {
            let (Some(schema), table) = (relation.schema(), relation.table()) else {
                continue;
            };
            let reference = TableReference::partial(schema, table);
            let in_run = PipelineName::try_new(schema)
                .ok()
                .zip(TaskName::try_new(table).ok())
                .is_some_and(|(p, t)| self.in_run.contains(&TaskId::new(p, t)));
            if !in_run && self.registered.insert(reference.clone()) {
                reads.push(reference);
            }
        }
        let resolved = self.catalog.register_all(&self.ctx, &reads).await?;
        for (reference, resolved) in reads.iter().zip(resolved) {
            if let Resolved::NotYetWritten(url) = resolved {
                let (schema, table) = (reference.schema().unwrap_or_default(), reference.table());
                let reader = self
                    .dag
                    .name_of(&TaskId::new(r.pipeline.clone(), r.task.clone()));
                let hint = if schema == r.pipeline.as_str() || self.dag.pipeline().is_none() {
                    format!("run it first, or select +{reader} to run it with its upstream tasks")
                } else {
                    format!(
                        "run pipeline `{schema}` first, or run the project (name no pipeline) to plan them together"
                    )
                };
                let missing = PlanError::MissingTable {
                    table: format!("{schema}.{table}"),
                    uri: url.to_string(),
                    hint,
                };
                return Err(Error::plan(r.task.as_str(), r.file.clone(), missing));
            }
        }
        Ok(())
    }
}

/// A model that does not resolve when the run is planned may be one a command task of
/// the run registers (its first version, or an alias it sets): say so.
fn registered_in_run(engine: &Engine, dag: &Dag, selection: &Selection, e: Error) -> Error {
    let Error::Model { function, .. } = &e else {
        return e;
    };
    let project = engine.project();
    let registrar = selection.selected.iter().find(|id| {
        project.task(id).is_some_and(|t| {
            t.config.registers.as_deref().is_some_and(|m| {
                super::command::functions_of_model(engine.environment(), m).contains(function)
            })
        })
    });
    match registrar {
        Some(id) => Error::ModelRegisteredInRun {
            task: dag.name_of(id),
            source: Box::new(e),
        },
        None => e,
    }
}

/// A table the SQL reads must be a `ref()` of this render or a declared source.
fn check_relation(engine: &Engine, r: &RenderedTask, relation: &TableReference) -> Result<()> {
    let undeclared = |hint: String| Error::UndeclaredTable {
        task: r.task.to_string(),
        file: r.file.clone(),
        table: relation.to_string(),
        hint,
    };
    let (schema, table) = match relation {
        TableReference::Bare { table } => {
            return Err(undeclared(format!(
                "write {{{{ ref('{table}') }}}} for a task or {{{{ source('…', '{table}') }}}} for a source"
            )))
        }
        TableReference::Partial { schema, table } => (schema.as_ref(), table.as_ref()),
        TableReference::Full { catalog, schema, table } if catalog.as_ref() == "datafusion" => {
            (schema.as_ref(), table.as_ref())
        }
        TableReference::Full { .. } => {
            return Err(undeclared("quern tables have no catalog part; use ref() or source()".into()))
        }
    };
    let project = engine.project();
    if let Some(p) = project.pipelines().get(schema) {
        if r.refs
            .iter()
            .any(|(rp, rt)| rp.as_str() == schema && rt.as_str() == table)
        {
            return match p.tasks.get(table) {
                Some(t) if t.is_command() && !t.writes_table() => Err(undeclared(format!(
                    "`{schema}/{table}` is a command task that writes no table; give it produces = \"table\" and columns in pipeline.toml"
                ))),
                _ => Ok(()),
            };
        }
        let hint = if p.tasks.contains_key(table) {
            if schema == r.pipeline.as_str() {
                format!("write {{{{ ref('{table}') }}}} so quern knows the dependency")
            } else {
                format!("write {{{{ ref('{schema}', '{table}') }}}} so quern knows the dependency")
            }
        } else {
            format!("pipeline `{schema}` has no task `{table}`")
        };
        return Err(undeclared(hint));
    }
    if engine.environment().source(schema, table).is_some() {
        return Ok(());
    }
    Err(undeclared(format!(
        "declare it under [sources.{schema}] in {} and read it with {{{{ source('{schema}', '{table}') }}}}",
        engine.environment().file.display()
    )))
}

/// Checks what Delta needs of a written task's output: named columns, and the
/// partition columns present.
fn check_output(r: &RenderedTask, config: &TaskConfig, schema: &SchemaRef) -> Result<()> {
    let materialization = config.materialized;
    let fail =
        |message: String| Error::plan(r.task.as_str(), r.file.clone(), PlanError::Output(message));
    let mut seen = BTreeSet::new();
    for field in schema.fields() {
        if !seen.insert(field.name().as_str()) {
            return Err(fail(format!(
                "the output has two columns named `{}`; give them distinct aliases",
                field.name()
            )));
        }
    }
    if !materialization.writes() {
        return Ok(());
    }
    if !config.partition_by.is_empty() && config.partition_by.len() >= schema.fields().len() {
        return Err(fail(format!(
            "every column of the output is a partition column (partition_by in pipeline.toml); Delta needs at least one column that is not: {}",
            config.partition_by.join(", ")
        )));
    }
    let columns = config
        .partition_by
        .iter()
        .map(|c| (c, "partition column", "partition_by"))
        .chain(
            config
                .unique_key
                .iter()
                .map(|c| (c, "key column", "unique_key")),
        );
    for (column, what, key) in columns {
        if schema.field_with_name(column).is_err() {
            return Err(fail(format!(
                "{what} `{column}` ({key} in pipeline.toml) is not in the output; columns: {}",
                schema
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    Ok(())
}

impl Planner<'_> {
    /// Why `p` did not plan: a function of the other dialect, if it calls one, else
    /// what DataFusion says.
    fn plan_failure(
        &self,
        r: &RenderedTask,
        p: &ParsedTask,
        source: datafusion::error::DataFusionError,
    ) -> Error {
        crate::functions::wrong_dialect(&self.ctx.state(), p, r.task.as_str(), &r.file, &r.sql)
            .unwrap_or_else(|| plan_error(r, source))
    }
}

fn plan_error(r: &RenderedTask, source: datafusion::error::DataFusionError) -> Error {
    Error::plan(r.task.as_str(), r.file.clone(), source)
}
