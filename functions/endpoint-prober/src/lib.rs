//! The endpoint prober, run by the template's schedule every minute.
//!
//! It reads only the sparse `ProbeIndex` of the subscriptions table (the
//! subscriptions with an open breaker or parked events to drain), never
//! the whole table, and does three things:
//! - **disable**: an endpoint failing for `DISABLE_AFTER_SECONDS` gets
//!   status `disabled` and an `endpoint.disabled` operational event; its
//!   parked events stay until enabled or expired;
//! - **probe**: for an open breaker due before the next run it half-opens
//!   the breaker and sends the oldest parked event (one key-range read) to
//!   the DeliveryQueue marked as a probe, delayed until the probe is due;
//!   the delivery function closes the breaker on success or schedules the
//!   next probe on the retry schedule capped at `PROBE_INTERVAL_MAX_SECONDS`
//!   (default 60, ±20 % jitter). The prober never signs or decrypts
//!   anything;
//! - **drain**: after recovery (or `enable`) it sends parked events back to
//!   the DeliveryQueue oldest first, page by page, deleting each SQS
//!   batch's events once SQS took them, at most `DRAIN_RATE_PER_SECOND`
//!   per subscription and each job's events a second apart in the order of
//!   its states: one run schedules up to a window's worth (and at most
//!   [`prober::DRAIN_STEP_MAX_BYTES`]) with SQS delays, and claims the
//!   subscription until that window and its budget have passed, so runs
//!   never overlap on it and a job's states never do across steps.
//!
//! Each subscription gets at most `ENDPOINT_BUDGET_SECONDS` of a run; a run
//! stops taking subscriptions near its deadline. Every claim is a
//! conditional write on `next_probe_at`, so two runs that overlap never
//! probe or drain the same subscription twice.

pub mod config;
pub mod prober;

pub use config::ProberConfig;
pub use prober::{Prober, ProberReport};
