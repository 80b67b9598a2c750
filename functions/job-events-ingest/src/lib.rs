//! Job-state ingestion: the jobs table's DynamoDB stream in, one SQS
//! delivery message per (transition, matching subscription) out.
//!
//! [`Ingest::handle`] takes the raw stream event, so a record that can't be
//! turned into messages (unparseable, or too large) is set aside on the
//! poison queue ([`poison`]) instead of failing the whole batch, and
//! returns `batchItemFailures` naming the earliest record whose messages
//! were not all accepted by SQS (or the first it did not take because its
//! deadline was near); Lambda resumes from it.
//!
//! [`replay`] is the second binary, `ingest-replay`: it re-reads the stream
//! records that `IngestFailureQueue` entries point to and runs them through
//! the same handler.

pub mod config;
pub mod handler;
pub mod poison;
pub mod replay;

pub use config::IngestConfig;
pub use handler::Ingest;
