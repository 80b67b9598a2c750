//! The stream and queue runners poll and batch the way Lambda's event
//! source mappings do (see their module docs for the AWS pages), against
//! tables, streams and queues in the emulator: records that arrive while
//! an invocation runs or between polls go to the handler together, in
//! shard order, never more than `BatchSize` or 6 MB at once; a batching
//! window gathers further polls or receives until the batch is full; and a
//! queue runs its pollers' batches concurrently. The handler here records
//! each batch it is given; every assertion is on batches, none on time.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use aws_sdk_dynamodb::types::AttributeValue;
use local_infra::cloudformation::EventSourceMapping;
use local_infra::filter::Filter;
use local_infra::stream::{StartPosition, StreamReader};
use local_stack::checkpoint::Checkpoints;
use local_stack::invocations::Invocations;
use local_stack::queue_runner::{QueueHandler, QueueRunner};
use local_stack::stream_runner::{
    MAX_PAYLOAD_BYTES, StreamBatchOutcome, StreamHandler, StreamRunner,
};
use serde_json::Value;
use shared::metrics::Metrics;
use test_kit::aws_proxy::AwsProxy;
use test_kit::emulator;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Logical id the invocations are recorded under.
const FUNCTION: &str = "RecordedFunction";

/// Longest wait for a condition before the test fails.
const PATIENCE: Duration = Duration::from_secs(60);

/// Awaits `done(value)` on `rx`, failing the test after [`PATIENCE`].
async fn until<T>(what: &str, rx: &mut watch::Receiver<T>, done: impl FnMut(&T) -> bool) {
    tokio::time::timeout(PATIENCE, rx.wait_for(done))
        .await
        .unwrap_or_else(|_| panic!("waited too long for {what}"))
        .expect("the sender lives as long as the test");
}

/// The function's stand-in: records the items of each batch it is given
/// (job ids of stream records, bodies of queue messages) and the size of
/// the event, and succeeds. The first `hold` invocations wait until
/// [`Recorder::release`].
struct Recorder {
    batches: Mutex<Vec<Vec<String>>>,
    event_bytes: Mutex<Vec<usize>>,
    hold: usize,
    gate: watch::Sender<bool>,
    started: watch::Sender<usize>,
    /// Items handled so far.
    handled: watch::Sender<usize>,
    in_flight: AtomicUsize,
    most_in_flight: AtomicUsize,
}

impl Recorder {
    fn new(hold: usize) -> Arc<Self> {
        Arc::new(Self {
            batches: Mutex::default(),
            event_bytes: Mutex::default(),
            hold,
            gate: watch::channel(false).0,
            started: watch::channel(0).0,
            handled: watch::channel(0).0,
            in_flight: AtomicUsize::new(0),
            most_in_flight: AtomicUsize::new(0),
        })
    }

    fn release(&self) {
        self.gate.send_replace(true);
    }

    fn batches(&self) -> Vec<Vec<String>> {
        self.batches.lock().unwrap().clone()
    }

    fn event_bytes(&self) -> Vec<usize> {
        self.event_bytes.lock().unwrap().clone()
    }

    async fn record(&self, items: Vec<String>, bytes: usize) {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_in_flight.fetch_max(now, Ordering::SeqCst);
        let mut index = 0;
        self.started.send_modify(|n| {
            index = *n;
            *n += 1;
        });
        if index < self.hold {
            let mut gate = self.gate.subscribe();
            until("the gate to open", &mut gate, |open| *open).await;
        }
        let count = items.len();
        self.batches.lock().unwrap().push(items);
        self.event_bytes.lock().unwrap().push(bytes);
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.handled.send_modify(|n| *n += count);
    }
}

