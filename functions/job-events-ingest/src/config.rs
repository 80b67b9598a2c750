//! Configuration of the ingest function, read once at cold start.

use std::time::Duration;

use shared::config::{ConfigError, FanoutSettings, Vars};

/// Settings of the ingest function.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// `SUBSCRIPTIONS_TABLE`: the subscriptions table.
    pub table: String,
    /// `DELIVERY_QUEUE_URL`: where delivery messages go.
    pub queue_url: String,
    /// `INGEST_POISON_QUEUE_URL`: where records that cannot be turned into
    /// delivery messages are set aside.
    pub poison_queue_url: String,
    /// `SUBSCRIPTION_CACHE_TTL_SECONDS` (default 10): how long a company's
    /// subscriptions are reused inside a warm instance.
    pub cache_ttl: Duration,
    /// `SEND_CONCURRENCY` (default 8): `SendMessageBatch` calls in flight.
    pub send_concurrency: usize,
    /// `SEND_ATTEMPTS` (default 4): tries per batch entry before its record
    /// is reported as failed.
    pub send_attempts: u32,
    /// `OUTBOX_MAX_MESSAGES`: messages built before they are sent (see
    /// [`FanoutSettings`]).
    pub outbox_messages: usize,
    /// `OUTBOX_MAX_BYTES`: bytes of message bodies built before they are
    /// sent (see [`FanoutSettings`]).
    pub outbox_bytes: usize,
    /// `MAX_MESSAGE_BYTES` (default 262144, the SQS limit): larger events
    /// are trimmed, and set aside when trimming is not enough. Events are
    /// bounded well under the default (see `shared::domain::job_event`).
    pub max_message_bytes: usize,
    /// `DEADLINE_MARGIN_SECONDS` (default 10): a batch stops taking records
    /// when less than this is left before the invocation's deadline, and
    /// Lambda resumes at the first record not taken.
    pub deadline_margin: Duration,
}

impl IngestConfig {
    /// Reads the configuration from the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&Vars::Process)
    }

    /// Reads the configuration from `vars` (the local stack passes the
    /// environment CloudFormation resolved for the function).
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let fanout = FanoutSettings::from_vars(vars)?;
        Ok(Self {
            table: vars.required("SUBSCRIPTIONS_TABLE")?,
            queue_url: vars.required("DELIVERY_QUEUE_URL")?,
            poison_queue_url: vars.required("INGEST_POISON_QUEUE_URL")?,
            cache_ttl: fanout.cache_ttl,
            send_concurrency: fanout.send_concurrency,
            send_attempts: fanout.send_attempts,
            outbox_messages: fanout.outbox_messages,
            outbox_bytes: fanout.outbox_bytes,
            max_message_bytes: vars.parse_in_range(
                "MAX_MESSAGE_BYTES",
                262_144usize,
                1024,
                1_048_576,
            )?,
            deadline_margin: Duration::from_secs(vars.parse_in_range(
                "DEADLINE_MARGIN_SECONDS",
                10u64,
                1,
                600,
            )?),
        })
    }
}
