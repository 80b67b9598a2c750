//! Webhook subscription management behind API Gateway (HTTP API).
//!
//! [`App::handle`] turns one API Gateway request into one response and never
//! fails: client mistakes become JSON 4xx errors, store failures a logged
//! 5xx. `main.rs` runs it under `lambda_http`; tests and the local stack call
//! the same function.

pub mod app;
pub mod auth;
pub mod body;
pub mod config;
pub mod console;
pub mod delivery_log;
pub mod error;
pub mod failed_events;
pub mod preview;
pub mod query;
pub mod routes;
pub mod test_event;
pub mod views;
pub mod webhooks;

pub use app::App;
pub use config::ApiConfig;
