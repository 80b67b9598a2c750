//! The prober against the emulator: a run near its deadline leaves due
//! subscriptions for the next run; a due breaker with nothing parked to
//! probe with is closed and its (empty) drain ends; a probe reads one key
//! range however many failed events the subscription holds; a drain larger
//! than a run makes progress every run, killed or cut short by its budget,
//! with no duplicate beyond the batch it was in.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
use futures::StreamExt;
use shared::domain::message::{DeliveryMessage, EventEnvelope};
use shared::storage::parked::{ParkedEvent, ParkedEvents, ParkedStatus};
use test_kit::aws_proxy::AwsProxy;

use chrono::Utc;
use endpoint_prober::{Prober, ProberConfig};
use shared::domain::filters::Filters;
use shared::domain::health::BreakerState;
use shared::domain::subscription::{NewSubscription, Subscription};
use shared::signing::sealed::Keyring;
use shared::storage::subscriptions::SubscriptionStore;
use test_kit::emulator;
use test_kit::stack::{self, ids};

#[tokio::test]
async fn a_run_near_its_deadline_defers_and_a_breaker_with_nothing_parked_closes() {
    // Only what is due at each run's time.
    let setup = Setup::new(&[("PROBE_LOOKAHEAD_SECONDS", "0")]).await;
    let store = &setup.store;
    let sub = setup.subscription().await;
    let now = Utc::now();
    store
        .open_breaker(&sub, now, now)
        .await
        .unwrap()
        .expect("the breaker opens");
    let prober = setup.prober();

    let late = prober.run(Utc::now(), Some(Instant::now())).await;
    assert_eq!(
        (late.deferred, late.probes_sent, late.closed_without_probe),
        (1, 0, 0)
    );
    let stored = store
        .get(&sub.company_id, &sub.subscription_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.health.breaker, BreakerState::Open, "nothing claimed");

    let run = prober.run(Utc::now(), None).await;
    assert_eq!((run.closed_without_probe, run.errors), (1, 0), "{run:?}");
    let closed = store
        .get(&sub.company_id, &sub.subscription_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(closed.health.breaker, BreakerState::Closed);
    // The drain starts after its delay, finds nothing and ends.
    let later = Utc::now() + shared::domain::health::DRAIN_START_DELAY;
    let drained = prober.run(later, None).await;
    assert_eq!(drained.drains_finished, 1, "{drained:?}");
    let done = store
        .get(&sub.company_id, &sub.subscription_id)
        .await
        .unwrap()
        .unwrap();
    assert!(done.health.probe_lane.is_none());
}

/// A deployed stack, the prober's configuration with `vars`, and its AWS
/// calls through a counting proxy.
struct Setup {
    config: ProberConfig,
    store: SubscriptionStore,
    parked: ParkedEvents,
    dynamo: aws_sdk_dynamodb::Client,
    sqs: aws_sdk_sqs::Client,
    proxy: AwsProxy,
    sdk: aws_config::SdkConfig,
}

impl Setup {
    async fn new(vars: &[(&str, &str)]) -> Self {
        let sdk = emulator::sdk_config().await;
        let stack = stack::deploy().await;
        let config =
            ProberConfig::from_vars(&stack::function_vars(&stack, ids::PROBER_FUNCTION, vars))
                .unwrap();
        let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
        Self {
            store: SubscriptionStore::new(dynamo.clone(), config.subscriptions_table.clone()),
            parked: ParkedEvents::new(dynamo.clone(), config.parked_events_table.clone()),
            sqs: aws_sdk_sqs::Client::new(&sdk),
            dynamo,
            config,
            proxy: AwsProxy::start(emulator::endpoint()),
            sdk,
        }
    }

    /// The prober, its AWS calls through the proxy.
    fn prober(&self) -> Prober {
        self.prober_with(&self.config)
    }

    /// The prober configured with `config`, its AWS calls through the
    /// proxy.
    fn prober_with(&self, config: &ProberConfig) -> Prober {
        let via = |b: aws_sdk_dynamodb::config::Builder| b.endpoint_url(self.proxy.endpoint());
        Prober::new(
            config,
            aws_sdk_dynamodb::Client::from_conf(
                via(aws_sdk_dynamodb::config::Builder::from(&self.sdk)).build(),
            ),
            aws_sdk_sqs::Client::from_conf(
                aws_sdk_sqs::config::Builder::from(&self.sdk)
                    .endpoint_url(self.proxy.endpoint())
                    .build(),
            ),
            aws_sdk_eventbridge::Client::new(&self.sdk),
        )
    }

    async fn subscription(&self) -> Subscription {
        let sub = Subscription::create(
            &emulator::unique_name("acme"),
            NewSubscription {
                url: "https://hooks.example.com/jobs".to_owned(),
                description: None,
                filters: Filters::default(),
            },
            Utc::now(),
            // Ingest and the prober never open a secret: any keyring seals it.
            &Keyring::generate(),
        )
        .unwrap()
        .0;
        self.store.create(&sub, None, u64::MAX).await.unwrap();
        sub
    }

    /// `n` events of `sub` with `status`, one a second from `first`
    /// seconds after a fixed time, ten jobs taking turns, each message
    /// padded to about `bytes`.
    async fn seed(
        &self,
        sub: &Subscription,
        status: ParkedStatus,
        first: u64,
        n: u64,
        bytes: usize,
    ) -> Vec<ParkedEvent> {
        self.seed_as(sub, status, first, n, bytes, false).await
    }

    /// [`Self::seed`], with the keys of earlier versions (`{millis}#{id}`)
    /// when `legacy`.
    async fn seed_as(
        &self,
        sub: &Subscription,
        status: ParkedStatus,
        first: u64,
        n: u64,
        bytes: usize,
        legacy: bool,
    ) -> Vec<ParkedEvent> {
        let now = Utc::now();
        let events: Vec<ParkedEvent> = (first..first + n)
            .map(|i| {
                let at = chrono::DateTime::from_timestamp(1_795_000_000 + i as i64, 0).unwrap();
                let data = serde_json::value::to_raw_value(&serde_json::json!({
                    "job_id": format!("job-{}", i % 10),
                    "state": "running",
                    "padding": "x".repeat(bytes),
                }))
                .unwrap();
                let timestamp = at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
                let key = format!("evt_{i:032}");
                let sequence = (1_000_000_000_000_000_000u128 + u128::from(i)).to_string();
                let body = EventEnvelope {
                    company_id: &sub.company_id,
                    event_type: "job.running",
                    timestamp: &timestamp,
                    data: &data,
                    sequence: Some(&sequence),
                }
                .message_body(&sub.subscription_id, &key);
                let msg = DeliveryMessage::parse(&body).unwrap();
                let mut event = ParkedEvent::of(&msg, status, now, chrono::Duration::days(1));
                if legacy {
                    event.event_key = format!("{}#{key}", at.timestamp_millis());
                }
                event
            })
            .collect();
        let table = self.config.parked_events_table.clone();
        let writes = events.chunks(25).map(|chunk| {
            let requests: Vec<WriteRequest> = chunk
                .iter()
                .map(|e| {
                    WriteRequest::builder()
                        .put_request(
                            PutRequest::builder()
                                .set_item(Some(serde_dynamo::to_item(e).unwrap()))
                                .build()
                                .unwrap(),
                        )
                        .build()
                })
                .collect();
            let (dynamo, table) = (self.dynamo.clone(), table.clone());
            async move {
                let out = dynamo
                    .batch_write_item()
                    .request_items(table, requests)
                    .send()
                    .await
                    .unwrap();
                assert!(
                    out.unprocessed_items.unwrap_or_default().is_empty(),
                    "the emulator takes every write"
                );
            }
        });
        futures::stream::iter(writes)
            .buffer_unordered(8)
            .collect::<Vec<()>>()
            .await;
        events
    }

    async fn parked_count(&self, sub: &Subscription) -> u64 {
        self.parked
            .count_parked(&sub.company_id, &sub.subscription_id, u64::MAX)
            .await
            .unwrap()
    }

    /// Messages on the delivery queue, delayed ones included.
    async fn queued(&self) -> u64 {
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(&self.config.delivery_queue_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(
                aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesDelayed,
            )
            .attribute_names(
                aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
            )
            .send()
            .await
            .unwrap();
        out.attributes
            .unwrap_or_default()
            .values()
            .map(|v| v.parse::<u64>().unwrap())
            .sum()
    }
}

const QUERY: &str = "DynamoDB_20120810.Query";

#[tokio::test]
async fn a_probe_and_the_parked_count_read_one_range_beside_twenty_thousand_failed_events() {
    // What is counted is the reads, not their time: the emulator reads a
    // partition of 22,000 items slowly when the machine is busy, so the
    // endpoint's time budget is out of the way.
    let setup = Setup::new(&[
        ("PROBE_LOOKAHEAD_SECONDS", "0"),
        ("ENDPOINT_BUDGET_SECONDS", "300"),
    ])
    .await;
    let sub = setup.subscription().await;
    // Weeks of one rejected event type: 20,000 failed events, all older
    // than the one event parked since the endpoint went down.
    setup.seed(&sub, ParkedStatus::Failed, 0, 20_000, 0).await;
    // And 2,000 more written by an earlier version, in the legacy range:
    // read in whole pages, not ten items a query.
    setup
        .seed_as(&sub, ParkedStatus::Failed, 20_000, 2_000, 0, true)
        .await;
    let parked = setup.seed(&sub, ParkedStatus::Parked, 30_000, 1, 0).await;
    let now = Utc::now();
    setup
        .store
        .open_breaker(&sub, now, now)
        .await
        .unwrap()
        .expect("the breaker opens");

    let prober = setup.prober();
    let queries = count_queries(&setup.proxy, &setup.config.parked_events_table);
    let run = prober.run(Utc::now(), None).await;
    assert_eq!((run.probes_sent, run.errors), (1, 0), "{run:?}");
    let reads = queries.swap(0, Ordering::SeqCst);
    assert!(
        reads <= 4,
        "{reads} queries of the parked events to find the one to probe with"
    );
    let probe = emulator::take(&setup.sqs, &setup.config.delivery_queue_url, 1).await;
    assert_eq!(probe.len(), 1);
    let msg = DeliveryMessage::parse(probe[0].body().unwrap()).unwrap();
    assert_eq!(msg.probe.as_deref(), Some(parked[0].event_key.as_str()));

    let counting = ParkedEvents::new(
        aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(&setup.sdk)
                .endpoint_url(setup.proxy.endpoint())
                .build(),
        ),
        setup.config.parked_events_table.clone(),
    );
    let count = counting
        .count_parked(&sub.company_id, &sub.subscription_id, u64::MAX)
        .await
        .unwrap();
    assert_eq!(count, 1);
    let reads = queries.swap(0, Ordering::SeqCst);
    assert!(reads <= 4, "{reads} queries to count the parked events");
}

/// Counts the queries of `table` made through `proxy`.
fn count_queries(proxy: &AwsProxy, table: &str) -> Arc<AtomicUsize> {
    let count = Arc::new(AtomicUsize::new(0));
    let (counted, table) = (Arc::clone(&count), table.to_owned());
    proxy.observe(move |call| {
        let request: serde_json::Value = serde_json::from_slice(call.request).unwrap_or_default();
        if call.target == QUERY && request["TableName"] == table.as_str() {
            counted.fetch_add(1, Ordering::SeqCst);
        }
    });
    count
}

/// The event ids (`webhook-id`) of the messages sent through `proxy`, as they
/// are sent.
fn record_sends(
    proxy: &AwsProxy,
) -> (Arc<Mutex<Vec<String>>>, tokio::sync::watch::Receiver<usize>) {
    let sent = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = tokio::sync::watch::channel(0usize);
    let seen = Arc::clone(&sent);
    proxy.observe(move |call| {
        if call.target != "AmazonSQS.SendMessageBatch" || !call.ok {
            return;
        }
        let request: serde_json::Value = serde_json::from_slice(call.request).unwrap();
        let mut seen = seen.lock().unwrap();
        for entry in request["Entries"].as_array().unwrap() {
            let msg = DeliveryMessage::parse(entry["MessageBody"].as_str().unwrap()).unwrap();
            seen.push(msg.webhook_id);
        }
        tx.send_modify(|batches| *batches += 1);
    });
    (sent, rx)
}

#[tokio::test]
async fn a_drain_larger_than_a_run_makes_progress_every_run_with_no_duplicate_beyond_one_batch() {
    let setup = Setup::new(&[
        ("PROBE_LOOKAHEAD_SECONDS", "0"),
        // A step of at most 200 events: 40 a second for 5 seconds.
        ("DRAIN_RATE_PER_SECOND", "40"),
        ("DRAIN_WINDOW_SECONDS", "5"),
        ("ENDPOINT_BUDGET_SECONDS", "10"),
    ])
    .await;
    let sub = setup.subscription().await;
    const N: u64 = 400;
    setup.seed(&sub, ParkedStatus::Parked, 0, N, 512).await;
    // Recovered: the breaker closed and the drain is due now.
    let now = Utc::now();
    let (company, id) = (sub.company_id.clone(), sub.subscription_id.clone());
    let (company, id) = (company.as_str(), id.as_str());
    let open = setup.store.open_breaker(&sub, now, now).await.unwrap();
    assert!(open.is_some(), "the breaker opens");
    let sub = setup.store.get(company, id).await.unwrap().unwrap();
    setup
        .store
        .close_breaker(&sub, now - shared::domain::health::DRAIN_START_DELAY)
        .await
        .unwrap()
        .expect("the breaker closes");
    let (sent, mut batches) = record_sends(&setup.proxy);
    let prober = setup.prober();

    // Run 1 (with all the time it wants) is killed, like a Lambda at its
    // timeout, once five batches went out.
    let mut unbounded = setup.config.clone();
    unbounded.endpoint_budget = Duration::from_secs(600);
    let unbounded = setup.prober_with(&unbounded);
    let mut killed = tokio::spawn(async move { unbounded.run(Utc::now(), None).await });
    tokio::select! {
        seen = batches.wait_for(|n| *n >= 5) => {
            seen.unwrap();
            killed.abort();
            let _ = killed.await;
        }
        run = &mut killed => panic!("the run ended before five batches: {run:?}"),
    }
    let left = setup.parked_count(&sub).await;
    let queued = setup.queued().await;
    assert!(left < N, "the killed run deleted what it had sent");
    assert!(
        queued <= N - left + 10,
        "{queued} sent but only {} deleted: more than the batch in hand",
        N - left
    );

    // A run whose deadline comes 200 ms after it starts stops between two
    // batches, after its first: progress, and less than its step.
    // (Each run holds the subscription for its window and its budget: the
    // killed one's budget was 600 s.)
    // (Window, budget, a second, and room for the time a run takes.)
    let step = chrono::Duration::seconds(5 + 10 + 1 + 2);
    let mut at = Utc::now() + chrono::Duration::seconds(5 + 600 + 1 + 2);
    let cut = prober
        .run(
            at,
            Some(
                Instant::now()
                    + endpoint_prober::prober::DEADLINE_MARGIN
                    + Duration::from_millis(200),
            ),
        )
        .await;
    let after_cut = setup.parked_count(&sub).await;
    assert_eq!(cut.over_budget, 1, "{cut:?}");
    assert!(cut.drained >= 10 && cut.drained < 200, "{cut:?}");
    assert_eq!(cut.drained, left - after_cut, "{cut:?}");

    // Each later run goes on where the last one stopped, one step (at most
    // 200 events, fewer when one job's states need more seconds) at a time,
    // until none is left.
    let mut before = after_cut;
    let mut runs = 0;
    while before > 0 {
        at += step;
        let run = prober.run(at, None).await;
        let now_left = setup.parked_count(&sub).await;
        assert!(now_left < before, "run {runs} made no progress: {run:?}");
        assert!(run.drained <= 200, "more than a step: {run:?}");
        assert_eq!(run.errors, 0, "{run:?}");
        assert_eq!(run.drained, before - now_left, "{run:?}");
        before = now_left;
        runs += 1;
    }
    assert!(runs >= 2, "{N} events in {runs} steps of at most 200");
    let sent = sent.lock().unwrap();
    let mut times: HashMap<&str, usize> = HashMap::new();
    for key in sent.iter() {
        *times.entry(key).or_default() += 1;
    }
    assert_eq!(times.len() as u64, N, "every event sent");
    let twice = times.values().filter(|n| **n > 1).count();
    assert!(twice <= 10, "{twice} events sent twice");
}
