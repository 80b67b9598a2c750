//! Body formats through the whole local pipeline (deployed stack, runners,
//! the API handler), against the emulator and loopback fakes of Slack,
//! PagerDuty and Teams that check every request against the vendor's
//! documented rules (`local_infra::vendors`): a job that fails, is retried
//! and completes opens then resolves one PagerDuty incident (and nothing
//! else reaches PagerDuty); Slack and Teams get a readable message per
//! state change, the failure's reason and message in it; a template's
//! body arrives as rendered; every request is signed over the body sent;
//! Slack's `429` with `Retry-After` holds the retry back that long.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::Utc;
use local_infra::receiver::{Received, Receiver, Reply};
use local_infra::vendors::{self, IncidentStatus, PagerDutyState};
use local_stack::pipeline::{Pipeline, PipelineConfig};
use serde_json::{Value, json};
use shared::signing;
use test_kit::api::ApiRequest;
use test_kit::emulator;
use test_kit::stack::ids;
use tokio::sync::watch;
use tokio::task::JoinSet;

const DEADLINE: Duration = Duration::from_secs(60);

struct Running {
    pipeline: Pipeline,
    dynamo: aws_sdk_dynamodb::Client,
    company: String,
    stop: watch::Sender<bool>,
    runners: JoinSet<()>,
}

