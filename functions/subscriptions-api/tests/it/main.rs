//! Integration tests of the subscriptions API, one binary: every route
//! against the local AWS emulator, the OpenAPI document held to the routes,
//! and the built binary under a Lambda Runtime API.

mod api;
mod attempt_packs;
mod common;
mod deliveries;
mod event_subscriptions;
mod formats;
mod headers;
mod lambda_smoke;
mod openapi;
mod quotas;
mod signature_schemes;
