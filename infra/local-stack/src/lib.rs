//! The service on one machine, without Docker or an AWS account.
//!
//! `template.yaml` is deployed into the local AWS emulator by
//! CloudFormation ([`cloudformation`]), so local resources cannot drift
//! from production: the handlers that run in Lambda run in-process with the
//! environment CloudFormation resolved for each function, fed by runners
//! that follow the deployed event source mappings ([`stream_runner`],
//! [`queue_runner`]), and the API is served on loopback by a small gateway
//! that turns HTTP requests into API Gateway (HTTP API) events.
//!
//! For demos and end-to-end tests, [`simulate`] writes jobs to the jobs
//! table the way the data platform does (creation, then one update per
//! state change, reproducible from a seed), and [`demo_receiver`] is a
//! loopback webhook endpoint that verifies every delivery's Standard
//! Webhooks signature and prints one line per event.

pub mod checkpoint;
pub mod cloudformation;
pub mod demo_receiver;
pub mod dev_sign_in;
pub mod filter;
pub mod gateway;
pub mod identity;
pub mod invocations;
pub mod jwt;
pub mod pipeline;
pub mod queue_runner;
pub mod redrive;
pub mod replay_ingest;
pub mod secret_keys;
pub mod simulate;
pub mod stream;
pub mod stream_runner;
pub mod up;
