//! Delivery policy: the retry schedule and the circuit breaker, and parked
//! events' way back to the DeliveryQueue.

pub mod breaker;
pub mod requeue;
pub mod retry;
