//! The catalog: the one place that resolves a table a query names to what it reads.
//! Plan, ad-hoc queries, the run log (`status`) and pipeline tests all register their
//! tables through it:
//!
//! - a **source** (`source.table`, declared in the environment) reads its Delta,
//!   Parquet or CSV location;
//! - a **task table** (`pipeline.task`) of a task outside the run reads the Delta table
//!   at `<warehouse>/<pipeline>/<task>/` as it is;
//! - a task **planned in this run** is a placeholder of its planned output schema,
//!   replaced by its committed table (or its view) once it has run;
//! - a **run-log table** (`_quern/<table>`) reads the environment's log, also as
//!   `_quern.<table>` in ad-hoc queries;
//! - a **test fixture** is an in-memory table of the test's rows.
//!
//! It also owns where tables live ([`Warehouse`], the [`WriteGuard`]) and the one way
//! object stores are made from `[storage]` options.

mod columns;
mod csv;
mod location;
mod mapped;
mod sources;
mod stores;

pub(crate) use columns::{declared_schema, parse_columns, Declared};
pub(crate) use location::{table_url, Warehouse, WriteGuard};
pub(crate) use mapped::local_files;
pub use stores::StorageError;

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::MemorySchemaProvider;
use datafusion::common::TableReference;
use datafusion::datasource::empty::EmptyTable;
use datafusion::datasource::TableProvider;
use datafusion::prelude::SessionContext;
use url::Url;

use crate::config::Environment;
use crate::delta::StorageOptions;
use crate::error::{Error, Result};
use crate::pipeline::Project;

/// What a `schema.table` name resolved to when it was registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Resolved {
    /// A source or a task table that exists: registered.
    Registered,
    /// A task's table that has not been written yet, at this URL: not registered.
    NotYetWritten(Url),
    /// Neither a source nor a task of the project: left for DataFusion to report.
    Unknown,
}

/// The SQL schema the run log's tables are read under (`_quern.tasks`).
pub(crate) const LOG_SCHEMA: &str = "_quern";

/// The tables of one environment of a project.
#[derive(Debug, Clone)]
pub(crate) struct Catalog {
    project: Arc<Project>,
    env: Arc<Environment>,
    warehouse: Warehouse,
}

impl Catalog {
    /// The catalog of `env`; resolves the warehouse root and storage secrets.
    pub(crate) fn new(project: Arc<Project>, env: Arc<Environment>) -> Result<Self> {
        let warehouse = Warehouse::new(&project, &env)?;
        Ok(Catalog {
            project,
            env,
            warehouse,
        })
    }

    pub(crate) fn warehouse(&self) -> &Warehouse {
        &self.warehouse
    }

    /// The environment.
    pub(crate) fn environment(&self) -> &Arc<Environment> {
        &self.env
    }

    pub(crate) fn storage(&self) -> &StorageOptions {
        self.warehouse.storage()
    }

    /// Registers in `runtime` the S3 store of each bucket the environment reads or
    /// writes (the warehouse's, the sources'), with this process's storage options and
    /// secrets: what an executor of a distributed run reads files through.
    pub(crate) fn register_stores(
        &self,
        runtime: &datafusion::execution::runtime_env::RuntimeEnv,
    ) -> Result<()> {
        let mut locations = vec![("warehouse.root".to_string(), self.warehouse.root().clone())];
        for (source, tables) in &self.env.sources {
            for (table, spec) in tables {
                let key = format!("sources.{source}.{table}");
                let uri = crate::config::resolve_env_vars(&spec.uri, &self.env.file, &key)?;
                let url = location::location_url(self.project.root(), &uri, false)
                    .map_err(|e| location::storage_err(&self.env, &key, e))?;
                locations.push((key, url));
            }
        }
        let mut buckets = std::collections::BTreeSet::new();
        for (key, url) in locations {
            if url.scheme() != "s3"
                || !buckets.insert(url.host_str().unwrap_or_default().to_string())
            {
                continue;
            }
            let (base, store) = stores::s3_store(&url, self.storage())
                .map_err(|e| location::storage_err(&self.env, &key, e))?;
            runtime.register_object_store(&base, store);
        }
        Ok(())
    }

    /// Registers each of `references` in `ctx` as the source or the task table it
    /// names, opening their tables at the same time (each Delta log replay and Parquet
    /// footer read is a few milliseconds of its own): the results are in the order of
    /// `references`, and the error is the first one in that order.
    pub(crate) async fn register_all(
        &self,
        ctx: &SessionContext,
        references: &[TableReference],
    ) -> Result<Vec<Resolved>> {
        let opening: Vec<_> = (references.iter().cloned())
            .map(|reference| {
                let (catalog, ctx) = (self.clone(), ctx.clone());
                tokio::spawn(async move { catalog.resolve(&ctx, &reference).await })
            })
            .collect();
        let mut opened = Vec::with_capacity(opening.len());
        for task in opening {
            opened.push(match task.await {
                Ok(result) => result,
                // The same panic as opening the table here would have raised.
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(e) => Err(Error::session(
                    "opening the tables a query reads",
                    datafusion::error::DataFusionError::External(Box::new(e)),
                )),
            });
        }
        let mut resolved = Vec::with_capacity(opened.len());
        for result in opened {
            let (r, provider) = result?;
            if let Some((reference, provider)) = provider {
                register_provider(ctx, reference, provider)?;
            }
            resolved.push(r);
        }
        Ok(resolved)
    }

