//! Signed webhook delivery from the DeliveryQueue and RetryQueue.
//!
//! Each message gets one attempt per invocation: a Standard Webhooks signed
//! POST to the subscription's URL. A 2xx is done; `410 Gone` archives the
//! subscription; anything else goes back as a new message on the RetryQueue
//! with the next attempt number and `not_before`, until the schedule runs
//! out and the message, with its attempt history, moves to the
//! DeadLetterQueue. Every attempt is written to the attempt log.

pub mod attempt;
pub mod cache;
pub mod client;
pub mod config;
pub mod handler;
pub mod queues;

pub use config::DeliveryConfig;
pub use handler::{Delivery, Tally};
