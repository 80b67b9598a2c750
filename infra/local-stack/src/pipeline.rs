//! The whole service on one machine: `template.yaml` deployed into the
//! local AWS emulator by CloudFormation, the function handlers built from
//! the environment CloudFormation resolved for each function, and runners
//! that drive the jobs stream, the platform events queue and the delivery
//! queues into them with the deployed event source mappings' settings.

use std::sync::Arc;
use std::time::Duration;

use aws_config::SdkConfig;
use endpoint_prober::{Prober, ProberConfig};
use job_events_ingest::{Ingest, IngestConfig};
use platform_events_ingest::{PlatformIngest, PlatformIngestConfig};
use shared::config::{ConfigError, Vars};
use shared::storage::keyring::{KeyringError, SecretVault};
use shared::storage::parked::ParkedEvents;
use shared::storage::subscriptions::SubscriptionStore;
use subscriptions_api::{ApiConfig, App};
use tokio::sync::watch;
use tokio::task::JoinSet;
use webhook_delivery::{Delivery, DeliveryConfig};

use local_infra::cloudformation::custom_resources::Handlers;
use local_infra::cloudformation::{
    DeployStackError, DeployedStack, Deployment, EventSourceMapping, StackReadError, gaps, ids,
};
use local_infra::filter::Filter;
use local_infra::identity::function_sdk;
use local_infra::receiver::LOOPBACK_ALLOW_LIST;
use local_infra::stream::{StartPosition, StreamError, StreamReader};

use crate::checkpoint::{CheckpointError, Checkpoints};
use crate::invocations::Invocations;
use crate::queue_runner::{LAMBDA_INITIAL_POLLERS, QueueRunner};
use crate::stream_runner::StreamRunner;

/// The handlers of the template's custom resource functions: the
/// keyring's start ([`secret_keys::answer_custom_resource`]).
pub const CUSTOM_RESOURCES: Handlers<'static> = &[(
    ids::SECRET_KEYS_FUNCTION,
    secret_keys::answer_custom_resource,
)];

