//! Delivery throughput of one instance, side by side with a bare reqwest
//! POST loop.
//!
//! 2,000 first-attempt messages (payloads of about 1 KiB) over 10
//! subscriptions go through the handler the way Lambda hands them to one
//! instance: one invocation at a time, each a `process` call with a batch of
//! 10 records, and up to 10 POSTs in flight inside it (the deployed
//! `BatchSize` and `DELIVERY_CONCURRENCY`). The receiver answers 200 at once
//! on loopback; DynamoDB (subscription reads, attempt-log writes) is a fast
//! loopback fake. Both run on threads of their own.
//!
//! The bare loop POSTs the same payloads to the same URLs with the same
//! headers, in the same batches at the same concurrency
//! (`buffer_unordered`), with a client from the same builder; its headers
//! (signatures included) are computed before the clock starts. A third
//! loop signs each POST inline, as the handler must (the signing floor).
//! A fourth does everything the handler cannot skip: the inline-signed
//! POSTs, each batch followed by its attempt-log `BatchWriteItem` (entries
//! built before the clock starts, written with the SDK client the handler
//! uses). The four alternate on
//! the same current-thread runtime, and the medians are reported: wall
//! time, deliveries/s, and the thread's CPU time (user + system) per
//! delivery. A second set of rounds runs with the production JSON log
//! subscriber installed, writing to a counting sink.
//!
//! Then the body formats: the same messages through the handler for
//! subscriptions of each format (standard, slack, pagerduty, teams and a
//! typical template), the formats' rounds alternating, each format's CPU
//! per delivery as a multiple of `standard`'s in the same run; and the
//! template engine's worst case, a template that runs until its fuel is
//! spent, timed per render.
//!
//! Run: `make bench-delivery` (or `cargo bench -p webhook-delivery --bench delivery`).
//! `DELIVERY_BENCH_ONLY=formats` runs only the formats.
//! `DELIVERY_BENCH_BATCH`, `DELIVERY_BENCH_CONCURRENCY`,
//! `DELIVERY_BENCH_MESSAGES` and `DELIVERY_BENCH_ROUNDS` change the shape;
//! `DELIVERY_BENCH_ONLY=handler` runs only the handler, without logs, until
//! interrupted (for a profiler).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use bytes::Bytes;
use chrono::Utc;
use futures::StreamExt;
use http::header::{CONTENT_TYPE, HeaderValue};
use serde_json::json;
use shared::delivery::retry::RetrySchedule;
use shared::domain::message::{DeliveryMessage, EventEnvelope, webhook_id};
use shared::domain::subscription::{NewSubscription, Subscription};
use shared::signing::sealed::Keyring;
use shared::signing::{HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP, Signer, signature_header};
use shared::storage::deliveries::{AttemptLog, DeliveryLog};
use shared::storage::keyring::{KeyringConfig, SecretVault};
use shared::target_guard::allow_list::AllowList;
use test_kit::cpu::thread_cpu_time;
use test_kit::fake_endpoints::FakeAws;
use test_kit::receiver::Receiver;
use webhook_delivery::attempt::AttemptResult;
use webhook_delivery::handler::log_entry;
use webhook_delivery::{Delivery, DeliveryConfig, client};

const SUBSCRIPTIONS: usize = 10;
const COMPANY: &str = "company-bench";
const SUBSCRIPTIONS_TABLE: &str = "bench-subscriptions";
const DELIVERIES_TABLE: &str = "bench-deliveries";
/// Target size of each message's payload (the POSTed body).
const PAYLOAD_BYTES: usize = 1024;

fn setting(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&v| v > 0)
        .unwrap_or(default)
}

/// One POST of the bare loop, ready to send.
struct Bare {
    url: url::Url,
    id: String,
    timestamp: String,
    signature: String,
    /// What the signing loops sign with, inline.
    signers: Vec<Signer>,
    unix_timestamp: i64,
    body: Bytes,
    /// The attempt-log entry of this POST, for the loop that writes it.
    entry: AttemptLog,
}

