//! Logging set-up: `tracing` events as JSON lines, as CloudWatch expects.

use tracing_subscriber::EnvFilter;

/// Installs a JSON subscriber. The level comes from `RUST_LOG`, else from
/// Lambda's `AWS_LAMBDA_LOG_LEVEL`, else `info`. Safe to call more than once.
pub fn init_json_logs() {
    let filter = std::env::var("RUST_LOG")
        .or_else(|_| std::env::var("AWS_LAMBDA_LOG_LEVEL"))
        .map(|level| level.to_lowercase())
        .unwrap_or_else(|_| "info".to_owned());
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(EnvFilter::try_new(&filter).unwrap_or_else(|_| EnvFilter::new("info")))
        .with_current_span(false)
        .with_span_list(false)
        .flatten_event(true)
        .with_target(true)
        .try_init();
}
