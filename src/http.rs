//! The process's one HTTP client (MLflow, webhooks): shared connection pools, and
//! timeouts so an unresponsive server cannot hang a run.

use std::sync::OnceLock;
use std::time::Duration;

/// How long a connection may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request may take unless it sets its own timeout (artifact downloads do).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A handle on the process-wide client (a clone shares its connection pool).
pub(crate) fn client() -> reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            reqwest::Client::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .timeout(REQUEST_TIMEOUT)
                .build()
                // These settings cannot make the build fail; what can (no TLS backend)
                // fails the default client the same way.
                .unwrap_or_else(|_| reqwest::Client::new())
        })
        .clone()
}
