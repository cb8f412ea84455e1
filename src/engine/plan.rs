//! Planning a run: render every task, parse it, cross-check its tables with its refs
//! and sources, order the DAG, and plan each selected task with DataFusion against its
//! upstream tasks' planned outputs, so even a first run plans completely. Nothing is
//! written here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::TableReference;
use datafusion::datasource::empty::EmptyTable;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement;
use url::Url;

use super::storage::{ensure_schema, register_delta, register_source, WriteGuard};
use super::{Engine, RunOptions};
use crate::checks::PlannedMetric;
use crate::config::{Materialization, OnSchemaChange, PipelineName, TaskConfig, TaskName};
use crate::error::{Error, Result};
use crate::pipeline::{extract_relations, Dag};
use crate::template::{RenderedTask, RunDate};

/// One task of a run, planned.
#[derive(Debug, Clone)]
pub struct PlannedTask {
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
    /// The rendered SQL.
    pub sql: String,
    /// The output schema.
    pub schema: SchemaRef,
    /// Where it is written (`None` for a view).
    pub table_url: Option<Url>,
    /// Whether the run executes it (views planned only because a selected task reads
    /// them are not selected).
    pub selected: bool,
    /// The tasks of this run it reads.
    pub upstream: Vec<TaskName>,
    pub(crate) expectations: Option<Arc<crate::checks::CompiledExpectations>>,
    pub(crate) statement: Statement,
}

/// A planned run of one pipeline; execute it with [`Engine::execute`].
#[derive(Clone)]
pub struct RunPlan {
    /// The pipeline.
    pub pipeline: PipelineName,
    /// The environment's name.
    pub env: String,
    /// The run date.
    pub ds: RunDate,
    /// The planned tasks in run order.
    pub tasks: Vec<PlannedTask>,
    /// The pipeline's metrics, computed after the tasks succeed (full runs only).
    pub metrics: Vec<PlannedMetric>,
    /// The model functions the run calls, resolved when it was planned.
    pub models: Vec<crate::models::ResolvedModel>,
    pub(crate) ctx: SessionContext,
}

impl std::fmt::Debug for RunPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunPlan")
            .field("pipeline", &self.pipeline)
            .field("env", &self.env)
            .field("ds", &self.ds)
            .field("tasks", &self.tasks)
            .field("models", &self.models)
            .finish_non_exhaustive()
    }
}

pub(super) fn dag_of(pipeline: &str, rendered: &[RenderedTask]) -> Result<Dag> {
    let upstream = rendered
        .iter()
        .map(|r| {
            let ups = r
                .refs
                .iter()
                .filter(|(p, _)| p.as_str() == pipeline)
                .map(|(_, t)| t.clone())
                .collect();
            (r.task.clone(), ups)
        })
        .collect();
    Dag::new(pipeline, upstream)
}

