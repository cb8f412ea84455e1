//! Alerts: a failed run, a failed expectation or a metric breach (and, if asked, a
//! success) is told to Slack-compatible webhooks and by email. A delivery that fails is
//! retried with backoff and then reported; it never undoes the run's results, which
//! are committed and logged before any alert is sent.

use std::time::Duration;

use crate::config::{resolve_env_vars, AlertConfig, AlertEvent, AlertKind, Environment};
use crate::report::{AlertDelivery, AlertError, RunReport, TaskStatus};
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

/// The message for `report`, or `None` when nothing the target listens to happened.
fn message(env: &Environment, report: &RunReport, on: &[AlertEvent]) -> Option<(String, String)> {
    let mut lines = Vec::new();
    let wants = |e: AlertEvent| on.contains(&e);
    for t in &report.tasks {
        if let TaskStatus::Failed(e) = &t.status {
            if wants(AlertEvent::Failure) {
                let name = report.name_of(&t.pipeline, &t.task);
                lines.push(format!("task {name} failed: {}", e.full_message()));
            }
        }
        if wants(AlertEvent::Expectation) {
            for x in t.expectations.iter().filter(|x| x.violations > 0) {
                lines.push(format!(
                    "expectation {} ({}) of task {}: {} violation(s)",
                    x.name,
                    x.severity.as_str(),
                    report.name_of(&t.pipeline, &t.task),
                    x.violations
                ));
            }
        }
    }
    if wants(AlertEvent::Failure) {
        for e in &report.metric_errors {
            lines.push(e.full_message());
        }
    }
    if wants(AlertEvent::Breach) {
        for m in report.breaches() {
            let metric = match report.pipelines.len() {
                1 => m.metric.clone(),
                _ => format!("{}/{}", m.pipeline, m.metric),
            };
            let name = match &m.group {
                Some(g) => format!("{metric}[{g}]"),
                None => metric,
            };
            let value = m.value.map_or("NULL".into(), |v| v.to_string());
            let previous = m.previous.map_or("none".into(), |p| p.to_string());
            lines.push(format!(
                "metric {name} = {value} (previous {previous}): {}",
                m.breach.clone().unwrap_or_default()
            ));
        }
    }
    let ok = report.succeeded();
    if lines.is_empty() && !(ok && wants(AlertEvent::Success)) {
        return None;
    }
    let status = if ok { "succeeded" } else { "FAILED" };
    let subject = format!(
        "quern [{}] {} ds {}: run {status}{}",
        env.name,
        report.pipelines_text(),
        report.ds,
        if report.breaches().next().is_some() {
            ", metric breach"
        } else {
            ""
        }
    );
    let mut body = subject.clone();
    body.push('\n');
    for l in &lines {
        body.push_str("- ");
        body.push_str(l);
        body.push('\n');
    }
    body.push_str(&format!("run id {}", report.run_id));
    Some((subject, body))
}

/// Sends every alert the run calls for; one delivery result per target that fired.
pub(crate) async fn send(env: &Environment, report: &RunReport) -> Vec<AlertDelivery> {
    let mut deliveries = Vec::new();
    for (i, alert) in env.alerts.iter().enumerate() {
        let Some((subject, body)) = message(env, report, &alert.on) else {
            continue;
        };
        let mut last = deliver(env, i, alert, &subject, &body).await;
        for attempt in 1..3u32 {
            if last.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200 * 2u64.pow(attempt))).await;
            last = deliver(env, i, alert, &subject, &body).await;
        }
        deliveries.push(AlertDelivery {
            target: alert.destination(),
            subject,
            result: last,
        });
    }
    deliveries
}

async fn deliver(
    env: &Environment,
    i: usize,
    alert: &AlertConfig,
    subject: &str,
    body: &str,
) -> Result<(), AlertError> {
    let setting = |v: &Option<String>, k: &str| -> Result<Option<String>, AlertError> {
        v.as_ref()
            .map(|v| resolve_env_vars(v, &env.file, &format!("alerts[{i}].{k}")))
            .transpose()
            .map_err(|e| AlertError::Config(Box::new(e)))
    };
    match alert.kind {
        AlertKind::Webhook => {
            let url = setting(&alert.url, "url")?.unwrap_or_default();
            post_webhook(&url, body).await
        }
        AlertKind::Email => {
            let host = setting(&alert.smtp_host, "smtp_host")?.unwrap_or_default();
            let email = email(env, i, alert, subject, body)?;
            let mut transport = match alert.tls.as_deref().unwrap_or("starttls") {
                "none" => Ok(
                    AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&host)
                        .port(alert.smtp_port.unwrap_or(25)),
                ),
                "tls" => AsyncSmtpTransport::<Tokio1Executor>::relay(&host)
                    .map(|b| b.port(alert.smtp_port.unwrap_or(465))),
                _ => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&host)
                    .map(|b| b.port(alert.smtp_port.unwrap_or(587))),
            }
            .map_err(|source| AlertError::Smtp {
                host: host.clone(),
                source,
            })?
            .timeout(Some(Duration::from_secs(10)));
            if let Some(user) = setting(&alert.username, "username")? {
                let password = setting(&alert.password, "password")?.unwrap_or_default();
                transport = transport.credentials(Credentials::new(user, password));
            }
            transport
                .build()
                .send(email)
                .await
                .map(|_| ())
                .map_err(|source| AlertError::Smtp { host, source })
        }
    }
}

/// POSTs `{"text": body}` to a webhook through the shared HTTP client.
async fn post_webhook(url: &str, body: &str) -> Result<(), AlertError> {
    let response = crate::http::client()
        .post(url)
        .header("Content-Type", "application/json")
        .timeout(Duration::from_secs(10))
        .body(serde_json_string(body))
        .send()
        .await
        // The URL of a webhook is a secret: never show it.
        .map_err(|e| AlertError::Webhook(e.without_url()))?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(AlertError::WebhookStatus(response.status().as_u16()))
    }
}

/// The email of alert `i`: its sender, recipients, subject and body.
fn email(
    env: &Environment,
    i: usize,
    alert: &AlertConfig,
    subject: &str,
    body: &str,
) -> Result<Message, AlertError> {
    let mailbox = |address: &str, k: &str| -> Result<Mailbox, AlertError> {
        address.parse().map_err(|source| AlertError::Address {
            file: env.file.display().to_string(),
            key: format!("alerts[{i}].{k}"),
            address: address.to_string(),
            source,
        })
    };
    let from = mailbox(alert.from.as_deref().unwrap_or_default(), "from")?;
    let mut builder = Message::builder().from(from).subject(subject);
    for to in &alert.to {
        builder = builder.to(mailbox(to, "to")?);
    }
    Ok(builder.body(body.to_string())?)
}

/// `{"text": body}` with the body escaped as a JSON string.
fn serde_json_string(body: &str) -> String {
    let mut out = String::from("{\"text\":\"");
    for c in body.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push_str("\"}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_is_escaped_json() {
        assert_eq!(
            serde_json_string("a \"b\"\nc\\"),
            r#"{"text":"a \"b\"\nc\\"}"#
        );
    }
}
