//! What an outcome does to an endpoint's breaker: which write to make to
//! its subscription item (and when that write applies), which operational
//! event to publish once it did, and what becomes of the event. Pure: no
//! I/O, and the time and the probe jitter are arguments. The delivery
//! function and the prober decide here and hand the write to the
//! subscription store.

use chrono::{DateTime, Utc};

use crate::delivery::breaker::policy::BreakerPolicy;
use crate::domain::health::{Health, LastFailure, Write};
use crate::domain::subscription::Subscription;
use crate::operational::{OperationalEvent, OperationalEventType};

/// Reason recorded on subscriptions disabled for failing too long.
pub const DISABLED_REASON: &str = "endpoint failed continuously for DisableAfterSeconds";

/// What happened to an endpoint (a `410 Gone` archives the subscription
/// and is no breaker outcome).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// An event, not a probe, got a 2xx.
    Delivered,
    /// An event's attempt, not a probe, failed.
    Failed(LastFailure),
    /// A failed attempt was counted ([`Write::RecordFailure`] applied): the
    /// health decided on is as stored after it.
    FailureCounted {
        /// Whether the subscription is disabled.
        disabled: bool,
    },
    /// A probe got a 2xx.
    ProbeDelivered,
    /// A probe failed.
    ProbeFailed(LastFailure),
    /// The prober found the breaker's probe due at `due` (not before now).
    ProbeDue {
        /// When it is due.
        due: DateTime<Utc>,
    },
    /// The prober claimed a probe and found no parked event to probe with.
    NothingToProbe,
}

/// What becomes of the event, or of the prober's job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// It was delivered.
    Delivered,
    /// It is retried on its schedule (kept as failed after its last
    /// attempt).
    Retry,
    /// It is parked until the breaker closes.
    Park,
    /// A probe's event: it stays parked.
    StayParked,
    /// Decide [`Outcome::FailureCounted`] on the subscription as the write
    /// stored it.
    Count,
    /// Another writer won: parked if the subscription as stored now parks
    /// events, else retried.
    Reread,
    /// The prober sends a probe.
    Probe,
    /// Nothing yet: a later run of the prober handles it.
    Wait,
    /// The prober is done with the subscription.
    Done,
}

/// Whose state an operational event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    /// The subscription as held before the write.
    Held,
    /// The subscription as the write stored it.
    Stored,
}

/// The parked count an operational event carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParkedCount {
    /// None parked yet.
    Zero,
    /// Counted in the ParkedEvents table.
    Counted,
}

/// An operational event to publish once the write applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Notice {
    /// The event's type.
    pub event_type: OperationalEventType,
    /// Whose state it reports.
    pub about: Subject,
    /// Its parked count.
    pub parked: ParkedCount,
}

impl Notice {
    /// The event at `now` about `held` or `stored`, with `counted` parked
    /// events when the notice counts them.
    pub fn event(
        &self,
        held: &Subscription,
        stored: &Subscription,
        now: DateTime<Utc>,
        counted: Option<u64>,
    ) -> OperationalEvent {
        let sub = match self.about {
            Subject::Held => held,
            Subject::Stored => stored,
        };
        let parked = match self.parked {
            ParkedCount::Zero => Some(0),
            ParkedCount::Counted => counted,
        };
        OperationalEvent::about(self.event_type, sub, now).with_parked(parked)
    }
}

/// What to do after an outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The write to make, if any.
    pub write: Option<Write>,
    /// The operational event to publish when the write applied.
    pub notice: Option<Notice>,
    /// The fate when there is no write or it applied.
    pub applied: Fate,
    /// The fate when the write's condition did not hold.
    pub lost: Fate,
    /// The fate when the write failed.
    pub failed: Fate,
}

impl Decision {
    /// No write: `fate`.
    fn only(fate: Fate) -> Self {
        Self::write(None, fate)
    }

    /// `write`, and `fate` whatever comes of it.
    fn write(write: impl Into<Option<Write>>, fate: Fate) -> Self {
        Self {
            write: write.into(),
            notice: None,
            applied: fate,
            lost: fate,
            failed: fate,
        }
    }

    /// With `notice` once the write applied.
    fn notice(
        mut self,
        event_type: OperationalEventType,
        about: Subject,
        parked: ParkedCount,
    ) -> Self {
        self.notice = Some(Notice {
            event_type,
            about,
            parked,
        });
        self
    }
}

/// A uniform draw in [0, 1) for [`decide`]'s probe jitter.
pub fn draw_jitter() -> f64 {
    fastrand::f64()
}

