//! The circuit-breaker policy: when an endpoint counts as down, when it is
//! probed, when it is disabled, and how long its parked events are kept.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::config::{ConfigError, Vars};
use crate::delivery::retry::RetrySchedule;
use crate::domain::health::{BreakerState, Health};

/// Default `BREAKER_FAILURES`: consecutive failed attempts that open it.
pub const DEFAULT_FAILURES: u64 = 5;
/// Default `BREAKER_MIN_FAILING_SECONDS`: how long the streak must have
/// lasted too, so one burst of timeouts does not open it.
pub const DEFAULT_MIN_FAILING: Duration = Duration::from_secs(120);
/// Default `DISABLE_AFTER_SECONDS`: five days of continuous failure.
pub const DEFAULT_DISABLE_AFTER: Duration = Duration::from_secs(5 * 24 * 3600);
/// Default `PARKED_RETENTION_DAYS`.
pub const DEFAULT_RETENTION_DAYS: u32 = 30;
/// Default `PROBE_INTERVAL_MAX_SECONDS`: an open breaker is probed at least
/// this often (before jitter), however long the endpoint has been down, so
/// an endpoint that answers again gets its events within about a minute.
pub const DEFAULT_PROBE_INTERVAL_MAX: Duration = Duration::from_secs(60);
/// Jitter of each probe interval, as a fraction: endpoints that opened
/// together do not get probed together.
pub const PROBE_JITTER: f64 = 0.2;

/// When breakers open, probes back off and endpoints are disabled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerPolicy {
    /// Consecutive failed attempts that open the breaker...
    pub failures: u64,
    /// ...once the streak has lasted at least this long.
    pub min_failing: Duration,
    /// Continuous failure after which the subscription is disabled.
    pub disable_after: Duration,
    /// Probe backoff: probe `n` (from 0) waits the schedule's `n`-th delay,
    /// the last one repeating, capped at `probe_interval_max`.
    pub probe_schedule: RetrySchedule,
    /// The longest wait between two probes of an open breaker (before
    /// jitter).
    pub probe_interval_max: Duration,
    /// How long parked and failed events are kept.
    pub retention: chrono::Duration,
}

impl BreakerPolicy {
    /// The policy from `BREAKER_FAILURES`, `BREAKER_MIN_FAILING_SECONDS`,
    /// `DISABLE_AFTER_SECONDS`, `PARKED_RETENTION_DAYS` and
    /// `PROBE_INTERVAL_MAX_SECONDS` (1 to 900), probing on `schedule` (the
    /// retry schedule) capped at that interval.
    pub fn from_vars(vars: &Vars, schedule: &RetrySchedule) -> Result<Self, ConfigError> {
        let failures = vars.parse_in_range("BREAKER_FAILURES", DEFAULT_FAILURES, 1, 10_000)?;
        let min_failing = vars.parse_in_range(
            "BREAKER_MIN_FAILING_SECONDS",
            DEFAULT_MIN_FAILING.as_secs(),
            0,
            7 * 24 * 3600,
        )?;
        let disable_after = vars.parse_in_range(
            "DISABLE_AFTER_SECONDS",
            DEFAULT_DISABLE_AFTER.as_secs(),
            1,
            365 * 24 * 3600,
        )?;
        let retention_days =
            vars.parse_in_range("PARKED_RETENTION_DAYS", DEFAULT_RETENTION_DAYS, 1, 365)?;
        let probe_interval_max = vars.parse_in_range(
            "PROBE_INTERVAL_MAX_SECONDS",
            DEFAULT_PROBE_INTERVAL_MAX.as_secs(),
            1,
            900,
        )?;
        Ok(Self {
            failures,
            min_failing: Duration::from_secs(min_failing),
            disable_after: Duration::from_secs(disable_after),
            probe_schedule: schedule.clone(),
            probe_interval_max: Duration::from_secs(probe_interval_max),
            retention: chrono::Duration::days(i64::from(retention_days)),
        })
    }

    /// Whether an endpoint with `health` should have its breaker opened.
    pub fn should_open(&self, health: &Health, now: DateTime<Utc>) -> bool {
        if health.breaker != BreakerState::Closed || health.consecutive_failures < self.failures {
            return false;
        }
        let since = health.failing_since.unwrap_or(now);
        (now - since).to_std().unwrap_or_default() >= self.min_failing
    }

    /// When the endpoint is disabled, given its streak began at `since`.
    pub fn disable_at(&self, since: DateTime<Utc>) -> DateTime<Utc> {
        since + chrono::Duration::from_std(self.disable_after).unwrap_or(chrono::Duration::MAX)
    }

    /// Whether an endpoint failing since `since` is due to be disabled.
    pub fn should_disable(&self, since: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
        since.is_some_and(|since| now >= self.disable_at(since))
    }

