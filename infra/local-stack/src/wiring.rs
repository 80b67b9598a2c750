//! How the template wires event sources to functions, read from
//! `template.yaml` so local wiring and production wiring cannot drift:
//! the stream mapping's batch size, window and retries, each SQS event
//! source's batch size, window and maximum concurrency, and each queue's
//! visibility timeout and redrive policy.

use std::time::Duration;

use serde_yaml::Value;

use crate::template::{Template, TemplateError};

/// The jobs stream's event source mapping.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamSource {
    /// Most records per invocation (`BatchSize`).
    pub batch_size: usize,
    /// How long to gather records before invoking (`MaximumBatchingWindowInSeconds`).
    pub batching_window: Duration,
    /// Retries of a failing batch before it is given up
    /// (`MaximumRetryAttempts`); then its metadata goes to the on-failure
    /// queue.
    pub max_retries: u32,
    /// Logical id of the on-failure destination queue.
    pub on_failure_queue: Option<String>,
}

/// One SQS event source of a function.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueSource {
    /// Logical id of the queue.
    pub queue: String,
    /// Most messages per invocation (`BatchSize`).
    pub batch_size: usize,
    /// `MaximumBatchingWindowInSeconds`.
    pub batching_window: Duration,
    /// `ScalingConfig.MaximumConcurrency` (Lambda's default is 1,000 when
    /// unset; the local runner caps it).
    pub max_concurrency: usize,
}

/// An SQS queue's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueSpec {
    /// Logical id.
    pub logical_id: String,
    /// `VisibilityTimeout`, seconds (SQS default 30).
    pub visibility_timeout: u32,
    /// Logical id of the dead-letter queue and `maxReceiveCount`.
    pub redrive: Option<(String, u32)>,
}

fn shape(resource: &str, problem: impl Into<String>) -> TemplateError {
    TemplateError::Shape {
        resource: resource.to_owned(),
        problem: problem.into(),
    }
}

