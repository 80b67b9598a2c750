//! Configuration of the subscriptions API, read once at cold start.

use shared::config::{ConfigError, Vars};

use crate::console::ConsoleConfig;
use shared::cursor::{CursorCodec, MIN_KEY_LEN};
use shared::storage::keyring::KeyringConfig;
use shared::target_guard::allow_list::AllowList;

/// Settings of the subscriptions API.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// `SUBSCRIPTIONS_TABLE`: the DynamoDB subscriptions table.
    pub table: String,
    /// `DELIVERIES_TABLE`: the delivery attempt log, read by
    /// `GET /webhooks/{id}/deliveries`.
    pub deliveries_table: String,
    /// `DELIVERY_QUEUE_URL`: the queue `POST /webhooks/{id}/test` sends
    /// test events to.
    pub delivery_queue_url: String,
    /// `COMPANY_CLAIM`: the authorizer claim that holds the company id
    /// (default `company_id`).
    pub company_claim: String,
    /// `CURSOR_SIGNING_KEY`: at least 32 bytes, signs pagination cursors.
    pub cursors: CursorCodec,
    /// `TARGET_ALLOW_LIST`: non-public networks that target URLs may use
    /// (local development only; empty by default).
    pub allow_list: AllowList,
    /// `PARKED_EVENTS_TABLE`: parked and failed events, listed by
    /// `failed-events` and re-queued by `recover`.
    pub parked_events_table: String,
    /// `EVENT_BUS_NAME`: where `endpoint.enabled` goes.
    pub event_bus_name: String,
    /// `PARKED_RETENTION_DAYS` (default 30): the longest `recover` window.
    pub retention: chrono::Duration,
    /// `KEYRING_TABLE`, `SECRETS_KMS_KEY_ID`: the keyring that seals
    /// signing secrets.
    pub keyring: KeyringConfig,
    /// `MAX_SUBSCRIPTIONS_PER_COMPANY` (default 100): subscriptions a company
    /// may have that are not archived.
    pub max_subscriptions: u64,
    /// `MAX_JOB_IDS_PER_FILTER` (default 1000): job ids one subscription's
    /// filter may list.
    pub max_job_ids: usize,
    /// `CONSOLE_OIDC_*`: the console's sign-in and its
    /// Content-Security-Policy; its recover form's default window is the
    /// retention.
    pub console: ConsoleConfig,
}

/// Default of `MAX_SUBSCRIPTIONS_PER_COMPANY`.
pub const DEFAULT_MAX_SUBSCRIPTIONS: u64 = 100;

impl ApiConfig {
    /// Reads the configuration from the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&Vars::Process)
    }

    /// Reads the configuration from `vars` (the local stack passes the
    /// environment CloudFormation resolved for the function).
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let table = vars.required("SUBSCRIPTIONS_TABLE")?;
        let deliveries_table = vars.required("DELIVERIES_TABLE")?;
        let delivery_queue_url = vars.required("DELIVERY_QUEUE_URL")?;
        let company_claim = vars
            .optional("COMPANY_CLAIM")
            .unwrap_or_else(|| "company_id".to_owned());
        let key = vars.required("CURSOR_SIGNING_KEY")?;
        let cursors = CursorCodec::new(key.as_bytes()).ok_or_else(|| {
            ConfigError::new(
                "CURSOR_SIGNING_KEY",
                format!("must be at least {MIN_KEY_LEN} bytes long"),
            )
        })?;
        let allow_list = AllowList::from_vars(vars)?;
        if !allow_list.is_empty() {
            tracing::warn!(
                "TARGET_ALLOW_LIST is set: non-public targets in it are accepted (local development only)"
            );
        }
        let retention_days = vars.parse_in_range(
            "PARKED_RETENTION_DAYS",
            shared::delivery::breaker::DEFAULT_RETENTION_DAYS,
            1,
            365,
        )?;
        Ok(Self {
            table,
            deliveries_table,
            delivery_queue_url,
            company_claim,
            cursors,
            allow_list,
            parked_events_table: vars.required("PARKED_EVENTS_TABLE")?,
            keyring: KeyringConfig::from_vars(vars)?,
            event_bus_name: vars.required("EVENT_BUS_NAME")?,
            retention: chrono::Duration::days(i64::from(retention_days)),
            max_subscriptions: vars.parse_in_range(
                "MAX_SUBSCRIPTIONS_PER_COMPANY",
                DEFAULT_MAX_SUBSCRIPTIONS,
                1,
                100_000,
            )?,
            max_job_ids: vars.parse_in_range(
                "MAX_JOB_IDS_PER_FILTER",
                shared::domain::filters::MAX_JOB_IDS,
                1,
                10_000,
            )?,
            console: ConsoleConfig::from_vars(vars, retention_days)?,
        })
    }
}
