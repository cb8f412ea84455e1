//! Load + render + parse + plan of a generated 500-task project (chains and fan-ins of
//! refs, macros and vars), as `quern plan` does it. Target: ≤ 250 ms on 2 cores.
//!
//! Run: `cargo bench --bench plan`.

use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use quern::{Engine, Project, RunDate, RunOptions};

const TASKS: usize = 500;
const ROOTS: usize = 20;

fn write(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

/// A project with one pipeline of `TASKS` tasks: `ROOTS` roots of inline rows, then
/// each task joins the previous task (a chain) with one further back (a fan-in).
fn generate(root: &Path) {
    write(
        root,
        "environments/local.toml",
        "[warehouse]\nroot = \"warehouse\"\n[vars]\nthreshold = 0\nlabel = \"bench\"\n",
    );
    write(
        root,
        "sql/macros/util.sql",
        "{% macro safe_divide(n, d) -%}CASE WHEN {{ d }} = 0 THEN NULL ELSE CAST({{ n }} AS DOUBLE) / {{ d }} END{%- endmacro %}\n",
    );
    let mut toml = String::from("description = \"generated\"\n");
    for i in 0..TASKS {
        let sql = if i < ROOTS {
            format!(
                "SELECT * FROM (VALUES (1, 'a', {i}.5), (2, 'b', 3.0)) AS t(id, k, v)\nWHERE v > {{{{ var('threshold') }}}}"
            )
        } else {
            let far = (i * 7919) % (i - 1);
            format!(
                "-- task {i}\nSELECT a.id, a.k || {{{{ var('label') | sql_string }}}} AS k,\n  {{{{ safe_divide('a.v', 'b.v') }}}} AS v, DATE '{{{{ ds }}}}' AS ds\nFROM {{{{ ref('t{:03}') }}}} AS a\nJOIN {{{{ ref('t{:03}') }}}} AS b ON a.id = b.id\nWHERE a.v > {{{{ var('threshold') }}}}",
                i - 1,
                far
            )
        };
        let sql = if i >= ROOTS {
            // Keep the column set stable: k and v, id, plus ds from the second level on.
            format!("SELECT id, k, v FROM ({sql}) AS x")
        } else {
            sql
        };
        write(root, &format!("sql/big/t{i:03}.sql"), &sql);
        if i % 3 == 0 {
            toml.push_str(&format!("[tasks.t{i:03}]\nmaterialized = \"view\"\n"));
        }
    }
    write(root, "sql/big/pipeline.toml", &toml);
}

fn plan_500(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    generate(dir.path());
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let options = RunOptions::new("2024-03-01".parse::<RunDate>().expect("date"));
    let plan_once = || {
        let project = Project::load(dir.path()).expect("load");
        let engine = Engine::builder(project)
            .with_environment("local")
            .build()
            .expect("engine");
        let plan = runtime
            .block_on(engine.plan("big", &options))
            .expect("plan");
        assert_eq!(plan.tasks.len(), TASKS);
    };
    plan_once();
    let mut group = c.benchmark_group("plan");
    group.sample_size(20);
    group.bench_function("load_render_parse_plan_500_tasks", |b| b.iter(plan_once));
    group.finish();
}

criterion_group!(benches, plan_500);
criterion_main!(benches);