impl StreamHandler for Recorder {
    async fn handle_batch(&self, event: Value, _: std::time::Instant) -> StreamBatchOutcome {
        let items = event["Records"]
            .as_array()
            .expect("a stream event has records")
            .iter()
            .map(|r| {
                r["dynamodb"]["Keys"]["job_id"]["S"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        self.record(items, event.to_string().len()).await;
        StreamBatchOutcome::default()
    }
}

impl QueueHandler for Recorder {
    async fn handle_batch(&self, _: &str, event: SqsEvent) -> (SqsBatchResponse, Metrics) {
        let bytes = serde_json::to_vec(&event).unwrap().len();
        let items = event
            .records
            .into_iter()
            .map(|m| m.body.unwrap_or_default())
            .collect();
        self.record(items, bytes).await;
        (SqsBatchResponse::default(), Metrics::new())
    }
}

fn mapping(source_arn: &str, batch_size: usize, window: Duration) -> EventSourceMapping {
    EventSourceMapping {
        uuid: emulator::unique_name("mapping"),
        function: FUNCTION.to_owned(),
        source_arn: source_arn.to_owned(),
        batch_size,
        batching_window: window,
        starting_position: Some(StartPosition::TrimHorizon),
        max_retries: Some(0),
        bisect: false,
        max_record_age: None,
        on_failure_arn: None,
        filters: Vec::new(),
        max_concurrency: None,
        report_batch_item_failures: true,
        enabled: true,
    }
}

/// A fresh table keyed by `job_id` with a stream of new and old images;
/// its name and stream ARN.
async fn streamed_table() -> (String, String) {
    emulator::streamed_table("runner-stream").await
}

/// Writes item `job_id` (with `padding` bytes of filler) to `table`.
async fn write(table: &str, job_id: &str, padding: usize) {
    emulator::dynamodb()
        .await
        .put_item()
        .table_name(table)
        .item("job_id", AttributeValue::S(job_id.to_owned()))
        .item("padding", AttributeValue::S("x".repeat(padding.max(1))))
        .send()
        .await
        .expect("the item is written");
}

/// A stream runner on `arn`, reading through `streams`, running with
/// `handler` until the returned sender says stop.
async fn run_stream(
    arn: &str,
    mapping: EventSourceMapping,
    streams: aws_sdk_dynamodbstreams::Client,
    handler: Arc<Recorder>,
) -> (Arc<Invocations>, watch::Sender<bool>, JoinHandle<()>) {
    let sdk = emulator::sdk_config().await;
    let checkpoints = Checkpoints::open(aws_sdk_dynamodb::Client::new(&sdk), &mapping.uuid)
        .await
        .expect("checkpoints open");
    let reader = StreamReader::open(streams, arn, StartPosition::TrimHorizon)
        .await
        .expect("the stream opens");
    let invocations = Arc::new(Invocations::default());
    let runner = StreamRunner {
        mapping,
        filter: Filter::default(),
        checkpoints,
        region: "us-east-1".to_owned(),
        on_failure_queue_url: None,
        invocations: Arc::clone(&invocations),
        timeout: Duration::from_secs(30),
    };
    let (stop, shutdown) = watch::channel(false);
    let task = tokio::spawn(runner.run(reader, handler, aws_sdk_sqs::Client::new(&sdk), shutdown));
    (invocations, stop, task)
}

async fn streams_client() -> aws_sdk_dynamodbstreams::Client {
    aws_sdk_dynamodbstreams::Client::new(&emulator::sdk_config().await)
}

fn ids(prefix: &str, range: std::ops::RangeInclusive<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}-{i:03}")).collect()
}

#[tokio::test]
async fn stream_records_written_while_an_invocation_runs_reach_the_next_one_together_in_order() {
    let (table, arn) = streamed_table().await;
    let recorder = Recorder::new(1);
    let (invocations, stop, task) = run_stream(
        &arn,
        mapping(&arn, 100, Duration::ZERO),
        streams_client().await,
        Arc::clone(&recorder),
    )
    .await;
    let job = ids("held", 1..=8);
    write(&table, &job[0], 1).await;
    // The first invocation holds the shard's only batch in flight.
    until(
        "the first invocation",
        &mut recorder.started.subscribe(),
        |n| *n >= 1,
    )
    .await;
    for id in &job[1..] {
        write(&table, id, 1).await;
    }
    recorder.release();
    until("every record", &mut recorder.handled.subscribe(), |n| {
        *n >= job.len()
    })
    .await;
    stop.send_replace(true);
    task.await.unwrap();

    assert_eq!(recorder.batches(), [job[..1].to_vec(), job[1..].to_vec()]);
    assert_eq!(invocations.snapshot()[FUNCTION].count, 2);
}

#[tokio::test]
async fn a_burst_of_stream_records_takes_fewer_invocations_than_records_none_over_batch_size() {
    let (table, arn) = streamed_table().await;
    let recorder = Recorder::new(0);
    let (invocations, stop, task) = run_stream(
        &arn,
        mapping(&arn, 4, Duration::ZERO),
        streams_client().await,
        Arc::clone(&recorder),
    )
    .await;
    let job = ids("burst", 1..=30);
    for id in &job {
        write(&table, id, 1).await;
    }
    until("every record", &mut recorder.handled.subscribe(), |n| {
        *n >= job.len()
    })
    .await;
    stop.send_replace(true);
    task.await.unwrap();

    let batches = recorder.batches();
    assert!(batches.iter().all(|b| b.len() <= 4), "{batches:?}");
    // Once each, in the shard's order.
    assert_eq!(batches.concat(), job);
    // Records that arrive between two polls go to one invocation.
    let count = invocations.snapshot()[FUNCTION].count;
    assert!(
        (count as usize) < job.len(),
        "{count} invocations: {batches:?}"
    );
    assert_eq!(count as usize, batches.len());
}

#[tokio::test]
async fn the_stream_batching_window_gathers_further_polls_until_the_batch_is_full() {
    let (table, arn) = streamed_table().await;
    // Counts the records each GetRecords call of the runner returns.
    let proxy = AwsProxy::start(emulator::endpoint());
    let (read, mut read_rx) = watch::channel((0usize, 0usize));
    proxy.observe(move |call| {
        if call.ok && call.target.ends_with(".GetRecords") {
            let body: Value = serde_json::from_slice(call.response).unwrap_or_default();
            let records = body["Records"].as_array().map_or(0, Vec::len);
            if records > 0 {
                read.send_modify(|(calls, total)| {
                    *calls += 1;
                    *total += records;
                });
            }
        }
    });
    let recorder = Recorder::new(0);
    // A window far longer than the test: only a full batch ends it.
    let (_, stop, task) = run_stream(
        &arn,
        mapping(&arn, 5, Duration::from_secs(300)),
        aws_sdk_dynamodbstreams::Client::new(&proxy.sdk().await),
        Arc::clone(&recorder),
    )
    .await;
    let job = ids("window", 1..=5);
    for (i, id) in job.iter().enumerate() {
        write(&table, id, 1).await;
        // Each record in a poll of its own.
        until(
            "the runner to read the record",
            &mut read_rx,
            |(_, total)| *total > i,
        )
        .await;
    }
    until("the batch", &mut recorder.handled.subscribe(), |n| *n >= 5).await;
    stop.send_replace(true);
    task.await.unwrap();

    assert_eq!(*read_rx.borrow(), (5, 5));
    assert_eq!(recorder.batches(), [job]);
}

#[tokio::test]
async fn stream_batches_stop_at_the_six_megabyte_payload_and_the_rest_follows_in_order() {
    let (table, arn) = streamed_table().await;
    // 24 records of about 300 KB: 7 MB, already in the stream when the
    // runner starts, so its first poll reads them all.
    let job = ids("large", 1..=24);
    for id in &job {
        write(&table, id, 300_000).await;
    }
    let recorder = Recorder::new(0);
    let (_, stop, task) = run_stream(
        &arn,
        mapping(&arn, 100, Duration::ZERO),
        streams_client().await,
        Arc::clone(&recorder),
    )
    .await;
    until("every record", &mut recorder.handled.subscribe(), |n| {
        *n >= job.len()
    })
    .await;
    stop.send_replace(true);
    task.await.unwrap();

    let batches = recorder.batches();
    let bytes = recorder.event_bytes();
    assert!(bytes.iter().all(|b| *b <= MAX_PAYLOAD_BYTES), "{bytes:?}");
    assert!(batches.len() >= 2, "{bytes:?}");
    // The first batch took what fitted: about 20 records.
    assert!(batches[0].len() >= 18, "{bytes:?}");
    assert_eq!(batches.concat(), job);
}

/// A fresh queue: its URL and ARN.
async fn queue(sqs: &aws_sdk_sqs::Client) -> (String, String) {
    let url = emulator::fresh_queue(sqs, "runner-queue").await;
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("queue attributes")
        .attributes
        .and_then(|mut a| a.remove(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
        .expect("the queue has an ARN");
    (url, arn)
}

async fn send(sqs: &aws_sdk_sqs::Client, url: &str, bodies: &[String]) {
    for body in bodies {
        sqs.send_message()
            .queue_url(url)
            .message_body(body)
            .send()
            .await
            .expect("the message is sent");
    }
}

/// A queue runner with `pollers` on `url`, running with `handler` until the
/// returned sender says stop.
fn run_queue(
    sqs: &aws_sdk_sqs::Client,
    (url, arn): &(String, String),
    mapping: EventSourceMapping,
    pollers: usize,
    handler: Arc<Recorder>,
) -> (Arc<Invocations>, watch::Sender<bool>, JoinHandle<()>) {
    let invocations = Arc::new(Invocations::default());
    let runner = QueueRunner {
        mapping: EventSourceMapping {
            source_arn: arn.clone(),
            ..mapping
        },
        queue: "RecordedQueue".to_owned(),
        queue_url: url.clone(),
        region: "us-east-1".to_owned(),
        pollers,
        invocations: Arc::clone(&invocations),
    };
    let (stop, shutdown) = watch::channel(false);
    let task = tokio::spawn(runner.run(handler, sqs.clone(), shutdown));
    (invocations, stop, task)
}

/// Counts the messages the `ReceiveMessage` calls through `proxy` return.
fn count_received(proxy: &AwsProxy) -> watch::Receiver<usize> {
    let (received, rx) = watch::channel(0usize);
    proxy.observe(move |call| {
        if call.ok && call.target == "AmazonSQS.ReceiveMessage" {
            let body: Value = serde_json::from_slice(call.response).unwrap_or_default();
            let messages = body["Messages"].as_array().map_or(0, Vec::len);
            received.send_modify(|n| *n += messages);
        }
    });
    rx
}

#[tokio::test]
async fn without_a_window_each_receive_s_messages_are_one_invocation_of_at_most_ten() {
    let sqs = aws_sdk_sqs::Client::new(&emulator::sdk_config().await);
    let queue = queue(&sqs).await;
    let bodies = ids("message", 1..=25);
    send(&sqs, &queue.0, &bodies).await;
    let recorder = Recorder::new(0);
    // BatchSize 100 (a window would be required in AWS): at most ten per
    // receive, and no window to gather more.
    let (invocations, stop, task) = run_queue(
        &sqs,
        &queue,
        mapping("", 100, Duration::ZERO),
        1,
        Arc::clone(&recorder),
    );
    until("every message", &mut recorder.handled.subscribe(), |n| {
        *n >= bodies.len()
    })
    .await;
    stop.send_replace(true);
    task.await.unwrap();

    let batches = recorder.batches();
    assert!(batches.iter().all(|b| b.len() <= 10), "{batches:?}");
    assert!(batches.len() >= 3, "{batches:?}");
    let mut handled = batches.concat();
    handled.sort();
    assert_eq!(handled, bodies);
    assert_eq!(
        invocations.snapshot()[FUNCTION].count as usize,
        batches.len()
    );
}

#[tokio::test]
async fn a_queue_batching_window_keeps_receiving_until_the_batch_is_full() {
    let sqs = aws_sdk_sqs::Client::new(&emulator::sdk_config().await);
    let queue = queue(&sqs).await;
    let proxy = AwsProxy::start(emulator::endpoint());
    let mut received = count_received(&proxy);
    let recorder = Recorder::new(0);
    // A window far longer than the test: only a full batch ends it.
    let (_, stop, task) = run_queue(
        &aws_sdk_sqs::Client::new(&proxy.sdk().await),
        &queue,
        mapping("", 20, Duration::from_secs(300)),
        1,
        Arc::clone(&recorder),
    );
    let bodies = ids("gathered", 1..=20);
    send(&sqs, &queue.0, &bodies[..10]).await;
    // The runner has received the first ten before the rest is sent.
    until("the first receives", &mut received, |n| *n >= 10).await;
    assert!(recorder.batches().is_empty());
    send(&sqs, &queue.0, &bodies[10..]).await;
    until("the batch", &mut recorder.handled.subscribe(), |n| *n >= 20).await;
    stop.send_replace(true);
    task.await.unwrap();

    let batches = recorder.batches();
    assert_eq!(batches.len(), 1, "{batches:?}");
    let mut handled = batches.concat();
    handled.sort();
    assert_eq!(handled, bodies);
}

#[tokio::test]
async fn queue_batches_stop_at_the_six_megabyte_payload_and_the_rest_follows() {
    let sqs = aws_sdk_sqs::Client::new(&emulator::sdk_config().await);
    let queue = queue(&sqs).await;
    // 30 messages of 250 KB: 7.5 MB.
    let bodies: Vec<String> = (1..=30)
        .map(|i| format!("{i:03}{}", "x".repeat(250_000)))
        .collect();
    send(&sqs, &queue.0, &bodies).await;
    let recorder = Recorder::new(0);
    let (_, stop, task) = run_queue(
        &sqs,
        &queue,
        mapping("", 100, Duration::from_secs(300)),
        1,
        Arc::clone(&recorder),
    );
    // The payload limit ends the first batch long before the window.
    until("the first batch", &mut recorder.handled.subscribe(), |n| {
        *n >= 1
    })
    .await;
    let first = recorder.batches()[0].len();
    // Shutting down hands over the messages in hand.
    stop.send_replace(true);
    task.await.unwrap();

    let batches = recorder.batches();
    let bytes = recorder.event_bytes();
    assert!(bytes.iter().all(|b| *b <= MAX_PAYLOAD_BYTES), "{bytes:?}");
    assert!((20..30).contains(&first), "{bytes:?}");
    let mut handled = batches.concat();
    handled.sort();
    assert_eq!(handled, bodies);
}

#[tokio::test]
async fn a_queue_s_pollers_run_that_many_batches_at_once_and_no_more() {
    let sqs = aws_sdk_sqs::Client::new(&emulator::sdk_config().await);
    let queue = queue(&sqs).await;
    let bodies = ids("concurrent", 1..=6);
    send(&sqs, &queue.0, &bodies).await;
    // The first three batches wait until all three are in flight.
    let recorder = Recorder::new(3);
    let (_, stop, task) = run_queue(
        &sqs,
        &queue,
        mapping("", 1, Duration::ZERO),
        3,
        Arc::clone(&recorder),
    );
    until(
        "three batches in flight",
        &mut recorder.started.subscribe(),
        |n| *n >= 3,
    )
    .await;
    recorder.release();
    until("every message", &mut recorder.handled.subscribe(), |n| {
        *n >= bodies.len()
    })
    .await;
    stop.send_replace(true);
    task.await.unwrap();

    assert_eq!(recorder.most_in_flight.load(Ordering::SeqCst), 3);
    let mut handled = recorder.batches().concat();
    handled.sort();
    assert_eq!(handled, bodies);
}
