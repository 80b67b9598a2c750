//! Common crate of the job-state webhooks service.
//!
//! Domain rules live here once: the job-type catalogue and states, webhook
//! subscriptions and their filters, the DynamoDB subscription store, the
//! target-URL guard, and configuration read from the environment.

pub mod allow_list;
pub mod config;
pub mod cursor;
pub mod deliveries;
pub mod filters;
pub mod ip_guard;
pub mod job_event;
pub mod jobs;
pub mod message;
pub mod metrics;
pub mod retry;
pub mod secret;
pub mod signing;
pub mod store;
pub mod subscription;
pub mod telemetry;
pub mod ttl_cache;
pub mod url_guard;
pub mod validation;
