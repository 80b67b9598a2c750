//! The test kit: what the tests and benchmarks share.
//!
//! - [`emulator`]: AWS clients pointed at the local AWS emulator (moto
//!   server, started by `infra/with-emulator.sh`), and queue helpers.
//! - [`stack`]: `template.yaml` deployed in the emulator for one test, and
//!   each function's deployed environment.
//! - [`api`]: API Gateway (HTTP API) requests as the JWT authorizer hands
//!   them to the function.
//! - [`runtime_api`]: a Lambda Runtime API on loopback, to run a built
//!   function binary the way Lambda does.
//! - [`aws_proxy`] and [`metering`]: a proxy in front of the emulator that
//!   counts calls, injects faults and meters billing units.
//! - [`iam`]: each function's calls, recorded through that proxy, held to
//!   its IAM policy in `template.yaml` (which the emulator does not
//!   enforce).
//! - [`alarms`]: the template's alarms on the service's own metrics,
//!   evaluated against the EMF lines a function wrote.
//! - [`standard_webhooks`]: the `standardwebhooks` PyPI package as an
//!   independent verifier of signatures.
//! - [`receiver`]: the webhook receiver of the local infrastructure
//!   (`local_infra::receiver`), re-exported: HTTP or HTTPS on loopback,
//!   scripted replies, drops, hangs, signature checks, and what it
//!   received.
//! - [`http_server`]: the local infrastructure's one accept loop,
//!   re-exported.
//!
//! Sample events live in `tests/events/`.

pub mod alarms;
pub mod api;
pub mod aws_proxy;
pub mod cpu;
pub mod emulator;
pub mod fake_endpoints;
pub mod fake_sqs;
pub mod iam;
pub mod metering;
pub mod runtime_api;
pub mod stack;
pub mod standard_webhooks;

pub use local_infra::{http_server, receiver};

/// Path of a sample event in `tests/events/`.
pub fn event_path(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("events")
        .join(name)
}