/// A number that the template may spell as an integer, a string, or a
/// `!Ref` to a parameter with a default.
fn number(template: &Template, value: Option<&Value>) -> Option<u64> {
    match template.resolve(value?) {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The logical id in `!GetAtt Id.Arn` or `!Ref Id`.
fn referenced_id(value: &Value) -> Option<String> {
    let Value::Tagged(tagged) = value else {
        return None;
    };
    let target = tagged.value.as_str()?;
    match tagged.tag.to_string().trim_start_matches('!') {
        "GetAtt" => target.split('.').next().map(str::to_owned),
        "Ref" => Some(target.to_owned()),
        _ => None,
    }
}

/// The stream mapping `logical_id` (an `AWS::Lambda::EventSourceMapping`).
pub fn stream_source(template: &Template, logical_id: &str) -> Result<StreamSource, TemplateError> {
    let props = template
        .resource(logical_id)?
        .get("Properties")
        .ok_or_else(|| shape(logical_id, "no Properties"))?;
    let batch_size = number(template, props.get("BatchSize"))
        .ok_or_else(|| shape(logical_id, "no BatchSize"))?;
    Ok(StreamSource {
        batch_size: usize::try_from(batch_size).unwrap_or(usize::MAX),
        batching_window: Duration::from_secs(
            number(template, props.get("MaximumBatchingWindowInSeconds")).unwrap_or(0),
        ),
        max_retries: number(template, props.get("MaximumRetryAttempts"))
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(u32::MAX),
        on_failure_queue: props
            .get("DestinationConfig")
            .and_then(|d| d.get("OnFailure"))
            .and_then(|o| o.get("Destination"))
            .and_then(referenced_id),
    })
}

/// The SQS event sources of the serverless function `function_id`.
pub fn queue_sources(
    template: &Template,
    function_id: &str,
) -> Result<Vec<QueueSource>, TemplateError> {
    let events = template
        .resource(function_id)?
        .get("Properties")
        .and_then(|p| p.get("Events"))
        .and_then(Value::as_mapping)
        .ok_or_else(|| shape(function_id, "no Events"))?;
    let mut sources = Vec::new();
    for (name, event) in events {
        if event.get("Type").and_then(Value::as_str) != Some("SQS") {
            continue;
        }
        let event_name = name.as_str().unwrap_or("?");
        let props = event
            .get("Properties")
            .ok_or_else(|| shape(function_id, format!("event {event_name} has no Properties")))?;
        let queue = props
            .get("Queue")
            .and_then(referenced_id)
            .ok_or_else(|| shape(function_id, format!("event {event_name} names no queue")))?;
        let max_concurrency = props
            .get("ScalingConfig")
            .and_then(|s| number(template, s.get("MaximumConcurrency")))
            .unwrap_or(1000);
        sources.push(QueueSource {
            queue,
            batch_size: number(template, props.get("BatchSize")).unwrap_or(10) as usize,
            batching_window: Duration::from_secs(
                number(template, props.get("MaximumBatchingWindowInSeconds")).unwrap_or(0),
            ),
            max_concurrency: max_concurrency as usize,
        });
    }
    Ok(sources)
}

/// Every `AWS::SQS::Queue`, dead-letter targets before the queues that
/// redrive to them.
pub fn queues(template: &Template) -> Result<Vec<QueueSpec>, TemplateError> {
    let mut specs: Vec<QueueSpec> = template
        .resources_of_type("AWS::SQS::Queue")
        .map(|(id, body)| {
            let props = body.get("Properties");
            let redrive = props
                .and_then(|p| p.get("RedrivePolicy"))
                .map(|r| {
                    let target = r
                        .get("deadLetterTargetArn")
                        .and_then(referenced_id)
                        .ok_or_else(|| shape(id, "RedrivePolicy names no queue"))?;
                    let max = number(template, r.get("maxReceiveCount"))
                        .and_then(|n| u32::try_from(n).ok())
                        .ok_or_else(|| shape(id, "RedrivePolicy has no maxReceiveCount"))?;
                    Ok::<_, TemplateError>((target, max))
                })
                .transpose()?;
            Ok(QueueSpec {
                logical_id: id.to_owned(),
                visibility_timeout: props
                    .and_then(|p| number(template, p.get("VisibilityTimeout")))
                    .and_then(|n| u32::try_from(n).ok())
                    .unwrap_or(30),
                redrive,
            })
        })
        .collect::<Result<_, TemplateError>>()?;
    specs.sort_by_key(|q| q.redrive.is_some());
    Ok(specs)
}

/// A function's environment variable as the template sets it, when it is
/// a literal or a `!Ref` to a parameter with a default.
pub fn function_env(template: &Template, function_id: &str, var: &str) -> Option<String> {
    let value = template
        .resource(function_id)
        .ok()?
        .get("Properties")?
        .get("Environment")?
        .get("Variables")?
        .get(var)?;
    match template.resolve(value) {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::default_path;

    fn template() -> Template {
        Template::load(&default_path()).unwrap()
    }

    #[test]
    fn reads_the_stream_mapping_of_the_repository_template() {
        let s = stream_source(&template(), "JobEventsStreamMapping").unwrap();
        assert_eq!(s.batch_size, 500);
        assert_eq!(s.batching_window, Duration::from_secs(1));
        assert_eq!(s.max_retries, 10);
        assert_eq!(s.on_failure_queue.as_deref(), Some("IngestFailureQueue"));
    }

    #[test]
    fn reads_the_delivery_event_sources_and_queues() {
        let t = template();
        let sources = queue_sources(&t, "WebhookDeliveryFunction").unwrap();
        let names: Vec<_> = sources.iter().map(|s| s.queue.as_str()).collect();
        assert_eq!(names, ["DeliveryQueue", "RetryQueue"]);
        assert!(
            sources
                .iter()
                .all(|s| s.batch_size == 10 && s.max_concurrency == 50)
        );
        let queues = queues(&t).unwrap();
        let delivery = queues
            .iter()
            .find(|q| q.logical_id == "DeliveryQueue")
            .unwrap();
        assert_eq!(delivery.visibility_timeout, 180);
        assert_eq!(delivery.redrive, Some(("DeadLetterQueue".to_owned(), 5)));
        let dlq = queues
            .iter()
            .position(|q| q.logical_id == "DeadLetterQueue")
            .unwrap();
        let retry = queues
            .iter()
            .position(|q| q.logical_id == "RetryQueue")
            .unwrap();
        assert!(dlq < retry, "targets first");
        assert_eq!(
            function_env(&t, "WebhookDeliveryFunction", "RETRY_SCHEDULE").as_deref(),
            Some("5s,5m,30m,2h,5h,10h,10h")
        );
    }
}
