//! Every table and queue of `template.yaml`, created in the local AWS
//! emulator with the template's keys, streams, TTLs, visibility timeouts
//! and redrive policies.

use std::collections::HashMap;

use aws_config::SdkConfig;
use aws_sdk_sqs::types::QueueAttributeName;

use crate::provision::{self, ProvisionError, QueueProvisionError};
use crate::template::{Template, TemplateError};
use crate::wiring::{self, QueueSpec};

/// Logical id of the subscriptions table.
pub const SUBSCRIPTIONS_TABLE: &str = "SubscriptionsTable";
/// Logical id of the delivery attempt log.
pub const DELIVERIES_TABLE: &str = "DeliveriesTable";
/// Logical id of the demo jobs table (with its stream).
pub const JOBS_TABLE: &str = "JobsTable";
/// Logical id of the first-attempt queue.
pub const DELIVERY_QUEUE: &str = "DeliveryQueue";
/// Logical id of the retry queue.
pub const RETRY_QUEUE: &str = "RetryQueue";
/// Logical id of the dead-letter queue.
pub const DEAD_LETTER_QUEUE: &str = "DeadLetterQueue";
/// Logical id of the ingest on-failure destination.
pub const INGEST_FAILURE_QUEUE: &str = "IngestFailureQueue";

/// The stack could not be created.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    /// The template lacks something.
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// A table could not be created.
    #[error(transparent)]
    Table(#[from] ProvisionError),
    /// A queue could not be created.
    #[error(transparent)]
    Queue(#[from] QueueProvisionError),
    /// The jobs table has no stream.
    #[error("table {0} was created without a stream")]
    NoStream(String),
}

/// Names and URLs of the created resources.
#[derive(Debug, Clone)]
pub struct Resources {
    /// Physical name of each table, by logical id.
    pub tables: HashMap<String, String>,
    /// The jobs table's stream ARN.
    pub jobs_stream_arn: String,
    /// URL of each queue, by logical id.
    pub queue_urls: HashMap<String, String>,
}

impl Resources {
    /// The physical name of table `logical_id`.
    pub fn table(&self, logical_id: &str) -> &str {
        self.tables.get(logical_id).map_or("", String::as_str)
    }

    /// The URL of queue `logical_id`.
    pub fn queue_url(&self, logical_id: &str) -> &str {
        self.queue_urls.get(logical_id).map_or("", String::as_str)
    }
}

/// Creates every table and queue of `template`, named `{prefix}{logical id}`
/// (the empty prefix for `make run`; tests use unique prefixes). Idempotent.
pub async fn provision(
    sdk: &SdkConfig,
    template: &Template,
    prefix: &str,
) -> Result<Resources, StackError> {
    let dynamo = aws_sdk_dynamodb::Client::new(sdk);
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let mut tables = HashMap::new();
    let mut jobs_stream_arn = None;
    for spec in template.tables()? {
        let name = format!("{prefix}{}", spec.logical_id);
        let stream = provision::ensure_table(&dynamo, &spec, &name).await?;
        if spec.logical_id == JOBS_TABLE {
            jobs_stream_arn = Some(stream.ok_or_else(|| StackError::NoStream(name.clone()))?);
        }
        tables.insert(spec.logical_id, name);
    }
    let mut queue_urls = HashMap::new();
    let mut arns = HashMap::new();
    for spec in wiring::queues(template)? {
        let name = format!("{prefix}{}", spec.logical_id);
        let attributes = queue_attributes(&spec, &arns);
        let url = provision::ensure_queue(&sqs, &name, &attributes).await?;
        arns.insert(
            spec.logical_id.clone(),
            provision::queue_arn(&sqs, &name, &url).await?,
        );
        queue_urls.insert(spec.logical_id, url);
    }
    Ok(Resources {
        tables,
        jobs_stream_arn: jobs_stream_arn
            .ok_or_else(|| StackError::NoStream(format!("{prefix}{JOBS_TABLE}")))?,
        queue_urls,
    })
}

fn queue_attributes(
    spec: &QueueSpec,
    arns: &HashMap<String, String>,
) -> Vec<(QueueAttributeName, String)> {
    let mut attributes = vec![(
        QueueAttributeName::VisibilityTimeout,
        spec.visibility_timeout.to_string(),
    )];
    if let Some((target, max)) = &spec.redrive
        && let Some(arn) = arns.get(target)
    {
        attributes.push((
            QueueAttributeName::RedrivePolicy,
            serde_json::json!({"deadLetterTargetArn": arn, "maxReceiveCount": max}).to_string(),
        ));
    }
    attributes
}
