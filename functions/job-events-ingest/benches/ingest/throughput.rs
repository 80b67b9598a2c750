//! Ingestion throughput and CPU cost per stream record.
//!
//! A 1,000-record batch over 100 companies with 10 active subscriptions
//! each (every subscription matches, so 10,000 messages) goes through the
//! handler, subscriptions read from the local AWS emulator, SQS first on a
//! fast loopback endpoint that accepts everything at once, then on the
//! emulator. The handler runs on one thread; its CPU time is that thread's
//! user + system time, so waiting on the network is not counted.
//! Beside the fast runs, a floor: SHA-256 of as many bytes as their
//! `SendMessageBatch` request bodies carried, the payload hash SigV4 must
//! compute for every request whatever the client.
//!
//! moto's SendMessageBatch slows down linearly with the depth of the queue
//! (seconds per call past a few thousand messages), so the emulator runs use
//! the first 100 records of the batch (1,000 messages) while consumers on
//! other threads drain the queue as a delivery function would.
//!
//! Run: `make bench-ingest` (or `infra/with-emulator.sh cargo bench -p job-events-ingest --bench ingest`);
//! `INGEST_BENCH=fast` skips the emulator runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;

use job_events_ingest::{Ingest, IngestConfig};
use serde_json::{Value, json};
use shared::domain::filters::FiltersInput;
use shared::domain::jobs::JOB_TYPES;
use shared::domain::subscription::{NewSubscription, Subscription};
use shared::signing::sealed::Keyring;
use shared::storage::subscriptions::SubscriptionStore;
use test_kit::aws_proxy::AwsProxy;
use test_kit::cpu::thread_cpu_time;
use test_kit::emulator;
use test_kit::fake_sqs::FakeSqs;

use crate::run::{COMPANIES, RECORDS, Run, SUBSCRIPTIONS_PER_COMPANY, WARM_RUNS, median};

const EMULATOR_RECORDS: usize = 100;

fn record(i: usize) -> Value {
    let job_type = JOB_TYPES[i % JOB_TYPES.len()].name;
    json!({
        "eventID": format!("bench-{i:05}"),
        "eventName": "INSERT",
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "eventSourceARN": "arn:aws:dynamodb:us-east-1:000000000000:table/jobs/stream/bench",
        "dynamodb": {
            "ApproximateCreationDateTime": 1795341600,
            "Keys": {"job_id": {"S": format!("job-{i:05}")}},
            "NewImage": {
                "company_id": {"S": format!("company-{:03}", i % COMPANIES)},
                "job_id": {"S": format!("job-{i:05}")},
                "type": {"S": job_type},
                "state": {"S": "completed"},
                "updated_at": {"S": "2026-11-22T10:00:00.000Z"},
                "input": {"M": {
                    "dataset_id": {"N": format!("{}", 1000 + i)},
                    "dataset_name": {"S": "orders_enriched"},
                    "nql": {"S": "SELECT user_id, event_time FROM company_data.orders WHERE event_time > '2026-01-01'"},
                    "first_run": {"BOOL": false},
                    "stats_enabled": {"BOOL": true}
                }},
                "resource": {"M": {
                    "dataset_id": {"N": format!("{}", 1000 + i)},
                    "dataset_name": {"S": "orders_enriched"}
                }},
                "state_history": {"L": [
                    {"M": {"state": {"S": "pending"}, "at": {"S": "2026-11-22T09:58:00.000Z"}}},
                    {"M": {"state": {"S": "running"}, "at": {"S": "2026-11-22T09:59:00.000Z"}}}
                ]}
            },
            "SequenceNumber": format!("{:021}", 100_000_000 + i),
            "SizeBytes": 700,
            "StreamViewType": "NEW_AND_OLD_IMAGES"
        }
    })
}

async fn subscribe_all(store: &SubscriptionStore) {
    for c in 0..COMPANIES {
        for s in 0..SUBSCRIPTIONS_PER_COMPANY {
            // Every kind of filter, all matching the benchmark's jobs.
            let filters = match s % 3 {
                0 => json!({}),
                1 => json!({"states": ["completed", "failed"]}),
                _ => json!({"job_types": JOB_TYPES.iter().map(|t| t.name).collect::<Vec<_>>()}),
            };
            let filters: FiltersInput = serde_json::from_value(filters).expect("filters");
            let sub = Subscription::create(
                &format!("company-{c:03}"),
                NewSubscription {
                    url: format!("https://hooks.example.com/{c}/{s}"),
                    description: None,
                    filters: filters.validate().expect("valid filters"),
                },
                chrono::Utc::now(),
                // Ingest and the prober never open a secret: any keyring seals it.
                &Keyring::generate(),
            )
            .unwrap()
            .0;
            store
                .create(&sub, None, u64::MAX)
                .await
                .expect("subscription stored");
        }
    }
}

