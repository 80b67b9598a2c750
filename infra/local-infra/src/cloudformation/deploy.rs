//! Creates or updates a stack with CloudFormation and waits for the result.

use std::time::Duration;

use aws_sdk_cloudformation::Client;
use aws_sdk_cloudformation::error::DisplayErrorContext;
use aws_sdk_cloudformation::types::{Capability, Parameter, StackStatus};

/// Longest wait for a stack operation.
const DEPLOY_TIMEOUT: Duration = Duration::from_secs(120);
/// How often the stack's status is read while it changes.
const POLL: Duration = Duration::from_millis(50);

/// The stack could not be deployed.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// CloudFormation refused a request.
    #[error("CloudFormation {operation} of stack {stack}: {message}")]
    Request {
        /// The API call.
        operation: &'static str,
        /// The stack.
        stack: String,
        /// CloudFormation's answer.
        message: String,
    },
    /// The stack ended in a failed state.
    #[error("stack {stack} ended {status}: {}", failures.join("; "))]
    Failed {
        /// The stack.
        stack: String,
        /// Its final status.
        status: String,
        /// Each failed resource: logical id, type and reason.
        failures: Vec<String>,
    },
    /// The stack did not settle in time.
    #[error("stack {stack} was still {status} after {DEPLOY_TIMEOUT:?}")]
    Timeout {
        /// The stack.
        stack: String,
        /// Its last status.
        status: String,
    },
}

fn request<'a, E>(operation: &'static str, stack: &'a str) -> impl FnOnce(E) -> DeployError + 'a
where
    E: std::error::Error + 'static,
{
    move |e| DeployError::Request {
        operation,
        stack: stack.to_owned(),
        message: DisplayErrorContext(e).to_string(),
    }
}

/// What [`start`] asked CloudFormation to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Create the stack.
    Create,
    /// Update the existing stack.
    Update,
    /// Nothing: the stack is already as the template says.
    Unchanged,
}

/// A stack operation under way.
#[derive(Debug, Clone, Copy)]
pub struct Started {
    /// What was asked.
    pub operation: Operation,
    /// When, to tell this operation's failures from older ones.
    since: std::time::SystemTime,
}

/// Deploys `template_body` (CloudFormation JSON, already transformed) as
/// stack `stack` with `parameters`: creates it, or updates it when it
/// exists (an update with no changes is a success). Waits until it is
/// complete; a failure names each failed resource and its reason.
pub async fn deploy(
    cfn: &Client,
    stack: &str,
    template_body: &str,
    parameters: &[(String, String)],
) -> Result<(), DeployError> {
    let started = start(cfn, stack, template_body, parameters).await?;
    finish(cfn, stack, started).await
}