impl Running {
    async fn start(local: &[(&'static str, &str)]) -> Self {
        let _ = tracing_subscriber::fmt()
            .with_env_filter("info,aws=warn,hyper=warn")
            .with_test_writer()
            .try_init();
        let sdk = emulator::sdk_config().await;
        let mut vars = vec![("SUBSCRIPTION_CACHE_TTL_SECONDS", "0")];
        vars.extend_from_slice(local);
        let pipeline = Pipeline::build(&sdk, PipelineConfig::isolated(&[], &vars))
            .await
            .unwrap();
        let (stop, shutdown) = watch::channel(false);
        let runners = pipeline.start(shutdown).await.unwrap();
        Self {
            pipeline,
            dynamo: aws_sdk_dynamodb::Client::new(&sdk),
            company: emulator::unique_name("acme"),
            stop,
            runners,
        }
    }

    /// Creates a subscription through the API; returns its id and secret.
    async fn subscribe(&self, body: Value) -> (String, String) {
        let request = ApiRequest::new("POST", "/webhooks", &self.company).json(&body);
        let (status, created) =
            test_kit::api::status_and_json(&self.pipeline.app.handle(request.build()).await);
        assert_eq!(status, 201, "{created}");
        (
            created["id"].as_str().unwrap().to_owned(),
            created["secret"].as_str().unwrap().to_owned(),
        )
    }

    /// Writes the job's item in `state` (a change of state: a stream
    /// record ingest turns into events).
    async fn write_job(&self, job_id: &str, state: &str, error: Option<(&str, &str)>) {
        let mut put = self
            .dynamo
            .put_item()
            .table_name(self.pipeline.stack.table(ids::JOBS_TABLE).unwrap())
            .item("company_id", AttributeValue::S(self.company.clone()))
            .item("job_id", AttributeValue::S(job_id.to_owned()))
            .item("type", AttributeValue::S("forecast".into()))
            .item("state", AttributeValue::S(state.into()))
            .item("updated_at", AttributeValue::S(Utc::now().to_rfc3339()))
            .item(
                "resource",
                AttributeValue::M(
                    [(
                        "dataset_name".to_owned(),
                        AttributeValue::S("orders_enriched".into()),
                    )]
                    .into(),
                ),
            );
        if let Some((reason, message)) = error {
            put = put.item(
                "error",
                AttributeValue::M(
                    [
                        ("reason".to_owned(), AttributeValue::S(reason.into())),
                        ("message".to_owned(), AttributeValue::S(message.into())),
                    ]
                    .into(),
                ),
            );
        }
        put.send().await.unwrap();
    }

    async fn stop(mut self) {
        let _ = self.stop.send(true);
        while self.runners.join_next().await.is_some() {}
    }
}

/// Awaits `condition`, at most [`DEADLINE`].
async fn until(what: &str, condition: impl Fn() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(started.elapsed() < DEADLINE, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The requests of `received`, one per event: delivery is at least once,
/// and a request sent again (an answer lost on a busy machine) has the
/// same `webhook-id`.
fn distinct(received: &[Received]) -> Vec<&Received> {
    let mut seen = std::collections::HashSet::new();
    received
        .iter()
        .filter(|r| seen.insert(r.headers["webhook-id"].as_bytes().to_vec()))
        .collect()
}

/// Asserts every request carries a `v1` signature by `secret` over the
/// body sent, and returns the bodies as JSON, one per event.
fn signed_bodies(received: &[Received], secret: &str) -> Vec<Value> {
    let key = signing::key_bytes(secret);
    distinct(received)
        .into_iter()
        .map(|r| {
            let header = |name: &str| r.headers[name].to_str().unwrap().to_owned();
            signing::verify(
                &[&key],
                &header("webhook-id"),
                &header("webhook-timestamp"),
                &header("webhook-signature"),
                &r.body,
                Utc::now().timestamp(),
            )
            .unwrap_or_else(|e| panic!("not signed over the body sent: {e}"));
            serde_json::from_slice(&r.body).expect("a JSON body")
        })
        .collect()
}

/// Every string in `value`, joined: what a person reading the message sees.
fn text_of(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(text_of).collect::<Vec<_>>().join(" "),
        Value::Object(map) => map.values().map(text_of).collect::<Vec<_>>().join(" "),
        _ => String::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_then_completed_job_opens_then_resolves_one_incident_and_chats_read_each_change() {
    let running = Running::start(&[]).await;
    let pagerduty = PagerDutyState::default();
    let (slack, teams, pd, custom) = (
        Receiver::http().await,
        Receiver::http().await,
        Receiver::http().await,
        Receiver::http().await,
    );
    slack.set_handler(vendors::slack_handler());
    teams.set_handler(vendors::teams_handler());
    pd.set_handler(vendors::pagerduty_handler(pagerduty.clone()));
    let (_, slack_secret) = running
        .subscribe(json!({"url": slack.url("/services/T0/B0/x"), "format": {"type": "slack"}}))
        .await;
    let (_, teams_secret) = running
        .subscribe(json!({"url": teams.url("/workflows/run"), "format": {"type": "teams"}}))
        .await;
    let (_, pd_secret) = running
        .subscribe(json!({"url": pd.url("/v2/enqueue"),
                          "format": {"type": "pagerduty", "routing_key": "R0ut1ngKeyOfThePagerDutyService"}}))
        .await;
    let template = r#"{"job": {{ data.job_id|tojson }}, "now": {{ data.state|tojson }}, "why": {{ (data.error.reason if data.error else none)|tojson }}}"#;
    let (_, custom_secret) = running
        .subscribe(json!({"url": custom.url("/hook"),
                          "format": {"type": "template", "template": template}}))
        .await;

    let job = format!("job-{}", emulator::unique_name("fmt"));
    let reason = "out_of_memory";
    let message = "The forecast job ran out of memory while processing orders_enriched.";
    running.write_job(&job, "running", None).await;
    running
        .write_job(&job, "failed", Some((reason, message)))
        .await;
    let dedup_key = format!("job/{job}");
    until("PagerDuty has an open incident for the failed job", || {
        pagerduty
            .incident(&dedup_key)
            .is_some_and(|i| i.status == IncidentStatus::Open)
    })
    .await;
    running.write_job(&job, "running", None).await;
    running.write_job(&job, "completed", None).await;
    until("the incident is resolved", || {
        pagerduty
            .incident(&dedup_key)
            .is_some_and(|i| i.status == IncidentStatus::Resolved)
    })
    .await;
    for (name, receiver) in [("slack", &slack), ("teams", &teams), ("template", &custom)] {
        until(&format!("{name} gets the four state changes"), || {
            distinct(&receiver.received()).len() >= 4
        })
        .await;
    }

    // PagerDuty: one incident, triggered then resolved (once each, but for
    // a request sent again); running states were not sent (no states
    // filter: failed and completed only).
    let incident = pagerduty.incident(&dedup_key).unwrap();
    assert!(
        incident.triggers >= 1 && incident.resolves >= 1,
        "{incident:?}"
    );
    assert_eq!(pagerduty.incidents().len(), 1);
    assert!(incident.summary.contains(&job), "{incident:?}");
    assert_eq!(incident.severity, "error");
    let sent = signed_bodies(&pd.received(), &pd_secret);
    let actions: Vec<&str> = sent
        .iter()
        .map(|b| b["event_action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["trigger", "resolve"]);

    // Slack and Teams: each state change, valid for the vendor (their
    // fakes answered 2xx only to valid messages), the failure readable.
    for (name, receiver, secret, check) in [
        (
            "slack",
            &slack,
            &slack_secret,
            vendors::slack::check as fn(&Value) -> _,
        ),
        ("teams", &teams, &teams_secret, vendors::teams::check),
    ] {
        let bodies = signed_bodies(&receiver.received(), secret);
        assert_eq!(bodies.len(), 4, "{name}: {bodies:?}");
        for body in &bodies {
            check(body).unwrap_or_else(|e| panic!("{name}: {e:?} in {body}"));
        }
        let texts: Vec<String> = bodies.iter().map(text_of).collect();
        let failed = texts
            .iter()
            .find(|t| t.contains(reason))
            .unwrap_or_else(|| panic!("{name}: no message names the failure: {texts:?}"));
        for needed in [job.as_str(), "forecast", message] {
            assert!(
                failed.contains(needed),
                "{name}: {needed:?} missing in {failed}"
            );
        }
        assert!(
            texts.iter().any(|t| t.contains("completed")),
            "{name}: {texts:?}"
        );
    }

    // The template's body, as rendered, in the order of the changes.
    let bodies = signed_bodies(&custom.received(), &custom_secret);
    let mut states: Vec<String> = bodies
        .iter()
        .map(|b| format!("{} {}", b["now"].as_str().unwrap(), b["why"]))
        .collect();
    states.sort();
    assert_eq!(
        states,
        [
            "completed null".to_owned(),
            format!("failed \"{reason}\""),
            "running null".to_owned(),
            "running null".to_owned(),
        ]
    );
    assert!(bodies.iter().all(|b| b["job"] == json!(job)));
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_s_429_holds_the_retry_back_for_its_retry_after() {
    let running = Running::start(&[("RETRY_SCHEDULE", "1s,1s,1s")]).await;
    let slack = Arc::new(Receiver::http().await);
    slack.set_handler(vendors::slack_handler());
    slack.script([Reply::status(429)
        .header("retry-after", "2")
        .header("content-type", "text/plain")
        .body("rate_limited")]);
    let (id, _) = running
        .subscribe(json!({"url": slack.url("/services/T0/B0/x"), "format": {"type": "slack"}}))
        .await;
    let request = ApiRequest::new("POST", &format!("/webhooks/{id}/test"), &running.company);
    let (status, body) =
        test_kit::api::status_and_json(&running.pipeline.app.handle(request.build()).await);
    assert_eq!(status, 202, "{body}");
    // The first two requests: the 429, then the retry.
    let received = slack.wait_for(2, DEADLINE).await;
    let gap = received[1].at - received[0].at;
    // The schedule says 1 s (±20 %); Retry-After says 2 s, within the
    // honoured [delay, 2 × delay].
    assert!(gap >= Duration::from_millis(1900), "retried after {gap:?}");
    assert_eq!(received[0].body, received[1].body, "the same message again");
    running.stop().await;
}
