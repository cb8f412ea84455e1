//! Declared columns: `["user_id STRING", "ds DATE"]` (pipeline tests' given tables, a
//! command task's produced table) read as Arrow fields, with DataFusion saying what
//! each SQL type is.

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::prelude::SessionContext;
use std::sync::Arc;

/// A column's declared type: `"name TYPE"` from a test file or a command task's `columns`, the type in SQL.
pub(crate) struct Declared {
    pub name: String,
    pub data_type: DataType,
}

/// Parses `["user_id STRING", "ds DATE"]`, asking DataFusion what each SQL type is.
pub(crate) async fn parse_columns(
    ctx: &SessionContext,
    columns: &[String],
) -> Result<Vec<Declared>, String> {
    let mut out = Vec::new();
    for spec in columns {
        let spec = spec.trim();
        let Some((name, sql_type)) = spec.split_once(char::is_whitespace) else {
            return Err(format!(
                "column `{spec}` needs a type: write \"{spec} STRING\" (or INT, DOUBLE, DATE, TIMESTAMP, BOOLEAN, DECIMAL(p, s)…)"
            ));
        };
        let sql_type = sql_type.trim();
        let bad = || format!("column type `{sql_type}` of `{name}` does not parse as an SQL type");
        if sql_type.contains([';', '(']) && !sql_type.to_ascii_uppercase().starts_with("DECIMAL") {
            return Err(bad());
        }
        let df = ctx
            .sql(&format!("SELECT CAST(NULL AS {sql_type}) AS t"))
            .await
            .map_err(|_| bad())?;
        let data_type = df.schema().field(0).data_type().clone();
        out.push(Declared {
            name: name.to_string(),
            data_type,
        });
    }
    Ok(out)
}

/// The schema of `columns` (every column nullable).
pub(crate) async fn declared_schema(
    ctx: &SessionContext,
    columns: &[String],
) -> Result<SchemaRef, String> {
    let declared = parse_columns(ctx, columns).await?;
    let mut seen = std::collections::BTreeSet::new();
    if let Some(d) = declared.iter().find(|d| !seen.insert(d.name.as_str())) {
        return Err(format!("column `{}` is declared twice", d.name));
    }
    let fields: Vec<Field> = declared
        .into_iter()
        .map(|d| Field::new(d.name, d.data_type, true))
        .collect();
    Ok(Arc::new(Schema::new(fields)))
}
