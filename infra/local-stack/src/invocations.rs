//! The Lambda invocations the runners make, with their durations: what
//! Lambda bills (requests, and duration rounded up to the millisecond at the
//! function's memory size). The cost benchmark reads them.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

/// Invocations of one function.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct InvocationStats {
    /// Invocations.
    pub count: u64,
    /// Sum of the durations, each rounded up to a millisecond as Lambda
    /// bills them.
    pub billed_ms: u64,
    /// Sum of the durations as measured, milliseconds.
    pub measured_ms: f64,
    /// The longest invocation, milliseconds.
    pub longest_ms: f64,
    /// Bytes of the EMF metric lines the invocations write (the handlers'
    /// `handle` emits them; the runners call `process` and count them).
    pub metric_log_bytes: u64,
}

/// Invocations by function (logical id), shared by the runners.
#[derive(Debug, Default)]
pub struct Invocations {
    by_function: Mutex<BTreeMap<String, InvocationStats>>,
}

impl Invocations {
    /// Adds one invocation of `function` that took `elapsed` and would
    /// have written `metrics` as its EMF line (none when it is empty).
    pub fn record(&self, function: &str, elapsed: Duration, metrics: &shared::metrics::Metrics) {
        let mut all = self.by_function.lock().unwrap_or_else(|p| p.into_inner());
        let stats = all.entry(function.to_owned()).or_default();
        stats.count += 1;
        stats.billed_ms += elapsed.as_nanos().div_ceil(1_000_000).max(1) as u64;
        stats.measured_ms += elapsed.as_secs_f64() * 1000.0;
        stats.longest_ms = stats.longest_ms.max(elapsed.as_secs_f64() * 1000.0);
        if let Some(doc) = metrics.document(function) {
            stats.metric_log_bytes += doc.to_string().len() as u64 + 1;
        }
    }

    /// What was recorded so far, by function.
    pub fn snapshot(&self) -> BTreeMap<String, InvocationStats> {
        self.by_function
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Forgets everything recorded.
    pub fn reset(&self) {
        self.by_function
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_billed_per_started_millisecond() {
        let inv = Invocations::default();
        let empty = shared::metrics::Metrics::new();
        let mut counted = shared::metrics::Metrics::new();
        counted.count("Delivered", 1);
        inv.record("F", Duration::from_micros(200), &empty);
        inv.record("F", Duration::from_micros(1001), &empty);
        inv.record("G", Duration::from_millis(7), &counted);
        let s = inv.snapshot();
        assert_eq!((s["F"].count, s["F"].billed_ms), (2, 1 + 2));
        assert_eq!((s["G"].count, s["G"].billed_ms), (1, 7));
        // An invocation with nothing to count writes no EMF line.
        assert_eq!(s["F"].metric_log_bytes, 0);
        assert!(s["G"].metric_log_bytes > 0);
        inv.reset();
        assert!(inv.snapshot().is_empty());
    }
}
