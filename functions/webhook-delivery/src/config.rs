//! Configuration of the delivery function, read once at cold start.

use shared::storage::keyring::KeyringConfig;
use std::path::PathBuf;
use std::time::Duration;

use shared::config::{ConfigError, Vars};
use shared::delivery::breaker::BreakerPolicy;
use shared::delivery::retry::RetrySchedule;
use shared::domain::health::DRAIN_START_DELAY;
use shared::target_guard::allow_list::AllowList;

/// Settings of the delivery function.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// `SUBSCRIPTIONS_TABLE`: the subscriptions table (read before each
    /// attempt; written only to archive on `410 Gone`).
    pub subscriptions_table: String,
    /// `DELIVERIES_TABLE`: the attempt log.
    pub deliveries_table: String,
    /// `RETRY_QUEUE_URL`: where later attempts are queued.
    pub retry_queue_url: String,
    /// `DEAD_LETTER_QUEUE_URL`: where malformed messages go.
    pub dead_letter_queue_url: String,
    /// `PARKED_EVENTS_TABLE`: events held while the breaker is open, and
    /// events that used up their schedule.
    pub parked_events_table: String,
    /// `KEYRING_TABLE`, `SECRETS_KMS_KEY_ID`: the keyring that opens
    /// signing secrets.
    pub keyring: KeyringConfig,
    /// `EVENT_BUS_NAME`: the EventBridge bus of operational events.
    pub event_bus_name: String,
    /// The breaker policy (`BREAKER_FAILURES`, `BREAKER_MIN_FAILING_SECONDS`,
    /// `DISABLE_AFTER_SECONDS`, `PARKED_RETENTION_DAYS`).
    pub breaker: BreakerPolicy,
    /// `RETRY_SCHEDULE` (default `5s,5m,30m,2h,5h,10h,10h`): delays between
    /// attempts.
    pub schedule: RetrySchedule,
    /// `DELIVERY_CONCURRENCY` (default 16): POSTs in flight per invocation.
    pub concurrency: usize,
    /// `SUBSCRIPTION_CACHE_TTL_SECONDS` (default 5): how long a subscription
    /// read is reused inside a warm instance; below the drain start delay
    /// ([`DRAIN_START_DELAY`]).
    pub cache_ttl: Duration,
    /// `CONNECT_TIMEOUT_MS` (default 5000).
    pub connect_timeout: Duration,
    /// `REQUEST_TIMEOUT_MS` (default 15000): the whole attempt, body included.
    pub request_timeout: Duration,
    /// `TARGET_ALLOW_LIST` (default empty): non-public networks deliveries
    /// may reach. For local development and tests only.
    pub allow_list: AllowList,
    /// `TARGET_EXTRA_CA_FILE` (default none): a PEM file of extra trusted
    /// root certificates, for receivers with self-signed certificates in
    /// local development and tests.
    pub extra_ca_file: Option<PathBuf>,
}

impl DeliveryConfig {
    /// Reads the configuration from the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&Vars::Process)
    }

    /// Reads the configuration from `vars` (the local stack passes the
    /// environment CloudFormation resolved for the function).
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let schedule = RetrySchedule::from_vars(vars)?;
        let millis = |var, default| {
            vars.parse_in_range(var, default, 100u64, 60_000)
                .map(Duration::from_millis)
        };
        Ok(Self {
            subscriptions_table: vars.required("SUBSCRIPTIONS_TABLE")?,
            deliveries_table: vars.required("DELIVERIES_TABLE")?,
            retry_queue_url: vars.required("RETRY_QUEUE_URL")?,
            dead_letter_queue_url: vars.required("DEAD_LETTER_QUEUE_URL")?,
            parked_events_table: vars.required("PARKED_EVENTS_TABLE")?,
            keyring: KeyringConfig::from_vars(vars)?,
            event_bus_name: vars.required("EVENT_BUS_NAME")?,
            breaker: BreakerPolicy::from_vars(vars, &schedule)?,
            schedule,
            concurrency: vars.parse_in_range("DELIVERY_CONCURRENCY", 16usize, 1, 256)?,
            cache_ttl: cache_ttl(vars)?,
            connect_timeout: millis("CONNECT_TIMEOUT_MS", 5_000)?,
            request_timeout: millis("REQUEST_TIMEOUT_MS", 15_000)?,
            allow_list: AllowList::from_vars(vars)?,
            extra_ca_file: vars.optional("TARGET_EXTRA_CA_FILE").map(PathBuf::from),
        })
    }
}

/// `SUBSCRIPTION_CACHE_TTL_SECONDS`, refused at or above the drain start
/// delay: a drain starts that long after a breaker closes so that every
/// warm instance has re-read the subscription by then; with a longer TTL
/// an instance could park events after the drain ended, and they would
/// wait for the next outage.
fn cache_ttl(vars: &Vars) -> Result<Duration, ConfigError> {
    let below = u64::try_from(DRAIN_START_DELAY.num_seconds()).unwrap_or(1);
    let ttl = vars.parse_or("SUBSCRIPTION_CACHE_TTL_SECONDS", 5u64)?;
    if ttl >= below {
        return Err(ConfigError::new(
            "SUBSCRIPTION_CACHE_TTL_SECONDS",
            format!(
                "must be below the {below}-second drain start delay (events parked by an \
                 instance with an older copy after the drain starts would stay parked), got {ttl}"
            ),
        ));
    }
    Ok(Duration::from_secs(ttl))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(ttl: &str) -> Vars {
        Vars::from_map([("SUBSCRIPTION_CACHE_TTL_SECONDS".to_owned(), ttl.to_owned())].into())
    }

    #[test]
    fn a_cache_ttl_at_or_above_the_drain_start_delay_is_refused() {
        assert_eq!(cache_ttl(&vars("9")).unwrap(), Duration::from_secs(9));
        assert_eq!(cache_ttl(&vars("0")).unwrap(), Duration::ZERO);
        for ttl in ["10", "300"] {
            let e = cache_ttl(&vars(ttl)).unwrap_err().to_string();
            assert!(
                e.contains("SUBSCRIPTION_CACHE_TTL_SECONDS") && e.contains("drain start delay"),
                "{e}"
            );
        }
        assert_eq!(
            cache_ttl(&Vars::from_map(Default::default())).unwrap(),
            Duration::from_secs(5)
        );
    }
}
