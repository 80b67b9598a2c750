//! The fake SQS endpoint of the ingestion benchmark, now part of the fake
//! AWS endpoint in [`crate::fake_endpoints`], which answers DynamoDB too.

pub use crate::fake_endpoints::{Counts, FakeAws as FakeSqs};
