//! The shape of the throughput benchmark's batches and what one run of a
//! handler over them measured, shared by the job and platform rows.

use std::time::Duration;

/// Companies the records spread over.
pub(crate) const COMPANIES: usize = 100;
/// `events` or `jobs` subscriptions of each company, all matching.
pub(crate) const SUBSCRIPTIONS_PER_COMPANY: usize = 10;
/// Records in a batch.
pub(crate) const RECORDS: usize = 1000;
/// Warm runs; their median is reported.
pub(crate) const WARM_RUNS: usize = 5;

/// One run of a handler over a batch.
pub(crate) struct Run {
    pub(crate) records: usize,
    pub(crate) wall: Duration,
    pub(crate) cpu: Duration,
    pub(crate) queries: usize,
    pub(crate) batches: usize,
    pub(crate) enqueued: usize,
}

impl Run {
    /// CPU per queued message, AWS requests (Query and SendMessageBatch)
    /// per message, and the CPU per message over `floor`'s (the SDK's own
    /// `SendMessageBatch` cost per message, measured in the same run).
    pub(crate) fn per_message(&self, label: &str, floor: &Run) -> String {
        format!(
            "| {label} | {:.2} | {:.4} | {:.2} |",
            self.cpu_per_message_us(),
            (self.queries + self.batches) as f64 / self.enqueued.max(1) as f64,
            self.cpu_per_message_us() / floor.cpu_per_message_us(),
        )
    }

    /// CPU µs per queued message.
    pub(crate) fn cpu_per_message_us(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.enqueued.max(1) as f64
    }

    pub(crate) fn row(&self, label: &str) -> String {
        format!(
            "| {label} | {:.0} | {:.1} | {:.1} | {} | {} | {} |",
            self.records as f64 / self.wall.as_secs_f64(),
            self.wall.as_secs_f64() * 1000.0,
            self.cpu.as_secs_f64() * 1e6 / self.records as f64,
            self.queries,
            self.batches,
            self.enqueued,
        )
    }
}

/// The run of median CPU.
pub(crate) fn median(mut runs: Vec<Run>) -> Run {
    runs.sort_by_key(|r| r.cpu);
    runs.swap_remove(runs.len() / 2)
}
