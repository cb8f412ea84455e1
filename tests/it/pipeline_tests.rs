//! The pipeline tests of the example project, run through the library API as an
//! embedding project would, plus how bad test files and failing tests are reported.

use quern::testing::{run_test_file, Outcome, TestRunner};
use quern::Project;

use crate::common::{repo_root, stderr, stdout, TempProject};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_pipeline_test_passes() {
    let report = TestRunner::new(Project::load(repo_root()).unwrap())
        .run()
        .await
        .unwrap();
    report.assert_passed();
    // Row tests and golden SQL for each of the three environments.
    assert!(
        report
            .results
            .iter()
            .filter(|r| r.name.starts_with("golden "))
            .count()
            >= 18
    );
    assert!(
        report
            .results
            .iter()
            .filter(|r| r.name.contains(" › "))
            .count()
            >= 11
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_test_file_from_an_embedders_test() {
    let report = run_test_file(
        Project::load(repo_root()).unwrap(),
        "sql/reporting/tests/odds_ratio.toml",
    )
    .await
    .unwrap();
    assert_eq!(report.passed(), 2);
    report.assert_passed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_show_which_rows_and_values_differ() {
    let project = TempProject::new();
    project.write(
        "sql/reporting/tests/odds_ratio.toml",
        &project
            .read("sql/reporting/tests/odds_ratio.toml")
            .replace("odds_ratio = 3.857142857142857", "odds_ratio = 3.9"),
    );
    project.write(
        "sql/reporting/tests/extra.toml",
        r#"
[[test]]
name = "missing and extra rows"
task = "campaign_daily"
ds = 2024-03-01
[[test.given]]
table = "crm.campaign_users"
csv = "fixtures/campaign_users.csv"
[test.expect]
rows = [
  { campaign = "spring_sale", users = 5, exposed_users = 3, conversions = 3, conversion_rate = 0.6, revenue = 40.0, ds = 2024-03-01 },
  { campaign = "autumn", users = 1, exposed_users = 1, conversions = 0, conversion_rate = 0.0, revenue = 0.0, ds = 2024-03-01 },
]

[[test]]
name = "a missing column fails"
task = "campaign_daily"
ds = 2024-03-01
[[test.given]]
table = "crm.campaign_users"
csv = "fixtures/campaign_users.csv"
[test.expect]
rows = [{ campaign = "spring_sale", users = 5 }]

[[test]]
name = "an error that does not come"
task = "campaign_daily"
expect_error = "boom"
[[test.given]]
table = "crm.campaign_users"
csv = "fixtures/campaign_users.csv"
"#,
    );
    let report = TestRunner::new(Project::load(project.path()).unwrap())
        .with_filter("reporting")
        .with_env("local")
        .run()
        .await
        .unwrap();
    let failure = |name: &str| match &report
        .results
        .iter()
        .find(|r| r.name.ends_with(name))
        .unwrap()
        .outcome
    {
        Outcome::Failed(why) => why.clone(),
        Outcome::Passed => panic!("{name} passed"),
    };
    let why = failure("odds ratio and Wald interval of a 2x2 table");
    assert!(
        why.contains("odds_ratio: expected 3.9, got 3.857142857142857"),
        "{why}"
    );
    let why = failure("missing and extra rows");
    assert!(why.contains("- missing: {campaign: \"autumn\""), "{why}");
    assert!(
        why.contains("+ extra:   {campaign: \"newsletter\""),
        "{why}"
    );
    let why = failure("a missing column fails");
    assert!(
        why.contains(
            "output columns not expected: conversion_rate, conversions, ds, exposed_users, revenue"
        ),
        "{why}"
    );
    let why = failure("an error that does not come");
    assert!(
        why.contains("expected an error containing \"boom\", but the task succeeded"),
        "{why}"
    );
    assert_eq!(report.failed(), 4, "{report}");
    assert!(report
        .to_string()
        .ends_with(&format!("{} passed, 4 failed", report.passed())));
}

#[rstest::rstest]
#[case::unknown_task(
    "[[test]]\ntask = \"nope\"\nexpect_error = \"x\"\n",
    "test `nope #1`: pipeline `reporting` has no task `nope`"
)]
#[case::given_not_read(
    "[[test]]\nname = \"t\"\ntask = \"odds_ratio\"\n[[test.given]]\ntable = \"crm.campaign_users\"\nrows = [{ a = 1 }]\n[test.expect]\nrows = []\n",
    "test `t`: given table `crm.campaign_users` is not read by task `odds_ratio`; it reads: reporting.campaign_users_day"
)]
#[case::bad_type(
    "[[test]]\nname = \"t\"\ntask = \"odds_ratio\"\n[[test.given]]\ntable = \"reporting.campaign_users_day\"\ncolumns = [\"ds DATEE\"]\nrows = []\n[test.expect]\nrows = []\n",
    "test `t`: given `reporting.campaign_users_day`: column type `DATEE` of `ds` does not parse as an SQL type"
)]
#[case::missing_csv(
    "[[test]]\nname = \"t\"\ntask = \"campaign_daily\"\n[[test.given]]\ntable = \"crm.campaign_users\"\ncsv = \"fixtures/nope.csv\"\n[test.expect]\nrows = []\n",
    "does not exist"
)]
#[case::table_not_given(
    "[[test]]\nname = \"t\"\ntask = \"odds_ratio\"\n[test.expect]\nrows = []\n",
    "task `odds_ratio` reads `reporting.campaign_users_day`, but the test gives no rows for it"
)]
#[case::no_expectation(
    "[[test]]\nname = \"t\"\ntask = \"odds_ratio\"\n",
    "give `expect` rows or `expect_error`"
)]
#[case::unknown_key(
    "[[test]]\ntask = \"odds_ratio\"\nexpected = 1\n",
    "sql/reporting/tests/bad.toml:3: unknown field `expected`"
)]
fn bad_test_files_are_clear_errors(#[case] text: &str, #[case] needle: &str) {
    let project = TempProject::new();
    project.write("sql/reporting/tests/bad.toml", text);
    let out = project.quern(&["test", "reporting"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("sql/reporting/tests/bad.toml"), "{err}");
    assert!(err.contains(needle), "expected {needle:?} in {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn quern_test_reports_and_updates_golden_sql() {
    let project = TempProject::new();
    let out = project.quern(&["test"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).trim_end().ends_with(" passed, 0 failed"));

    // A template change is a reviewable diff until the golden files are updated.
    project.write(
        "sql/events/daily_active_users.sql",
        &project
            .read("sql/events/daily_active_users.sql")
            .replace("COUNT(*) AS active_users", "COUNT(user_id) AS active_users"),
    );
    let out = project.quern(&["--env", "prod", "test", "events/daily_active_users"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains("FAILED  golden events/daily_active_users@prod"),
        "{text}"
    );
    assert!(
        text.contains("-     COUNT(*) AS active_users,")
            && text.contains("+     COUNT(user_id) AS active_users,"),
        "{text}"
    );
    assert!(
        !text.contains("@alpha"),
        "--env prod checks prod only: {text}"
    );

    let out = project.quern(&["test", "--update"]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(project
        .read("sql/events/tests/golden/alpha/daily_active_users.sql")
        .contains("COUNT(user_id)"));
    let out = project.quern(&["test"]);
    assert!(out.status.success(), "{}", stdout(&out));

    // Whitespace does not count.
    let golden = "sql/events/tests/golden/local/clean_events.sql";
    project.write(golden, &project.read(golden).replace('\n', "\n\n  "));
    assert!(project.quern(&["test", "events"]).status.success());
}
