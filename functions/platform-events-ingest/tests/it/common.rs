//! The handler's fixture against the local AWS emulator: a stack of its
//! own, subscriptions, CloudEvents published to PlatformEventsQueue, and
//! what lands on the DeliveryQueue and the dead-letter queue.

use aws_lambda_events::sqs::SqsEvent;
use aws_sdk_sqs::types::{Message, SendMessageBatchRequestEntry};
use platform_events_ingest::{PlatformIngest, PlatformIngestConfig};
use serde_json::{Value, json};
use shared::domain::filters::Filters;
use shared::domain::message::DeliveryMessage;
use shared::storage::subscriptions::SubscriptionStore;
use test_kit::aws_proxy::AwsProxy;
use test_kit::emulator;
use test_kit::stack::{self, ids};

pub struct Fixture {
    pub dynamo: aws_sdk_dynamodb::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub store: SubscriptionStore,
    pub config: PlatformIngestConfig,
    pub ingress_url: String,
    pub ingress_arn: String,
}

/// A valid engine event of `company` with id `id`.
pub fn engine_event(company: &str, id: &str) -> Value {
    json!({
        "specversion": "1.0",
        "id": id,
        "source": "//engine/aggregates",
        "type": "engine.aggregate_batch_started",
        "companyid": company,
        "time": "2026-11-22T10:00:00.123Z",
        "datacontenttype": "application/json",
        "data": example("engine.aggregate_batch_started"),
    })
}

/// The first catalogue example of `event_type`'s data.
pub fn example(event_type: &str) -> Value {
    shared::catalogue::find(event_type)
        .and_then(|e| e.examples.first().cloned())
        .unwrap_or_else(|| panic!("{event_type} has an example"))
}

/// A subject/verb event of `company` about `subject_type` `subject`.
pub fn subject_event(
    company: &str,
    id: &str,
    subject_type: &str,
    subject: &str,
    verb: &str,
) -> Value {
    json!({
        "specversion": "1.0",
        "id": id,
        "source": "//platform/works",
        "type": format!("subject.{verb}"),
        "companyid": company,
        "subjecttype": subject_type,
        "subject": subject,
        "verb": verb,
        "data": {"subject_type": subject_type, "subject_id": subject, "verb": verb}
    })
}

/// An app event of `company` for `app`.
pub fn app_event(company: &str, id: &str, app: &str, name: &str) -> Value {
    let mut data = example(&format!("app.{name}"));
    data["app_id"] = app.into();
    json!({
        "specversion": "1.0",
        "id": id,
        "source": "//platform/apps",
        "type": format!("app.{name}"),
        "companyid": company,
        "appid": app,
        "data": data,
    })
}

impl Fixture {
    /// A stack of its own; the function's deployed configuration with
    /// fewer send attempts.
    pub async fn new() -> Self {
        let sdk = emulator::sdk_config().await;
        let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let stack = stack::deploy().await;
        let config = PlatformIngestConfig::from_vars(&stack::function_vars(
            &stack,
            ids::PLATFORM_INGEST_FUNCTION,
            &[("SEND_CONCURRENCY", "4"), ("SEND_ATTEMPTS", "3")],
        ))
        .unwrap();
        assert_eq!(
            config.queue_url,
            stack.queue_url(ids::DELIVERY_QUEUE).unwrap()
        );
        assert_eq!(
            config.dead_letter_queue_url,
            stack
                .queue_url(ids::PLATFORM_EVENTS_DEAD_LETTER_QUEUE)
                .unwrap()
        );
        let mapping = stack
            .mappings_of(ids::PLATFORM_INGEST_FUNCTION)
            .find(|m| m.is_queue())
            .expect("the function reads PlatformEventsQueue");
        assert!(mapping.report_batch_item_failures);
        let ingress_arn = mapping.source_arn.clone();
        let ingress_url = stack
            .queue_url_of_arn(&ingress_arn)
            .expect("the mapping's queue is the stack's")
            .to_owned();
        assert_eq!(
            ingress_url,
            stack.queue_url(ids::PLATFORM_EVENTS_QUEUE).unwrap()
        );
        Self {
            store: SubscriptionStore::new(dynamo.clone(), config.table.clone()),
            dynamo,
            sqs,
            config,
            ingress_url,
            ingress_arn,
        }
    }

    /// The handler as the function builds it.
    pub fn ingest(&self) -> PlatformIngest {
        PlatformIngest::new(&self.config, self.dynamo.clone(), self.sqs.clone())
    }

    /// A handler whose AWS calls go through `proxy`.
    pub async fn ingest_via(&self, proxy: &AwsProxy) -> PlatformIngest {
        let sdk = proxy.sdk().await;
        PlatformIngest::new(
            &self.config,
            aws_sdk_dynamodb::Client::new(&sdk),
            aws_sdk_sqs::Client::new(&sdk),
        )
    }

    /// Stores an active subscription of `company` with `filters` (the
    /// stored form: `event_types` makes it an events subscription).
    pub async fn subscribe(&self, company: &str, filters: Value) -> String {
        let filters: Filters = serde_json::from_value(filters).unwrap();
        stack::store_subscription(&self.store, company, filters)
            .await
            .subscription_id
    }

    /// Publishes `events` to PlatformEventsQueue as a platform service
    /// does, ten to a `SendMessageBatch`.
    pub async fn publish(&self, events: &[Value]) {
        let bodies: Vec<String> = events.iter().map(Value::to_string).collect();
        self.publish_raw(&bodies).await;
    }

    /// Publishes `bodies` as they are.
    pub async fn publish_raw(&self, bodies: &[String]) {
        for chunk in bodies.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, body)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(body)
                        .build()
                        .unwrap()
                })
                .collect();
            let out = self
                .sqs
                .send_message_batch()
                .queue_url(&self.ingress_url)
                .set_entries(Some(entries))
                .send()
                .await
                .unwrap();
            assert!(out.failed.is_empty(), "{:?}", out.failed);
        }
    }

    /// Every message published since the last call, as Lambda's SQS event
    /// (in the order published).
    pub async fn next_event(&self) -> SqsEvent {
        let mut messages = emulator::drain(&self.sqs, &self.ingress_url).await;
        messages.sort_by_key(|m| {
            m.attributes()
                .and_then(|a| a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::SentTimestamp))
                .and_then(|t| t.parse::<u64>().ok())
        });
        local_infra::queue::lambda_event(&messages, &self.ingress_arn, "us-east-1")
    }

    /// Every message on the delivery queue, removed from it.
    pub async fn drain(&self) -> Vec<DeliveryMessage> {
        emulator::drain(&self.sqs, &self.config.queue_url)
            .await
            .iter()
            .map(|m| {
                emulator::assert_grouped_by_company(m);
                DeliveryMessage::parse(m.body().unwrap()).expect("a delivery message")
            })
            .collect()
    }

    /// Every message on the dead-letter queue, removed from it.
    pub async fn drain_dead(&self) -> Vec<Message> {
        emulator::drain(&self.sqs, &self.config.dead_letter_queue_url).await
    }
}

/// A message attribute's string value.
pub fn attribute<'a>(m: &'a Message, name: &str) -> Option<&'a str> {
    m.message_attributes()
        .and_then(|a| a.get(name))
        .and_then(|v| v.string_value())
}

/// The payload of a delivery message.
pub fn payload(m: &DeliveryMessage) -> Value {
    serde_json::from_str(m.payload.get()).unwrap()
}