async fn measure(
    ingest: &Ingest,
    event: &Value,
    queries: impl Fn() -> usize,
    batches: impl Fn() -> usize,
) -> Run {
    let (q0, b0) = (queries(), batches());
    let event = event.clone();
    let records = event["Records"].as_array().map_or(0, Vec::len);
    let cpu0 = thread_cpu_time();
    let started = Instant::now();
    let (response, stats) = ingest
        .process(event, shared::deadline::Deadline::none())
        .await;
    let wall = started.elapsed();
    let cpu = thread_cpu_time() - cpu0;
    assert!(
        response.batch_item_failures.is_empty(),
        "benchmark batch failed"
    );
    Run {
        records,
        wall,
        cpu,
        queries: queries() - q0,
        batches: batches() - b0,
        enqueued: stats.enqueued,
    }
}

/// Receives and deletes messages from `queue_url` until `stop` is set.
async fn drain(sqs: aws_sdk_sqs::Client, queue_url: String, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        let Ok(out) = sqs
            .receive_message()
            .queue_url(&queue_url)
            .max_number_of_messages(10)
            .send()
            .await
        else {
            continue;
        };
        let entries: Vec<_> = out
            .messages
            .unwrap_or_default()
            .iter()
            .enumerate()
            .filter_map(|(i, m)| {
                aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(m.receipt_handle()?)
                    .build()
                    .ok()
            })
            .collect();
        if !entries.is_empty() {
            let _ = sqs
                .delete_message_batch()
                .queue_url(&queue_url)
                .set_entries(Some(entries))
                .send()
                .await;
        }
    }
}

/// A lower bound no SigV4 client can go under: SHA-256 (ring) of the
/// request bodies of one run, as SigV4's payload hash must compute it.
fn payload_hash_floor(bodies: usize, bytes: usize) -> Run {
    let body = vec![b'x'; bytes / bodies.max(1)];
    let cpu0 = thread_cpu_time();
    let started = Instant::now();
    for _ in 0..bodies {
        std::hint::black_box(ring::digest::digest(
            &ring::digest::SHA256,
            std::hint::black_box(&body),
        ));
    }
    Run {
        records: RECORDS,
        wall: started.elapsed(),
        cpu: thread_cpu_time() - cpu0,
        queries: 0,
        batches: bodies,
        enqueued: 0,
    }
}

