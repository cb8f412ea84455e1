use super::*;
use crate::pipeline::Project;

fn project(files: &[(&str, &str)]) -> (tempfile::TempDir, Project) {
    let dir = tempfile::tempdir().unwrap();
    let mut all = vec![
        (
            "environments/local.toml",
            "[warehouse]\nroot = \"w\"\n[sources.crm]\nusers = { uri = \"u.csv\", format = \"csv\" }\n[vars]\ncountry = \"FR\"\nn = 3\n",
        ),
        ("sql/p/base.sql", "SELECT 1 AS a"),
    ];
    all.extend_from_slice(files);
    for (rel, text) in all {
        let path = dir.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    let project = Project::load(dir.path()).unwrap();
    (dir, project)
}

fn render(files: &[(&str, &str)], task: &str, vars: &Vars) -> Result<RenderedTask> {
    let (_dir, project) = project(files);
    let env = project.environment("local").unwrap();
    let ds: RunDate = "2024-03-01".parse().unwrap();
    let renderer = Renderer::new(&project, &env, ds, vars)?;
    renderer.render(project.pipeline("p").unwrap().task(task).unwrap())
}

#[test]
fn renders_context_refs_sources_vars_and_macros() {
    let r = render(
        &[
            (
                "sql/macros/util.sql",
                "{% macro safe_div(a, b) %}CASE WHEN {{ b }} = 0 THEN NULL ELSE {{ a }} / {{ b }} END{% endmacro %}",
            ),
            (
                "sql/p/t.sql",
                "SELECT {{ safe_div('x', 'y') }} AS r, {{ var('n') }} AS n, {{ var('country') | sql_string }} AS c,\n'{{ ds }}' AS ds, '{{ ds_nodash }}{{ prev_ds }}{{ next_ds }}' AS d, '{{ env }}' AS e\nFROM {{ ref('base') }} JOIN {{ source('crm', 'users') }} ON true WHERE {{ var('missing', 0) }} = 0\n",
            ),
        ],
        "t",
        &Vars::new(),
    )
    .unwrap();
    assert_eq!(
        r.sql,
        "SELECT CASE WHEN y = 0 THEN NULL ELSE x / y END AS r, 3 AS n, 'FR' AS c,\n'2024-03-01' AS ds, '202403012024-02-292024-03-02' AS d, 'local' AS e\nFROM p.base JOIN crm.users ON true WHERE 0 = 0"
    );
    assert_eq!(r.refs.len(), 1);
    assert_eq!(
        r.sources.iter().next().unwrap(),
        &("crm".into(), "users".into())
    );
}

#[test]
fn overrides_win_and_strings_are_quoted_against_injection() {
    let r = render(
        &[("sql/p/t.sql", "SELECT {{ var('country') | sql_string }} AS c, {{ var('xs') | sql_list }} AS l, {{ var('col') | sql_ident }}")],
        "t",
        &Vars::new()
            .with("country", "x' OR '1'='1")
            .with("xs", toml::Value::Array(vec!["a'b".into(), 2.into()]))
            .with("col", "we\"ird"),
    )
    .unwrap();
    assert_eq!(
        r.sql,
        "SELECT 'x'' OR ''1''=''1' AS c, ('a''b', 2) AS l, \"we\"\"ird\""
    );
}

#[rstest::rstest]
#[case::unquoted_var("SELECT {{ var('country') }}", 1, "sql_string")]
#[case::unquoted_var_in_list(
    "SELECT 1\n{% for c in var('xs', ['FR']) %}{{ c }}{% endfor %}",
    2,
    "sql_string"
)]
#[case::undefined("SELECT 1\nFROM {{ nope }}", 2, "undefined value")]
#[case::unknown_ref("SELECT 1\n\nFROM {{ ref('nope') }}", 3, "unknown task `nope`")]
#[case::unknown_pipeline("SELECT * FROM {{ ref('q', 'base') }}", 1, "unknown pipeline `q`")]
#[case::unknown_source("SELECT * FROM {{ source('crm', 'orders') }}", 1, "[sources.crm]")]
#[case::unknown_var("SELECT {{ var('nope') }}", 1, "var('nope') is not set")]
#[case::syntax("SELECT 1\n{% if %}", 2, "syntax error")]
fn template_errors_name_file_and_line(
    #[case] template: &str,
    #[case] line: usize,
    #[case] needle: &str,
) {
    let err = render(&[("sql/p/t.sql", template)], "t", &Vars::new()).unwrap_err();
    match &err {
        Error::Render {
            file,
            line: l,
            message,
            ..
        } => {
            assert_eq!(file, Path::new("sql/p/t.sql"), "{err}");
            assert!(
                err.to_string()
                    .starts_with(&format!("sql/p/t.sql:{line}: ")),
                "{err}"
            );
            assert_eq!(*l, Some(line), "{err}");
            assert!(message.contains(needle), "{message}");
        }
        other => panic!("unexpected error {other:?}"),
    }
}

#[test]
fn macro_syntax_errors_name_the_macro_file() {
    let err = render(
        &[(
            "sql/macros/bad.sql",
            "{% macro x() %}\n{{ }}\n{% endmacro %}",
        )],
        "base",
        &Vars::new(),
    )
    .unwrap_err();
    assert!(err.to_string().starts_with("sql/macros/bad.sql:2"), "{err}");
}

#[test]
fn airflow_variables_and_macros_have_airflows_values() {
    let template = "SELECT '{{ ds }}|{{ ds_nodash }}|{{ ts }}|{{ ts_nodash }}|{{ logical_date }}|\
{{ data_interval_start }}|{{ data_interval_end }}|{{ prev_ds }}|{{ next_ds }}|{{ yesterday_ds }}|\
{{ tomorrow_ds }}|{{ macros.ds_add(ds, -7) }}|{{ ds_add(ds, 31) }}|\
{{ macros.ds_format(ds, '%Y-%m-%d', '%d/%m/%Y') }}' AS x";
    let r = render(&[("sql/p/t.sql", template)], "t", &Vars::new()).unwrap();
    assert_eq!(
        r.sql,
        "SELECT '2024-03-01|20240301|2024-03-01T00:00:00+00:00|20240301T000000|\
2024-03-01T00:00:00+00:00|2024-03-01T00:00:00+00:00|2024-03-02T00:00:00+00:00|2024-02-29|\
2024-03-02|2024-02-29|2024-03-02|2024-02-23|2024-04-01|01/03/2024' AS x"
    );
    let err = render(
        &[("sql/p/t.sql", "SELECT '{{ ds_add('2024-02-30', 1) }}'")],
        "t",
        &Vars::new(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("ds_add"), "{err}");
}

#[test]
fn an_inline_if_without_else_renders_nothing() {
    let template =
        "SELECT {% for c in ['a', 'b', 'c'] %}{{ c }}{{ ',' if not loop.last }} {% endfor %}";
    let r = render(&[("sql/p/t.sql", template)], "t", &Vars::new()).unwrap();
    assert_eq!(r.sql, "SELECT a, b, c");
    // A name that is not defined is still an error, in an inline if too.
    let err = render(
        &[("sql/p/t.sql", "SELECT 1 {{ nope if true }}")],
        "t",
        &Vars::new(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("undefined"), "{err}");
}
