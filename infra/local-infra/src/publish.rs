//! Platform events published the way a platform service publishes them:
//! CloudEvents 1.0 in structured JSON, sent to the stack's ingress queue
//! (`PlatformEventsQueue`) in batches of ten.
//!
//! [`sample`] builds a CloudEvent of any catalogue type from the type's
//! first example, with the context attributes the type requires taken
//! from that example's data; `make publish` sends a few of them for a
//! company while `make run` serves.

use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use chrono::{SecondsFormat, Utc};
use serde_json::{Value, json};

/// The event types `make publish` sends by default: engine events and app
/// events of two apps, and a subject/verb event.
pub const DEFAULT_TYPES: &[&str] = &[
    "engine.aggregate_batch_started",
    "engine.aggregate_batch_result",
    "app.installed",
    "subject.completed",
];

/// Most entries SQS takes in one `SendMessageBatch`.
const BATCH: usize = 10;

/// Why events could not be published.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The catalogue has no such type.
    #[error("the catalogue has no event type {0:?} (GET /event-types lists them)")]
    UnknownType(String),
    /// The stack or its queue could not be found.
    #[error("the ingress queue: {0}")]
    Stack(String),
    /// SQS refused the batch.
    #[error("SendMessageBatch to the ingress queue failed: {0}")]
    Send(String),
    /// SQS accepted only part of a batch.
    #[error("the ingress queue refused {0} event(s): {1}")]
    Refused(usize, String),
}

/// A CloudEvent of `event_type` for `company`, with the type's first
/// catalogue example as `data`, a fresh id, the current time, and the
/// context attributes the type requires (`appid`, `subject`,
/// `subjecttype`, `verb`) read from the example.
pub fn sample(company: &str, event_type: &str) -> Result<Value, PublishError> {
    let entry = shared::catalogue::find(event_type)
        .filter(|e| shared::domain::filters::is_platform_type(&e.name))
        .ok_or_else(|| PublishError::UnknownType(event_type.to_owned()))?;
    let data = entry.examples.first().cloned().unwrap_or_else(|| json!({}));
    let mut event = json!({
        "specversion": "1.0",
        "id": uuid::Uuid::new_v4().to_string(),
        "source": shared::catalogue::example_source(&entry.group),
        "type": entry.name,
        "time": Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
        "datacontenttype": "application/json",
        "companyid": company,
    });
    for (attribute, field) in shared::catalogue::CONTEXT_FIELDS {
        if let Some(value) = data.get(field).and_then(Value::as_str) {
            event[attribute] = value.into();
        }
    }
    event["data"] = data;
    Ok(event)
}

/// Sends CloudEvents to an ingress queue.
#[derive(Debug, Clone)]
pub struct Publisher {
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
}

impl Publisher {
    /// A publisher to the queue at `queue_url`.
    pub fn new(sqs: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        Self {
            sqs,
            queue_url: queue_url.into(),
        }
    }

    /// A publisher to the ingress queue of the stack `make run` deployed
    /// (`LOCAL_STACK_NAME`), or of `PLATFORM_EVENTS_QUEUE_URL` when set.
    pub async fn for_local_stack(sdk: &aws_config::SdkConfig) -> Result<Self, PublishError> {
        let queue_url = match shared::config::optional("PLATFORM_EVENTS_QUEUE_URL") {
            Some(url) => url,
            None => {
                let stack = crate::cloudformation::stack_name();
                crate::cloudformation::DeployedStack::read_existing(sdk, &stack)
                    .await
                    .and_then(|s| {
                        s.queue_url(crate::cloudformation::ids::PLATFORM_EVENTS_QUEUE)
                            .map(str::to_owned)
                    })
                    .map_err(|e| PublishError::Stack(format!("{e} (is `make run` serving?)")))?
            }
        };
        Ok(Self::new(aws_sdk_sqs::Client::new(sdk), queue_url))
    }

    /// The queue's URL.
    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }

    /// Sends `events` as they are, ten to a request.
    pub async fn publish(&self, events: &[Value]) -> Result<(), PublishError> {
        for chunk in events.chunks(BATCH) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, event)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(event.to_string())
                        .build()
                        .expect("id and body are set")
                })
                .collect::<Vec<_>>();
            let out = self
                .sqs
                .send_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| {
                    PublishError::Send(aws_sdk_sqs::error::DisplayErrorContext(e).to_string())
                })?;
            if !out.failed.is_empty() {
                let first = out.failed[0].message.clone().unwrap_or_default();
                return Err(PublishError::Refused(out.failed.len(), first));
            }
        }
        Ok(())
    }
}

/// `local-stack publish COMPANY [TYPE ...]`: publishes one sample event of
/// each type (by default [`DEFAULT_TYPES`]) for `company` to the local
/// ingress, printing each.
pub async fn run_cli(company: &str, types: &[String]) -> Result<Vec<Value>, PublishError> {
    let sdk = shared::config::aws_sdk_config().await;
    let publisher = Publisher::for_local_stack(&sdk).await?;
    let types: Vec<&str> = if types.is_empty() {
        DEFAULT_TYPES.to_vec()
    } else {
        types.iter().map(String::as_str).collect()
    };
    let events = types
        .iter()
        .map(|t| sample(company, t))
        .collect::<Result<Vec<_>, _>>()?;
    publisher.publish(&events).await?;
    for event in &events {
        println!(
            "  published {} from {} (id {})",
            event["type"].as_str().unwrap_or_default(),
            event["source"].as_str().unwrap_or_default(),
            event["id"].as_str().unwrap_or_default()
        );
    }
    println!("{} CloudEvent(s) published for {company}.", events.len());
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_carry_the_attributes_their_type_requires() {
        for name in ["app.installed", "subject.failed", "engine.slow_query_event"] {
            let event = sample("acme", name).unwrap();
            assert_eq!(event["specversion"], "1.0");
            assert_eq!(event["companyid"], "acme");
            let entry = shared::catalogue::find(name).unwrap();
            for attribute in &entry.requires {
                assert!(
                    event[attribute.as_str()].is_string(),
                    "{name} needs {attribute}: {event}"
                );
            }
            assert_eq!(
                shared::catalogue::validate_data(name, &event["data"]),
                Ok(())
            );
        }
        assert!(matches!(
            sample("acme", "job.completed"),
            Err(PublishError::UnknownType(_))
        ));
    }
}