/// The SDK's own cost per `SendMessageBatch`: as many calls as the warm run
/// made, each with ten one-byte bodies (with `MessageGroupId`), through the
/// same client to the same fast endpoint. What ingest spends beyond this
/// is per byte (escaping, hashing, copying the bodies) or its own work.
async fn sdk_call_floor(sqs: &aws_sdk_sqs::Client, queue_url: &str, calls: usize) -> Run {
    use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
    let entries: Vec<SendMessageBatchRequestEntry> = (0..10)
        .map(|i| {
            SendMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .message_group_id("company-000")
                .message_body("x")
                .build()
                .expect("id and body are set")
        })
        .collect();
    let cpu0 = thread_cpu_time();
    let started = Instant::now();
    let sent: Vec<_> = futures::stream::iter(0..calls)
        .map(|_| {
            sqs.send_message_batch()
                .queue_url(queue_url)
                .set_entries(Some(entries.clone()))
                .send()
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let cpu = thread_cpu_time() - cpu0;
    assert!(
        sent.iter().all(Result::is_ok),
        "the fast endpoint accepts every call"
    );
    Run {
        records: RECORDS,
        wall: started.elapsed(),
        cpu,
        queries: 0,
        batches: calls,
        enqueued: calls * 10,
    }
}

pub fn bench() {
    // Servers that stand beside the handler run on their own threads.
    let side = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("side runtime");
    let handler_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("handler runtime");
    let proxy = {
        let _entered = side.enter();
        AwsProxy::start(emulator::endpoint())
    };
    let fake = FakeSqs::start();

    handler_rt.block_on(async {
        let sdk = emulator::sdk_config().await;
        let direct = aws_sdk_dynamodb::Client::new(&sdk);
        let stack = test_kit::stack::deploy().await;
        let table = stack.table(test_kit::stack::ids::SUBSCRIPTIONS_TABLE).unwrap().to_owned();
        subscribe_all(&SubscriptionStore::new(direct, table.clone())).await;
        let queue_url = stack.queue_url(test_kit::stack::ids::DELIVERY_QUEUE).unwrap().to_owned();
        let config = IngestConfig {
            table,
            queue_url: queue_url.clone(),
            poison_queue_url: stack
                .queue_url(test_kit::stack::ids::INGEST_POISON_QUEUE)
                .unwrap()
                .to_owned(),
            cache_ttl: Duration::from_secs(600),
            send_concurrency: 8,
            send_attempts: 4,
            outbox_messages: 160,
            outbox_bytes: 4 << 20,
            max_message_bytes: 262_144,
            deadline_margin: Duration::from_secs(10),
        };
        let dynamo = aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(&sdk)
                .endpoint_url(proxy.endpoint())
                .build(),
        );
        let sqs_at = |endpoint: &str| {
            aws_sdk_sqs::Client::from_conf(
                aws_sdk_sqs::config::Builder::from(&sdk)
                    .endpoint_url(endpoint)
                    .build(),
            )
        };
        let event = json!({ "Records": (0..RECORDS).map(record).collect::<Vec<_>>() });
        let queries = || proxy.calls("DynamoDB_20120810.Query");

        println!(
            "{RECORDS} records, {COMPANIES} companies x {SUBSCRIPTIONS_PER_COMPANY} subscriptions, every subscription matching\n"
        );
        println!("| run | records/s | wall ms | CPU µs/record | Query calls | SendMessageBatch calls | messages |");
        println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");

        let fast = Ingest::new(&config, dynamo.clone(), sqs_at(fake.endpoint()));
        let fake_batches = || fake.counts().batches.load(Ordering::Relaxed);
        let cold = measure(&fast, &event, queries, fake_batches).await;
        println!("{}", cold.row("fast SQS, cold cache"));
        let mut warm = Vec::new();
        let bytes0 = fake.counts().batch_bytes.load(Ordering::Relaxed);
        for _ in 0..WARM_RUNS {
            warm.push(measure(&fast, &event, queries, fake_batches).await);
        }
        let bytes = (fake.counts().batch_bytes.load(Ordering::Relaxed) - bytes0) / WARM_RUNS;
        let warm = median(warm);
        println!("{}", warm.row(&format!("fast SQS, warm (median of {WARM_RUNS})")));
        println!(
            "{}",
            payload_hash_floor(warm.batches, bytes).row("floor: SHA-256 of the same request bodies only")
        );
        let floor_client = sqs_at(fake.endpoint());
        let mut floors = Vec::new();
        for _ in 0..WARM_RUNS {
            floors.push(sdk_call_floor(&floor_client, &queue_url, warm.batches).await);
        }
        let floor = median(floors);
        println!(
            "{}",
            floor.row(&format!(
                "floor: the SDK's SendMessageBatch alone, ten 1-byte bodies per call (median of {WARM_RUNS})"
            ))
        );
        let platform = crate::platform::rows(
            dynamo.clone(),
            sqs_at(fake.endpoint()),
            aws_sdk_dynamodb::Client::new(&sdk),
            config.table.clone(),
            queue_url.clone(),
            queries,
            &fake.counts().batches,
        )
        .await;
        println!(
            "\n| warm run, fast SQS | CPU µs/queued message | AWS requests/message | × the SDK's floor per message |"
        );
        println!("| --- | ---: | ---: | ---: |");
        println!("{}", warm.per_message("job events (DynamoDB stream records)", &floor));
        println!("{}", platform.per_message("platform events (CloudEvents on SQS)", &floor));
        println!("{}", floor.per_message("floor: the SDK's SendMessageBatch alone", &floor));

        if std::env::var("INGEST_BENCH").as_deref() == Ok("fast") {
            return;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let drainers: Vec<_> = (0..2)
            .map(|_| side.spawn(drain(aws_sdk_sqs::Client::new(&sdk), queue_url.clone(), Arc::clone(&stop))))
            .collect();
        let emulated = Ingest::new(&config, dynamo, sqs_at(&proxy.endpoint()));
        let event = json!({ "Records": (0..EMULATOR_RECORDS).map(record).collect::<Vec<_>>() });
        let proxy_batches = || proxy.calls("AmazonSQS.SendMessageBatch");
        let cold = measure(&emulated, &event, queries, proxy_batches).await;
        println!("{}", cold.row("emulator SQS, 100 records, cold cache"));
        let warm = measure(&emulated, &event, queries, proxy_batches).await;
        println!("{}", warm.row("emulator SQS, 100 records, warm"));
        stop.store(true, Ordering::Relaxed);
        for d in drainers {
            let _ = d.await;
        }
    });
    drop(side);
}