    /// What `reference` names, and the provider to register it as, if any.
    async fn resolve(
        &self,
        ctx: &SessionContext,
        reference: &TableReference,
    ) -> Result<(Resolved, Option<(TableReference, Arc<dyn TableProvider>)>)> {
        let (Some(schema), table) = (reference.schema(), reference.table()) else {
            return Ok((Resolved::Unknown, None));
        };
        let reference = TableReference::partial(schema, table);
        // The run log reads as `_quern.runs`, `_quern.tasks`, … in ad-hoc queries.
        if schema == LOG_SCHEMA && crate::config::is_identifier(table) {
            let url = self.warehouse.log_table_url(table);
            return Ok(match self.open_delta(ctx, &url).await? {
                Some(provider) => (Resolved::Registered, Some((reference, provider))),
                None => (Resolved::Unknown, None),
            });
        }
        if let Some(spec) = self.env.source(schema, table) {
            let provider = sources::provider(
                ctx,
                self.project.root(),
                &self.env,
                self.storage(),
                (schema, table),
                spec,
            )
            .await?;
            return Ok((Resolved::Registered, Some((reference, provider))));
        }
        let Some(pipeline) = self.project.pipelines().get(schema) else {
            return Ok((Resolved::Unknown, None));
        };
        let url = self.warehouse.table_url(&pipeline.name, table);
        Ok(match self.open_delta(ctx, &url).await? {
            Some(provider) => (Resolved::Registered, Some((reference, provider))),
            None => (Resolved::NotYetWritten(url), None),
        })
    }

    /// Registers the run-log table `table` (`runs`, `tasks`, `metrics`…) under its bare
    /// name; `false` when the log has no such table yet.
    pub(crate) async fn register_log_table(
        &self,
        ctx: &SessionContext,
        table: &str,
    ) -> Result<bool> {
        let url = self.warehouse.log_table_url(table);
        self.register_delta(ctx, TableReference::bare(table), &url)
            .await
    }

    /// Registers the Delta table at `url` as `reference`; `false` when there is none.
    async fn register_delta(
        &self,
        ctx: &SessionContext,
        reference: TableReference,
        url: &Url,
    ) -> Result<bool> {
        let Some(provider) = self.open_delta(ctx, url).await? else {
            return Ok(false);
        };
        register_provider(ctx, reference, provider)?;
        Ok(true)
    }

    /// The provider of the Delta table at `url`; `None` when there is none.
    async fn open_delta(
        &self,
        ctx: &SessionContext,
        url: &Url,
    ) -> Result<Option<Arc<dyn TableProvider>>> {
        let Some(table) = crate::delta::open(url, self.storage()).await? else {
            return Ok(None);
        };
        Ok(Some(crate::delta::provider(&table, url, ctx).await?))
    }
}

/// Registers a task planned in this run as an empty table of its planned output, so
/// downstream tasks plan against it before anything is written. Not a view:
/// DataFusion inlines a view's plan into every plan that reads it, which grows
/// exponentially along chains of fan-ins.
pub(crate) fn register_planned(
    ctx: &SessionContext,
    reference: TableReference,
    schema: SchemaRef,
) -> Result<()> {
    register_provider(ctx, reference, Arc::new(EmptyTable::new(schema)))
}

/// Registers `provider` as `reference` (a committed table, a view, a test fixture),
/// replacing whatever was registered under that name, and creating its schema.
pub(crate) fn register_provider(
    ctx: &SessionContext,
    reference: TableReference,
    provider: Arc<dyn TableProvider>,
) -> Result<()> {
    if let Some(schema) = reference.schema() {
        ensure_schema(ctx, schema);
    }
    let action = || format!("registering table {reference}");
    ctx.deregister_table(reference.clone())
        .map_err(|e| Error::session(action(), e))?;
    ctx.register_table(reference.clone(), provider)
        .map_err(|e| Error::session(action(), e))?;
    Ok(())
}

/// Creates the SQL schema `name` in the session's default catalog if it is missing.
pub(crate) fn ensure_schema(ctx: &SessionContext, name: &str) {
    if let Some(catalog) = ctx.catalog("datafusion") {
        if catalog.schema(name).is_none() {
            // Registering can only fail for a name clash, which `schema()` just ruled out.
            let _ = catalog.register_schema(name, Arc::new(MemorySchemaProvider::new()));
        }
    }
}
