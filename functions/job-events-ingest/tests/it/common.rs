//! The ingest handler's fixture against the local AWS emulator, shared by
//! the ingest and replay tests: a stack of its own, its jobs table and
//! stream, subscriptions and the delivery queue.

// Each test file uses its own subset of the helpers.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use job_events_ingest::poison::PoisonRecord;
use job_events_ingest::{Ingest, IngestConfig};
use local_infra::cloudformation::DeployedStack;
use local_infra::stream::{StartPosition, StreamReader, StreamRecord, lambda_event};
use serde_json::Value;
use shared::domain::filters::FiltersInput;
use shared::domain::message::DeliveryMessage;
use shared::storage::subscriptions::SubscriptionStore;
use test_kit::aws_proxy::AwsProxy;
use test_kit::emulator;
use test_kit::stack::{self, ids};

pub struct Fixture {
    pub sdk: aws_config::SdkConfig,
    pub stack: DeployedStack,
    pub dynamo: aws_sdk_dynamodb::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub store: SubscriptionStore,
    pub jobs_table: String,
    pub queue_url: String,
    pub config: IngestConfig,
    pub reader: StreamReader,
    pub stream_arn: String,
}

pub fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

/// A job item as the platform writes it.
pub fn job(
    company: &str,
    job_id: &str,
    job_type: &str,
    state: &str,
) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("company_id".to_owned(), s(company)),
        ("job_id".to_owned(), s(job_id)),
        ("type".to_owned(), s(job_type)),
        ("state".to_owned(), s(state)),
        ("updated_at".to_owned(), s("2026-11-22T10:00:00.000Z")),
    ])
}

impl Fixture {
    /// A stack of its own; the ingest function's deployed configuration
    /// with fewer send attempts, reading the stack's jobs stream from the
    /// start.
    pub async fn new() -> Self {
        let sdk = emulator::sdk_config().await;
        let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let stack = stack::deploy().await;
        let config = IngestConfig::from_vars(&stack::function_vars(
            &stack,
            ids::INGEST_FUNCTION,
            &[("SEND_CONCURRENCY", "4"), ("SEND_ATTEMPTS", "3")],
        ))
        .unwrap();
        let jobs_table = stack.table(ids::JOBS_TABLE).unwrap().to_owned();
        let mapping = stack
            .mappings_of(ids::INGEST_FUNCTION)
            .find(|m| m.is_stream())
            .expect("the ingest function reads the jobs stream");
        let stream_arn = mapping.source_arn.clone();
        let queue_url = config.queue_url.clone();
        assert_eq!(queue_url, stack.queue_url(ids::DELIVERY_QUEUE).unwrap());
        let subs_table = config.table.clone();
        let reader = StreamReader::open(
            aws_sdk_dynamodbstreams::Client::new(&sdk),
            stream_arn.clone(),
            StartPosition::TrimHorizon,
        )
        .await
        .unwrap();
        Self {
            sdk: sdk.clone(),
            stack,
            store: SubscriptionStore::new(dynamo.clone(), subs_table),
            dynamo,
            sqs,
            jobs_table,
            queue_url,
            config,
            reader,
            stream_arn,
        }
    }

    /// The ingest handler as the function builds it.
    pub fn ingest(&self) -> Ingest {
        Ingest::new(&self.config, self.dynamo.clone(), self.sqs.clone())
            .with_streams(aws_sdk_dynamodbstreams::Client::new(&self.sdk))
    }

    /// An ingest handler whose AWS calls go through `proxy`.
    pub async fn ingest_via(&self, proxy: &AwsProxy) -> Ingest {
        let sdk = proxy.sdk().await;
        let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        Ingest::new(&self.config, dynamo, sqs)
    }

    pub async fn subscribe(&self, company: &str, filters: Value) -> String {
        let filters: FiltersInput = serde_json::from_value(filters).unwrap();
        stack::store_subscription(&self.store, company, filters.validate().unwrap())
            .await
            .subscription_id
    }

    pub async fn put(&self, item: HashMap<String, AttributeValue>) {
        self.dynamo
            .put_item()
            .table_name(&self.jobs_table)
            .set_item(Some(item))
            .send()
            .await
            .unwrap();
    }

    pub async fn delete(&self, job_id: &str) {
        self.dynamo
            .delete_item()
            .table_name(&self.jobs_table)
            .key("job_id", s(job_id))
            .send()
            .await
            .unwrap();
    }

    /// Every stream record written since the last call.
    pub async fn next_records(&mut self) -> Vec<StreamRecord> {
        let mut records = Vec::new();
        loop {
            let batch = self.reader.poll(1000).await.unwrap();
            if batch.is_empty() {
                return records;
            }
            records.extend(batch);
        }
    }

    /// The Lambda event for every stream record written since the last
    /// call.
    pub async fn next_event(&mut self) -> Value {
        let records = self.next_records().await;
        lambda_event(
            records.iter().map(|r| &r.record),
            &self.stream_arn,
            "us-east-1",
        )
    }

    /// Every entry on the poison queue, removed from it.
    pub async fn drain_poison(&self) -> Vec<PoisonRecord> {
        assert_eq!(
            self.config.poison_queue_url,
            self.stack.queue_url(ids::INGEST_POISON_QUEUE).unwrap()
        );
        emulator::drain(&self.sqs, &self.config.poison_queue_url)
            .await
            .iter()
            .map(|m| serde_json::from_str(m.body().unwrap()).expect("a poison entry"))
            .collect()
    }

    /// Every message on the delivery queue, removed from it.
    pub async fn drain(&self) -> Vec<DeliveryMessage> {
        emulator::drain(&self.sqs, &self.queue_url)
            .await
            .iter()
            .map(|m| {
                emulator::assert_grouped_by_company(m);
                serde_json::from_str(m.body().unwrap()).expect("a delivery message")
            })
            .collect()
    }
}
