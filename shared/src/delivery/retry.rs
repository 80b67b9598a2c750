//! The delivery retry schedule.
//!
//! After the first attempt fails, attempt `n + 1` waits `delays[n - 1]`
//! with ±20 % jitter; `Retry-After` from a 429 or 503 is honoured within
//! [delay, 2 × delay]. The default follows Svix: 5 s, 5 min, 30 min, 2 h,
//! 5 h, 10 h, 10 h — eight attempts over about 27.5 hours.

use std::time::Duration;

/// Jitter applied to every delay, as a fraction.
pub const JITTER: f64 = 0.2;

/// The default schedule, as accepted by [`RetrySchedule::parse`].
pub const DEFAULT_SCHEDULE: &str = "5s,5m,30m,2h,5h,10h,10h";

/// Delays between delivery attempts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule {
    delays: Vec<Duration>,
}

/// The schedule text could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid retry schedule entry {entry:?}: use numbers with ms, s, m or h, comma-separated")]
pub struct ScheduleError {
    /// The offending entry.
    pub entry: String,
}

impl Default for RetrySchedule {
    fn default() -> Self {
        Self::parse(DEFAULT_SCHEDULE).expect("the default schedule parses")
    }
}

fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().ok()?;
    match unit {
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" => Some(Duration::from_secs(n * 60)),
        "h" => Some(Duration::from_secs(n * 3600)),
        _ => None,
    }
}

impl RetrySchedule {
    /// `RETRY_SCHEDULE` from `vars`, [`DEFAULT_SCHEDULE`] when unset.
    pub fn from_vars(vars: &crate::config::Vars) -> Result<Self, crate::config::ConfigError> {
        let text = vars
            .optional("RETRY_SCHEDULE")
            .unwrap_or_else(|| DEFAULT_SCHEDULE.to_owned());
        Self::parse(&text)
            .map_err(|e| crate::config::ConfigError::new("RETRY_SCHEDULE", e.to_string()))
    }

    /// Parses `"5s,5m,30m,2h"`; an empty text means no retries.
    pub fn parse(text: &str) -> Result<Self, ScheduleError> {
        let delays = text
            .split(',')
            .filter(|e| !e.trim().is_empty())
            .map(|e| {
                parse_duration(e).ok_or_else(|| ScheduleError {
                    entry: e.trim().to_owned(),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { delays })
    }

    /// Total attempts: the first one plus one per delay.
    pub fn max_attempts(&self) -> u32 {
        u32::try_from(self.delays.len()).unwrap_or(u32::MAX - 1) + 1
    }

    /// The base delay before attempt `failed + 1`, or `None` when attempt
    /// `failed` was the last.
    pub fn base_delay(&self, failed: u32) -> Option<Duration> {
        let index = usize::try_from(failed.checked_sub(1)?).ok()?;
        self.delays.get(index).copied()
    }

    /// The delay before the attempt after `failed`: the base delay with
    /// jitter from `unit` (uniform in [0, 1)), or the receiver's
    /// `retry_after` clamped to [base, 2 × base]. `None` when no attempt is
    /// left.
    pub fn next_delay(
        &self,
        failed: u32,
        retry_after: Option<Duration>,
        unit: f64,
    ) -> Option<Duration> {
        let base = self.base_delay(failed)?;
        if let Some(wanted) = retry_after {
            return Some(wanted.clamp(base, base * 2));
        }
        let factor = 1.0 - JITTER + 2.0 * JITTER * unit.clamp(0.0, 1.0);
        Some(base.mul_f64(factor))
    }

    /// [`RetrySchedule::next_delay`] with a random jitter.
    pub fn next_delay_random(
        &self,
        failed: u32,
        retry_after: Option<Duration>,
    ) -> Option<Duration> {
        self.next_delay(failed, retry_after, fastrand::f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_schedule_is_eight_attempts_over_about_27_hours() {
        let s = RetrySchedule::default();
        assert_eq!(s.max_attempts(), 8);
        let total: Duration = (1..8).filter_map(|n| s.base_delay(n)).sum();
        assert_eq!(
            total,
            Duration::from_secs(5 + 300 + 1800 + 7200 + 18000 + 36000 + 36000)
        );
        assert_eq!(s.base_delay(1), Some(Duration::from_secs(5)));
        assert_eq!(s.base_delay(7), Some(Duration::from_secs(36000)));
        assert_eq!(
            s.base_delay(8),
            None,
            "after the eighth attempt: dead letter"
        );
        assert_eq!(s.base_delay(0), None);
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        let s = RetrySchedule::default();
        let five_min = Duration::from_secs(300);
        assert_eq!(s.next_delay(2, None, 0.0), Some(five_min.mul_f64(0.8)));
        assert_eq!(s.next_delay(2, None, 0.5), Some(five_min));
        assert!(s.next_delay(2, None, 0.999_999).unwrap() < five_min.mul_f64(1.2));
        for _ in 0..100 {
            let d = s.next_delay_random(2, None).unwrap();
            assert!(
                d >= five_min.mul_f64(0.8) && d < five_min.mul_f64(1.2),
                "{d:?}"
            );
        }
    }

    #[test]
    fn retry_after_is_honoured_between_the_delay_and_twice_it() {
        let s = RetrySchedule::default();
        let base = Duration::from_secs(300);
        let after = |secs| s.next_delay(2, Some(Duration::from_secs(secs)), 0.5);
        assert_eq!(after(400), Some(Duration::from_secs(400)));
        assert_eq!(after(10), Some(base));
        assert_eq!(after(86_400), Some(base * 2));
    }

    #[test]
    fn custom_schedules_parse_and_bad_ones_are_refused() {
        let s = RetrySchedule::parse("0s, 250ms,1m").unwrap();
        assert_eq!(s.max_attempts(), 4);
        assert_eq!(s.base_delay(2), Some(Duration::from_millis(250)));
        assert_eq!(RetrySchedule::parse("").unwrap().max_attempts(), 1);
        for bad in ["5", "5d", "s", "-1s", "1.5s"] {
            assert!(RetrySchedule::parse(bad).is_err(), "{bad}");
        }
    }
}