/// What `outcome` at `now` does to an endpoint with `health` under
/// `policy`; `jitter` (uniform in [0, 1)) spreads the probe it schedules.
pub fn decide(
    health: &Health,
    policy: &BreakerPolicy,
    outcome: &Outcome,
    now: DateTime<Utc>,
    jitter: f64,
) -> Decision {
    match outcome {
        // A healthy endpoint writes nothing.
        Outcome::Delivered if !health.is_failing() => Decision::only(Fate::Delivered),
        Outcome::Delivered => Decision::write(Write::RecordSuccess, Fate::Delivered),
        Outcome::Failed(failure) => Decision {
            lost: Fate::Retry,
            failed: Fate::Retry,
            ..Decision::write(Write::RecordFailure(failure.clone()), Fate::Count)
        },
        // Opened by another instance meanwhile, or disabled.
        Outcome::FailureCounted { disabled } if *disabled || health.breaker.is_open() => {
            Decision::only(Fate::Park)
        }
        Outcome::FailureCounted { .. } if !policy.should_open(health, now) => {
            Decision::only(Fate::Retry)
        }
        Outcome::FailureCounted { .. } => {
            let probe_at = policy.next_probe_at_with(0, health.failing_since, now, jitter);
            Decision {
                lost: Fate::Reread,
                failed: Fate::Retry,
                ..Decision::write(Write::Open { probe_at }, Fate::Park)
            }
            .notice(
                OperationalEventType::EndpointFailing,
                Subject::Stored,
                ParkedCount::Zero,
            )
        }
        Outcome::ProbeDelivered => Decision::write(Write::Close, Fate::Delivered).notice(
            OperationalEventType::EndpointRecovered,
            Subject::Held,
            ParkedCount::Counted,
        ),
        Outcome::ProbeFailed(failure) => {
            let probe_at = policy.next_probe_at_with(
                health.probe_attempts + 1,
                health.failing_since,
                now,
                jitter,
            );
            let write = Write::RecordProbeFailure {
                failure: failure.clone(),
                probe_at,
            };
            Decision::write(write, Fate::StayParked)
        }
        Outcome::ProbeDue { due } if policy.should_disable(health.failing_since, *due) => {
            if *due > now {
                // Disabled by the run at its time, not probed before.
                return Decision::only(Fate::Wait);
            }
            let write = Write::Disable {
                reason: DISABLED_REASON,
            };
            Decision::write(write, Fate::Done).notice(
                OperationalEventType::EndpointDisabled,
                Subject::Stored,
                ParkedCount::Counted,
            )
        }
        Outcome::ProbeDue { .. } => Decision::only(Fate::Probe),
        // The next event tests the endpoint.
        Outcome::NothingToProbe => Decision::write(Write::Close, Fate::Done),
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;
    use crate::domain::filters::Filters;
    use crate::domain::health::{BreakerState, Condition};
    use crate::domain::subscription::NewSubscription;
    use crate::signing::sealed::Keyring;

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_796_000_000, 0).unwrap()
    }

    fn failure(at: DateTime<Utc>) -> LastFailure {
        LastFailure {
            at,
            status: Some(503),
            error: None,
        }
    }

    /// `count` failures since `since`, the breaker `breaker`.
    fn failing(count: u64, since: DateTime<Utc>, breaker: BreakerState) -> Health {
        Health {
            consecutive_failures: count,
            failing_since: Some(since),
            last_failure: Some(failure(since)),
            breaker,
            ..Health::default()
        }
    }

    fn decide_now(health: &Health, outcome: Outcome, now: DateTime<Utc>) -> Decision {
        decide(health, &BreakerPolicy::default(), &outcome, now, 0.5)
    }

    #[test]
    fn a_delivery_to_a_healthy_endpoint_writes_nothing() {
        let d = decide_now(&Health::default(), Outcome::Delivered, t0());
        assert_eq!(d, Decision::only(Fate::Delivered));
    }

    #[test]
    fn a_delivery_ends_a_failure_streak_while_the_breaker_is_closed() {
        let health = failing(3, t0(), BreakerState::Closed);
        let d = decide_now(&health, Outcome::Delivered, t0() + Duration::seconds(30));
        assert_eq!(d.write, Some(Write::RecordSuccess));
        assert_eq!(Write::RecordSuccess.condition(), Condition::Closed);
        assert_eq!(
            (d.applied, d.lost, d.failed),
            (Fate::Delivered, Fate::Delivered, Fate::Delivered)
        );
        assert_eq!(d.notice, None);
        // A streak cleared in count only still has its start to clear.
        let started = Health {
            failing_since: Some(t0()),
            ..Health::default()
        };
        let d = decide_now(&started, Outcome::Delivered, t0());
        assert_eq!(d.write, Some(Write::RecordSuccess));
    }

    #[test]
    fn a_failed_attempt_is_counted_first_then_decided_on_as_stored() {
        let f = failure(t0());
        let d = decide_now(&Health::default(), Outcome::Failed(f.clone()), t0());
        assert_eq!(d.write, Some(Write::RecordFailure(f.clone())));
        assert_eq!(Write::RecordFailure(f).condition(), Condition::Exists);
        assert_eq!(d.applied, Fate::Count);
        assert_eq!(
            (d.lost, d.failed),
            (Fate::Retry, Fate::Retry),
            "not counted: retried"
        );
        assert_eq!(d.notice, None);
    }

    #[test]
    fn a_counted_failure_below_the_threshold_is_retried() {
        let health = failing(4, t0() - Duration::hours(1), BreakerState::Closed);
        let d = decide_now(&health, Outcome::FailureCounted { disabled: false }, t0());
        assert_eq!(d, Decision::only(Fate::Retry));
    }

    #[test]
    fn enough_failures_in_too_short_a_streak_are_retried() {
        let health = failing(5, t0(), BreakerState::Closed);
        let now = t0() + Duration::seconds(119);
        let d = decide_now(&health, Outcome::FailureCounted { disabled: false }, now);
        assert_eq!(d, Decision::only(Fate::Retry));
    }

    #[test]
    fn enough_failures_over_long_enough_open_the_breaker_and_park_the_event() {
        let health = failing(5, t0(), BreakerState::Closed);
        let now = t0() + Duration::minutes(2);
        let d = decide_now(&health, Outcome::FailureCounted { disabled: false }, now);
        let probe_at = now + Duration::seconds(5);
        assert_eq!(d.write, Some(Write::Open { probe_at }));
        assert_eq!(
            Write::Open { probe_at }.condition(),
            Condition::ActiveAndClosed
        );
        assert_eq!(d.applied, Fate::Park);
        assert_eq!(d.lost, Fate::Reread, "another instance opened it, or not");
        assert_eq!(d.failed, Fate::Retry);
        assert_eq!(
            d.notice,
            Some(Notice {
                event_type: OperationalEventType::EndpointFailing,
                about: Subject::Stored,
                parked: ParkedCount::Zero,
            })
        );
    }

    #[test]
    fn the_first_probe_is_never_after_the_disable_time() {
        let policy = BreakerPolicy {
            disable_after: std::time::Duration::from_secs(150),
            ..BreakerPolicy::default()
        };
        let health = failing(5, t0(), BreakerState::Closed);
        let now = t0() + Duration::seconds(148);
        let outcome = Outcome::FailureCounted { disabled: false };
        let d = decide(&health, &policy, &outcome, now, 0.5);
        assert_eq!(
            d.write,
            Some(Write::Open {
                probe_at: t0() + Duration::seconds(150)
            })
        );
    }

    #[test]
    fn a_failure_counted_on_an_open_breaker_or_a_disabled_subscription_parks_the_event() {
        for breaker in [BreakerState::Open, BreakerState::HalfOpen] {
            let health = failing(9, t0(), breaker);
            let d = decide_now(&health, Outcome::FailureCounted { disabled: false }, t0());
            assert_eq!(d, Decision::only(Fate::Park), "{breaker:?}");
        }
        let health = failing(1, t0(), BreakerState::Closed);
        let d = decide_now(&health, Outcome::FailureCounted { disabled: true }, t0());
        assert_eq!(d, Decision::only(Fate::Park));
    }

    #[test]
    fn a_successful_probe_closes_the_breaker_and_announces_the_recovery() {
        let health = failing(12, t0(), BreakerState::HalfOpen);
        let d = decide_now(&health, Outcome::ProbeDelivered, t0() + Duration::hours(1));
        assert_eq!(d.write, Some(Write::Close));
        assert_eq!(Write::Close.condition(), Condition::ActiveAndOpen);
        assert_eq!(
            (d.applied, d.lost, d.failed),
            (Fate::Delivered, Fate::Delivered, Fate::Delivered)
        );
        assert_eq!(
            d.notice,
            Some(Notice {
                event_type: OperationalEventType::EndpointRecovered,
                about: Subject::Held,
                parked: ParkedCount::Counted,
            })
        );
    }

    #[test]
    fn a_failed_probe_backs_off_and_its_event_stays_parked() {
        let mut health = failing(12, t0(), BreakerState::HalfOpen);
        let now = t0() + Duration::hours(1);
        let f = failure(now);
        let d = decide_now(&health, Outcome::ProbeFailed(f.clone()), now);
        let second = Write::RecordProbeFailure {
            failure: f.clone(),
            probe_at: now + Duration::seconds(60),
        };
        assert_eq!(
            d.write,
            Some(second.clone()),
            "the schedule's second step, capped"
        );
        assert_eq!(second.condition(), Condition::OpenAwaitingProbe);
        assert_eq!(
            (d.applied, d.lost, d.failed),
            (Fate::StayParked, Fate::StayParked, Fate::StayParked)
        );
        assert_eq!(d.notice, None);
        // Jitter spreads it; the disable time caps it.
        health.probe_attempts = 7;
        let early = decide(
            &health,
            &BreakerPolicy::default(),
            &Outcome::ProbeFailed(f.clone()),
            now,
            0.0,
        );
        assert_eq!(
            early.write,
            Some(Write::RecordProbeFailure {
                failure: f.clone(),
                probe_at: now + Duration::seconds(48),
            })
        );
        let disable_at = t0() + Duration::days(5);
        let late = now + Duration::days(5) - Duration::hours(1) - Duration::seconds(10);
        let capped = decide_now(&health, Outcome::ProbeFailed(f.clone()), late);
        assert_eq!(
            capped.write,
            Some(Write::RecordProbeFailure {
                failure: f,
                probe_at: disable_at,
            })
        );
    }

    #[test]
    fn a_probe_due_before_the_disable_time_is_sent() {
        let health = failing(40, t0(), BreakerState::Open);
        let due = t0() + Duration::days(4);
        let d = decide_now(&health, Outcome::ProbeDue { due }, due);
        assert_eq!(d, Decision::only(Fate::Probe));
        // No streak recorded: never disabled.
        let unknown = Health {
            breaker: BreakerState::Open,
            ..Health::default()
        };
        let d = decide_now(&unknown, Outcome::ProbeDue { due }, due);
        assert_eq!(d, Decision::only(Fate::Probe));
    }

    #[test]
    fn reaching_disable_after_disables_the_subscription() {
        let health = failing(400, t0(), BreakerState::Open);
        let due = t0() + Duration::days(5);
        let d = decide_now(&health, Outcome::ProbeDue { due }, due);
        let disable = Write::Disable {
            reason: DISABLED_REASON,
        };
        assert_eq!(d.write, Some(disable.clone()));
        assert_eq!(disable.condition(), Condition::ActiveAwaitingProbe);
        assert_eq!(
            (d.applied, d.lost, d.failed),
            (Fate::Done, Fate::Done, Fate::Done)
        );
        assert_eq!(
            d.notice,
            Some(Notice {
                event_type: OperationalEventType::EndpointDisabled,
                about: Subject::Stored,
                parked: ParkedCount::Counted,
            })
        );
    }

    #[test]
    fn a_disable_due_after_the_run_waits_for_its_time_without_a_probe() {
        let health = failing(400, t0(), BreakerState::Open);
        let due = t0() + Duration::days(5);
        let now = due - Duration::seconds(20);
        let d = decide_now(&health, Outcome::ProbeDue { due }, now);
        assert_eq!(d, Decision::only(Fate::Wait));
    }

    #[test]
    fn nothing_to_probe_with_closes_the_breaker_quietly() {
        let health = failing(40, t0(), BreakerState::HalfOpen);
        let d = decide_now(&health, Outcome::NothingToProbe, t0() + Duration::hours(2));
        assert_eq!(d, Decision::write(Write::Close, Fate::Done));
        assert_eq!(d.notice, None, "no endpoint.recovered without a delivery");
    }

    #[test]
    fn a_notice_reports_the_subscription_it_names_with_its_parked_count() {
        let keyring = Keyring::new([(1, [7u8; 32].as_slice())]).unwrap();
        let new = NewSubscription {
            url: "https://example.com/hook".into(),
            description: None,
            filters: Filters::default(),
        };
        let mut held = Subscription::create("acme", new, t0(), &keyring).unwrap().0;
        held.health = failing(7, t0(), BreakerState::HalfOpen);
        let mut stored = held.clone();
        stored.health = Health::default();
        let recovered = Notice {
            event_type: OperationalEventType::EndpointRecovered,
            about: Subject::Held,
            parked: ParkedCount::Counted,
        };
        let event = recovered.event(&held, &stored, t0(), Some(3));
        assert_eq!(
            event,
            OperationalEvent::about(OperationalEventType::EndpointRecovered, &held, t0())
                .with_parked(Some(3))
        );
        let failing_notice = Notice {
            event_type: OperationalEventType::EndpointFailing,
            about: Subject::Stored,
            parked: ParkedCount::Zero,
        };
        let event = failing_notice.event(&held, &stored, t0(), None);
        assert_eq!(event.consecutive_failures, 0);
        assert_eq!(event.parked_events, Some(0));
    }
}
