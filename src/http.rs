//! The one HTTP client quern talks to services with (the MLflow server, alert
//! webhooks): shared, so connections are reused, and with timeouts, so an unreachable
//! service fails a request instead of hanging a run.

use std::sync::OnceLock;
use std::time::Duration;

/// The process-wide client: 10 s to connect, 30 s per request unless a request sets
/// its own timeout.
pub(crate) fn client() -> reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(10))
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap_or_default()
        })
        .clone()
}
