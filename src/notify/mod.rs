//! After a run is committed and logged: alerts to webhooks and email, and the run's
//! record in MLflow tracking. Neither ever undoes the run's results.

mod alerts;
mod tracking;

pub(crate) use alerts::send as send_alerts;
pub(crate) use tracking::log_run as log_to_mlflow;
