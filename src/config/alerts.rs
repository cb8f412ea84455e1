//! Alert targets as an environment declares them (`[[alerts]]`): a Slack-compatible
//! webhook or an email through SMTP, and the events each is told about.

use serde::Deserialize;

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
    pub(crate) fn validate(&self) -> Result<(), &'static str> {
        match self.kind {
            AlertKind::Webhook if self.url.is_none() => Err("a webhook needs `url`"),
            AlertKind::Email
                if self.smtp_host.is_none() || self.from.is_none() || self.to.is_empty() =>
            {
                Err("an email alert needs `smtp_host`, `from` and `to`")
            }
            AlertKind::Email
                if !matches!(
                    self.tls.as_deref(),
                    None | Some("starttls" | "tls" | "none")
                ) =>
            {
                Err("`tls` is one of starttls, tls, none")
            }
            _ => Ok(()),
        }
    }

    /// Where the alert goes, without secrets.
    pub(crate) fn destination(&self) -> String {
        match self.kind {
            AlertKind::Webhook => "webhook".to_string(),
            AlertKind::Email => format!("email to {}", self.to.join(", ")),
        }
    }
}
