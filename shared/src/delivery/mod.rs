//! Delivery policy: the queue message contract, the retry schedule and the
//! circuit breaker, and parked events' way back to the DeliveryQueue.

pub mod breaker;
pub mod message;
pub mod requeue;
pub mod retry;
