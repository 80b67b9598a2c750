//! `template.yaml` deployed into the local AWS emulator, and read back.
//!
//! [`transform`] runs AWS's SAM translator over the template (moto's
//! CloudFormation does not run transforms), [`deploy`] creates or updates
//! the stack with CloudFormation and waits for it ([`custom_resources`]
//! answered by their functions' handlers), and [`DeployedStack`]
//! reads what CloudFormation made: physical names, outputs, each function's
//! resolved environment, the event source mappings and schedules. What the
//! emulator does not create or honour is listed in [`gaps`].

pub mod custom_resources;
pub mod deploy;
pub mod deployed;
pub mod gaps;
pub mod transform;

pub use deploy::{DeployError, deploy};
pub use deployed::{
    DeployedStack, EventSourceMapping, Function, PublicRoute, Schedule, StackReadError,
};
pub use transform::{TransformError, transform};

/// Logical ids of the template that local code names: the functions
/// whose handlers run in-process, and the resources the demo, the
/// simulator and the tests use.
pub mod ids {
    /// The subscriptions API function.
    pub const API_FUNCTION: &str = "SubscriptionsApiFunction";
    /// The ingest function (jobs stream -> DeliveryQueue).
    pub const INGEST_FUNCTION: &str = "JobEventsIngestFunction";
    /// The delivery function (DeliveryQueue, RetryQueue -> receivers).
    pub const DELIVERY_FUNCTION: &str = "WebhookDeliveryFunction";
    /// The dead-letter redrive function.
    pub const REDRIVE_FUNCTION: &str = "DlqRedriveFunction";
    /// The endpoint prober (scheduled).
    pub const PROBER_FUNCTION: &str = "EndpointProberFunction";
    /// The replay of ingest failures (operator tool).
    pub const INGEST_REPLAY_FUNCTION: &str = "IngestReplayFunction";
    /// The signing-secret key maintenance function (operator tool).
    pub const SECRET_KEYS_FUNCTION: &str = "SecretKeysFunction";
    /// The keyring of data keys that seal signing secrets.
    pub const KEYRING_TABLE: &str = "KeyringTable";
    /// The KMS key that wraps the keyring's data keys.
    pub const SIGNING_SECRETS_KEY: &str = "SigningSecretsKey";
    /// Parked and failed events.
    pub const PARKED_EVENTS_TABLE: &str = "ParkedEventsTable";
    /// The operational events bus.
    pub const OPERATIONAL_EVENT_BUS: &str = "OperationalEventBus";
    /// The subscriptions table.
    pub const SUBSCRIPTIONS_TABLE: &str = "SubscriptionsTable";
    /// The delivery attempt log.
    pub const DELIVERIES_TABLE: &str = "DeliveriesTable";
    /// The demo jobs table (with its stream).
    pub const JOBS_TABLE: &str = "JobsTable";
    /// The first-attempt queue.
    pub const DELIVERY_QUEUE: &str = "DeliveryQueue";
    /// The retry queue.
    pub const RETRY_QUEUE: &str = "RetryQueue";
    /// The dead-letter queue.
    pub const DEAD_LETTER_QUEUE: &str = "DeadLetterQueue";
    /// The ingest mapping's on-failure destination.
    pub const INGEST_FAILURE_QUEUE: &str = "IngestFailureQueue";
    /// Where ingest sets aside records it cannot turn into messages.
    pub const INGEST_POISON_QUEUE: &str = "IngestPoisonQueue";
    /// The ingress of platform events (CloudEvents).
    pub const PLATFORM_EVENTS_QUEUE: &str = "PlatformEventsQueue";
}

/// What to deploy, where.
#[derive(Debug, Clone)]
pub struct Deployment {
    /// Stack name.
    pub stack_name: String,
    /// The SAM template.
    pub template: std::path::PathBuf,
    /// Stack parameters.
    pub parameters: Vec<(String, String)>,
    /// Region the transform resolves `AWS::Region` to.
    pub region: String,
}

impl Deployment {
    /// The repository's template (or `TEMPLATE_PATH`) as stack `stack_name`
    /// with the local parameters, in `us-east-1`.
    pub fn local(stack_name: impl Into<String>) -> Self {
        Self {
            stack_name: stack_name.into(),
            template: template_path(),
            parameters: local_parameters(),
            region: "us-east-1".to_owned(),
        }
    }

    /// The repository's template as a stack nothing else uses (a test's
    /// or a benchmark's), with `parameters` on top of the local ones.
    pub fn isolated(parameters: &[(&str, &str)]) -> Self {
        let mut deployment = Self::local(unique_stack_name());
        for (k, v) in parameters {
            deployment.parameters.retain(|(key, _)| key != k);
            deployment
                .parameters
                .push(((*k).to_owned(), (*v).to_owned()));
        }
        deployment
    }
}

