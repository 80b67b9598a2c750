//! What the service needs around it on one machine, without the
//! functions: the local stand-ins for AWS, the data platform and a
//! customer, shared by `make run`, the tests and the benchmarks.
//!
//! - [`cloudformation`]: `template.yaml` deployed into the local AWS
//!   emulator (moto server) by CloudFormation and read back: physical
//!   names, each function's resolved environment, event source mappings,
//!   schedules, public routes; custom resources answered by the handlers
//!   the caller supplies. [`identity`] signs each function's calls with its
//!   own access key, and [`filter`] evaluates a mapping's filter criteria.
//! - [`gateway`]: API Gateway (HTTP API) on loopback in front of any
//!   `lambda_http` handler, with a JWT authorizer whose tokens [`jwt`]
//!   issues, and the console's one-time local sign-in ([`dev_sign_in`]).
//! - [`stream`]: the jobs table's DynamoDB stream read with the Streams API;
//!   [`queue`]: SQS messages as the Lambda event of a queue mapping.
//! - [`simulate`]: jobs written to the jobs table the way the data
//!   platform does (creation, then one update per state change,
//!   reproducible from a seed).
//! - [`publish`]: platform events sent to the ingress queue as CloudEvents,
//!   the way a platform service publishes them.
//! - [`receiver`]: a webhook endpoint on loopback that verifies every
//!   delivery's Standard Webhooks signature and prints one line per event.
//! - [`vendors`]: Slack's, PagerDuty's and Teams' documented rules for
//!   the bodies the built-in formats send, and fakes of each vendor on the
//!   receiver (PagerDuty's with its incidents).

pub mod cloudformation;
pub mod dev_sign_in;
pub mod filter;
pub mod gateway;
pub mod http_server;
pub mod identity;
pub mod jwt;
pub mod publish;
pub mod queue;
pub mod receiver;
pub mod simulate;
pub mod stream;
pub mod vendors;
