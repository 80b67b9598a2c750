//! The service on one machine, without Docker or an AWS account.
//!
//! Reads `template.yaml` so local wiring cannot drift from production:
//! tables are created in the local AWS emulator with the template's key
//! schemas, and the API is served on loopback by a small gateway that turns
//! HTTP requests into API Gateway (HTTP API) events for the very handler
//! that runs in Lambda.

pub mod gateway;
pub mod jwt;
pub mod provision;
pub mod stream;
pub mod template;
pub mod up;
