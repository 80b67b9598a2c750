//! The DynamoDB tables: subscriptions and the attempt log.

pub mod deliveries;
pub mod subscriptions;
