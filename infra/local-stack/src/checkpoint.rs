//! Stream positions of the local stream runner, kept in the emulator the
//! way an event source mapping keeps its own: one item per mapping and
//! shard with the sequence number of the last record handled, so a
//! restarted runner resumes after it instead of at `LATEST`. The table is
//! the runner's own state, not part of the template.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType, TableStatus,
};

/// Table of the checkpoints in the emulator.
pub const TABLE: &str = "local-stack-stream-checkpoints";

/// Shard key of the item that says the mapping has started once, so a
/// restart before any record was handled still resumes where the first
/// start began instead of at `LATEST` again.
const OPENED: &str = "#opened";

/// What a mapping saved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Saved {
    /// Sequence number of the last record handled, by shard.
    pub positions: HashMap<String, String>,
    /// Whether the mapping has started before.
    pub opened: bool,
}

/// A checkpoint could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("stream checkpoints ({operation} on {TABLE}): {message}")]
pub struct CheckpointError {
    /// The DynamoDB call.
    pub operation: &'static str,
    /// What went wrong.
    pub message: String,
}

fn fail<E: std::error::Error + 'static>(
    operation: &'static str,
) -> impl FnOnce(E) -> CheckpointError {
    move |e| CheckpointError {
        operation,
        message: DisplayErrorContext(e).to_string(),
    }
}

/// The checkpoints of one event source mapping.
#[derive(Debug, Clone)]
pub struct Checkpoints {
    client: Client,
    mapping: String,
}

impl Checkpoints {
    /// The checkpoints of mapping `mapping_uuid`, creating the table on
    /// first use.
    pub async fn open(client: Client, mapping_uuid: &str) -> Result<Self, CheckpointError> {
        let created = client
            .create_table()
            .table_name(TABLE)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attribute("mapping"))
            .attribute_definitions(attribute("shard"))
            .key_schema(key("mapping", KeyType::Hash))
            .key_schema(key("shard", KeyType::Range))
            .send()
            .await;
        match created {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_in_use_exception()) => {}
            Err(e) => return Err(fail("CreateTable")(e)),
        }
        for _ in 0..100 {
            let status = client
                .describe_table()
                .table_name(TABLE)
                .send()
                .await
                .map_err(fail("DescribeTable"))?
                .table
                .and_then(|t| t.table_status);
            if status == Some(TableStatus::Active) {
                return Ok(Self {
                    client,
                    mapping: mapping_uuid.to_owned(),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(CheckpointError {
            operation: "DescribeTable",
            message: "the table did not become active".to_owned(),
        })
    }

    /// What the mapping saved so far.
    pub async fn load(&self) -> Result<Saved, CheckpointError> {
        let mut saved = Saved::default();
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(TABLE)
                .key_condition_expression("mapping = :m")
                .expression_attribute_values(":m", AttributeValue::S(self.mapping.clone()))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(fail("Query"))?;
            for item in page.items.unwrap_or_default() {
                match (item.get("shard"), item.get("sequence_number")) {
                    (Some(AttributeValue::S(shard)), _) if shard == OPENED => saved.opened = true,
                    (Some(AttributeValue::S(shard)), Some(AttributeValue::S(seq))) => {
                        saved.positions.insert(shard.clone(), seq.clone());
                    }
                    _ => {}
                }
            }
            start = page.last_evaluated_key;
            if start.is_none() {
                return Ok(saved);
            }
        }
    }

    /// Records that the mapping has started.
    pub async fn mark_opened(&self) -> Result<(), CheckpointError> {
        self.client
            .put_item()
            .table_name(TABLE)
            .item("mapping", AttributeValue::S(self.mapping.clone()))
            .item("shard", AttributeValue::S(OPENED.to_owned()))
            .send()
            .await
            .map_err(fail("PutItem"))?;
        Ok(())
    }

    /// Records that shard `shard` was handled up to `sequence_number`.
    pub async fn save(&self, shard: &str, sequence_number: &str) -> Result<(), CheckpointError> {
        self.client
            .put_item()
            .table_name(TABLE)
            .item("mapping", AttributeValue::S(self.mapping.clone()))
            .item("shard", AttributeValue::S(shard.to_owned()))
            .item(
                "sequence_number",
                AttributeValue::S(sequence_number.to_owned()),
            )
            .send()
            .await
            .map_err(fail("PutItem"))?;
        Ok(())
    }
}

fn attribute(name: &str) -> AttributeDefinition {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ScalarAttributeType::S)
        .build()
        .expect("name and type are set")
}

fn key(name: &str, key_type: KeyType) -> KeySchemaElement {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(key_type)
        .build()
        .expect("name and key type are set")
}
