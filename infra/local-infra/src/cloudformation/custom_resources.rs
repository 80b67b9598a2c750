//! The template's custom resources, answered by their functions' handlers.
//!
//! CloudFormation invokes a custom resource's function (its `ServiceToken`)
//! with a `Create` event and waits for the answer at the event's
//! `ResponseURL`. moto records the resource and waits for that answer on
//! its own response endpoint, but cannot run the function (it would need
//! Docker), so the local stack runs the function's handler in-process with
//! the same event, as the function itself ([`crate::identity`]), and the
//! handler answers moto as it answers CloudFormation. As in AWS, a
//! resource gets its `Create` when the stack is created or when an update
//! adds it; `Update` and `Delete` events are not sent locally.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use std::future::Future;
use std::pin::Pin;

use aws_config::SdkConfig;
use aws_sdk_cloudformation::error::DisplayErrorContext;
use serde_json::{Value, json};
use shared::config::Vars;

use super::deployed::list_resources;
use crate::identity::function_sdk;

/// A function's handler for custom resource events, run as Lambda would
/// run it: configured from the function's deployed environment, calling
/// AWS with the given settings (signed as the function), finishing before
/// the deadline. `Err` is the reason the handler answered `FAILED`.
pub type Handler =
    fn(Vars, SdkConfig, Value, Instant) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// The handlers of the template's custom resource functions, by the
/// function's logical id.
pub type Handlers<'a> = &'a [(&'a str, Handler)];

/// A custom resource the template declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomResource {
    /// Its logical id.
    pub logical_id: String,
    /// Its type, e.g. `Custom::SigningKeyring`.
    pub resource_type: String,
    /// Logical id of the function its `ServiceToken` names.
    pub function: String,
}

/// A custom resource could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CustomResourceError {
    /// Its `ServiceToken` is not `Fn::GetAtt` of a function's `Arn`.
    #[error("custom resource {logical_id}: its ServiceToken {token} is not a function's Arn")]
    NoFunction {
        /// The resource.
        logical_id: String,
        /// The token as the template writes it.
        token: String,
    },
    /// The function has no local handler for custom resource events.
    #[error("custom resource {logical_id}: {function} has no local handler")]
    NoHandler {
        /// The resource.
        logical_id: String,
        /// The function.
        function: String,
    },
    /// An AWS call failed.
    #[error("custom resource {logical_id}: {operation} failed: {message}")]
    Request {
        /// The resource.
        logical_id: String,
        /// The API call.
        operation: &'static str,
        /// The service's answer.
        message: String,
    },
    /// The handler failed or answered `FAILED`.
    #[error("custom resource {logical_id} ({function}) failed: {reason}")]
    Failed {
        /// The resource.
        logical_id: String,
        /// The function.
        function: String,
        /// Its reason.
        reason: String,
    },
}

/// The custom resources of a CloudFormation JSON body (types `Custom::*`
/// and `AWS::CloudFormation::CustomResource`).
pub fn declared(body: &str) -> Result<Vec<CustomResource>, CustomResourceError> {
    let template: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let mut found = Vec::new();
    for (id, resource) in template["Resources"].as_object().into_iter().flatten() {
        let resource_type = resource["Type"].as_str().unwrap_or_default();
        if !resource_type.starts_with("Custom::")
            && resource_type != "AWS::CloudFormation::CustomResource"
        {
            continue;
        }
        let token = &resource["Properties"]["ServiceToken"];
        let function = match &token["Fn::GetAtt"] {
            Value::Array(parts) if parts.get(1) == Some(&json!("Arn")) => {
                parts.first().and_then(Value::as_str).map(str::to_owned)
            }
            Value::String(s) => s.strip_suffix(".Arn").map(str::to_owned),
            _ => None,
        };
        let function = function.ok_or_else(|| CustomResourceError::NoFunction {
            logical_id: id.clone(),
            token: token.to_string(),
        })?;
        found.push(CustomResource {
            logical_id: id.clone(),
            resource_type: resource_type.to_owned(),
            function,
        });
    }
    Ok(found)
}

/// Logical ids of the resources stack `stack` has now.
pub async fn existing(
    cfn: &aws_sdk_cloudformation::Client,
    stack: &str,
) -> Result<BTreeSet<String>, CustomResourceError> {
    let listed =
        list_resources(cfn, stack)
            .await
            .map_err(|message| CustomResourceError::Request {
                logical_id: stack.to_owned(),
                operation: "ListStackResources",
                message,
            })?;
    Ok(listed
        .into_iter()
        .filter_map(|r| r.logical_resource_id)
        .collect())
}