/// Starts the creation or update of stack `stack` (see [`deploy`]) without
/// waiting for it: custom resources may need an answer first.
pub async fn start(
    cfn: &Client,
    stack: &str,
    template_body: &str,
    parameters: &[(String, String)],
) -> Result<Started, DeployError> {
    let parameters: Vec<Parameter> = parameters
        .iter()
        .map(|(k, v)| {
            Parameter::builder()
                .parameter_key(k)
                .parameter_value(v)
                .build()
        })
        .collect();
    let capabilities = [Capability::CapabilityIam, Capability::CapabilityAutoExpand];
    let started = std::time::SystemTime::now();
    let status = current_status(cfn, stack).await?;
    if let Some(status) = status.as_ref().filter(|s| !settled(s)) {
        // A stack that failed (or, in moto, never finished) cannot be
        // updated: start it again.
        tracing::warn!(%stack, status = status.as_str(), "the stack is not deployable; deleting and creating it again");
        cfn.delete_stack()
            .stack_name(stack)
            .send()
            .await
            .map_err(request("DeleteStack", stack))?;
        let deadline = tokio::time::Instant::now() + DEPLOY_TIMEOUT;
        while current_status(cfn, stack).await?.is_some() {
            if tokio::time::Instant::now() > deadline {
                return Err(DeployError::Timeout {
                    stack: stack.to_owned(),
                    status: "DELETE_IN_PROGRESS".to_owned(),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }
    if status.as_ref().is_none_or(|s| !settled(s)) {
        let created = cfn
            .create_stack()
            .stack_name(stack)
            .template_body(template_body)
            .set_parameters(Some(parameters))
            .set_capabilities(Some(capabilities.to_vec()))
            .send()
            .await;
        match created {
            Ok(_) => {}
            // The stack did not exist a moment ago: the SDK retried a
            // CreateStack whose first attempt went through but whose answer
            // was lost (a busy emulator closes connections). It is ours;
            // wait for it like any other.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_already_exists_exception()) =>
            {
                tracing::debug!(%stack, "CreateStack answered AlreadyExists on a retry; waiting for the stack");
            }
            Err(e) => return Err(request("CreateStack", stack)(e)),
        }
        Ok(Started {
            operation: Operation::Create,
            since: started,
        })
    } else {
        let updated = cfn
            .update_stack()
            .stack_name(stack)
            .template_body(template_body)
            .set_parameters(Some(parameters))
            .set_capabilities(Some(capabilities.to_vec()))
            .send()
            .await;
        match updated {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .and_then(|e| e.meta().message())
                    .is_some_and(|m| m.contains("No updates are to be performed")) =>
            {
                return Ok(Started {
                    operation: Operation::Unchanged,
                    since: started,
                });
            }
            Err(e) => return Err(request("UpdateStack", stack)(e)),
        }
        Ok(Started {
            operation: Operation::Update,
            since: started,
        })
    }
}

/// Waits until the operation `started` is complete; a failure names each
/// failed resource and its reason.
pub async fn finish(cfn: &Client, stack: &str, started: Started) -> Result<(), DeployError> {
    if started.operation == Operation::Unchanged {
        return Ok(());
    }
    wait(cfn, stack, started.since).await
}

/// Whether stack `stack` exists and takes an update ([`start`] updates it
/// rather than creating it again).
pub async fn updatable(cfn: &Client, stack: &str) -> Result<bool, DeployError> {
    Ok(current_status(cfn, stack)
        .await?
        .is_some_and(|s| settled(&s)))
}

/// Whether a stack in `status` takes an update.
fn settled(status: &StackStatus) -> bool {
    matches!(
        status,
        StackStatus::CreateComplete
            | StackStatus::UpdateComplete
            | StackStatus::UpdateRollbackComplete
    )
}

/// The stack's status, or `None` when there is no such stack.
async fn current_status(cfn: &Client, stack: &str) -> Result<Option<StackStatus>, DeployError> {
    match cfn.describe_stacks().stack_name(stack).send().await {
        Ok(out) => Ok(out
            .stacks
            .unwrap_or_default()
            .into_iter()
            .next()
            .and_then(|s| s.stack_status)
            .filter(|s| *s != StackStatus::DeleteComplete)),
        Err(e)
            if e.as_service_error()
                .and_then(|e| e.meta().message())
                .is_some_and(|m| m.contains("does not exist")) =>
        {
            Ok(None)
        }
        Err(e) => Err(request("DescribeStacks", stack)(e)),
    }
}

async fn wait(
    cfn: &Client,
    stack: &str,
    started: std::time::SystemTime,
) -> Result<(), DeployError> {
    let deadline = tokio::time::Instant::now() + DEPLOY_TIMEOUT;
    loop {
        let status = current_status(cfn, stack)
            .await?
            .ok_or_else(|| DeployError::Failed {
                stack: stack.to_owned(),
                status: "deleted".to_owned(),
                failures: Vec::new(),
            })?;
        let text = status.as_str().to_owned();
        if matches!(
            status,
            StackStatus::CreateComplete | StackStatus::UpdateComplete
        ) {
            return Ok(());
        }
        if !text.ends_with("_IN_PROGRESS") {
            return Err(DeployError::Failed {
                stack: stack.to_owned(),
                failures: failures(cfn, stack, started).await?,
                status: text,
            });
        }
        if tokio::time::Instant::now() > deadline {
            return Err(DeployError::Timeout {
                stack: stack.to_owned(),
                status: text,
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Each resource that failed since `started` (this operation), with its
/// reason.
async fn failures(
    cfn: &Client,
    stack: &str,
    started: std::time::SystemTime,
) -> Result<Vec<String>, DeployError> {
    let since = started
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
        - 1;
    let events = cfn
        .describe_stack_events()
        .stack_name(stack)
        .send()
        .await
        .map_err(request("DescribeStackEvents", stack))?
        .stack_events
        .unwrap_or_default();
    Ok(events
        .into_iter()
        .filter(|e| {
            e.resource_status
                .as_ref()
                .is_some_and(|s| s.as_str().ends_with("_FAILED"))
                && e.timestamp.is_none_or(|t| t.secs() >= since)
        })
        .map(|e| {
            format!(
                "{} ({}): {}",
                e.logical_resource_id.unwrap_or_default(),
                e.resource_type.unwrap_or_default(),
                e.resource_status_reason
                    .unwrap_or_else(|| "no reason given".to_owned())
            )
        })
        .collect())
}
