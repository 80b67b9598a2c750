//! Creates the template's tables and queues in the local AWS emulator.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    StreamSpecification, StreamViewType, TableStatus, TimeToLiveSpecification,
};

use aws_sdk_sqs::types::QueueAttributeName;

use crate::template::{KeyAttribute, TableSpec};

/// Provisioning failed.
#[derive(Debug, thiserror::Error)]
#[error("creating table {table} in the local emulator: {message}")]
pub struct ProvisionError {
    /// Table name.
    pub table: String,
    /// What went wrong.
    pub message: String,
}

fn definition(k: &KeyAttribute) -> AttributeDefinition {
    AttributeDefinition::builder()
        .attribute_name(&k.name)
        .attribute_type(ScalarAttributeType::from(k.attribute_type.as_str()))
        .build()
        .expect("name and type are set")
}

fn key(k: &KeyAttribute, key_type: KeyType) -> KeySchemaElement {
    KeySchemaElement::builder()
        .attribute_name(&k.name)
        .key_type(key_type)
        .build()
        .expect("name and key type are set")
}

/// Creates `spec` as table `name` unless it exists, and waits until it is
/// active. Returns the table's stream ARN, if it has a stream.
pub async fn ensure_table(
    client: &Client,
    spec: &TableSpec,
    name: &str,
) -> Result<Option<String>, ProvisionError> {
    let fail = |e: String| ProvisionError {
        table: name.to_owned(),
        message: e,
    };
    let mut create = client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(definition(&spec.hash_key))
        .key_schema(key(&spec.hash_key, KeyType::Hash));
    if let Some(range) = &spec.range_key {
        create = create
            .attribute_definitions(definition(range))
            .key_schema(key(range, KeyType::Range));
    }
    if let Some(view) = &spec.stream_view_type {
        create = create.stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::from(view.as_str()))
                .build()
                .map_err(|e| fail(e.to_string()))?,
        );
    }
    let created = match create.send().await {
        Ok(_) => true,
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_resource_in_use_exception()) =>
        {
            false
        }
        Err(e) => return Err(fail(DisplayErrorContext(e).to_string())),
    };
    if let Some(attr) = spec.ttl_attribute.as_ref().filter(|_| created) {
        client
            .update_time_to_live()
            .table_name(name)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name(attr)
                    .enabled(true)
                    .build()
                    .map_err(|e| fail(e.to_string()))?,
            )
            .send()
            .await
            .map_err(|e| fail(DisplayErrorContext(e).to_string()))?;
    }
    for _ in 0..100 {
        let table = client
            .describe_table()
            .table_name(name)
            .send()
            .await
            .map_err(|e| fail(DisplayErrorContext(e).to_string()))?
            .table
            .ok_or_else(|| fail("DescribeTable returned no table".to_owned()))?;
        if table.table_status == Some(TableStatus::Active) {
            return Ok(table.latest_stream_arn);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Err(fail("table did not become active".to_owned()))
}

/// Creating a queue failed.
#[derive(Debug, thiserror::Error)]
#[error("creating queue {queue} in the local emulator: {message}")]
pub struct QueueProvisionError {
    /// Queue name.
    pub queue: String,
    /// What went wrong.
    pub message: String,
}

/// Creates the standard SQS queue `name` with `attributes` (e.g.
/// `VisibilityTimeout`, `RedrivePolicy`) unless it exists, and returns its
/// URL. `CreateQueue` answers an existing queue of the same name and
/// attributes with its URL, so this is idempotent.
pub async fn ensure_queue(
    client: &aws_sdk_sqs::Client,
    name: &str,
    attributes: &[(QueueAttributeName, String)],
) -> Result<String, QueueProvisionError> {
    let fail = |message: String| QueueProvisionError {
        queue: name.to_owned(),
        message,
    };
    let mut create = client.create_queue().queue_name(name);
    for (attribute, value) in attributes {
        create = create.attributes(attribute.clone(), value);
    }
    create
        .send()
        .await
        .map_err(|e| fail(aws_sdk_sqs::error::DisplayErrorContext(e).to_string()))?
        .queue_url
        .ok_or_else(|| fail("CreateQueue returned no queue URL".to_owned()))
}

/// The ARN of the queue at `url`.
pub async fn queue_arn(
    client: &aws_sdk_sqs::Client,
    name: &str,
    url: &str,
) -> Result<String, QueueProvisionError> {
    let fail = |message: String| QueueProvisionError {
        queue: name.to_owned(),
        message,
    };
    client
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| fail(aws_sdk_sqs::error::DisplayErrorContext(e).to_string()))?
        .attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .ok_or_else(|| fail("GetQueueAttributes returned no QueueArn".to_owned()))
}