pub(super) async fn plan(
    engine: &Engine,
    pipeline_name: &str,
    options: &RunOptions,
) -> Result<RunPlan> {
    let project = engine.project();
    let env = engine.environment();
    let pipeline = project.pipeline(pipeline_name)?;
    // One renderer for the tasks and the metrics: making one compiles every template.
    let renderer = engine.renderer(options)?;
    let rendered = engine.render_with(&renderer, pipeline_name)?;

    // Parse every task and check that the tables it reads are refs or sources.
    let mut parsed = BTreeMap::new();
    for r in &rendered {
        let p = extract_relations(r.task.as_str(), &r.file, &r.sql)?;
        for relation in &p.relations {
            check_relation(engine, r, relation)?;
        }
        parsed.insert(r.task.clone(), p);
    }
    let dag = dag_of(pipeline_name, &rendered)?;
    let selected: BTreeSet<TaskName> = dag.select(&options.select)?.into_iter().collect();

    // Views that selected tasks read are planned too (they are inlined, not written).
    let mut to_plan = selected.clone();
    let mut stack: Vec<TaskName> = selected.iter().cloned().collect();
    while let Some(t) = stack.pop() {
        for up in dag.upstream_of(&t) {
            let is_view = pipeline.tasks[up].config.materialized == Materialization::View;
            if is_view && to_plan.insert(up.clone()) {
                stack.push(up.clone());
            }
        }
    }

    // Refuse writes outside the environment's roots before touching any storage, and
    // before any secret is needed.
    let guard = WriteGuard::new(project, env)?;
    let root = super::Warehouse::root_url(project, env)?;
    for name in dag.order().iter().filter(|t| selected.contains(*t)) {
        if pipeline.tasks[name].config.materialized.writes() {
            let url = super::storage::table_url(&root, &pipeline.name, name.as_str())?;
            guard.check(name.as_str(), &url)?;
        }
    }
    let ctx = engine.session();
    let warehouse = engine.warehouse()?;
    ensure_schema(&ctx, pipeline_name);
    // Model functions are resolved once per run (a registry alias names one version).
    let mut functions: BTreeSet<String> = to_plan
        .iter()
        .flat_map(|t| parsed[t].functions.iter().cloned())
        .collect();
    let mut models = engine.register_models(&ctx, &functions).await?;
    let by_task: BTreeMap<&TaskName, &RenderedTask> =
        rendered.iter().map(|r| (&r.task, r)).collect();
    let mut registered: BTreeSet<TableReference> = BTreeSet::new();
    // Makes the tables a task or a metric reads resolvable.
    let reads = Reads {
        engine,
        ctx: &ctx,
        warehouse: &warehouse,
        pipeline: pipeline_name,
        in_run: &to_plan,
    };
    let mut tasks = Vec::new();
    for name in dag.order().iter().filter(|t| to_plan.contains(*t)) {
        let r = by_task[name];
        let task = &pipeline.tasks[name];
        let p = &parsed[name];
        reads.register(r, &p.relations, &mut registered).await?;
        let plan: LogicalPlan = ctx
            .state()
            .statement_to_plan(p.statement.clone())
            .await
            .map_err(|source| plan_error(r, source))?;
        let schema: SchemaRef = Arc::new(plan.schema().as_arrow().clone());
        check_output(r, &task.config, &schema)?;
        let expectations = if task.config.expect.is_empty() {
            None
        } else {
            // Unqualified: expectations name the output's columns as they are written.
            let df_schema = datafusion::common::DFSchema::try_from(schema.as_ref().clone())
                .map_err(|source| plan_error(r, source))?;
            let compiled = crate::checks::CompiledExpectations::compile(
                r.task.as_str(),
                &task.config.expect,
                &df_schema,
                |sql| ctx.parse_sql_expr(sql, &df_schema),
            )
            .map_err(|message| {
                Error::plan(
                    r.task.as_str(),
                    r.file.clone(),
                    datafusion::error::DataFusionError::Plan(message),
                )
            })?;
            Some(Arc::new(compiled))
        };
        // Downstream tasks plan against this task's output schema. An empty table of
        // that schema, not a view: DataFusion inlines a view's plan into every plan
        // that reads it, which grows exponentially along chains of fan-ins.
        let placeholder = EmptyTable::new(schema.clone());
        ctx.register_table(
            TableReference::partial(pipeline_name, name.as_str()),
            Arc::new(placeholder),
        )
        .map_err(|source| plan_error(r, source))?;
        let table_url = if task.config.materialized.writes() {
            Some(warehouse.table_url(&pipeline.name, name.as_str())?)
        } else {
            None
        };
        // Compare the output with the table it will be written to, before anything runs.
        let mut evolve_schema = false;
        if let (Some(url), true) = (&table_url, selected.contains(name)) {
            if let Some(existing) = crate::delta::open(url, warehouse.storage()).await? {
                let diff = crate::delta::schema_diff(&existing, &schema).map_err(|message| {
                    Error::plan(
                        r.task.as_str(),
                        r.file.clone(),
                        datafusion::error::DataFusionError::Plan(message),
                    )
                })?;
                let evolving = task.config.on_schema_change == OnSchemaChange::AppendNewColumns;
                if !diff.changed.is_empty() || (!diff.is_empty() && !evolving) {
                    return Err(Error::SchemaChange {
                        task: r.task.to_string(),
                        uri: url.to_string(),
                        added: diff.added,
                        removed: diff.removed,
                        changed: diff.changed,
                    });
                }
                evolve_schema = !diff.is_empty();
            }
        }
        tasks.push(PlannedTask {
            task: name.clone(),
            file: r.file.clone(),
            materialization: task.config.materialized,
            config: task.config.clone(),
            evolve_schema,
            sql: r.sql.clone(),
            schema,
            table_url,
            selected: selected.contains(name),
            expectations,
            upstream: dag
                .upstream_of(name)
                .filter(|u| to_plan.contains(*u))
                .cloned()
                .collect(),
            statement: p.statement.clone(),
        });
    }
    // Metrics are planned with the run (against the tasks' planned outputs), so a
    // broken metric fails the run before anything is written. They are computed after
    // a full run of the pipeline, not after a selection.
    let mut metrics = Vec::new();
    if options.select.is_empty() && !pipeline.metrics.is_empty() {
        for metric in pipeline.metrics.values() {
            let r = renderer.render_metric(metric)?;
            let p = extract_relations(r.task.as_str(), &r.file, &r.sql)?;
            for relation in &p.relations {
                check_relation(engine, &r, relation)?;
            }
            let new: BTreeSet<String> = p.functions.difference(&functions).cloned().collect();
            models.extend(engine.register_models(&ctx, &new).await?);
            functions.extend(new);
            reads.register(&r, &p.relations, &mut registered).await?;
            let plan = ctx
                .state()
                .statement_to_plan(p.statement.clone())
                .await
                .map_err(|source| plan_error(&r, source))?;
            let grouped = plan.schema().fields().len() == 2;
            crate::checks::check_shape(plan.schema().as_arrow()).map_err(|message| {
                Error::plan(
                    r.task.as_str(),
                    r.file.clone(),
                    datafusion::error::DataFusionError::Plan(message),
                )
            })?;
            metrics.push(PlannedMetric {
                name: metric.name.clone(),
                file: r.file.clone(),
                sql: r.sql.clone(),
                config: metric.config.clone(),
                grouped,
                statement: p.statement,
            });
        }
    }
    Ok(RunPlan {
        pipeline: pipeline.name.clone(),
        env: env.name.clone(),
        ds: options.ds,
        tasks,
        metrics,
        models,
        ctx,
    })
}

