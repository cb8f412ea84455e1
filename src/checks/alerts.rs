//! Alerts: a failed run, a failed expectation or a metric breach (and, if asked, a
//! success) is told to Slack-compatible webhooks and by email. A delivery that fails is
//! retried with backoff and then reported; it never undoes the run's results, which
//! are committed and logged before any alert is sent.

use std::time::Duration;

use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::Deserialize;

use crate::config::{resolve_env_vars, Environment};
use crate::engine::{RunReport, TaskStatus};

/// What an alert target is told about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertEvent {
    /// A task failed (including by a `fail` expectation) or a metric could not be computed.
    Failure,
    /// A metric breached a threshold.
    Breach,
    /// An expectation was violated (warn or drop counts, or a fail).
    Expectation,
    /// The run succeeded.
    Success,
}

/// The kind of an alert target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertKind {
    /// A Slack-compatible incoming webhook: a JSON POST of `{"text": …}`.
    Webhook,
    /// An email through an SMTP server.
    Email,
}

/// `[[alerts]]` in an environment file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertConfig {
    /// `webhook` or `email`.
    pub kind: AlertKind,
    /// What to alert on (default: failure, breach, expectation).
    #[serde(default = "default_events")]
    pub on: Vec<AlertEvent>,
    /// Webhook: the URL, usually `"${SLACK_WEBHOOK_URL}"`.
    #[serde(default)]
    pub url: Option<String>,
    /// Email: the SMTP server.
    #[serde(default)]
    pub smtp_host: Option<String>,
    /// Email: the SMTP port (default 587, or 25 without TLS).
    #[serde(default)]
    pub smtp_port: Option<u16>,
    /// Email: `starttls` (default), `tls` or `none` (a server on loopback).
    #[serde(default)]
    pub tls: Option<String>,
    /// Email: the SMTP user, usually `"${SMTP_USER}"`.
    #[serde(default)]
    pub username: Option<String>,
    /// Email: the SMTP password, usually `"${SMTP_PASSWORD}"`.
    #[serde(default)]
    pub password: Option<String>,
    /// Email: the sender.
    #[serde(default)]
    pub from: Option<String>,
    /// Email: the recipients.
    #[serde(default)]
    pub to: Vec<String>,
}

fn default_events() -> Vec<AlertEvent> {
    vec![
        AlertEvent::Failure,
        AlertEvent::Breach,
        AlertEvent::Expectation,
    ]
}

impl AlertConfig {
    /// Checks the keys each kind needs.
    pub(crate) fn validate(&self) -> Result<(), String> {
        match self.kind {
            AlertKind::Webhook if self.url.is_none() => Err("a webhook needs `url`".into()),
            AlertKind::Email
                if self.smtp_host.is_none() || self.from.is_none() || self.to.is_empty() =>
            {
                Err("an email alert needs `smtp_host`, `from` and `to`".into())
            }
            AlertKind::Email
                if !matches!(
                    self.tls.as_deref(),
                    None | Some("starttls" | "tls" | "none")
                ) =>
            {
                Err("`tls` is one of starttls, tls, none".into())
            }
            _ => Ok(()),
        }
    }

    /// Where the alert goes, without secrets.
    fn destination(&self) -> String {
        match self.kind {
            AlertKind::Webhook => "webhook".to_string(),
            AlertKind::Email => format!("email to {}", self.to.join(", ")),
        }
    }
}

/// The result of sending one alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertDelivery {
    /// Where it went (no secrets): `webhook` or `email to …`.
    pub target: String,
    /// The first line of the message.
    pub subject: String,
    /// `Ok` when delivered, else the last error after the retries.
    pub result: Result<(), String>,
}

/// The message for `report`, or `None` when nothing the target listens to happened.
fn message(env: &Environment, report: &RunReport, on: &[AlertEvent]) -> Option<(String, String)> {
    let mut lines = Vec::new();
    let wants = |e: AlertEvent| on.contains(&e);
    for t in &report.tasks {
        if let TaskStatus::Failed(e) = &t.status {
            if wants(AlertEvent::Failure) {
                lines.push(format!("task {} failed: {}", t.task, e.full_message()));
            }
        }
        if wants(AlertEvent::Expectation) {
            for x in t.expectations.iter().filter(|x| x.violations > 0) {
                lines.push(format!(
                    "expectation {} ({}) of task {}: {} violation(s)",
                    x.name,
                    x.severity.as_str(),
                    t.task,
                    x.violations
                ));
            }
        }
    }
    if wants(AlertEvent::Failure) {
        for (metric, why) in &report.metric_errors {
            lines.push(format!("metric {metric} could not be computed: {why}"));
        }
    }
    if wants(AlertEvent::Breach) {
        for m in report.breaches() {
            let name = match &m.group {
                Some(g) => format!("{}[{g}]", m.metric),
                None => m.metric.clone(),
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
        report.pipeline,
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
        let mut last = Err(String::new());
        for attempt in 0..3u32 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(200 * 2u64.pow(attempt))).await;
            }
            last = deliver(env, i, alert, &subject, &body).await;
            if last.is_ok() {
                break;
            }
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
) -> Result<(), String> {
    let key = |k: &str| format!("alerts[{i}].{k}");
    let resolve = |v: &Option<String>, k: &str| -> Result<Option<String>, String> {
        v.as_ref()
            .map(|v| resolve_env_vars(v, &env.file, &key(k)).map_err(|e| e.to_string()))
            .transpose()
    };
    match alert.kind {
        AlertKind::Webhook => {
            let url = resolve(&alert.url, "url")?.unwrap_or_default();
            let payload = serde_json_string(body);
            let response = reqwest::Client::new()
                .post(&url)
                .header("Content-Type", "application/json")
                .timeout(Duration::from_secs(10))
                .body(payload)
                .send()
                .await
                // The URL of a webhook is a secret: never show it.
                .map_err(|e| e.without_url().to_string())?;
            if response.status().is_success() {
                Ok(())
            } else {
                Err(format!("the webhook answered HTTP {}", response.status()))
            }
        }
        AlertKind::Email => {
            let host = resolve(&alert.smtp_host, "smtp_host")?.unwrap_or_default();
            let from: Mailbox = alert
                .from
                .as_deref()
                .unwrap_or_default()
                .parse()
                .map_err(|e| format!("{}: key `{}`: {e}", env.file.display(), key("from")))?;
            let mut builder = Message::builder().from(from).subject(subject);
            for to in &alert.to {
                let mailbox: Mailbox = to.parse().map_err(|e| {
                    format!("{}: key `{}`: `{to}`: {e}", env.file.display(), key("to"))
                })?;
                builder = builder.to(mailbox);
            }
            let email = builder.body(body.to_string()).map_err(|e| e.to_string())?;
            let mut transport = match alert.tls.as_deref().unwrap_or("starttls") {
                "none" => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&host)
                    .port(alert.smtp_port.unwrap_or(25)),
                "tls" => AsyncSmtpTransport::<Tokio1Executor>::relay(&host)
                    .map_err(|e| e.to_string())?
                    .port(alert.smtp_port.unwrap_or(465)),
                _ => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&host)
                    .map_err(|e| e.to_string())?
                    .port(alert.smtp_port.unwrap_or(587)),
            }
            .timeout(Some(Duration::from_secs(10)));
            if let Some(user) = resolve(&alert.username, "username")? {
                let password = resolve(&alert.password, "password")?.unwrap_or_default();
                transport = transport.credentials(Credentials::new(user, password));
            }
            transport
                .build()
                .send(email)
                .await
                .map(|_| ())
                .map_err(|e| format!("SMTP {host}: {e}"))
        }
    }
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
