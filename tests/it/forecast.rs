//! The forecast example run over a range of days: forecasts are stored by the day they
//! were made, validated a posteriori against actuals, and when the actuals shift the
//! MAPE threshold is crossed and an alert fires.

use quern::{RunDate, RunOptions};

use crate::alerts::Receiver;
use crate::common::TempProject;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forecasts_are_validated_and_a_shift_in_actuals_alerts() {
    let receiver = Receiver::start();
    let project = TempProject::new();
    project.write(
        "environments/local.toml",
        &format!(
            "{}\n[[alerts]]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{}/hook\"\non = [\"breach\"]\n",
            project.read("environments/local.toml"),
            receiver.port
        ),
    );
    let engine = project.engine("local");
    let mut mape = Vec::new();
    let mut day: RunDate = "2024-03-01".parse().unwrap();
    while day <= "2024-03-24".parse().unwrap() {
        let report = engine.run("forecast", &RunOptions::new(day)).await.unwrap();
        assert!(
            report.succeeded(),
            "{day}: {:?} {:?}",
            report.first_error(),
            report.metric_errors
        );
        let m = report.metrics.iter().find(|m| m.metric == "mape").unwrap();
        mape.push((day.ds(), m.value, m.breach.is_some()));
        day = day.next_ds().parse().unwrap();
    }
    // Before the shift the forecasts are good; from 2024-03-20 store b sells 40% less
    // than forecast and the MAPE crosses its 15% threshold.
    for (ds, value, breach) in &mape {
        if ds.as_str() < "2024-03-02" {
            // Nothing was forecast for the first day: no error to measure, no alert.
            assert_eq!((*value, *breach), (None, false));
            continue;
        }
        let v = value.unwrap_or_else(|| panic!("{ds}: no forecast to validate"));
        if ds.as_str() < "2024-03-20" {
            assert!(v < 5.0 && !breach, "{ds}: {v}");
        } else {
            assert!(v > 15.0 && *breach, "{ds}: {v}");
        }
    }
    // Each forecast partition holds the 7 days after the day it was made, per store.
    let ctx = engine
        .query("SELECT count(*) AS n, count(DISTINCT made_on) AS days FROM forecast.forecasts")
        .await
        .unwrap();
    let text = quern::datafusion::arrow::util::pretty::pretty_format_batches(
        &ctx.collect().await.unwrap(),
    )
    .unwrap()
    .to_string();
    assert!(text.contains("| 336 | 24   |"), "{text}");

    let alerts = receiver.bodies.lock().unwrap().clone();
    assert_eq!(
        alerts.len(),
        5,
        "one alert per day from 2024-03-20 to 2024-03-24"
    );
    assert!(
        alerts[0]
            .1
            .contains("quern [local] forecast ds 2024-03-20: run succeeded, metric breach"),
        "{}",
        alerts[0].1
    );
    assert!(alerts[0].1.contains("metric mape = "), "{}", alerts[0].1);
    assert!(
        alerts[0].1.contains("is above the maximum 15"),
        "{}",
        alerts[0].1
    );
}