/// Registers the tables a query reads that are not tasks of this run: sources, and
/// tasks' tables as they are in the warehouse.
struct Reads<'a> {
    engine: &'a Engine,
    ctx: &'a SessionContext,
    warehouse: &'a super::Warehouse,
    pipeline: &'a str,
    in_run: &'a BTreeSet<TaskName>,
}

impl Reads<'_> {
    async fn register(
        &self,
        r: &RenderedTask,
        relations: &[TableReference],
        registered: &mut BTreeSet<TableReference>,
    ) -> Result<()> {
        let (engine, ctx, warehouse) = (self.engine, self.ctx, self.warehouse);
        for relation in relations {
            let (Some(schema), table) = (relation.schema(), relation.table()) else {
                continue;
            };
            let reference = TableReference::partial(schema, table);
            let in_run = schema == self.pipeline && self.in_run.contains(table);
            if in_run || !registered.insert(reference.clone()) {
                continue;
            }
            if let Some(src) = engine.environment().source(schema, table) {
                register_source(engine, ctx, warehouse.storage(), schema, table, src)
                    .await
                    .map_err(|e| plan_context(&r.task, &r.file, e))?;
                continue;
            }
            // A task outside this run: read its table as it is in the warehouse.
            let pipeline_of = engine.project().pipeline(schema)?.name.clone();
            let url = warehouse.table_url(&pipeline_of, table)?;
            let found = register_delta(ctx, reference, &url, warehouse.storage())
                .await
                .map_err(|e| plan_context(&r.task, &r.file, e))?;
            if !found {
                let hint = if schema == self.pipeline {
                    format!(
                        "run it first, or select +{} to run it with its upstream tasks",
                        r.task
                    )
                } else {
                    format!("run pipeline `{schema}` first")
                };
                return Err(Error::plan(
                    r.task.as_str(),
                    r.file.clone(),
                    datafusion::error::DataFusionError::Plan(format!(
                        "table {schema}.{table} does not exist yet at {url}; {hint}"
                    )),
                ));
            }
        }
        Ok(())
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
            return Ok(());
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
    let fail = |message: String| {
        Error::plan(
            r.task.as_str(),
            r.file.clone(),
            datafusion::error::DataFusionError::Plan(message),
        )
    };
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

fn plan_error(r: &RenderedTask, source: datafusion::error::DataFusionError) -> Error {
    Error::plan(r.task.as_str(), r.file.clone(), source)
}

fn plan_context(task: &TaskName, file: &std::path::Path, e: Error) -> Error {
    match e {
        Error::Query { source } => Error::plan(task.as_str(), file, *source),
        other => other,
    }
}
