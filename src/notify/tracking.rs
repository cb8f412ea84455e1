//! MLflow tracking over REST: when the environment names an MLflow server, each
//! pipeline run becomes an MLflow run in the experiment `quern/<pipeline>`, with the
//! run's params (env, ds), its metric values, expectation counts and rows written (with
//! timestamps), and its final status.

use serde_json::{json, Value};

use crate::config::Environment;
use crate::mlflow::{Client, MlflowError};
use crate::report::{RunReport, TaskStatus};

/// Logs `report` to the environment's MLflow server; `Ok(None)` when it names none,
/// else the MLflow run id.
pub(crate) async fn log_run(
    env: &Environment,
    report: &RunReport,
    started_ms: i64,
) -> crate::Result<Option<String>> {
    let Some(client) = Client::for_env(env)? else {
        return Ok(None);
    };
    // A run of one pipeline is logged to its experiment; a run of several pipelines to
    // `quern/project`, its keys prefixed with their pipeline.
    let experiment = match report.pipelines.as_slice() {
        [one] => format!("quern/{one}"),
        _ => "quern/project".to_string(),
    };
    let experiment_id = experiment_id(&client, &experiment).await?;
    let run = client
        .post(
            "runs/create",
            json!({
                "experiment_id": experiment_id,
                "run_name": report.run_id,
                "start_time": started_ms,
                "tags": [
                    { "key": "quern.pipeline", "value": report.pipelines_text() },
                    { "key": "quern.env", "value": report.env },
                    { "key": "quern.run_id", "value": report.run_id },
                ],
            }),
        )
        .await?;
    let run_id = run["run"]["info"]["run_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let now = chrono::Utc::now().timestamp_millis();
    let metrics = metrics(report, now);
    let params = params(report);
    // MLflow takes at most 1000 metrics per batch.
    for (i, chunk) in metrics.chunks(1000).enumerate() {
        let mut body = json!({ "run_id": run_id, "metrics": chunk });
        if i == 0 {
            body["params"] = params.clone();
        }
        client.post("runs/log-batch", body).await?;
    }
    if metrics.is_empty() {
        client
            .post(
                "runs/log-batch",
                json!({ "run_id": run_id, "params": params }),
            )
            .await?;
    }
    let status = if report.succeeded() {
        "FINISHED"
    } else {
        "FAILED"
    };
    client
        .post(
            "runs/update",
            json!({ "run_id": run_id, "status": status, "end_time": now }),
        )
        .await?;
    Ok(Some(run_id))
}

/// The id of experiment `name`, created when the server does not have it.
async fn experiment_id(client: &Client, name: &str) -> Result<String, MlflowError> {
    let id = match client
        .get("experiments/get-by-name", &[("experiment_name", name)])
        .await
    {
        Ok(v) => v["experiment"]["experiment_id"].clone(),
        Err(e) if e.is_not_found() => {
            let created = client
                .post("experiments/create", json!({ "name": name }))
                .await?;
            created["experiment_id"].clone()
        }
        Err(e) => return Err(e),
    };
    Ok(id.as_str().unwrap_or_default().to_string())
}

/// The run's metric values, rows written per task and violations per expectation, as
/// MLflow metrics stamped `now`.
fn metrics(report: &RunReport, now: i64) -> Vec<Value> {
    let mut metrics = Vec::new();
    let mut push = |key: String, value: f64| {
        metrics.push(json!({ "key": sanitize(&key), "value": value, "timestamp": now, "step": 0 }));
    };
    let several = report.pipelines.len() > 1;
    for m in &report.metrics {
        let Some(v) = m.value else { continue };
        let metric = match several {
            true => format!("{}.{}", m.pipeline, m.metric),
            false => m.metric.clone(),
        };
        match &m.group {
            Some(g) => push(format!("{metric}.{g}"), v),
            None => push(metric, v),
        }
    }
    for t in &report.tasks {
        let task = report.name_of(&t.pipeline, &t.task).replace('/', ".");
        if let TaskStatus::Succeeded(Some(w)) = &t.status {
            push(format!("rows.{task}"), w.rows as f64);
        }
        for e in &t.expectations {
            push(
                format!("expectation.{task}.{}", e.name),
                e.violations as f64,
            );
        }
    }
    metrics
}

/// The run's params: env, ds, and the model versions scored with, so a run is
/// traceable to its models.
fn params(report: &RunReport) -> Value {
    let mut params = vec![
        json!({ "key": "env", "value": report.env }),
        json!({ "key": "ds", "value": report.ds.ds() }),
    ];
    for m in &report.models {
        let value = m.version.clone().unwrap_or_else(|| m.uri.clone());
        params.push(json!({ "key": format!("model.{}", m.function), "value": value }));
    }
    Value::Array(params)
}

/// MLflow metric keys: letters, digits, `_ - . / ` and spaces.
fn sanitize(key: &str) -> String {
    key.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_-./ ".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_are_sanitized() {
        assert_eq!(
            super::sanitize("conversion_rate.spring sale!"),
            "conversion_rate.spring sale_"
        );
    }
}
