//! The local AWS emulator, for tests that talk to it over HTTP.

use aws_config::{BehaviorVersion, Region, SdkConfig};

/// Endpoint of the emulator, from `AWS_ENDPOINT_URL`.
///
/// # Panics
/// When the variable is unset: these tests need the emulator, which
/// `make test` (through `infra/with-emulator.sh`) provides.
pub fn endpoint() -> String {
    std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| {
        panic!(
            "AWS_ENDPOINT_URL is not set: integration tests need the local AWS emulator; \
             run them with `make test` or `infra/with-emulator.sh cargo test`"
        )
    })
}

/// The access key id of the tests' own credentials ([`sdk_config`]); the
/// local stack's functions sign with their own ([`local_infra::identity`]).
pub const ACCESS_KEY_ID: &str = "local";

/// SDK configuration for the emulator with static test credentials and
/// the functions' HTTP client ([`shared::config::sdk_http_client`]).
pub async fn sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(shared::config::sdk_http_client())
        .endpoint_url(endpoint())
        .region(Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            ACCESS_KEY_ID,
            "local",
            None,
            None,
            "test",
        ))
        .load()
        .await
}

/// A DynamoDB client for the emulator.
pub async fn dynamodb() -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(&sdk_config().await)
}

/// A unique name starting with `prefix`, so parallel tests never share
/// resources.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// Creates a fresh table whose name starts with `prefix`, keyed by
/// `job_id`, with a stream of new and old images, as the platform's jobs
/// table has; returns its name and stream ARN.
///
/// # Panics
/// When the emulator refuses it.
pub async fn streamed_table(prefix: &str) -> (String, String) {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
        StreamSpecification, StreamViewType,
    };
    let name = unique_name(prefix);
    let created = dynamodb()
        .await
        .create_table()
        .table_name(&name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("job_id")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("a complete attribute definition"),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("job_id")
                .key_type(KeyType::Hash)
                .build()
                .expect("a complete key schema"),
        )
        .stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::NewAndOldImages)
                .build()
                .expect("a complete stream specification"),
        )
        .send()
        .await
        .expect("the table is created");
    let arn = created
        .table_description
        .and_then(|t| t.latest_stream_arn)
        .expect("the table has a stream");
    (name, arn)
}

/// Creates a fresh SQS queue whose name starts with `prefix` and returns
/// its URL.
pub async fn fresh_queue(client: &aws_sdk_sqs::Client, prefix: &str) -> String {
    client
        .create_queue()
        .queue_name(unique_name(prefix))
        .send()
        .await
        .expect("queue is created in the emulator")
        .queue_url
        .expect("the emulator returns the queue URL")
}

/// The `MessageGroupId` SQS holds for a received message (receive with the
/// `MessageGroupId` or `All` system attribute names).
pub fn message_group(m: &aws_sdk_sqs::types::Message) -> Option<&str> {
    m.attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::MessageGroupId))
        .map(String::as_str)
}

/// Asserts that a message on the DeliveryQueue or RetryQueue carries
/// `MessageGroupId` = the group of the `company_id` of its delivery message
/// ([`shared::domain::message::group_id`]), the key of SQS fair queues.
///
/// # Panics
/// When the body is not a delivery message or the group is missing or
/// another company's.
pub fn assert_grouped_by_company(m: &aws_sdk_sqs::types::Message) {
    let body = m.body().unwrap_or_default();
    let msg = shared::domain::message::DeliveryMessage::parse(body).expect("a delivery message");
    assert_eq!(
        message_group(m),
        Some(shared::domain::message::group_id(&msg.company_id).as_ref()),
        "MessageGroupId of {}",
        msg.webhook_id
    );
}

/// Receives up to ten messages from `queue_url`, long-polling up to
/// `wait_seconds` for the first, with their message attributes and system
/// attributes, and deletes them from the queue.
pub async fn take(
    client: &aws_sdk_sqs::Client,
    queue_url: &str,
    wait_seconds: i32,
) -> Vec<aws_sdk_sqs::types::Message> {
    let messages = client
        .receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(10)
        .wait_time_seconds(wait_seconds)
        .message_attribute_names("All")
        .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
        .send()
        .await
        .expect("ReceiveMessage on the emulator")
        .messages
        .unwrap_or_default();
    for m in &messages {
        client
            .delete_message()
            .queue_url(queue_url)
            .receipt_handle(m.receipt_handle().expect("a receipt handle"))
            .send()
            .await
            .expect("DeleteMessage on the emulator");
    }
    messages
}

/// Every message on `queue_url` now, received and deleted: [`take`]s until
/// a receive comes back empty.
pub async fn drain(
    client: &aws_sdk_sqs::Client,
    queue_url: &str,
) -> Vec<aws_sdk_sqs::types::Message> {
    let mut out = Vec::new();
    loop {
        let messages = take(client, queue_url, 0).await;
        if messages.is_empty() {
            return out;
        }
        out.extend(messages);
    }
}
