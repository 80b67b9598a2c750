//! Common crate of the job-state webhooks service: every crate of the
//! workspace depends on it, and it depends on none of them.
//!
//! Domain rules live here once, grouped by concern (imports point from
//! `delivery` and `storage` to `domain`, never back):
//! - [`domain`]: subscriptions and their filters, endpoint health, the
//!   job-type catalogue, the events built from job transitions and the
//!   delivery message (the queue contract);
//! - [`delivery`]: the retry schedule, the circuit breaker (its policy,
//!   and its decision: a pure function of health, policy and an outcome
//!   that says what to write and what to publish) and parked events' way
//!   back to the DeliveryQueue;
//! - [`storage`]: the DynamoDB tables (subscriptions, attempt log, parked
//!   events, the keyring) on one table type; they execute the writes
//!   they are handed;
//! - [`queue`]: the one writer of SQS messages (the DeliveryQueue and the
//!   others): groups, delays, batches and partial failures;
//! - [`target_guard`]: where deliveries may go (SSRF guard, allow-list);
//! - [`signing`]: secrets and Standard Webhooks signatures;
//! - [`catalogue`]: the delivered event types and their JSON Schemas;
//! - [`operational`]: the operational events published to EventBridge;
//! - [`operator_request`]: invalid requests of the operator functions;
//! - [`stream_records`]: the jobs stream's records as the Lambda event
//!   ingest receives;
//! - configuration, cursors, metrics, telemetry and small utilities
//!   (e.g. [`text`], cutting text to a size limit).

pub mod catalogue;
pub mod config;
pub mod cursor;
pub mod deadline;
pub mod delivery;
pub mod domain;
pub mod format;
pub mod metrics;
pub mod operational;
pub mod operator_request;
pub mod queue;
pub mod signing;
pub mod storage;
pub mod stream_records;
pub mod target_guard;
pub mod telemetry;
pub mod text;
pub mod ttl_cache;
pub mod validation;
