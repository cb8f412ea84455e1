//! A project's pipelines and tasks on disk, the tables each task's SQL reads, and the
//! DAG they form.

mod dag;
mod deps;
mod project;
mod spark_sql;

pub use dag::{Dag, Selector, SelectorTarget};
pub(crate) use deps::{explained, extract_relations, sql_dialect, ParsedTask};
pub use project::{Command, Metric, Pipeline, Project, Task};
