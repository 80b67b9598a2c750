//! Invocation deadlines: handlers that walk a batch or a queue stop taking
//! work when less than a safety margin is left, and report where to resume.

use std::time::{Duration, Instant, SystemTime};

/// The local [`Instant`] of a Lambda invocation deadline (wall-clock
/// `SystemTime`, as `lambda_runtime`'s context gives it).
pub fn instant_of(deadline: SystemTime) -> Instant {
    Instant::now()
        + deadline
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO)
}

/// When an invocation must be finished, and how much time before it work
/// stops being taken.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    at: Option<Instant>,
    margin: Duration,
}

impl Deadline {
    /// No deadline (local tools, tests that do not test it).
    pub fn none() -> Self {
        Self {
            at: None,
            margin: Duration::ZERO,
        }
    }

    /// A deadline at `at` (none when `None`) with `margin` kept free.
    pub fn new(at: Option<Instant>, margin: Duration) -> Self {
        Self { at, margin }
    }

    /// Time left before the deadline, if there is one.
    pub fn remaining(&self) -> Option<Duration> {
        self.at
            .map(|at| at.saturating_duration_since(Instant::now()))
    }

    /// Whether less than the margin is left.
    pub fn is_near(&self) -> bool {
        self.remaining().is_some_and(|left| left <= self.margin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_once_less_than_the_margin_is_left() {
        let margin = Duration::from_secs(5);
        assert!(!Deadline::none().is_near());
        assert!(!Deadline::new(Some(Instant::now() + Duration::from_secs(60)), margin).is_near());
        assert!(Deadline::new(Some(Instant::now() + Duration::from_secs(4)), margin).is_near());
        assert!(Deadline::new(Some(Instant::now()), margin).is_near());
        assert_eq!(Deadline::none().remaining(), None);
    }

    #[test]
    fn a_past_lambda_deadline_is_now() {
        let past = SystemTime::now() - Duration::from_secs(3);
        assert!(instant_of(past) <= Instant::now());
        let later = SystemTime::now() + Duration::from_secs(30);
        let left = instant_of(later).saturating_duration_since(Instant::now());
        assert!(left > Duration::from_secs(29) && left <= Duration::from_secs(30));
    }
}
