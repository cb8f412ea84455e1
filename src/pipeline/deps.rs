//! Parsing rendered SQL with sqlparser (through DataFusion's parser) and extracting the
//! tables a query reads, to cross-check them with the task's `ref()` and `source()` calls.

use std::ops::ControlFlow;
use std::path::Path;

use datafusion::common::TableReference;
use datafusion::error::DataFusionError;
use datafusion::sql::parser::{DFParser, Statement};
use datafusion::sql::resolve::resolve_table_references;
use datafusion::sql::sqlparser::ast;
use datafusion::sql::sqlparser::dialect::{Dialect as SqlDialect, GenericDialect};

use crate::config::Dialect;
use crate::error::{Error, ParseProblem, Result};

/// The sqlparser dialect that parses SQL of `dialect`.
pub(crate) fn sql_dialect(dialect: Dialect) -> &'static dyn SqlDialect {
    match dialect {
        Dialect::Spark => &super::spark_sql::SparkSql,
        _ => &GenericDialect {},
    }
}

/// `sql` as `EXPLAIN [ANALYZE] [VERBOSE] <query>` (of an ad-hoc query, not a task): the
/// explain's options and the query's text; `None` for anything else.
pub(crate) fn explained(
    sql: &str,
    dialect: Dialect,
) -> Option<(datafusion::common::format::ExplainStatementOptions, String)> {
    let text = match dialect {
        Dialect::Spark => super::spark_sql::plain_sql(sql),
        _ => sql.into(),
    };
    let mut statements = DFParser::parse_sql_with_dialect(&text, sql_dialect(dialect)).ok()?;
    match (statements.pop_front(), statements.is_empty()) {
        (Some(Statement::Explain(explain)), true) => {
            Some((explain.options, explain.statement.to_string()))
        }
        _ => None,
    }
}

/// A task's SQL parsed into a single query statement, with the tables it reads.
#[derive(Debug, Clone)]
pub(crate) struct ParsedTask {
    /// The statement, ready for DataFusion's planner.
    pub statement: Statement,
    /// The tables the query reads (CTE names excluded), as written.
    pub relations: Vec<TableReference>,
    /// Lower-cased names of the functions the query calls (model functions among them).
    pub functions: std::collections::BTreeSet<String>,
    /// The dialect it was parsed in, and is planned in.
    pub dialect: Dialect,
}

/// Parses `sql` (the rendered text of `task` from `file`) and lists the tables it reads.
pub(crate) fn extract_relations(
    task: &str,
    file: &Path,
    sql: &str,
    dialect: Dialect,
) -> Result<ParsedTask> {
    let parse_err = |problem: ParseProblem, line: Option<usize>| Error::Parse {
        task: task.to_string(),
        file: file.to_path_buf(),
        line,
        problem,
    };
    let text = match dialect {
        Dialect::Spark => super::spark_sql::plain_sql(sql),
        _ => sql.into(),
    };
    let mut statements =
        DFParser::parse_sql_with_dialect(&text, sql_dialect(dialect)).map_err(|e| {
            let problem = match e {
                DataFusionError::SQL(inner, _) => ParseProblem::Syntax(*inner),
                other => ParseProblem::DataFusion(other),
            };
            // An error at the end of input has no location; it is on the last line.
            let message = problem.to_string();
            let line = error_line(&message).or_else(|| {
                message
                    .ends_with("EOF")
                    .then(|| sql.trim_end().lines().count())
            });
            parse_err(problem, line)
        })?;
    let statement = match (statements.pop_front(), statements.is_empty()) {
        (Some(s), true) => s,
        (None, _) => {
            return Err(parse_err(
                ParseProblem::NotOneQuery("the task's SQL is empty; write one SELECT"),
                None,
            ))
        }
        (Some(_), false) => {
            return Err(parse_err(
                ParseProblem::NotOneQuery(
                    "the task's SQL has several statements; a task is exactly one SELECT",
                ),
                None,
            ))
        }
    };
    let is_query = matches!(&statement, Statement::Statement(s) if matches!(s.as_ref(), ast::Statement::Query(_)));
    if !is_query {
        return Err(parse_err(
            ParseProblem::NotOneQuery(
                "a task must be a single query (SELECT … or WITH … SELECT …); quern writes its result",
            ),
            Some(1),
        ));
    }
    let mut statement = statement;
    if dialect == Dialect::Spark {
        super::spark_sql::rewrite(&mut statement);
    }
    let (mut relations, _ctes) = resolve_table_references(&statement, true)
        .map_err(|e| parse_err(ParseProblem::DataFusion(e), None))?;
    // Table functions (`range(…)`, `generate_series(…)`) are not tables.
    let functions = table_functions(&statement);
    relations.retain(|r| !(r.schema().is_none() && functions.contains(r.table())));
    let functions = called_functions(&statement);
    Ok(ParsedTask {
        statement,
        relations,
        functions,
        dialect,
    })
}

