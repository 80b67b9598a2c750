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
    /// `PROBE_LOOKAHEAD_SECONDS` (default 60, the schedule's period; at most
    /// 900, SQS's longest delay): probes and drains due before the next
    /// run are sent by this one, delayed on the queue until they are due,
    /// so they happen on time whatever the schedule's grain.
    pub lookahead: Duration,
    /// `ENDPOINT_BUDGET_SECONDS` (default 10): the most one subscription's
    /// probe or drain step may take inside a run, so no endpoint, however
    /// many events it holds, starves the others; a drain cut short goes on
    /// in the next run.
    pub endpoint_budget: Duration,
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
            lookahead: Duration::from_secs(vars.parse_in_range(
                "PROBE_LOOKAHEAD_SECONDS",
                60u64,
                0,
                u64::from(shared::queue::MAX_DELAY_SECONDS),
            )?),
            endpoint_budget: Duration::from_secs(vars.parse_in_range(
                "ENDPOINT_BUDGET_SECONDS",
                10u64,
                1,
                600,
            )?),
        })
    }
}