/// The physical id of `logical_id` in stack `stack`.
async fn physical_id(
    cfn: &aws_sdk_cloudformation::Client,
    stack: &str,
    logical_id: &str,
) -> Result<String, String> {
    list_resources(cfn, stack)
        .await?
        .into_iter()
        .find(|r| r.logical_resource_id() == Some(logical_id))
        .and_then(|r| r.physical_resource_id)
        .ok_or_else(|| format!("stack {stack} has no resource {logical_id}"))
}

/// Sends each of `resources` of stack `stack` its `Create` event, through
/// its function's handler, and checks the handler's answer.
pub async fn create(
    sdk: &SdkConfig,
    stack: &str,
    resources: &[&CustomResource],
    handlers: Handlers<'_>,
) -> Result<(), CustomResourceError> {
    if resources.is_empty() {
        return Ok(());
    }
    let cfn = aws_sdk_cloudformation::Client::new(sdk);
    let lambda = aws_sdk_lambda::Client::new(sdk);
    for resource in resources {
        let failed = |operation: &'static str| {
            move |e: String| CustomResourceError::Request {
                logical_id: resource.logical_id.clone(),
                operation,
                message: e,
            }
        };
        let stack_id = cfn
            .describe_stacks()
            .stack_name(stack)
            .send()
            .await
            .map_err(|e| failed("DescribeStacks")(DisplayErrorContext(e).to_string()))?
            .stacks
            .unwrap_or_default()
            .into_iter()
            .find_map(|s| s.stack_id)
            .unwrap_or_else(|| stack.to_owned());
        // The function's name (moto's DescribeStackResource fails while
        // the stack is in progress; its list does not).
        let physical = physical_id(&cfn, stack, &resource.function)
            .await
            .map_err(failed("ListStackResources"))?;
        let function = lambda
            .get_function_configuration()
            .function_name(&physical)
            .send()
            .await
            .map_err(|e| failed("GetFunctionConfiguration")(DisplayErrorContext(e).to_string()))?;
        let endpoint = sdk.endpoint_url().ok_or_else(|| {
            failed("the emulator's response URL")("AWS_ENDPOINT_URL is not set".to_owned())
        })?;
        let region = sdk.region().map_or("us-east-1", |r| r.as_ref());
        let event = json!({
            "RequestType": "Create",
            "ServiceToken": function.function_arn.clone().unwrap_or_default(),
            "ResponseURL": format!(
                "{}/cloudformation_{region}/cfnresponse?stack={stack_id}",
                endpoint.trim_end_matches('/')
            ),
            "StackId": stack_id,
            "RequestId": uuid::Uuid::new_v4().to_string(),
            "LogicalResourceId": resource.logical_id,
            "ResourceType": resource.resource_type,
            "ResourceProperties": {"ServiceToken": function.function_arn.clone().unwrap_or_default()},
        });
        let timeout = Duration::from_secs(
            function
                .timeout
                .and_then(|t| u64::try_from(t).ok())
                .unwrap_or(3),
        );
        let environment = function
            .environment
            .and_then(|e| e.variables)
            .unwrap_or_default();
        let handler = handlers
            .iter()
            .find(|(function, _)| *function == resource.function)
            .map(|(_, handler)| *handler)
            .ok_or_else(|| CustomResourceError::NoHandler {
                logical_id: resource.logical_id.clone(),
                function: resource.function.clone(),
            })?;
        let function_sdk = function_sdk(sdk, &resource.function);
        handler(
            Vars::from_map(environment),
            function_sdk,
            event,
            Instant::now() + timeout,
        )
        .await
        .map_err(|reason| CustomResourceError::Failed {
            logical_id: resource.logical_id.clone(),
            function: resource.function.clone(),
            reason,
        })?;
        tracing::info!(resource = %resource.logical_id, function = %resource.function, "custom resource created");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_resources_and_the_function_of_their_service_token() {
        let body = json!({"Resources": {
            "Keys": {"Type": "Custom::SigningKeyring", "Properties": {"ServiceToken": {"Fn::GetAtt": ["SecretKeysFunction", "Arn"]}}},
            "Other": {"Type": "AWS::CloudFormation::CustomResource", "Properties": {"ServiceToken": {"Fn::GetAtt": "F.Arn"}}},
            "Table": {"Type": "AWS::DynamoDB::Table"},
        }})
        .to_string();
        let found = declared(&body).unwrap();
        assert_eq!(
            found
                .iter()
                .map(|c| (c.logical_id.as_str(), c.function.as_str()))
                .collect::<Vec<_>>(),
            [("Keys", "SecretKeysFunction"), ("Other", "F")]
        );
        let topic = json!({"Resources": {"T": {"Type": "Custom::X", "Properties": {"ServiceToken": "arn:aws:sns:us-east-1:1:t"}}}}).to_string();
        assert!(matches!(
            declared(&topic),
            Err(CustomResourceError::NoFunction { .. })
        ));
    }
}