/// One measured run over every message.
#[derive(Clone, Copy)]
struct Run {
    wall: Duration,
    cpu: Duration,
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// The `data` of a `job.completed` event, padded so the payload is about
/// [`PAYLOAD_BYTES`].
fn job_data(i: usize, pad: usize) -> Box<serde_json::value::RawValue> {
    let data = json!({
        "job_id": format!("job-{i:05}"),
        "job_type": "dataset_export",
        "state": "completed",
        "previous_state": "running",
        "state_changed_at": "2026-11-22T10:00:00.000Z",
        "input": {
            "dataset_id": 1000 + i,
            "dataset_name": "orders_enriched",
            "nql": format!(
                "SELECT user_id, event_time FROM company_data.orders WHERE event_time > '2026-01-01' {}",
                "-".repeat(pad)
            ),
            "first_run": false,
            "stats_enabled": true
        },
        "resource": {"dataset_id": 1000 + i, "dataset_name": "orders_enriched"},
        "error": null,
        "state_history": [
            {"state": "pending", "at": "2026-11-22T09:58:00.000Z"},
            {"state": "running", "at": "2026-11-22T09:59:00.000Z"}
        ]
    });
    serde_json::value::to_raw_value(&data).expect("data serialises")
}

fn message_body(sub: &Subscription, i: usize, pad: usize) -> String {
    let data = job_data(i, pad);
    let envelope = EventEnvelope {
        sequence: None,
        company_id: COMPANY,
        event_type: "job.completed",
        timestamp: "2026-11-22T10:00:00.000Z",
        data: &data,
    };
    let key = webhook_id(&sub.subscription_id, &format!("bench-{i:05}"));
    envelope.message_body(&sub.subscription_id, &key)
}

/// Message bodies for `messages` events, round-robin over `subs`.
fn message_bodies(subs: &[Subscription], messages: usize) -> Vec<String> {
    let payload_len = |body: &str| {
        DeliveryMessage::parse(body)
            .expect("a delivery message")
            .payload
            .get()
            .len()
    };
    let unpadded = payload_len(&message_body(&subs[0], 0, 0));
    let pad = PAYLOAD_BYTES.saturating_sub(unpadded);
    (0..messages)
        .map(|i| message_body(&subs[i % subs.len()], i, pad))
        .collect()
}

fn sqs_batches(bodies: &[String], batch: usize) -> Vec<SqsEvent> {
    bodies
        .chunks(batch)
        .enumerate()
        .map(|(b, chunk)| {
            let mut event = SqsEvent::default();
            event.records = chunk
                .iter()
                .enumerate()
                .map(|(i, body)| {
                    let mut m = SqsMessage::default();
                    m.message_id = Some(format!("bench-{b:05}-{i:03}"));
                    m.body = Some(body.clone());
                    m
                })
                .collect();
            event
        })
        .collect()
}

/// The bare loop's requests: the payloads the handler POSTs, signed as it
/// signs them.
fn bare_requests(
    subs: &[Subscription],
    keyring: &Keyring,
    bodies: &[String],
    batch: usize,
) -> Vec<Vec<Bare>> {
    let now = Utc::now();
    let timestamp = now.timestamp();
    let bare: Vec<Bare> = bodies
        .iter()
        .map(|body| {
            let msg = DeliveryMessage::parse(body).expect("a delivery message");
            let sub = subs
                .iter()
                .find(|s| s.subscription_id == msg.subscription_id)
                .expect("a subscription");
            let signers: Vec<Signer> = sub
                .signing_secrets(keyring, now)
                .expect("secrets open")
                .iter()
                .map(Signer::for_secret)
                .collect();
            let payload = msg.payload.get().as_bytes();
            let entry = log_entry(
                &msg,
                &AttemptResult {
                    at: now,
                    status: Some(200),
                    failure: None,
                    retry_after: None,
                    duration: Duration::from_millis(1),
                    excerpt: None,
                },
            );
            Bare {
                entry,
                url: url::Url::parse(&sub.url).expect("url"),
                signature: signature_header(&signers, &msg.webhook_id, timestamp, payload),
                signers,
                unix_timestamp: timestamp,
                id: msg.webhook_id,
                timestamp: timestamp.to_string(),
                body: Bytes::copy_from_slice(payload),
            }
        })
        .collect();
    let mut batches = Vec::new();
    let mut rest = bare.into_iter().peekable();
    while rest.peek().is_some() {
        batches.push(rest.by_ref().take(batch).collect());
    }
    batches
}

async fn run_handler(delivery: &Delivery, events: &[SqsEvent], expected: usize) -> Run {
    // Lambda hands the handler a deserialised event; copies are made
    // before the clock starts.
    let events: Vec<SqsEvent> = events.to_vec();
    let cpu0 = thread_cpu_time();
    let started = Instant::now();
    let mut delivered = 0;
    for event in events {
        let (response, tally) = delivery.process(event).await;
        assert!(
            response.batch_item_failures.is_empty() && tally.log_errors == 0,
            "benchmark batch failed: {tally:?}"
        );
        delivered += tally.delivered as usize;
    }
    let wall = started.elapsed();
    let cpu = thread_cpu_time() - cpu0;
    assert_eq!(delivered, expected, "every message delivered");
    Run { wall, cpu }
}

/// What a bare loop does besides POSTing.
#[derive(Clone, Copy)]
enum Extra {
    /// Nothing: signatures computed before the clock starts.
    None,
    /// Signs each POST inline.
    Sign,
    /// Signs inline and writes each batch's attempt log.
    SignAndLog,
}

/// A bare loop: each batch's POSTs at `concurrency`, plus `extra`.
async fn run_bare(
    http: &reqwest::Client,
    log: &DeliveryLog,
    extra: Extra,
    batches: &[Vec<Bare>],
    concurrency: usize,
) -> Run {
    let sign = !matches!(extra, Extra::None);
    let cpu0 = thread_cpu_time();
    let started = Instant::now();
    for batch in batches {
        let statuses: Vec<u16> = futures::stream::iter(batch)
            .map(|r| async move {
                let signature = if sign {
                    signature_header(&r.signers, &r.id, r.unix_timestamp, &r.body)
                } else {
                    r.signature.clone()
                };
                let response = http
                    .post(r.url.clone())
                    .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                    .header(HEADER_ID, r.id.as_str())
                    .header(HEADER_TIMESTAMP, r.timestamp.as_str())
                    .header(HEADER_SIGNATURE, signature)
                    .body(r.body.clone())
                    .send()
                    .await
                    .expect("bare POST");
                let status = response.status().as_u16();
                response.bytes().await.expect("bare response body");
                status
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
        assert!(statuses.iter().all(|&s| s == 200), "bare POST failed");
        if matches!(extra, Extra::SignAndLog) {
            let entries: Vec<AttemptLog> = batch.iter().map(|r| r.entry.clone()).collect();
            assert_eq!(log.record_all(&entries).await, 0, "attempt log");
        }
    }
    let wall = started.elapsed();
    let cpu = thread_cpu_time() - cpu0;
    Run { wall, cpu }
}

/// Runs of the four loops, taken in turn.
#[derive(Default)]
struct Rounds {
    handler: Vec<Run>,
    bare: Vec<Run>,
    signed: Vec<Run>,
    logged: Vec<Run>,
}

/// `(deliveries/s, wall ms, CPU µs per delivery)`, medians.
fn medians(runs: &[Run], messages: usize) -> (f64, f64, f64) {
    let of = |f: &dyn Fn(&Run) -> f64| median(runs.iter().map(f).collect());
    (
        of(&|r| messages as f64 / r.wall.as_secs_f64()),
        of(&|r| r.wall.as_secs_f64() * 1e3),
        of(&|r| r.cpu.as_secs_f64() * 1e6 / messages as f64),
    )
}

impl Rounds {
    /// Table rows: each loop's medians, and the handler's wall time (median
    /// of the per-round ratios, with their range) and CPU per delivery
    /// relative to it.
    fn rows(&self, label: &str, messages: usize) -> Vec<String> {
        let handler_cpu = medians(&self.handler, messages).2;
        [
            ("handler", &self.handler),
            ("bare POST loop", &self.bare),
            ("bare POST + signing loop", &self.signed),
            ("bare POST + signing + attempt-log BatchWriteItem loop", &self.logged),
        ]
        .into_iter()
        .map(|(name, runs)| {
            let (per_s, wall_ms, cpu_us) = medians(runs, messages);
            let ratios: Vec<f64> = self
                .handler
                .iter()
                .zip(runs.iter())
                .map(|(h, r)| h.wall.as_secs_f64() / r.wall.as_secs_f64())
                .collect();
            let (lo, hi) = ratios
                .iter()
                .fold((f64::MAX, f64::MIN), |(lo, hi), &r| (lo.min(r), hi.max(r)));
            format!(
                "| {name}{label} | {per_s:.0} | {wall_ms:.1} | {cpu_us:.1} | {:.2} ({lo:.2}–{hi:.2}) | {:.2} |",
                median(ratios),
                handler_cpu / cpu_us,
            )
        })
        .collect()
    }
}

/// `rounds` rounds of the four loops, in a rotating order so that none
/// always follows another.
async fn run_rounds(
    delivery: &Delivery,
    events: &[SqsEvent],
    http: &reqwest::Client,
    log: &DeliveryLog,
    bare: &[Vec<Bare>],
    concurrency: usize,
    rounds: usize,
) -> Rounds {
    let messages = bare.iter().map(Vec::len).sum();
    let mut result = Rounds::default();
    for round in 0..rounds {
        for turn in 0..4 {
            let bare_loop = |extra| run_bare(http, log, extra, bare, concurrency);
            match (round + turn) % 4 {
                0 => result
                    .handler
                    .push(run_handler(delivery, events, messages).await),
                1 => result.bare.push(bare_loop(Extra::None).await),
                2 => result.signed.push(bare_loop(Extra::Sign).await),
                _ => result.logged.push(bare_loop(Extra::SignAndLog).await),
            }
        }
    }
    result
}

/// Bytes of JSON log lines written so far.
static LOG_BYTES: AtomicUsize = AtomicUsize::new(0);

/// Counts what it is given and keeps nothing.
struct CountingSink;

impl std::io::Write for CountingSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOG_BYTES.fetch_add(buf.len(), Ordering::Relaxed);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The production JSON log format (`shared::telemetry`), written to a
/// counting sink.
fn json_logs_to_sink() -> impl tracing::Subscriber + Send + Sync {
    use tracing_subscriber::layer::SubscriberExt;
    tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new("info"))
        .with(shared::telemetry::json_layer(|| CountingSink))
}

/// A template of the kind customers write: a chat message with a few
/// fields of the job.
const TYPICAL_TEMPLATE: &str = r#"{
  "content": {{ ("Job " ~ data.job_id ~ " (" ~ data.job_type ~ ") is " ~ data.state)|tojson }},
  "embeds": [{
    "title": {{ type|tojson }},
    "timestamp": {{ timestamp|tojson }},
    "fields": [
      {"name": "from", "value": {{ data.previous_state|tojson }}},
      {"name": "dataset", "value": {{ data.resource.dataset_name|tojson }}}
    ]
  }]
}"#;

/// A template that never ends on its own: it stops when its fuel is spent.
const ENDLESS_TEMPLATE: &str =
    "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}{}";

/// The format settings the formats section compares.
fn format_settings() -> Vec<(&'static str, shared::format::FormatInput)> {
    use shared::format::FormatInput;
    let of = |kind: &str| FormatInput {
        kind: kind.to_owned(),
        ..Default::default()
    };
    vec![
        ("standard", of("standard")),
        ("slack", of("slack")),
        (
            "pagerduty",
            FormatInput {
                routing_key: Some("R0ut1ngKeyOfThePagerDutyService".to_owned()),
                ..of("pagerduty")
            },
        ),
        ("teams", of("teams")),
        (
            "template (typical)",
            FormatInput {
                template: Some(TYPICAL_TEMPLATE.to_owned()),
                ..of("template")
            },
        ),
    ]
}

/// The formats section: handler rounds per format, alternating, and the
/// endless template's time per render.
async fn formats_section(
    aws: &FakeAws,
    delivery: &Delivery,
    keyring: &Keyring,
    receiver: &Receiver,
    messages: usize,
    batch: usize,
    rounds: usize,
) {
    let formats: Vec<(&str, Vec<SqsEvent>)> = format_settings()
        .into_iter()
        .map(|(name, input)| {
            let setting = input.validate().expect("a valid format");
            let subs: Vec<Subscription> = (0..SUBSCRIPTIONS)
                .map(|s| {
                    let (mut sub, _) = Subscription::create(
                        COMPANY,
                        NewSubscription {
                            url: receiver.url(&format!("/{name}/{s}")),
                            description: None,
                            filters: Default::default(),
                        },
                        Utc::now(),
                        keyring,
                    )
                    .expect("a keyring");
                    sub.set_format(&setting, keyring)
                        .expect("a keyring")
                        .expect("a complete format");
                    aws.insert_item(SUBSCRIPTIONS_TABLE, &sub);
                    sub
                })
                .collect();
            (name, sqs_batches(&message_bodies(&subs, messages), batch))
        })
        .collect();
    for (_, events) in &formats {
        run_handler(delivery, events, messages).await;
    }
    let mut cpu: Vec<Vec<f64>> = vec![Vec::new(); formats.len()];
    for round in 0..rounds {
        for turn in 0..formats.len() {
            let f = (round + turn) % formats.len();
            let run = run_handler(delivery, &formats[f].1, messages).await;
            cpu[f].push(run.cpu.as_secs_f64() * 1e6 / messages as f64);
        }
    }
    println!(
        "\nBody formats: {messages} job.completed deliveries per run, medians of {rounds} rounds\n"
    );
    println!("| format | CPU µs/delivery | ÷ standard (median of the rounds' ratios) |");
    println!("| --- | ---: | ---: |");
    for (f, (name, _)) in formats.iter().enumerate() {
        let ratios: Vec<f64> = cpu[f].iter().zip(&cpu[0]).map(|(c, s)| c / s).collect();
        println!(
            "| {name} | {:.1} | {:.2} |",
            median(cpu[f].clone()),
            median(ratios)
        );
    }

    let template = shared::format::template::Template::compile(ENDLESS_TEMPLATE).expect("compiles");
    let payload = message_bodies(
        &[Subscription::create(
            COMPANY,
            NewSubscription {
                url: receiver.url("/"),
                description: None,
                filters: Default::default(),
            },
            Utc::now(),
            keyring,
        )
        .expect("a keyring")
        .0],
        1,
    )
    .pop()
    .and_then(|b| DeliveryMessage::parse(&b))
    .expect("a message")
    .payload;
    let event = shared::format::EventView::parse(&payload).expect("a payload");
    // The thread's CPU clock ticks coarsely: each round times a hundred
    // renders.
    const RENDERS: u32 = 100;
    let mut times = Vec::new();
    let mut outcome = String::new();
    for _ in 0..rounds {
        let cpu0 = thread_cpu_time();
        for _ in 0..RENDERS {
            let result = template.render(&event);
            outcome = match result {
                Ok(body) => format!("rendered {} bytes", body.len()),
                Err(e) => e.to_string(),
            };
        }
        times.push((thread_cpu_time() - cpu0).as_secs_f64() * 1e6 / f64::from(RENDERS));
    }
    println!(
        "\nendless template: {:.0} µs of CPU per render, median of {rounds} rounds of {RENDERS} ({outcome})",
        median(times)
    );
}

fn main() {
    let messages = setting("DELIVERY_BENCH_MESSAGES", 2000);
    let batch = setting("DELIVERY_BENCH_BATCH", 10);
    let concurrency = setting("DELIVERY_BENCH_CONCURRENCY", 10);
    let rounds = setting("DELIVERY_BENCH_ROUNDS", 9);
    let only = std::env::var("DELIVERY_BENCH_ONLY").unwrap_or_default();
    let only_handler = only == "handler";
    let only_formats = only == "formats";

    // A receiver answering 200 at once, on threads of its own so its work
    // is not counted as the handler's CPU time.
    let receiver = Receiver::builder()
        .on_own_runtime(2)
        .start()
        .expect("receiver");
    let aws = FakeAws::start();
    let allow_list = AllowList::parse("127.0.0.0/8").expect("allow-list");
    // The fake serves DynamoDB and SQS only: the handler gets the keyring
    // as a warm instance holds it after its cold start.
    let keyring = Keyring::generate();
    let subs: Vec<Subscription> = (0..SUBSCRIPTIONS)
        .map(|s| {
            let (sub, _) = Subscription::create(
                COMPANY,
                NewSubscription {
                    url: receiver.url(&format!("/hooks/{s}")),
                    description: None,
                    filters: Default::default(),
                },
                Utc::now(),
                &keyring,
            )
            .expect("a keyring");
            aws.insert_item(SUBSCRIPTIONS_TABLE, &sub);
            sub
        })
        .collect();
    let config = DeliveryConfig {
        subscriptions_table: SUBSCRIPTIONS_TABLE.to_owned(),
        deliveries_table: DELIVERIES_TABLE.to_owned(),
        retry_queue_url: format!("{}/000000000000/bench-retry", aws.endpoint()),
        dead_letter_queue_url: format!("{}/000000000000/bench-dlq", aws.endpoint()),
        parked_events_table: "bench-parked".to_owned(),
        keyring: KeyringConfig {
            table: "bench-keyring".to_owned(),
            kms_key_id: "bench-key".to_owned(),
            refresh: Duration::from_secs(60),
        },
        event_bus_name: "bench-operational".to_owned(),
        breaker: Default::default(),
        schedule: RetrySchedule::parse("5s,5m,30m,2h,5h,10h,10h").expect("schedule"),
        concurrency,
        cache_ttl: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(15),
        allow_list,
        extra_ca_file: None,
    };
    let bodies = message_bodies(&subs, messages);
    let events = sqs_batches(&bodies, batch);
    let bare = bare_requests(&subs, &keyring, &bodies, batch);
    let payload_bytes = bare.iter().flatten().map(|r| r.body.len()).sum::<usize>() / messages;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("handler runtime");
    runtime.block_on(async {
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(shared::config::sdk_http_client())
            .endpoint_url(aws.endpoint())
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                "bench", "bench", None, None, "bench",
            ))
            .load()
            .await;
        let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
        let delivery = Delivery::new(
            &config,
            dynamodb.clone(),
            aws_sdk_sqs::Client::new(&sdk),
            aws_sdk_eventbridge::Client::new(&sdk),
            Arc::new(SecretVault::fixed(keyring.clone())),
        )
        .expect("delivery");
        let log = DeliveryLog::new(dynamodb, DELIVERIES_TABLE);
        // The receiver is plain http on loopback: the allow-listed client.
        let receiver_url = url::Url::parse(&receiver.url("/")).expect("receiver URL");
        let http = client::build(&config)
            .expect("bare client")
            .for_url(&receiver_url)
            .clone();
        let counts = aws.counts();
        let calls = || {
            (
                counts.get_items.load(Ordering::Relaxed),
                counts.batch_writes.load(Ordering::Relaxed),
                counts.batch_written.load(Ordering::Relaxed),
            )
        };

        if only_formats {
            formats_section(&aws, &delivery, &keyring, &receiver, messages, batch, rounds).await;
            return;
        }
        // A cold first run: the cache fills, connections open.
        let cold = run_handler(&delivery, &events, messages).await;
        let (cold_gets, cold_writes, cold_written) = calls();
        if only_handler {
            loop {
                let run = run_handler(&delivery, &events, messages).await;
                println!(
                    "{:.0} deliveries/s, {:.1} CPU µs/delivery",
                    messages as f64 / run.wall.as_secs_f64(),
                    run.cpu.as_secs_f64() * 1e6 / messages as f64
                );
            }
        }
        let started = Instant::now();
        run_bare(&http, &log, Extra::None, &bare, concurrency).await;
        let plain = run_rounds(&delivery, &events, &http, &log, &bare, concurrency, rounds).await;
        let logged = {
            let _logs = tracing::subscriber::set_default(json_logs_to_sink());
            run_rounds(&delivery, &events, &http, &log, &bare, concurrency, rounds).await
        };
        let elapsed = started.elapsed();
        let (gets, writes, written) = calls();
        let unexpected = counts.messages.load(Ordering::Relaxed)
            + counts.put_items.load(Ordering::Relaxed)
            + counts.batches.load(Ordering::Relaxed)
            + counts.unknown.load(Ordering::Relaxed);

        println!(
            "{messages} messages ({payload_bytes} B payloads) over {SUBSCRIPTIONS} subscriptions; \
             {} invocations of {batch} records, concurrency {concurrency}; medians of {rounds} rounds\n",
            events.len()
        );
        println!(
            "| run | deliveries/s | wall ms | CPU µs/delivery | handler ÷ this, wall (range) | handler ÷ this, CPU |"
        );
        println!("| --- | ---: | ---: | ---: | ---: | ---: |");
        for row in plain.rows("", messages) {
            println!("{row}");
        }
        for row in logged.rows(", JSON logs", messages) {
            println!("{row}");
        }
        println!(
            "\nJSON logs: {:.0} bytes per handler delivery",
            LOG_BYTES.load(Ordering::Relaxed) as f64 / (rounds * messages) as f64
        );
        println!(
            "cold first handler run: {:.0} deliveries/s, {:.1} CPU µs/delivery",
            messages as f64 / cold.wall.as_secs_f64(),
            cold.cpu.as_secs_f64() * 1e6 / messages as f64
        );
        let handler_runs = 1 + 2 * rounds;
        let logged_runs = 2 * rounds;
        println!(
            "calls: GetItem {cold_gets} in the cold run, {gets} over all {handler_runs} handler runs \
             ({:.0} s, cache TTL 5 s); BatchWriteItem {cold_writes} calls / {cold_written} items in the \
             cold run, {writes} / {written} in all = {} handler attempts + {} of the logging loop; \
             other calls {unexpected}; receiver requests {}",
            elapsed.as_secs_f64() + cold.wall.as_secs_f64(),
            handler_runs * messages,
            logged_runs * messages,
            receiver.requests(),
        );
        assert_eq!(cold_written, messages, "every attempt logged");
        assert_eq!(cold_writes, events.len(), "one BatchWriteItem per invocation");
        assert_eq!(written, (handler_runs + logged_runs) * messages, "every attempt logged");
        assert_eq!(unexpected, 0, "no SQS calls or PutItems when nothing fails");
        formats_section(&aws, &delivery, &keyring, &receiver, messages, batch, rounds).await;
    });
}
