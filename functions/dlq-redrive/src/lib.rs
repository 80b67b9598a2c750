//! Moves chosen dead-lettered deliveries back to the DeliveryQueue.
//!
//! Invoked on demand (`aws lambda invoke`) with a JSON object; every field
//! is optional and any other field is an error:
//!
//! ```json
//! {"company_id": "acme", "subscription_id": "sub_...", "max_messages": 1000, "dry_run": false}
//! ```
//!
//! - `company_id`, `subscription_id`: only deliveries with these values
//!   (ANDed; a filter left out matches anything).
//! - `max_messages` (default 1000, 1 to 10000): at most this many matching
//!   deliveries are taken in one run.
//! - `dry_run` (default false): count what would be moved, move nothing.
//!
//! A run makes one pass over the DeadLetterQueue (see [`redrive`]). Each
//! matching delivery is re-sent to the DeliveryQueue as a first attempt
//! (attempt 1, due now, same event id, payload and history) and
//! deleted from the DLQ only after SQS accepted the send. Everything else
//! stays in the DLQ unchanged and is visible again when the run ends. The
//! result counts what happened ([`RedriveReport`]):
//!
//! ```json
//! {"examined": 12, "matched": 5, "moved": 5, "skipped": 6, "malformed": 1,
//!  "failed": 0, "not_deleted": 0, "dry_run": false, "stopped": "queue_empty"}
//! ```
//!
//! `stopped` is `queue_empty` (the whole queue was examined),
//! `max_messages`, `time_limit` (the invocation deadline was near; run it
//! again), `examine_limit`, or `receive_failed` (with an `error` field). An
//! invalid request fails the invocation with error type `InvalidRequest`.

pub mod batch;
pub mod config;
pub mod handler;
pub mod redrive;
pub mod request;

pub use config::RedriveConfig;
pub use redrive::{RedriveReport, Redriver, Stopped};
pub use request::RedriveRequest;
pub use shared::operator_request::RequestError;
