//! Rendered SQL of every example task, per environment: every task renders for alpha
//! and prod, the environments' differences show in the SQL, and the SQL is pinned by
//! the golden files `sql/<pipeline>/tests/golden/<env>/<task>.sql` (normalized, the
//! mechanism `quern test` offers users), so a template change is a reviewable diff.
//! Rendering, even for prod, needs no secret and prints none.

use std::collections::BTreeSet;

use quern::testing::{Outcome, TestRunner};
use quern::{Project, Renderer, RunDate, RunOptions, Vars};

use crate::common::{repo_root, stderr, stdout, TempProject};

fn render_all(env_name: &str) -> Vec<(String, String)> {
    let project = Project::load(repo_root()).unwrap();
    let env = project.environment(env_name).unwrap();
    let ds: RunDate = "2024-03-01".parse().unwrap();
    let renderer = Renderer::new(&project, &env, ds, &Vars::new()).unwrap();
    let mut out = Vec::new();
    for pipeline in project.pipelines().values() {
        for task in pipeline.tasks.values().filter(|t| !t.is_command()) {
            let r = renderer.render(task).unwrap();
            out.push((format!("{}.{}", pipeline.name, task.name), r.sql));
        }
    }
    out
}

/// Checks the golden files of `env` through `quern test`'s runner: one passing
/// `golden <pipeline>/<task>@<env>` result per SQL task (a command task has no SQL),
/// and no golden file of a task that does not exist.
async fn assert_golden_sql_matches(env: &str) {
    let project = Project::load(repo_root()).unwrap();
    let expected: BTreeSet<String> = project
        .pipelines()
        .values()
        .flat_map(|p| {
            p.tasks
                .values()
                .filter(|t| !t.is_command())
                .map(move |t| format!("golden {}/{}@{env}", p.name, t.name))
        })
        .collect();
    let report = TestRunner::new(project).with_env(env).run().await.unwrap();
    let golden: Vec<_> = report
        .results
        .iter()
        .filter(|r| r.name.starts_with("golden "))
        .collect();
    let failed: Vec<String> = golden
        .iter()
        .filter_map(|r| match &r.outcome {
            Outcome::Passed => None,
            Outcome::Failed(why) => Some(format!("{}:\n{why}", r.name)),
        })
        .collect();
    assert!(
        failed.is_empty(),
        "golden SQL differs; run `quern test --update` if intended:\n{}",
        failed.join("\n")
    );
    let checked: BTreeSet<String> = golden.iter().map(|r| r.name.clone()).collect();
    assert_eq!(
        checked, expected,
        "every task of every pipeline has golden SQL"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_task_renders_per_environment() {
    let alpha = render_all("alpha");
    let prod = render_all("prod");
    assert_eq!(alpha.len(), prod.len());
    let project = Project::load(repo_root()).unwrap();
    for env in ["local", "alpha", "prod"] {
        assert!(
            project.environment_names().iter().any(|e| e == env),
            "{env}"
        );
    }
    for env in project.environment_names() {
        assert_golden_sql_matches(env).await;
    }
    // The environments differ in vars, and the SQL must show it.
    let differs = |task: &str| {
        let a = &alpha.iter().find(|(n, _)| n == task).unwrap().1;
        let p = &prod.iter().find(|(n, _)| n == task).unwrap().1;
        a != p
    };
    assert!(
        differs("events.clean_events"),
        "excluded event types differ"
    );
    assert!(differs("events.daily_active_users"), "min_events differs");
    assert!(differs("reporting.campaign_users_day"), "campaign differs");
    assert!(!differs("events.events_by_day"));
}

/// A variable that no process sets: resolving it is an error.
const NEVER_SET: &str = "QUERN_TEST_SECRET_NEVER_SET_5B1E0C9A";
/// A variable set only in the environment of a child `quern`, to [`SENTINEL`].
const SET_IN_CHILD: &str = "QUERN_TEST_SECRET_SENTINEL_5B1E0C9A";
const SENTINEL: &str = "sentinel-5b1e0c9a-must-never-be-printed";

/// A copy of the project whose prod.toml has storage keys referencing [`NEVER_SET`] and
/// [`SET_IN_CHILD`].
fn project_with_prod_secrets() -> TempProject {
    let project = TempProject::new();
    let prod = project.read("environments/prod.toml");
    let with_secrets = prod.replacen(
        "[storage]\n",
        &format!(
            "[storage]\naws_secret_access_key = \"${{{NEVER_SET}}}\"\naws_session_token = \"${{{SET_IN_CHILD}}}\"\n"
        ),
        1,
    );
    project.write("environments/prod.toml", &with_secrets);
    let written = project.read("environments/prod.toml");
    assert!(
        written.contains(&format!("aws_secret_access_key = \"${{{NEVER_SET}}}\"")),
        "{written}"
    );
    assert!(
        written.contains(&format!("aws_session_token = \"${{{SET_IN_CHILD}}}\"")),
        "{written}"
    );
    project
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rendering_prod_needs_no_secrets() {
    assert!(std::env::var_os(NEVER_SET).is_none(), "{NEVER_SET} is set");
    assert!(
        std::env::var_os(SET_IN_CHILD).is_none(),
        "{SET_IN_CHILD} is set"
    );
    let project = project_with_prod_secrets();
    let engine = project.engine("prod");
    let options = RunOptions::new("2024-03-01".parse::<RunDate>().unwrap());
    let mut tasks = 0;
    for pipeline in engine.project().pipelines().keys() {
        // Resolving the unset secret would be an error, failing this unwrap.
        let rendered = engine.render(pipeline.as_str(), &options).unwrap();
        assert_eq!(
            rendered.len(),
            engine
                .project()
                .pipeline(pipeline.as_str())
                .unwrap()
                .tasks
                .values()
                .filter(|t| !t.is_command())
                .count()
        );
        for r in &rendered {
            assert!(!r.sql.contains("QUERN_TEST_SECRET"), "{}", r.sql);
        }
        tasks += rendered.len();
    }
    assert!(tasks >= 10, "{tasks} tasks rendered");
    // Renderer::new, the lower-level API, needs no secret either.
    let env = engine.project().environment("prod").unwrap();
    let renderer = Renderer::new(engine.project(), &env, options.ds, &Vars::new()).unwrap();
    for pipeline in engine.project().pipelines().values() {
        for task in pipeline.tasks.values().filter(|t| !t.is_command()) {
            renderer.render(task).unwrap();
        }
    }
    // The reference is live: what does connect (planning opens tables) resolves it, and
    // fails naming the variable, before any connection is made.
    let err = engine
        .plan("events", &options)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains(NEVER_SET), "{err}");
    assert!(err.contains("storage.aws_secret_access_key"), "{err}");
}

#[test]
fn rendering_prod_prints_no_secret_when_it_is_set() {
    // The secret is set in the child's environment only (never in this process's,
    // which other tests share), and the MLflow token prod.toml references too.
    let project = project_with_prod_secrets();
    let prod = Project::load(project.path()).unwrap();
    for pipeline in prod.pipelines().keys() {
        let out = project
            .command(&["--env", "prod", "render", pipeline.as_str()])
            .env(SET_IN_CHILD, SENTINEL)
            .env("MLFLOW_TRACKING_TOKEN", SENTINEL)
            .output()
            .expect("quern runs");
        assert!(out.status.success(), "{pipeline}: {}", stderr(&out));
        let (stdout, stderr) = (stdout(&out), stderr(&out));
        assert!(stdout.contains("SELECT"), "{pipeline}: {stdout}");
        assert!(
            !stdout.contains(SENTINEL) && !stderr.contains(SENTINEL),
            "{pipeline} printed a secret:\n{stdout}\n{stderr}"
        );
    }
}