/// The pipeline could not be deployed, built or started.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The stack could not be deployed.
    #[error(transparent)]
    Deploy(#[from] DeployStackError),
    /// The deployed stack lacks something.
    #[error(transparent)]
    Stack(#[from] StackReadError),
    /// A function's deployed environment does not configure its handler.
    #[error("{function}: {source}")]
    Config {
        /// Logical id of the function.
        function: &'static str,
        /// The configuration problem.
        source: ConfigError,
    },
    /// The signing-secret keyring could not be loaded.
    #[error("{function}: {source}")]
    Keyring {
        /// Logical id of the function.
        function: &'static str,
        /// What failed.
        source: KeyringError,
    },
    /// The delivery client could not be built.
    #[error(transparent)]
    Client(#[from] webhook_delivery::client::ClientError),
    /// The jobs stream could not be opened.
    #[error(transparent)]
    Stream(#[from] StreamError),
    /// The stream checkpoints could not be read.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// A mapping's source is not a resource of the stack.
    #[error("event source mapping {uuid} of {function}: {problem}")]
    Mapping {
        /// The mapping.
        uuid: String,
        /// Its function.
        function: String,
        /// What is wrong.
        problem: String,
    },
}

/// Where and how to deploy, and the local-only settings on top of what
/// the stack configures.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// The stack (a unique name per test; the default one for `make run`).
    pub deployment: Deployment,
    /// Local-only variables set on top of every function's deployed
    /// environment: `TARGET_ALLOW_LIST`, `TARGET_EXTRA_CA_FILE`, and the
    /// tests' `RETRY_SCHEDULE` or `REQUEST_TIMEOUT_MS`.
    pub local_vars: Vec<(&'static str, String)>,
    /// `CURSOR_SIGNING_KEY` when the deployed one is an unresolved
    /// dynamic reference (the emulator creates no secret).
    pub local_cursor_key: String,
    /// Caps each queue's pollers (the stack allows far more than one
    /// machine with an emulator needs); [`isolated`](Self::isolated) sets
    /// [`LAMBDA_INITIAL_POLLERS`], the five concurrent batches Lambda
    /// starts an SQS mapping with.
    pub max_pollers: usize,
    /// Runs scheduled functions at this interval instead of their rule's
    /// `rate(...)` (tests and the demo compress time).
    pub schedule_interval: Option<Duration>,
    /// Benchmarks only: the stream mapping's batching window instead of the
    /// deployed one, for windows AWS cannot set (it takes whole seconds).
    pub stream_window: Option<Duration>,
}

impl PipelineConfig {
    /// A pipeline on a stack nothing else uses (a test's or a benchmark's):
    /// `parameters` on top of the local ones, receivers on loopback
    /// allowed, and `local` set on top of every function's deployed
    /// environment.
    pub fn isolated(parameters: &[(&str, &str)], local: &[(&'static str, &str)]) -> Self {
        let mut local_vars = vec![("TARGET_ALLOW_LIST", LOOPBACK_ALLOW_LIST.to_owned())];
        local_vars.extend(local.iter().map(|(k, v)| (*k, (*v).to_owned())));
        Self {
            deployment: Deployment::isolated(parameters),
            local_vars,
            local_cursor_key: "test-cursor-signing-key-for-the-local-pipeline".to_owned(),
            max_pollers: LAMBDA_INITIAL_POLLERS,
            schedule_interval: None,
            stream_window: None,
        }
    }
}

/// `app` as the local gateway calls it.
pub fn api_handler(app: Arc<App>) -> local_infra::gateway::Handler {
    Arc::new(move |request| {
        let app = Arc::clone(&app);
        Box::pin(async move { app.handle(request).await })
    })
}

/// The deployed stack and the handlers of its functions.
pub struct Pipeline {
    /// What CloudFormation made of the template.
    pub stack: DeployedStack,
    /// The subscriptions API handler.
    pub app: Arc<App>,
    /// The API's company claim, as deployed.
    pub company_claim: String,
    /// The keyring the delivery handler opens signing secrets with (the
    /// demo receiver verifies deliveries with it too).
    pub secrets: Arc<SecretVault>,
    ingest: Arc<Ingest>,
    platform_ingest: Arc<PlatformIngest>,
    delivery: Arc<Delivery>,
    prober: Arc<Prober>,
    invocations: Arc<Invocations>,
    sdk: SdkConfig,
    max_pollers: usize,
    schedule_interval: Option<Duration>,
    stream_window: Option<Duration>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("stack", &self.stack.name)
            .finish_non_exhaustive()
    }
}

impl Pipeline {
    /// The stack's subscriptions table, called with the pipeline's SDK
    /// settings.
    pub fn subscription_store(&self) -> Result<SubscriptionStore, StackReadError> {
        Ok(SubscriptionStore::new(
            aws_sdk_dynamodb::Client::new(&self.sdk),
            self.stack.table(ids::SUBSCRIPTIONS_TABLE)?,
        ))
    }

    /// The stack's parked events table, called with the pipeline's SDK
    /// settings.
    pub fn parked_events(&self) -> Result<ParkedEvents, StackReadError> {
        Ok(ParkedEvents::new(
            aws_sdk_dynamodb::Client::new(&self.sdk),
            self.stack.table(ids::PARKED_EVENTS_TABLE)?,
        ))
    }

    /// The API handler as the local gateway calls it.
    pub fn api(&self) -> local_infra::gateway::Handler {
        api_handler(Arc::clone(&self.app))
    }

    /// Deploys the stack and builds each function's handler from its
    /// deployed environment plus the local-only variables.
    pub async fn build(sdk: &SdkConfig, config: PipelineConfig) -> Result<Self, PipelineError> {
        let stack =
            local_infra::cloudformation::deploy_stack(sdk, &config.deployment, CUSTOM_RESOURCES)
                .await?;
        let vars = |function: &'static str| -> Result<Vars, PipelineError> {
            let deployed = stack.function(function)?;
            let mut local = config.local_vars.clone();
            let key = deployed.environment.get("CURSOR_SIGNING_KEY");
            if key.is_some_and(|k| k.contains("{{resolve:")) {
                local.push(("CURSOR_SIGNING_KEY", config.local_cursor_key.clone()));
            }
            Ok(deployed.vars_with(&local))
        };
        let configured =
            |function: &'static str| move |source| PipelineError::Config { function, source };
        let keyring_failed =
            |function: &'static str| move |source| PipelineError::Keyring { function, source };

        // Each function calls AWS as itself (its logical id as access key
        // id), as it would with its own role.
        let api_sdk = function_sdk(sdk, ids::API_FUNCTION);
        let api_config = ApiConfig::from_vars(&vars(ids::API_FUNCTION)?)
            .map_err(configured(ids::API_FUNCTION))?;
        let company_claim = api_config.company_claim.clone();
        let api_dynamo = aws_sdk_dynamodb::Client::new(&api_sdk);
        // As at each function's cold start: the API and delivery read the
        // keyring the stack's deploy started.
        let api_vault = SecretVault::load_from(&api_sdk, api_dynamo.clone(), &api_config.keyring)
            .await
            .map_err(keyring_failed(ids::API_FUNCTION))?;
        let app = App::new(
            api_config,
            api_dynamo,
            aws_sdk_sqs::Client::new(&api_sdk),
            aws_sdk_eventbridge::Client::new(&api_sdk),
            Arc::new(api_vault),
        );
        let ingest_sdk = function_sdk(sdk, ids::INGEST_FUNCTION);
        let ingest = Ingest::new(
            &IngestConfig::from_vars(&vars(ids::INGEST_FUNCTION)?)
                .map_err(configured(ids::INGEST_FUNCTION))?,
            aws_sdk_dynamodb::Client::new(&ingest_sdk),
            aws_sdk_sqs::Client::new(&ingest_sdk),
        )
        // As in Lambda: poison records set aside name their shard.
        .with_streams(aws_sdk_dynamodbstreams::Client::new(&ingest_sdk));
        let platform_sdk = function_sdk(sdk, ids::PLATFORM_INGEST_FUNCTION);
        let platform_ingest = PlatformIngest::new(
            &PlatformIngestConfig::from_vars(&vars(ids::PLATFORM_INGEST_FUNCTION)?)
                .map_err(configured(ids::PLATFORM_INGEST_FUNCTION))?,
            aws_sdk_dynamodb::Client::new(&platform_sdk),
            aws_sdk_sqs::Client::new(&platform_sdk),
        );
        let delivery_sdk = function_sdk(sdk, ids::DELIVERY_FUNCTION);
        let delivery_config = DeliveryConfig::from_vars(&vars(ids::DELIVERY_FUNCTION)?)
            .map_err(configured(ids::DELIVERY_FUNCTION))?;
        let delivery_dynamo = aws_sdk_dynamodb::Client::new(&delivery_sdk);
        let secrets = Arc::new(
            SecretVault::load_from(
                &delivery_sdk,
                delivery_dynamo.clone(),
                &delivery_config.keyring,
            )
            .await
            .map_err(keyring_failed(ids::DELIVERY_FUNCTION))?,
        );
        let delivery = Delivery::new(
            &delivery_config,
            delivery_dynamo,
            aws_sdk_sqs::Client::new(&delivery_sdk),
            aws_sdk_eventbridge::Client::new(&delivery_sdk),
            Arc::clone(&secrets),
        )?;
        let prober_sdk = function_sdk(sdk, ids::PROBER_FUNCTION);
        let prober = Prober::new(
            &ProberConfig::from_vars(&vars(ids::PROBER_FUNCTION)?)
                .map_err(configured(ids::PROBER_FUNCTION))?,
            aws_sdk_dynamodb::Client::new(&prober_sdk),
            aws_sdk_sqs::Client::new(&prober_sdk),
            aws_sdk_eventbridge::Client::new(&prober_sdk),
        );
        Ok(Self {
            stack,
            app: Arc::new(app),
            company_claim,
            secrets,
            ingest: Arc::new(ingest),
            platform_ingest: Arc::new(platform_ingest),
            delivery: Arc::new(delivery),
            prober: Arc::new(prober),
            invocations: Arc::new(Invocations::default()),
            sdk: sdk.clone(),
            max_pollers: config.max_pollers,
            schedule_interval: config.schedule_interval,
            stream_window: config.stream_window,
        })
    }

    /// The handler invocations the runners made so far, with durations.
    pub fn invocations(&self) -> &Invocations {
        &self.invocations
    }

    /// The gaps between the template and what the emulator made of it, in
    /// one line.
    pub fn gaps_summary(&self) -> String {
        gaps::summary(&self.stack.gaps)
    }

    /// Starts a runner for every event source mapping of the stack; they
    /// stop when `shutdown` turns true, after finishing the batch in hand.
    pub async fn start(
        &self,
        shutdown: watch::Receiver<bool>,
    ) -> Result<JoinSet<()>, PipelineError> {
        let sqs = aws_sdk_sqs::Client::new(&self.sdk);
        let mut tasks = JoinSet::new();
        for mapping in self.stack.mappings.iter().filter(|m| m.enabled) {
            match (
                mapping.function.as_str(),
                mapping.is_stream(),
                mapping.is_queue(),
            ) {
                (ids::INGEST_FUNCTION, true, _) => {
                    let (runner, reader) = self.stream_runner(mapping).await?;
                    tracing::info!(
                        batch_size = mapping.batch_size,
                        window_ms = mapping.batching_window.as_millis() as u64,
                        "jobs stream -> ingest"
                    );
                    tasks.spawn(runner.run(
                        reader,
                        Arc::clone(&self.ingest),
                        sqs.clone(),
                        shutdown.clone(),
                    ));
                }
                (ids::DELIVERY_FUNCTION, _, true) => {
                    let runner = self.queue_runner(mapping)?;
                    tracing::info!(
                        queue = %runner.queue,
                        batch_size = mapping.batch_size,
                        pollers = runner.pollers,
                        max_concurrency = mapping.max_concurrency,
                        "queue -> delivery"
                    );
                    tasks.spawn(runner.run(
                        Arc::clone(&self.delivery),
                        sqs.clone(),
                        shutdown.clone(),
                    ));
                }
                (ids::PLATFORM_INGEST_FUNCTION, _, true) => {
                    let runner = self.queue_runner(mapping)?;
                    tracing::info!(
                        queue = %runner.queue,
                        batch_size = mapping.batch_size,
                        window_ms = mapping.batching_window.as_millis() as u64,
                        pollers = runner.pollers,
                        "queue -> platform events ingest"
                    );
                    tasks.spawn(runner.run(
                        Arc::clone(&self.platform_ingest),
                        sqs.clone(),
                        shutdown.clone(),
                    ));
                }
                (function, ..) => {
                    return Err(PipelineError::Mapping {
                        uuid: mapping.uuid.clone(),
                        function: function.to_owned(),
                        problem: format!("no local runner for {}", mapping.source_arn),
                    });
                }
            }
        }
        for schedule in self.stack.schedules.iter().filter(|s| s.enabled) {
            for target in &schedule.targets {
                if target != ids::PROBER_FUNCTION {
                    tracing::warn!(
                        rule = %schedule.rule,
                        function = %target,
                        "schedule deployed; the function has no local scheduled handler"
                    );
                    continue;
                }
                let Some(every) = self
                    .schedule_interval
                    .or_else(|| rate_interval(&schedule.expression))
                else {
                    return Err(PipelineError::Mapping {
                        uuid: schedule.rule.clone(),
                        function: target.clone(),
                        problem: format!("schedule {} is not a rate(...)", schedule.expression),
                    });
                };
                tracing::info!(
                    rule = %schedule.rule,
                    expression = %schedule.expression,
                    every_ms = every.as_millis() as u64,
                    "schedule -> prober"
                );
                let timeout = self.stack.function(ids::PROBER_FUNCTION)?.timeout;
                tasks.spawn(run_every(
                    every,
                    timeout,
                    Arc::clone(&self.prober),
                    Arc::clone(&self.invocations),
                    shutdown.clone(),
                ));
            }
        }
        Ok(tasks)
    }

    async fn stream_runner(
        &self,
        mapping: &EventSourceMapping,
    ) -> Result<(StreamRunner, StreamReader), PipelineError> {
        let fail = |problem: String| PipelineError::Mapping {
            uuid: mapping.uuid.clone(),
            function: mapping.function.clone(),
            problem,
        };
        let on_failure_queue_url = mapping
            .on_failure_arn
            .as_deref()
            .map(|arn| {
                self.stack
                    .queue_url_of_arn(arn)
                    .map(str::to_owned)
                    .ok_or_else(|| {
                        fail(format!(
                            "on-failure destination {arn} is not a queue of the stack"
                        ))
                    })
            })
            .transpose()?;
        // A pattern outside the supported subset passes every record; the
        // start-up line of emulator gaps says so.
        let filter = Filter::parse(&mapping.filters).unwrap_or_default();
        let checkpoints =
            Checkpoints::open(aws_sdk_dynamodb::Client::new(&self.sdk), &mapping.uuid).await?;
        let saved = checkpoints.load().await?;
        let streams = aws_sdk_dynamodbstreams::Client::new(&self.sdk);
        let arn = mapping.source_arn.clone();
        let reader = if saved.opened {
            // Shards without a position appeared after the first start:
            // all their records are new.
            tracing::info!(
                shards = saved.positions.len(),
                "jobs stream resumes from its checkpoints"
            );
            StreamReader::resume(streams, arn, StartPosition::TrimHorizon, &saved.positions).await?
        } else {
            // The mapping's first start. LATEST is made durable: the records
            // the stream holds now are skipped and its end saved, so a
            // restart before anything was handled resumes from here.
            let start = mapping.starting_position.unwrap_or(StartPosition::Latest);
            let mut reader = StreamReader::open(streams, arn, StartPosition::TrimHorizon).await?;
            if start == StartPosition::Latest {
                for (shard, sequence) in reader.skip_to_end().await? {
                    checkpoints.save(&shard, &sequence).await?;
                }
            }
            checkpoints.mark_opened().await?;
            reader
        };
        Ok((
            StreamRunner {
                timeout: self
                    .stack
                    .function(&mapping.function)
                    .map_err(|e| fail(e.to_string()))?
                    .timeout,
                mapping: {
                    let mut mapping = mapping.clone();
                    if let Some(window) = self.stream_window {
                        mapping.batching_window = window;
                    }
                    mapping
                },
                filter,
                checkpoints,
                region: region_of(&mapping.source_arn),
                on_failure_queue_url,
                invocations: Arc::clone(&self.invocations),
            },
            reader,
        ))
    }

    fn queue_runner(&self, mapping: &EventSourceMapping) -> Result<QueueRunner, PipelineError> {
        let fail = |problem: String| PipelineError::Mapping {
            uuid: mapping.uuid.clone(),
            function: mapping.function.clone(),
            problem,
        };
        let queue_url = self
            .stack
            .queue_url_of_arn(&mapping.source_arn)
            .ok_or_else(|| {
                fail(format!(
                    "{} is not a queue of the stack",
                    mapping.source_arn
                ))
            })?;
        Ok(QueueRunner {
            queue: self
                .stack
                .queue_id_of_arn(&mapping.source_arn)
                .unwrap_or(queue_url)
                .to_owned(),
            pollers: mapping
                .max_concurrency
                .unwrap_or(1000)
                .min(self.max_pollers),
            queue_url: queue_url.to_owned(),
            region: region_of(&mapping.source_arn),
            mapping: mapping.clone(),
            invocations: Arc::clone(&self.invocations),
        })
    }
}

/// Runs the prober every `every` until `shutdown`, like EventBridge's
/// schedule invoking it.
async fn run_every(
    every: Duration,
    timeout: Duration,
    prober: Arc<Prober>,
    invocations: Arc<Invocations>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
        let invoked = std::time::Instant::now();
        let deadline = invoked + timeout;
        let report = prober.run(chrono::Utc::now(), Some(deadline)).await;
        invocations.record(ids::PROBER_FUNCTION, invoked.elapsed(), &report.metrics());
    }
}

/// The interval of `rate(N unit)`.
fn rate_interval(expression: &str) -> Option<Duration> {
    let inner = expression.strip_prefix("rate(")?.strip_suffix(')')?;
    let (n, unit) = inner.trim().split_once(' ')?;
    let n: u64 = n.parse().ok()?;
    let secs = match unit.trim_end_matches('s') {
        "minute" => 60,
        "hour" => 3600,
        "day" => 86_400,
        _ => return None,
    };
    Some(Duration::from_secs(n * secs))
}

/// The region in an ARN (`arn:aws:service:REGION:...`).
fn region_of(arn: &str) -> String {
    arn.split(':').nth(3).unwrap_or("us-east-1").to_owned()
}
