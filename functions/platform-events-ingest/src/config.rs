//! Configuration of the platform events ingestion, read once at cold start.

use std::time::Duration;

use shared::config::{ConfigError, FanoutSettings, Vars};

/// Settings of the platform events ingestion.
#[derive(Debug, Clone)]
pub struct PlatformIngestConfig {
    /// `SUBSCRIPTIONS_TABLE`: the subscriptions table.
    pub table: String,
    /// `DELIVERY_QUEUE_URL`: where delivery messages go.
    pub queue_url: String,
    /// `PLATFORM_EVENTS_DLQ_URL`: where refused events go, with their
    /// reason.
    pub dead_letter_queue_url: String,
    /// The subscription cache, the sends and the outbox, as job ingest
    /// reads them (`SUBSCRIPTION_CACHE_TTL_SECONDS`, `SEND_CONCURRENCY`,
    /// `SEND_ATTEMPTS`, `OUTBOX_MAX_MESSAGES`, `OUTBOX_MAX_BYTES`).
    pub fanout: FanoutSettings,
    /// `DEADLINE_MARGIN_SECONDS` (default 5): records not started when less
    /// than this is left before the invocation's deadline are reported as
    /// failed, and SQS delivers them again.
    pub deadline_margin: Duration,
}

impl PlatformIngestConfig {
    /// Reads the configuration from the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&Vars::Process)
    }

    /// Reads the configuration from `vars` (the local stack passes the
    /// environment CloudFormation resolved for the function).
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        Ok(Self {
            table: vars.required("SUBSCRIPTIONS_TABLE")?,
            queue_url: vars.required("DELIVERY_QUEUE_URL")?,
            dead_letter_queue_url: vars.required("PLATFORM_EVENTS_DLQ_URL")?,
            fanout: FanoutSettings::from_vars(vars)?,
            deadline_margin: Duration::from_secs(vars.parse_in_range(
                "DEADLINE_MARGIN_SECONDS",
                5u64,
                1,
                600,
            )?),
        })
    }
}
