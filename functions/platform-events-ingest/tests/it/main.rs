//! Integration tests of the platform events ingestion, one binary: the
//! handler against the local AWS emulator, with CloudEvents published to
//! the deployed PlatformEventsQueue and read back as Lambda's SQS event.

mod common;
mod ingest;
