//! The whole service on one machine: the template's tables and queues in
//! the local AWS emulator, the API handler, and runners that drive the
//! jobs stream into the ingest handler and the delivery queues into the
//! delivery handler, with the batch sizes, windows and concurrency of
//! `template.yaml`.

use std::sync::Arc;
use std::time::Duration;

use aws_config::SdkConfig;
use job_events_ingest::{Ingest, IngestConfig};
use shared::allow_list::AllowList;
use shared::cursor::CursorCodec;
use shared::retry::{RetrySchedule, ScheduleError};
use subscriptions_api::{ApiConfig, App};
use tokio::sync::watch;
use tokio::task::JoinSet;
use webhook_delivery::{Delivery, DeliveryConfig};

use crate::invocations::Invocations;
use crate::queue_runner::QueueRunner;
use crate::stack::{self, Resources, StackError};
use crate::stream::{StartPosition, StreamError, StreamReader};
use crate::stream_runner::StreamRunner;
use crate::template::{Template, TemplateError};
use crate::wiring;

/// Logical id of the ingest function's stream mapping.
pub const STREAM_MAPPING: &str = "JobEventsStreamMapping";
/// Logical id of the ingest function.
pub const INGEST_FUNCTION: &str = "JobEventsIngestFunction";
/// Logical id of the delivery function.
pub const DELIVERY_FUNCTION: &str = "WebhookDeliveryFunction";

