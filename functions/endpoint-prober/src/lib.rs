//! The endpoint prober, run by the template's schedule every minute.
//!
//! It reads only the sparse `ProbeIndex` of the subscriptions table (the
//! subscriptions with an open breaker or parked events to drain), never
//! the whole table, and does three things:
//! - **disable**: an endpoint failing for `DISABLE_AFTER_SECONDS` gets
//!   status `disabled` and an `endpoint.disabled` operational event; its
//!   parked events stay until enabled or expired;
//! - **probe**: for a due open breaker it half-opens the breaker and sends
//!   the oldest parked event to the DeliveryQueue marked as a probe; the
//!   delivery function closes the breaker on success or schedules the next
//!   probe on the retry schedule's backoff. The prober never signs or
//!   decrypts anything;
//! - **drain**: after recovery (or `enable`) it sends parked events back to
//!   the DeliveryQueue oldest first, send before delete, at most
//!   `DRAIN_RATE_PER_SECOND` per subscription: one run schedules up to a
//!   window's worth with SQS delays of `i / rate` seconds, and claims the
//!   subscription until that window ends, so runs never overlap on it.
//!
//! Every claim is a conditional write on `next_probe_at`, so two runs that
//! overlap never probe or drain the same subscription twice.

pub mod config;
pub mod prober;

pub use config::ProberConfig;
pub use prober::{Prober, ProberReport};