/// A stack name nothing else uses.
pub fn unique_stack_name() -> String {
    format!("t-{}", &uuid::Uuid::new_v4().simple().to_string()[..16])
}

/// The stack could not be deployed or read back.
#[derive(Debug, thiserror::Error)]
pub enum DeployStackError {
    /// The SAM transform failed.
    #[error(transparent)]
    Transform(#[from] TransformError),
    /// CloudFormation did not deploy the stack.
    #[error(transparent)]
    Deploy(#[from] DeployError),
    /// The deployed stack could not be read.
    #[error(transparent)]
    Read(#[from] StackReadError),
    /// A custom resource of the template failed.
    #[error(transparent)]
    CustomResource(#[from] custom_resources::CustomResourceError),
}

/// Transforms and deploys `deployment`, creates its new custom resources
/// (the keyring's first version, for one) with their functions'
/// `handlers`, waits for CloudFormation, and reads the stack back.
pub async fn deploy_stack(
    sdk: &aws_config::SdkConfig,
    deployment: &Deployment,
    handlers: custom_resources::Handlers<'_>,
) -> Result<DeployedStack, DeployStackError> {
    let body = transform(&deployment.template, &deployment.region).await?;
    let cfn = aws_sdk_cloudformation::Client::new(sdk);
    let stack = deployment.stack_name.as_str();
    let custom = custom_resources::declared(&body)?;
    // An update sends Create only to the custom resources it adds.
    let existing = if !custom.is_empty() && deploy::updatable(&cfn, stack).await? {
        custom_resources::existing(&cfn, stack).await?
    } else {
        Default::default()
    };
    let started = deploy::start(&cfn, stack, &body, &deployment.parameters).await?;
    let new: Vec<&custom_resources::CustomResource> = match started.operation {
        deploy::Operation::Create => custom.iter().collect(),
        deploy::Operation::Update => custom
            .iter()
            .filter(|c| !existing.contains(&c.logical_id))
            .collect(),
        deploy::Operation::Unchanged => Vec::new(),
    };
    custom_resources::create(sdk, stack, &new, handlers).await?;
    deploy::finish(&cfn, stack, started).await?;
    Ok(DeployedStack::read(sdk, stack, &body).await?)
}

/// Name of the stack `make run` deploys (`LOCAL_STACK_NAME` overrides it).
pub const DEFAULT_STACK_NAME: &str = "webhooks-local";

/// The stack the local tools work on: `LOCAL_STACK_NAME`, default
/// [`DEFAULT_STACK_NAME`].
pub fn stack_name() -> String {
    shared::config::optional("LOCAL_STACK_NAME").unwrap_or_else(|| DEFAULT_STACK_NAME.to_owned())
}

/// Parameters of the local deployment: the template's required ones with
/// values that match the local development tokens ([`crate::jwt`]); the
/// rest keep their defaults unless overridden.
pub fn local_parameters() -> Vec<(String, String)> {
    vec![
        ("JwtIssuer".to_owned(), crate::jwt::ISSUER.to_owned()),
        ("JwtAudience".to_owned(), crate::jwt::AUDIENCE.to_owned()),
    ]
}

/// `overrides` (`Key=Value,Key=Value`, as `LOCAL_STACK_PARAMETERS` holds
/// them) applied on top of `parameters`.
pub fn with_overrides(
    mut parameters: Vec<(String, String)>,
    overrides: &str,
) -> Result<Vec<(String, String)>, String> {
    for pair in overrides
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("{pair:?} is not Key=Value"))?;
        let key = key.trim().to_owned();
        parameters.retain(|(k, _)| *k != key);
        parameters.push((key, value.trim().to_owned()));
    }
    Ok(parameters)
}

/// The repository's root, from this crate's location at build time.
pub fn repository_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Path of the template to deploy: `TEMPLATE_PATH`, else the repository's
/// `template.yaml`.
pub fn template_path() -> std::path::PathBuf {
    std::env::var_os("TEMPLATE_PATH")
        .map_or_else(|| repository_root().join("template.yaml"), Into::into)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_replace_and_add_parameters() {
        let p = with_overrides(
            local_parameters(),
            "JwtAudience=x, StreamBatchingWindowSeconds=0",
        )
        .unwrap();
        assert!(p.contains(&("JwtAudience".to_owned(), "x".to_owned())));
        assert!(p.contains(&("StreamBatchingWindowSeconds".to_owned(), "0".to_owned())));
        assert_eq!(p.iter().filter(|(k, _)| k == "JwtAudience").count(), 1);
        assert!(with_overrides(vec![], "nonsense").is_err());
    }
}
