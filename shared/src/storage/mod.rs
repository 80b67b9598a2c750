//! The DynamoDB tables: subscriptions, the attempt log and parked events.

pub mod deliveries;
pub mod parked;
pub mod subscriptions;