    /// When probe number `probes_made` (0 for the first after opening) is
    /// due: its backoff after `now`, with jitter, but never after the time
    /// the endpoint is due to be disabled, so that happens on time.
    pub fn next_probe_at(
        &self,
        probes_made: u32,
        failing_since: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> DateTime<Utc> {
        self.next_probe_at_with(probes_made, failing_since, now, fastrand::f64())
    }

    /// The wait before probe number `probes_made`, before jitter: the retry
    /// schedule's delay (the last one repeating), capped at
    /// `probe_interval_max`. The schedule paces retries of single events;
    /// a probe is one request per endpoint, so the cap keeps the time from
    /// "the endpoint answers again" to "its events flow" short and
    /// independent of how long the outage lasted.
    pub fn probe_interval(&self, probes_made: u32) -> Duration {
        let delays = self.probe_schedule.max_attempts().saturating_sub(1);
        let delay = if delays == 0 {
            self.probe_interval_max
        } else {
            let index = probes_made.min(delays - 1) + 1;
            self.probe_schedule
                .base_delay(index)
                .unwrap_or(self.probe_interval_max)
        };
        delay.min(self.probe_interval_max)
    }

    /// [`Self::next_probe_at`] with the jitter drawn from `unit` (uniform in
    /// [0, 1)): the interval times a factor in [1 - [`PROBE_JITTER`],
    /// 1 + [`PROBE_JITTER`]).
    pub fn next_probe_at_with(
        &self,
        probes_made: u32,
        failing_since: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        unit: f64,
    ) -> DateTime<Utc> {
        let factor = 1.0 - PROBE_JITTER + 2.0 * PROBE_JITTER * unit.clamp(0.0, 1.0);
        let delay = self.probe_interval(probes_made).mul_f64(factor);
        let next = now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
        match failing_since {
            Some(since) => next.min(self.disable_at(since)),
            None => next,
        }
    }

    /// The longest time from an endpoint answering again to its next probe:
    /// the capped interval with the most jitter.
    pub fn longest_probe_wait(&self) -> Duration {
        self.probe_interval_max.mul_f64(1.0 + PROBE_JITTER)
    }
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        Self {
            failures: DEFAULT_FAILURES,
            min_failing: DEFAULT_MIN_FAILING,
            disable_after: DEFAULT_DISABLE_AFTER,
            probe_schedule: RetrySchedule::default(),
            probe_interval_max: DEFAULT_PROBE_INTERVAL_MAX,
            retention: chrono::Duration::days(i64::from(DEFAULT_RETENTION_DAYS)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failing(count: u64, since: DateTime<Utc>) -> Health {
        Health {
            consecutive_failures: count,
            failing_since: Some(since),
            ..Health::default()
        }
    }

    #[test]
    fn opens_after_enough_failures_over_enough_time() {
        let p = BreakerPolicy::default();
        let t0 = Utc::now();
        let two_min = chrono::Duration::minutes(2);
        assert!(!p.should_open(&failing(4, t0), t0 + two_min));
        assert!(!p.should_open(&failing(5, t0), t0 + chrono::Duration::seconds(119)));
        assert!(p.should_open(&failing(5, t0), t0 + two_min));
        let mut open = failing(50, t0);
        open.breaker = BreakerState::Open;
        assert!(!p.should_open(&open, t0 + two_min), "already open");
    }

    #[test]
    fn probes_back_off_on_the_schedule_up_to_the_cap_and_stop_at_the_disable_time() {
        let p = BreakerPolicy::default();
        let t0 = Utc::now();
        let secs = |probes| (p.next_probe_at_with(probes, None, t0, 0.5) - t0).num_seconds();
        assert_eq!(secs(0), 5, "the schedule's first step is under the cap");
        assert_eq!(secs(1), 60, "5 minutes capped at a minute");
        assert_eq!(secs(6), 60, "10 hours capped at a minute");
        assert_eq!(secs(600), 60, "however long the outage");
        let jittered: Vec<i64> = [0.0, 0.999]
            .into_iter()
            .map(|u| (p.next_probe_at_with(9, None, t0, u) - t0).num_milliseconds())
            .collect();
        assert_eq!(jittered[0], 48_000);
        assert!((71_900..72_000).contains(&jittered[1]), "{jittered:?}");
        assert_eq!(p.longest_probe_wait(), Duration::from_secs(72));
        let since = t0 - chrono::Duration::days(5) + chrono::Duration::seconds(30);
        assert_eq!(
            p.next_probe_at_with(60, Some(since), t0, 0.5),
            p.disable_at(since)
        );
        assert!(!p.should_disable(Some(since), t0));
        assert!(p.should_disable(Some(since), p.disable_at(since)));
        assert!(!p.should_disable(None, t0));
    }

    #[test]
    fn the_probe_cap_is_read_from_the_environment() {
        let vars =
            Vars::from_map([("PROBE_INTERVAL_MAX_SECONDS".to_owned(), "5".to_owned())].into());
        let p = BreakerPolicy::from_vars(&vars, &RetrySchedule::default()).unwrap();
        assert_eq!(p.probe_interval(3), Duration::from_secs(5));
        let vars =
            Vars::from_map([("PROBE_INTERVAL_MAX_SECONDS".to_owned(), "0".to_owned())].into());
        assert!(BreakerPolicy::from_vars(&vars, &RetrySchedule::default()).is_err());
    }
}
