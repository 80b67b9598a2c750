//! The keyring's start, as the template's `SigningKeyring` custom resource.
//!
//! CloudFormation invokes the function with a custom resource event when
//! the stack is created (and when the resource's properties change): the
//! function adds key version 1 if the keyring is empty, so a fresh stack
//! seals secrets from its first request and the API, which only reads the
//! keyring, never writes it. A `Delete` changes nothing: the keyring table
//! is retained with the stack's secrets, and a key version removed would
//! leave every secret sealed with it unreadable.
//!
//! The outcome goes to the event's `ResponseURL` (a presigned S3 URL in
//! AWS) as CloudFormation expects; a failure is answered `FAILED` with its
//! reason, so the stack operation fails at once instead of waiting an hour.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use shared::storage::keyring::KeyringStore;

/// What CloudFormation asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum RequestType {
    /// The stack created the resource.
    Create,
    /// Its properties changed.
    Update,
    /// The stack removed it.
    Delete,
}

/// A CloudFormation custom resource event (the fields the function uses).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CustomResourceEvent {
    /// `Create`, `Update` or `Delete`.
    pub request_type: RequestType,
    /// Where the outcome goes.
    #[serde(rename = "ResponseURL")]
    pub response_url: String,
    /// The stack.
    pub stack_id: String,
    /// The request, echoed in the response.
    pub request_id: String,
    /// The resource's logical id.
    pub logical_resource_id: String,
    /// Set on `Update` and `Delete`: what the `Create` answered.
    #[serde(default)]
    pub physical_resource_id: Option<String>,
}

impl CustomResourceEvent {
    /// Whether `event` is a custom resource event rather than an
    /// operator's request.
    pub fn recognises(event: &Value) -> bool {
        event.get("RequestType").is_some() && event.get("ResponseURL").is_some()
    }
}

/// The outcome sent to CloudFormation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CustomResourceReport {
    /// `SUCCESS` or `FAILED`.
    pub status: &'static str,
    /// Why it failed, or what was done.
    pub reason: String,
    /// The resource's physical id: the keyring table's name.
    pub physical_resource_id: String,
    /// The newest key version (none after a `Delete` or a failure).
    pub key_version: Option<u32>,
}

impl CustomResourceReport {
    /// Whether CloudFormation was told `SUCCESS`.
    pub fn succeeded(&self) -> bool {
        self.status == "SUCCESS"
    }
}

/// The response could not be delivered to CloudFormation.
#[derive(Debug, thiserror::Error)]
#[error(
    "custom resource {logical_resource_id}: the response to {response_url} was not accepted: {message}"
)]
pub struct ResponseError {
    /// The resource.
    pub logical_resource_id: String,
    /// The response URL, without its query (a presigned URL's signature).
    pub response_url: String,
    /// What went wrong.
    pub message: String,
}

/// Handles `event`: starts the keyring on `Create` and `Update`, and
/// answers CloudFormation.
pub async fn handle(
    keyring: &KeyringStore,
    http: &reqwest::Client,
    event: &CustomResourceEvent,
) -> Result<CustomResourceReport, ResponseError> {
    let physical_resource_id = event
        .physical_resource_id
        .clone()
        .unwrap_or_else(|| keyring.config().table.clone());
    let report = match event.request_type {
        RequestType::Create | RequestType::Update => {
            match keyring.ensure_version(chrono::Utc::now()).await {
                Ok(version) => {
                    tracing::info!(key_version = version, request_type = ?event.request_type, "signing-secret keyring started");
                    CustomResourceReport {
                        status: "SUCCESS",
                        reason: format!("the keyring's newest version is {version}"),
                        physical_resource_id,
                        key_version: Some(version),
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "signing-secret keyring not started");
                    CustomResourceReport {
                        status: "FAILED",
                        reason: e.to_string(),
                        physical_resource_id,
                        key_version: None,
                    }
                }
            }
        }
        RequestType::Delete => CustomResourceReport {
            status: "SUCCESS",
            reason: "key versions are kept with the retained keyring table".to_owned(),
            physical_resource_id,
            key_version: None,
        },
    };
    respond(http, event, &report).await?;
    Ok(report)
}

/// Most bytes of a reason sent to CloudFormation.
const MAX_REASON_BYTES: usize = 1024;

/// Answers `FAILED` with `reason` to an event that names a response URL
/// but does not parse (an unknown request type, a missing field), so the
/// stack operation fails at once instead of waiting for CloudFormation's
/// timeout. Returns what was answered.
pub async fn answer_unreadable(
    http: &reqwest::Client,
    event: &Value,
    reason: &str,
) -> Result<CustomResourceReport, ResponseError> {
    let field = |name: &str| {
        event
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let physical = Some(field("PhysicalResourceId")).filter(|id| !id.is_empty());
    let readable = CustomResourceEvent {
        request_type: RequestType::Create,
        response_url: field("ResponseURL"),
        stack_id: field("StackId"),
        request_id: field("RequestId"),
        logical_resource_id: field("LogicalResourceId"),
        physical_resource_id: physical.clone(),
    };
    let report = CustomResourceReport {
        status: "FAILED",
        reason: reason.to_owned(),
        physical_resource_id: physical.unwrap_or_else(|| "unreadable-event".to_owned()),
        key_version: None,
    };
    respond(http, &readable, &report).await?;
    Ok(report)
}

/// PUTs the outcome to the event's response URL, without a content type
/// (a presigned S3 URL is signed without one).
async fn respond(
    http: &reqwest::Client,
    event: &CustomResourceEvent,
    report: &CustomResourceReport,
) -> Result<(), ResponseError> {
    let mut body = json!({
        "Status": report.status,
        // CloudFormation takes at most 4 KB of response.
        "Reason": shared::text::prefix(&report.reason, MAX_REASON_BYTES),
        "PhysicalResourceId": report.physical_resource_id,
        "StackId": event.stack_id,
        "RequestId": event.request_id,
        "LogicalResourceId": event.logical_resource_id,
    });
    if let Some(version) = report.key_version {
        body["Data"] = json!({"KeyVersion": version.to_string()});
    }
    let failed = |message: String| ResponseError {
        logical_resource_id: event.logical_resource_id.clone(),
        response_url: event
            .response_url
            .split('?')
            .next()
            .unwrap_or_default()
            .to_owned(),
        message,
    };
    let answer = http
        .put(&event.response_url)
        .body(body.to_string())
        .send()
        .await
        // Without the URL: its query is the presigned signature.
        .map_err(|e| failed(e.without_url().to_string()))?;
    if !answer.status().is_success() {
        return Err(failed(format!("HTTP {}", answer.status())));
    }
    Ok(())
}
