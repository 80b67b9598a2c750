//! Endpoint health: what a subscription's endpoint has done lately, and its
//! circuit breaker.
//!
//! The attributes live at the top level of the subscription item so that
//! concurrent delivery instances update them with atomic `UpdateItem`s
//! (see `storage::subscriptions`). A healthy endpoint has all of them at
//! their defaults, and none is written on a healthy delivery.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The breaker of an endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Events are attempted.
    #[default]
    Closed,
    /// The endpoint keeps failing: events are parked, a probe is due at
    /// `next_probe_at`.
    Open,
    /// A probe (the oldest parked event) is in flight; events are still
    /// parked until it succeeds.
    HalfOpen,
}

impl BreakerState {
    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }

    /// Open or half open: events are parked.
    pub fn is_open(self) -> bool {
        self != Self::Closed
    }

    fn is_closed(&self) -> bool {
        *self == Self::Closed
    }
}

/// How long after a breaker closes (or a subscription is enabled) its
/// drain starts: longer than the delivery function's subscription cache, so
/// events that instances with a stale copy still park are drained too.
pub const DRAIN_START_DELAY: chrono::Duration = chrono::Duration::seconds(10);

/// Which of the prober's two jobs a subscription waits for; the partition
/// key of the sparse `ProbeIndex`, present only while there is one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeLane {
    /// The breaker is open: probe at `next_probe_at`.
    Probe,
    /// The breaker closed (or the subscription was enabled): drain its
    /// parked events, the next batch at `next_probe_at`.
    Drain,
}

impl ProbeLane {
    /// The attribute value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Probe => "probe",
            Self::Drain => "drain",
        }
    }
}

/// One failed attempt, as health remembers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastFailure {
    /// When it was made.
    pub at: DateTime<Utc>,
    /// The response status, if one arrived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The error class when none did (`timeout`, `connect`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn is_zero<T: Default + PartialEq>(n: &T) -> bool {
    *n == T::default()
}

/// An endpoint's health and breaker.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// Failed attempts since the last success.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub consecutive_failures: u64,
    /// First failure of the current streak.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing_since: Option<DateTime<Utc>>,
    /// The success that last ended a failure streak or closed the breaker
    /// (healthy deliveries write nothing; the attempt log has them all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success_at: Option<DateTime<Utc>>,
    /// The latest failed attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<LastFailure>,
    /// Breaker state.
    #[serde(default, skip_serializing_if = "BreakerState::is_closed")]
    pub breaker: BreakerState,
    /// When the breaker last opened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breaker_opened_at: Option<DateTime<Utc>>,
    /// Probes made since the breaker opened (sets the probe backoff).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub probe_attempts: u32,
    /// The prober's job for it, if any (sparse index partition key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_lane: Option<ProbeLane>,
    /// When that job is due, epoch milliseconds (sparse index sort key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_probe_at: Option<i64>,
}

impl Health {
    /// Whether a failure streak is recorded (a success must clear it).
    pub fn is_failing(&self) -> bool {
        self.consecutive_failures > 0 || self.failing_since.is_some()
    }

    /// `next_probe_at` as a time.
    pub fn next_probe_time(&self) -> Option<DateTime<Utc>> {
        self.next_probe_at.and_then(DateTime::from_timestamp_millis)
    }

    /// Cleared streak, breaker closed, and any parked events due to drain
    /// at `now` (enable, or a changed URL).
    pub fn reset_for_drain(&mut self, now: DateTime<Utc>) {
        *self = Self {
            last_success_at: self.last_success_at,
            last_failure: self.last_failure.clone(),
            probe_lane: Some(ProbeLane::Drain),
            next_probe_at: Some((now + DRAIN_START_DELAY).timestamp_millis()),
            ..Self::default()
        };
    }
}

/// When a [`Write`] applies: its condition on the stored item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// The subscription exists.
    Exists,
    /// It is active and its breaker closed.
    ActiveAndClosed,
    /// Its breaker is closed.
    Closed,
    /// It is active and its breaker open or half open.
    ActiveAndOpen,
    /// Its breaker is open or half open, waiting for a probe.
    OpenAwaitingProbe,
    /// It is active and waiting for a probe.
    ActiveAwaitingProbe,
}

/// A write to the subscription's health (each bumps `version`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// Count one failed attempt, starting the streak if none is running.
    RecordFailure(LastFailure),
    /// Open the breaker, the first probe due at `probe_at`.
    Open {
        /// When the first probe is due.
        probe_at: DateTime<Utc>,
    },
    /// End the failure streak.
    RecordSuccess,
    /// Close the breaker: the streak ends and the parked events drain after
    /// [`DRAIN_START_DELAY`].
    Close,
    /// Count a failed probe: the breaker stays open, the next probe is due
    /// at `probe_at`.
    RecordProbeFailure {
        /// The probe's failure.
        failure: LastFailure,
        /// When the next probe is due.
        probe_at: DateTime<Utc>,
    },
    /// Disable the subscription with `reason`; its events stay parked.
    Disable {
        /// The reason recorded.
        reason: &'static str,
    },
}

impl Write {
    /// When the write applies: concurrent writers make each transition
    /// once.
    pub fn condition(&self) -> Condition {
        match self {
            Self::RecordFailure(_) => Condition::Exists,
            Self::Open { .. } => Condition::ActiveAndClosed,
            Self::RecordSuccess => Condition::Closed,
            Self::Close => Condition::ActiveAndOpen,
            Self::RecordProbeFailure { .. } => Condition::OpenAwaitingProbe,
            Self::Disable { .. } => Condition::ActiveAwaitingProbe,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_healthy_endpoint_stores_nothing() {
        let json = serde_json::to_value(Health::default()).unwrap();
        assert_eq!(json, serde_json::json!({}));
        assert!(!Health::default().is_failing());
    }

    #[test]
    fn reset_keeps_history_and_schedules_a_drain() {
        let now = Utc::now();
        let mut h = Health {
            consecutive_failures: 9,
            failing_since: Some(now),
            breaker: BreakerState::Open,
            probe_attempts: 3,
            probe_lane: Some(ProbeLane::Probe),
            last_failure: Some(LastFailure {
                at: now,
                status: Some(500),
                error: None,
            }),
            ..Health::default()
        };
        h.reset_for_drain(now);
        assert!(!h.is_failing());
        assert_eq!(h.breaker, BreakerState::Closed);
        assert_eq!(h.probe_lane, Some(ProbeLane::Drain));
        assert_eq!(
            h.next_probe_at,
            Some((now + DRAIN_START_DELAY).timestamp_millis())
        );
        assert!(h.last_failure.is_some());
    }
}