/// Lower-cased names of the table functions called in FROM clauses.
fn table_functions(statement: &Statement) -> std::collections::BTreeSet<String> {
    struct Collect(std::collections::BTreeSet<String>);
    impl ast::Visitor for Collect {
        type Break = ();
        fn pre_visit_table_factor(&mut self, factor: &ast::TableFactor) -> ControlFlow<()> {
            if let ast::TableFactor::Table {
                name,
                args: Some(_),
                ..
            } = factor
            {
                self.0.insert(name.to_string().to_lowercase());
            }
            ControlFlow::Continue(())
        }
    }
    let mut collect = Collect(Default::default());
    if let Statement::Statement(s) = statement {
        let _ = ast::Visit::visit(s.as_ref(), &mut collect);
    }
    collect.0
}

/// Lower-cased names of the scalar and aggregate functions a statement calls.
pub(crate) fn called_functions(statement: &Statement) -> std::collections::BTreeSet<String> {
    struct Collect(std::collections::BTreeSet<String>);
    impl ast::Visitor for Collect {
        type Break = ();
        fn pre_visit_expr(&mut self, expr: &ast::Expr) -> ControlFlow<()> {
            if let ast::Expr::Function(f) = expr {
                self.0.insert(f.name.to_string().to_lowercase());
            }
            ControlFlow::Continue(())
        }
    }
    let mut collect = Collect(Default::default());
    if let Statement::Statement(s) = statement {
        let _ = ast::Visit::visit(s.as_ref(), &mut collect);
    }
    collect.0
}

/// The line number in sqlparser's "… at Line: 3, Column: 7" messages.
fn error_line(message: &str) -> Option<usize> {
    let rest = &message[message.rfind("Line: ")? + "Line: ".len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `sql` as the datafusion-dialect task `t` of `t.sql`.
    fn parse(sql: &str) -> Result<ParsedTask> {
        extract_relations("t", Path::new("t.sql"), sql, Dialect::Datafusion)
    }

    fn tables(sql: &str) -> Vec<String> {
        let mut v: Vec<String> = parse(sql)
            .unwrap()
            .relations
            .iter()
            .map(ToString::to_string)
            .collect();
        v.sort();
        v
    }

    #[test]
    fn finds_tables_in_joins_subqueries_and_ctes() {
        assert_eq!(
            tables(
                "WITH recent AS (SELECT * FROM p.a WHERE x > 1)
                 SELECT * FROM recent JOIN src.users u ON true
                 WHERE id IN (SELECT id FROM p.b) AND EXISTS (SELECT 1 FROM p.c)"
            ),
            ["p.a", "p.b", "p.c", "src.users"]
        );
        assert_eq!(tables("SELECT 1 AS x"), Vec::<String>::new());
        assert_eq!(tables("SELECT * FROM P.A"), ["p.a"]);
        assert_eq!(
            tables("SELECT value FROM range(10) JOIN p.a ON true"),
            ["p.a"]
        );
    }

    #[test]
    fn rejects_non_queries_and_reports_lines() {
        let err = parse("SELECT 1\nFROM t\nWHERE )").unwrap_err();
        assert!(matches!(err, Error::Parse { line: Some(3), .. }), "{err:?}");
        let err = parse("SELECT 1\nFROM t\nWHERE (").unwrap_err();
        assert!(matches!(err, Error::Parse { line: Some(3), .. }), "{err:?}");
        let err = parse("DROP TABLE p.a").unwrap_err();
        assert!(err.to_string().contains("single query"), "{err}");
        let err = parse("SELECT 1; SELECT 2").unwrap_err();
        assert!(err.to_string().contains("several statements"), "{err}");
        let err = parse("  ").unwrap_err();
        assert!(err.to_string().contains("empty"), "{err}");
    }
}