/// The pipeline could not be built or started.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// Provisioning failed.
    #[error(transparent)]
    Stack(#[from] StackError),
    /// The template lacks something.
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// The template's retry schedule does not parse.
    #[error("RETRY_SCHEDULE: {0}")]
    Schedule(#[from] ScheduleError),
    /// The delivery client could not be built.
    #[error(transparent)]
    Client(#[from] webhook_delivery::client::ClientError),
    /// The jobs stream could not be opened.
    #[error(transparent)]
    Stream(#[from] StreamError),
}

/// Local choices on top of the template.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// Prefix of every table and queue name (empty for `make run`).
    pub prefix: String,
    /// Region written into events.
    pub region: String,
    /// Replaces the template's retry schedule (tests compress it).
    pub retry_schedule: Option<RetrySchedule>,
    /// Non-public targets deliveries may reach (loopback receivers).
    pub allow_list: AllowList,
    /// Extra trusted root certificates for HTTPS receivers.
    pub extra_ca_file: Option<std::path::PathBuf>,
    /// Caps each queue's pollers (the template allows far more than one
    /// machine with an emulator needs).
    pub max_pollers: usize,
    /// Delivery request timeout (the function's default is 15 s).
    pub request_timeout: Duration,
    /// The API's company claim.
    pub company_claim: String,
    /// Key of the API's pagination cursors.
    pub cursors: CursorCodec,
    /// Where the stream runner starts reading.
    pub stream_start: StartPosition,
}

/// The provisioned stack and the three handlers.
pub struct Pipeline {
    /// Names and URLs of the tables and queues.
    pub resources: Resources,
    /// The subscriptions API handler.
    pub app: Arc<App>,
    ingest: Arc<Ingest>,
    delivery: Arc<Delivery>,
    runners: (StreamRunner, Vec<QueueRunner>),
    invocations: Arc<Invocations>,
    sdk: SdkConfig,
    stream_start: StartPosition,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("resources", &self.resources)
            .finish_non_exhaustive()
    }
}

fn env_u64(template: &Template, function: &str, var: &str, default: u64) -> u64 {
    wiring::function_env(template, function, var)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

impl Pipeline {
    /// Provisions the template's resources and builds the handlers with the
    /// template's function settings.
    pub async fn build(
        sdk: &SdkConfig,
        template: &Template,
        config: PipelineConfig,
    ) -> Result<Self, PipelineError> {
        let resources = stack::provision(sdk, template, &config.prefix).await?;
        let dynamo = aws_sdk_dynamodb::Client::new(sdk);
        let sqs = aws_sdk_sqs::Client::new(sdk);
        let table = |id: &str| resources.table(id).to_owned();
        let queue = |id: &str| resources.queue_url(id).to_owned();

        let app = App::new(
            ApiConfig {
                table: table(stack::SUBSCRIPTIONS_TABLE),
                deliveries_table: table(stack::DELIVERIES_TABLE),
                delivery_queue_url: queue(stack::DELIVERY_QUEUE),
                company_claim: config.company_claim.clone(),
                cursors: config.cursors.clone(),
                allow_list: config.allow_list.clone(),
            },
            dynamo.clone(),
            sqs.clone(),
        );
        let ingest = Ingest::new(
            &IngestConfig {
                table: table(stack::SUBSCRIPTIONS_TABLE),
                queue_url: queue(stack::DELIVERY_QUEUE),
                cache_ttl: Duration::from_secs(env_u64(
                    template,
                    INGEST_FUNCTION,
                    "SUBSCRIPTION_CACHE_TTL_SECONDS",
                    10,
                )),
                send_concurrency: 8,
                send_attempts: 4,
                max_message_bytes: 262_144,
            },
            dynamo.clone(),
            sqs.clone(),
        );
        let schedule = match config.retry_schedule.clone() {
            Some(schedule) => schedule,
            None => RetrySchedule::parse(
                &wiring::function_env(template, DELIVERY_FUNCTION, "RETRY_SCHEDULE")
                    .unwrap_or_default(),
            )?,
        };
        let delivery = Delivery::new(
            &DeliveryConfig {
                subscriptions_table: table(stack::SUBSCRIPTIONS_TABLE),
                deliveries_table: table(stack::DELIVERIES_TABLE),
                retry_queue_url: queue(stack::RETRY_QUEUE),
                dead_letter_queue_url: queue(stack::DEAD_LETTER_QUEUE),
                schedule,
                concurrency: env_u64(template, DELIVERY_FUNCTION, "DELIVERY_CONCURRENCY", 16)
                    as usize,
                cache_ttl: Duration::from_secs(env_u64(
                    template,
                    DELIVERY_FUNCTION,
                    "SUBSCRIPTION_CACHE_TTL_SECONDS",
                    5,
                )),
                connect_timeout: Duration::from_secs(5).min(config.request_timeout),
                request_timeout: config.request_timeout,
                allow_list: config.allow_list.clone(),
                extra_ca_file: config.extra_ca_file.clone(),
            },
            dynamo,
            sqs.clone(),
        )?;

        let invocations = Arc::new(Invocations::default());
        let stream_source = wiring::stream_source(template, STREAM_MAPPING)?;
        let stream_runner = StreamRunner {
            invocations: Arc::clone(&invocations),
            on_failure_queue_url: stream_source.on_failure_queue.as_deref().map(&queue),
            source: stream_source,
            region: config.region.clone(),
        };
        let mut queue_runners = Vec::new();
        for source in wiring::queue_sources(template, DELIVERY_FUNCTION)? {
            let queue_url = queue(&source.queue);
            let queue_arn = crate::provision::queue_arn(&sqs, &source.queue, &queue_url)
                .await
                .map_err(StackError::from)?;
            queue_runners.push(QueueRunner {
                pollers: source.max_concurrency.min(config.max_pollers),
                invocations: Arc::clone(&invocations),
                source,
                queue_url,
                queue_arn,
                region: config.region.clone(),
            });
        }
        Ok(Self {
            resources,
            app: Arc::new(app),
            ingest: Arc::new(ingest),
            delivery: Arc::new(delivery),
            runners: (stream_runner, queue_runners),
            invocations,
            sdk: sdk.clone(),
            stream_start: config.stream_start,
        })
    }

    /// The handler invocations the runners made so far, with durations.
    pub fn invocations(&self) -> &Invocations {
        &self.invocations
    }

    /// Starts the stream runner and the queue runners; they stop when
    /// `shutdown` turns true, after finishing the batch in hand.
    pub async fn start(
        &self,
        shutdown: watch::Receiver<bool>,
    ) -> Result<JoinSet<()>, PipelineError> {
        let reader = StreamReader::open(
            aws_sdk_dynamodbstreams::Client::new(&self.sdk),
            self.resources.jobs_stream_arn.clone(),
            self.stream_start,
        )
        .await?;
        let sqs = aws_sdk_sqs::Client::new(&self.sdk);
        let mut tasks = JoinSet::new();
        let (stream_runner, queue_runners) = &self.runners;
        tracing::info!(
            batch_size = stream_runner.source.batch_size,
            window_ms = stream_runner.source.batching_window.as_millis() as u64,
            "jobs stream -> ingest"
        );
        tasks.spawn(stream_runner.clone().run(
            reader,
            Arc::clone(&self.ingest),
            sqs.clone(),
            shutdown.clone(),
        ));
        for runner in queue_runners {
            tracing::info!(
                queue = %runner.source.queue,
                batch_size = runner.source.batch_size,
                pollers = runner.pollers,
                template_max_concurrency = runner.source.max_concurrency,
                "queue -> delivery"
            );
            tasks.spawn(runner.clone().run(
                Arc::clone(&self.delivery),
                sqs.clone(),
                shutdown.clone(),
            ));
        }
        Ok(tasks)
    }
}
