//! Delivery policy: the queue message contract and the retry schedule.

pub mod message;
pub mod retry;
