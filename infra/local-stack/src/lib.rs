//! The service on one machine, without Docker or an AWS account: the only
//! crate over all the functions.
//!
//! `template.yaml` is deployed into the local AWS emulator by
//! CloudFormation (`local_infra::cloudformation`), so local resources
//! cannot drift from production. [`pipeline`] builds the handlers that run
//! in Lambda in-process, with the environment CloudFormation resolved for
//! each function, fed by runners that follow the deployed event source
//! mappings ([`stream_runner`], [`queue_runner`]); [`up`] is `make run`:
//! the pipeline, the API on loopback (`local_infra::gateway`), the demo
//! receiver and a short demo. [`redrive`], [`replay_ingest`] and
//! [`secret_keys`] run the operator functions against the running stack.

pub mod checkpoint;
pub mod invocations;
pub mod pipeline;
pub mod queue_runner;
pub mod redrive;
pub mod replay_ingest;
pub mod secret_keys;
pub mod stream_runner;
pub mod up;
