//! Platform events ingestion: `PlatformEventsQueue` in (CloudEvents 1.0,
//! structured JSON, published by the platform's services), one SQS
//! delivery message per (event, matching `events` subscription) out.
//!
//! [`PlatformIngest::handle`] validates each record
//! ([`shared::domain::cloud_event`]); a refused event goes to
//! `PlatformEventsDeadLetterQueue` with its reason and is acknowledged,
//! never blocking the rest of the batch. It returns `batchItemFailures`
//! naming the records whose messages SQS did not all accept (or that it
//! did not take because its deadline was near), so SQS redelivers only
//! those.

pub mod config;
pub mod handler;

pub use config::PlatformIngestConfig;
pub use handler::{BatchStats, PlatformIngest};
