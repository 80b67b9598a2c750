//! The end-to-end tests, one binary: the whole service on one machine
//! (template.yaml deployed by CloudFormation into the local AWS emulator,
//! every function's handler, the runners, real receivers on loopback), the
//! deployed stack read back, each function's calls held to its IAM grants,
//! the local API gateway, and the runners polling and batching as
//! Lambda's event source mappings do.

mod body_formats;
mod deployed_stack;
mod end_to_end;
mod failing_endpoints;
mod local_gateway;
mod permissions;
mod runners;
mod secrets_at_rest;
mod template_routes;
