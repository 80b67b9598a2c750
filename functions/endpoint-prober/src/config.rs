//! Configuration of the prober, read once at cold start.

use std::time::Duration;

use shared::config::{ConfigError, Vars};
use shared::delivery::breaker::BreakerPolicy;
use shared::delivery::retry::RetrySchedule;

/// Settings of the prober.
#[derive(Debug, Clone)]
pub struct ProberConfig {
    /// `SUBSCRIPTIONS_TABLE` (its `ProbeIndex`).
    pub subscriptions_table: String,
    /// `PARKED_EVENTS_TABLE`.
    pub parked_events_table: String,
    /// `DELIVERY_QUEUE_URL`: where probes and drained events go.
    pub delivery_queue_url: String,
    /// `EVENT_BUS_NAME`: operational events.
    pub event_bus_name: String,
    /// The breaker policy (`DISABLE_AFTER_SECONDS` and the rest).
    pub breaker: BreakerPolicy,
    /// `DRAIN_RATE_PER_SECOND` (default 10): most parked events per second
    /// sent back for one subscription.
    pub drain_rate: u32,
    /// `DRAIN_WINDOW_SECONDS` (default 55, within the one-minute schedule):
    /// how far ahead one run schedules a subscription's drain.
    pub drain_window: Duration,
    /// `PROBE_LEASE_SECONDS` (default 900): a probe whose outcome was not
    /// recorded by then (lost message, crash) is sent again.
    pub probe_lease: Duration,
    /// `MAX_ENDPOINTS_PER_RUN` (default 200): subscriptions handled per lane
    /// and run; the rest wait for the next run.
    pub max_per_run: usize,
}

impl ProberConfig {
    /// Reads the configuration from the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&Vars::Process)
    }

    /// Reads the configuration from `vars`.
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let schedule = RetrySchedule::from_vars(vars)?;
        Ok(Self {
            subscriptions_table: vars.required("SUBSCRIPTIONS_TABLE")?,
            parked_events_table: vars.required("PARKED_EVENTS_TABLE")?,
            delivery_queue_url: vars.required("DELIVERY_QUEUE_URL")?,
            event_bus_name: vars.required("EVENT_BUS_NAME")?,
            breaker: BreakerPolicy::from_vars(vars, &schedule)?,
            drain_rate: vars.parse_in_range("DRAIN_RATE_PER_SECOND", 10u32, 1, 1000)?,
            drain_window: Duration::from_secs(vars.parse_in_range(
                "DRAIN_WINDOW_SECONDS",
                55u64,
                1,
                900,
            )?),
            probe_lease: Duration::from_secs(vars.parse_in_range(
                "PROBE_LEASE_SECONDS",
                900u64,
                1,
                86_400,
            )?),
            max_per_run: vars.parse_in_range("MAX_ENDPOINTS_PER_RUN", 200usize, 1, 10_000)?,
        })
    }
}
