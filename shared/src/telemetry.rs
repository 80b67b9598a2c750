//! Logging set-up: `tracing` events as JSON lines, as CloudWatch expects.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{Format, Json, JsonFields};
use tracing_subscriber::fmt::{Layer, MakeWriter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

/// The functions' log format: one flat JSON object per event with its
/// target, no span lists, written to `writer` (benchmarks count these bytes).
pub fn json_layer<S, W>(writer: W) -> Layer<S, JsonFields, Format<Json>, W>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    tracing_subscriber::fmt::layer()
        .json()
        .with_current_span(false)
        .with_span_list(false)
        .flatten_event(true)
        .with_target(true)
        .with_writer(writer)
}

/// Installs the JSON subscriber on stdout. The level comes from `RUST_LOG`,
/// else from Lambda's `AWS_LAMBDA_LOG_LEVEL`, else `info`. Safe to call more
/// than once.
pub fn init_json_logs() {
    let filter = std::env::var("RUST_LOG")
        .or_else(|_| std::env::var("AWS_LAMBDA_LOG_LEVEL"))
        .map(|level| level.to_lowercase())
        .unwrap_or_else(|_| "info".to_owned());
    let _ = tracing_subscriber::registry()
        .with(EnvFilter::try_new(&filter).unwrap_or_else(|_| EnvFilter::new("info")))
        .with(json_layer(std::io::stdout))
        .try_init();
}
