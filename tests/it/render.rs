//! Rendered SQL of every example task, per environment, pinned with insta snapshots:
//! a change to a template or an environment shows up as a reviewable diff.

use quern::{Project, Renderer, RunDate, Vars};

use crate::common::repo_root;

fn render_all(env_name: &str) -> Vec<(String, String)> {
    let project = Project::load(repo_root()).unwrap();
    let env = project.environment(env_name).unwrap();
    let ds: RunDate = "2024-03-01".parse().unwrap();
    let renderer = Renderer::new(&project, &env, ds, &Vars::new()).unwrap();
    let mut out = Vec::new();
    for pipeline in project.pipelines().values() {
        for task in pipeline.tasks.values() {
            let r = renderer.render(task).unwrap();
            out.push((format!("{}.{}", pipeline.name, task.name), r.sql));
        }
    }
    out
}

#[test]
fn every_task_renders_per_environment() {
    let alpha = render_all("alpha");
    let prod = render_all("prod");
    assert_eq!(alpha.len(), prod.len());
    for ((name, a), (_, p)) in alpha.iter().zip(&prod) {
        insta::assert_snapshot!(format!("{name}@alpha"), a);
        insta::assert_snapshot!(format!("{name}@prod"), p);
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

#[test]
fn rendering_prod_needs_no_secrets() {
    // prod.toml and alpha.toml reference ${S3_ENDPOINT} and AWS keys; rendering must
    // not resolve them.
    std::env::remove_var("S3_ENDPOINT");
    let alpha = render_all("alpha");
    assert!(alpha.iter().all(|(_, sql)| !sql.contains("S3_ENDPOINT")));
}
