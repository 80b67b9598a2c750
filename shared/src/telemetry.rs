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

/// Where the Lambda runtime logs every raw invocation event at `trace`: API
/// requests with their bodies (custom header values, secrets being set)
/// and bearer tokens. It never logs past `debug`, whatever the level.
const RAW_EVENTS: &str = "lambda_runtime::layers::api_response=debug";

/// The filter of a level (or `RUST_LOG` directives), with [`RAW_EVENTS`]
/// capped.
fn filter(level: &str) -> EnvFilter {
    EnvFilter::try_new(level)
        .unwrap_or_else(|_| EnvFilter::new("info"))
        .add_directive(RAW_EVENTS.parse().expect("a valid directive"))
}

/// Installs the JSON subscriber on stdout. The level comes from `RUST_LOG`,
/// else from Lambda's `AWS_LAMBDA_LOG_LEVEL`, else `info`; the runtime's
/// raw events are never logged. Safe to call more than once.
pub fn init_json_logs() {
    let level = std::env::var("RUST_LOG")
        .or_else(|_| std::env::var("AWS_LAMBDA_LOG_LEVEL"))
        .map(|level| level.to_lowercase())
        .unwrap_or_else(|_| "info".to_owned());
    let _ = tracing_subscriber::registry()
        .with(filter(&level))
        .with(json_layer(std::io::stdout))
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runtime_s_raw_events_stay_off_at_every_level() {
        for level in [
            "trace",
            "info",
            "lambda_runtime=trace",
            "lambda_runtime::layers::api_response=trace",
        ] {
            let shown = filter(level).to_string();
            assert!(
                shown.contains("lambda_runtime::layers::api_response=debug")
                    && !shown.contains("api_response=trace"),
                "{level}: {shown}"
            );
        }
    }
}
