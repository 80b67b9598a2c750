//! Delivery policy: the queue message contract, the retry schedule and the
//! circuit breaker.

pub mod breaker;
pub mod message;
pub mod retry;
