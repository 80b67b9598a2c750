//! The service on one machine, without Docker or an AWS account.
//!
//! Reads `template.yaml` so local wiring cannot drift from production:
//! tables are created in the local AWS emulator with the template's key
//! schemas, and the API is served on loopback by a small gateway that turns
//! HTTP requests into API Gateway (HTTP API) events for the very handler
//! that runs in Lambda.
//!
//! For demos and end-to-end tests, [`simulate`] writes jobs to the jobs
//! table the way the data platform does (creation, then one update per
//! state change, reproducible from a seed), and [`demo_receiver`] is a
//! loopback webhook endpoint that verifies every delivery's Standard
//! Webhooks signature and prints one line per event.

pub mod demo_receiver;
pub mod gateway;
pub mod invocations;
pub mod jwt;
pub mod pipeline;
pub mod provision;
pub mod queue_runner;
pub mod redrive;
pub mod simulate;
pub mod stack;
pub mod stream;
pub mod stream_runner;
pub mod template;
pub mod up;
pub mod wiring;
