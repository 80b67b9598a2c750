//! The template deployed into the emulator by CloudFormation, and the
//! runners driven by what was deployed: every resource is created or a
//! listed emulator gap; the functions' environments and the event source
//! mappings are CloudFormation's; a template change reaches the runner
//! with no Rust change; the deploy starts the signing-secret keyring
//! through the secret-keys function's custom resource, also when an update
//! adds it; a stack that failed to deploy is created again; and
//! a hard-killed `local-stack up` resumes the jobs stream from its
//! checkpoints without losing a transition.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use local_infra::cloudformation::{DeployedStack, Deployment, gaps};
use local_infra::simulate::{self, Simulator};
use local_stack::pipeline::{CUSTOM_RESOURCES, Pipeline, PipelineConfig};
use shared::domain::filters::Filters;
use shared::domain::subscription::{NewSubscription, Subscription};
use shared::signing::secret::WebhookSecret;
use shared::storage::subscriptions::SubscriptionStore;
use test_kit::emulator;
use test_kit::receiver::Receiver;
use test_kit::stack::{self, ids};
use tokio::io::{AsyncBufReadExt, BufReader};

/// A copy of the repository's template with `edits` (each `(from, to)`
/// must occur) applied, in a fresh temporary directory.
fn edited_template(edits: &[(&str, &str)]) -> PathBuf {
    let text = std::fs::read_to_string(local_infra::cloudformation::template_path()).unwrap();
    let mut edited = text.clone();
    for (from, to) in edits {
        assert!(edited.contains(from), "the template holds {from:?}");
        edited = edited.replacen(from, to, 1);
    }
    let dir = std::env::temp_dir().join(emulator::unique_name("template"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("template.yaml");
    std::fs::write(&path, edited).unwrap();
    path
}

#[tokio::test]
async fn every_template_resource_is_created_or_a_listed_emulator_gap() {
    let stack = stack::deploy().await;
    let unexplained: Vec<_> = stack.gaps.iter().filter(|g| !g.known).collect();
    assert!(unexplained.is_empty(), "{unexplained:?}");
    let summary = gaps::summary(&stack.gaps);
    for gap in [
        "AWS::CloudWatch::Alarm",
        "AWS::ApiGatewayV2::Api",
        "IAM roles",
        "CURSOR_SIGNING_KEY",
    ] {
        assert!(summary.contains(gap), "{summary}");
    }
    for id in [
        ids::SUBSCRIPTIONS_TABLE,
        ids::DELIVERIES_TABLE,
        ids::JOBS_TABLE,
    ] {
        stack.table(id).unwrap();
    }

    // Each function's environment is what CloudFormation resolved.
    let delivery = stack.function(ids::DELIVERY_FUNCTION).unwrap();
    assert_eq!(
        delivery.environment["RETRY_QUEUE_URL"],
        stack.queue_url(ids::RETRY_QUEUE).unwrap()
    );
    assert_eq!(
        delivery.environment["SUBSCRIPTIONS_TABLE"],
        stack.table(ids::SUBSCRIPTIONS_TABLE).unwrap()
    );
    assert_eq!(
        delivery.environment["RETRY_SCHEDULE"],
        "5s,5m,30m,2h,5h,10h,10h"
    );
    // The keyring's table and KMS key are the emulator's, created by
    // CloudFormation like every other resource.
    assert_eq!(
        delivery.environment["KEYRING_TABLE"],
        stack.table(ids::KEYRING_TABLE).unwrap()
    );
    assert!(
        delivery.environment["SECRETS_KMS_KEY_ID"].starts_with("arn:aws:kms:"),
        "{:?}",
        delivery.environment
    );
    assert_eq!(stack.functions.len(), 8);

    // The mappings are Lambda's, with the template's settings.
    let streams: Vec<_> = stack.mappings_of(ids::INGEST_FUNCTION).collect();
    assert_eq!(streams.len(), 1);
    let s = streams[0];
    assert!(s.is_stream() && s.report_batch_item_failures && s.enabled);
    assert_eq!((s.batch_size, s.batching_window), (500, Duration::ZERO));
    assert_eq!(s.max_retries, Some(10));
    assert_eq!(
        s.on_failure_arn
            .as_deref()
            .and_then(|arn| stack.queue_id_of_arn(arn)),
        Some(ids::INGEST_FAILURE_QUEUE)
    );
    assert_eq!(s.filters, [r#"{"eventName": ["INSERT", "MODIFY"]}"#]);
    let queues: BTreeSet<_> = stack
        .mappings_of(ids::DELIVERY_FUNCTION)
        .map(|m| {
            assert!(m.is_queue() && m.report_batch_item_failures);
            assert_eq!((m.batch_size, m.max_concurrency), (10, Some(50)));
            assert_eq!(m.batching_window, Duration::ZERO);
            stack.queue_id_of_arn(&m.source_arn).unwrap()
        })
        .collect();
    assert_eq!(
        queues,
        BTreeSet::from([ids::DELIVERY_QUEUE, ids::RETRY_QUEUE])
    );
    let platform: Vec<_> = stack.mappings_of(ids::PLATFORM_INGEST_FUNCTION).collect();
    assert_eq!(platform.len(), 1);
    let p = platform[0];
    assert!(p.is_queue() && p.report_batch_item_failures && p.enabled);
    assert_eq!(
        (p.batch_size, p.batching_window),
        (100, Duration::from_secs(1))
    );
    assert_eq!(
        stack.queue_id_of_arn(&p.source_arn),
        Some(ids::PLATFORM_EVENTS_QUEUE)
    );
    let platform_ingest = stack.function(ids::PLATFORM_INGEST_FUNCTION).unwrap();
    assert_eq!(
        platform_ingest.environment["PLATFORM_EVENTS_DLQ_URL"],
        stack
            .queue_url(ids::PLATFORM_EVENTS_DEAD_LETTER_QUEUE)
            .unwrap()
    );
    // The parameters' defaults are the values the code used before they
    // were parameters.
    for id in [ids::INGEST_FUNCTION, ids::PLATFORM_INGEST_FUNCTION] {
        let f = stack.function(id).unwrap();
        assert_eq!(f.environment["OUTBOX_MAX_MESSAGES"], "160", "{id}");
        assert_eq!(f.environment["OUTBOX_MAX_BYTES"], "4194304", "{id}");
    }
    for id in [
        ids::INGEST_FUNCTION,
        ids::PLATFORM_INGEST_FUNCTION,
        ids::DELIVERY_FUNCTION,
    ] {
        assert_eq!(stack.function(id).unwrap().memory_mb, 128, "{id}");
    }
    assert_eq!(stack.function(ids::PROBER_FUNCTION).unwrap().memory_mb, 256);
}

#[tokio::test]
async fn batching_outbox_and_memory_parameters_reach_the_mappings_and_functions() {
    let stack = stack::deploy_with(&[
        ("DeliveryBatchSize", "50"),
        ("DeliveryBatchingWindowSeconds", "2"),
        ("IngestOutboxMessages", "40"),
        ("IngestOutboxBytes", "1048576"),
        ("IngestMemorySize", "256"),
        ("DeliveryMemorySize", "512"),
    ])
    .await;
    let delivery: Vec<_> = stack.mappings_of(ids::DELIVERY_FUNCTION).collect();
    assert_eq!(delivery.len(), 2);
    for m in delivery {
        assert_eq!(
            (m.batch_size, m.batching_window),
            (50, Duration::from_secs(2)),
            "{m:?}"
        );
    }
    // The queue runner batches by these mappings (queue_runner.rs), and
    // the pipeline builds each function from its deployed environment.
    for id in [ids::INGEST_FUNCTION, ids::PLATFORM_INGEST_FUNCTION] {
        assert_eq!(stack.function(id).unwrap().memory_mb, 256, "{id}");
    }
    assert_eq!(
        stack.function(ids::DELIVERY_FUNCTION).unwrap().memory_mb,
        512
    );
    assert_eq!(stack.function(ids::PROBER_FUNCTION).unwrap().memory_mb, 256);
    // Both ingest functions read the outbox thresholds from their
    // deployed environments.
    let job = job_events_ingest::IngestConfig::from_vars(&stack::function_vars(
        &stack,
        ids::INGEST_FUNCTION,
        &[],
    ))
    .unwrap();
    assert_eq!((job.outbox_messages, job.outbox_bytes), (40, 1 << 20));
    let platform = platform_events_ingest::PlatformIngestConfig::from_vars(&stack::function_vars(
        &stack,
        ids::PLATFORM_INGEST_FUNCTION,
        &[],
    ))
    .unwrap();
    assert_eq!(
        (
            platform.fanout.outbox_messages,
            platform.fanout.outbox_bytes
        ),
        (40, 1 << 20)
    );
}

#[tokio::test]
async fn the_attempt_log_can_be_deployed_with_provisioned_capacity() {
    let stack = stack::deploy_with(&[
        ("DeliveriesTableCapacity", "provisioned"),
        ("DeliveriesTableMinWriteCapacity", "7"),
    ])
    .await;
    let dynamo = aws_sdk_dynamodb::Client::new(&emulator::sdk_config().await);
    let table = dynamo
        .describe_table()
        .table_name(stack.table(ids::DELIVERIES_TABLE).unwrap())
        .send()
        .await
        .unwrap()
        .table
        .unwrap();
    let throughput = table.provisioned_throughput.unwrap();
    assert_eq!(throughput.write_capacity_units, Some(7));
    assert_eq!(throughput.read_capacity_units, Some(5));
    // The scaling targets are declared; the emulator records them without
    // scaling (a listed gap).
    let unexplained: Vec<_> = stack.gaps.iter().filter(|g| !g.known).collect();
    assert!(unexplained.is_empty(), "{unexplained:?}");

    // On demand by default.
    let default = stack::deploy().await;
    let table = dynamo
        .describe_table()
        .table_name(default.table(ids::DELIVERIES_TABLE).unwrap())
        .send()
        .await
        .unwrap()
        .table
        .unwrap();
    assert_eq!(
        table.billing_mode_summary.and_then(|b| b.billing_mode),
        Some(aws_sdk_dynamodb::types::BillingMode::PayPerRequest)
    );
}

#[tokio::test]
async fn a_changed_batch_size_and_schedule_reach_the_runner_without_code() {
    // The stream mapping takes 3 records per batch instead of 500, and the
    // prober's schedule runs every 5 minutes instead of every minute.
    let template = edited_template(&[
        ("      BatchSize: 500\n", "      BatchSize: 3\n"),
        (
            "            Schedule: rate(1 minute)\n",
            "            Schedule: rate(5 minutes)\n",
        ),
    ]);
    let mut config = PipelineConfig::isolated(&[("StreamBatchingWindowSeconds", "0")], &[]);
    config.deployment.template = template;
    let sdk = emulator::sdk_config().await;
    let pipeline = Pipeline::build(&sdk, config).await.unwrap();
    let schedules = &pipeline.stack.schedules;
    assert_eq!(schedules.len(), 1, "{schedules:?}");
    assert_eq!(schedules[0].expression, "rate(5 minutes)");
    assert_eq!(schedules[0].targets, [ids::PROBER_FUNCTION]);

    // The runner invokes ingest with at most 3 records: the transitions of
    // 4 jobs written at once take at least ceil(n / 3) invocations.
    let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
    let receiver = Receiver::http().await;
    let company = emulator::unique_name("batch");
    subscribe(&pipeline.stack, &company, &receiver).await;
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let mut runners = pipeline.start(shutdown).await.unwrap();
    let simulator = Simulator::new(dynamo, pipeline.stack.table(ids::JOBS_TABLE).unwrap())
        .with_pause(Duration::ZERO);
    let mut rng = fastrand::Rng::with_seed(3);
    let transitions = simulator
        .run_plan(&simulate::plan(&company, 4, &mut rng), &mut rng)
        .await
        .unwrap();
    receiver
        .wait_for(transitions.len(), Duration::from_secs(60))
        .await;
    let _ = stop.send(true);
    while runners.join_next().await.is_some() {}
    let invocations = pipeline.invocations().snapshot()[ids::INGEST_FUNCTION].count;
    assert!(
        invocations as usize >= transitions.len().div_ceil(3),
        "{} transitions in {invocations} ingest invocations",
        transitions.len()
    );
}

/// Subscribes `receiver` to every event of `company` in `stack`'s table;
/// returns the subscription and its secret.
async fn subscribe(
    stack: &DeployedStack,
    company: &str,
    receiver: &Receiver,
) -> (Subscription, WebhookSecret) {
    let store = SubscriptionStore::new(
        emulator::dynamodb().await,
        stack.table(ids::SUBSCRIPTIONS_TABLE).unwrap(),
    );
    let (sub, secret) = Subscription::create(
        company,
        NewSubscription {
            url: receiver.url("/hook"),
            description: None,
            filters: Filters::default(),
        },
        chrono::Utc::now(),
        &stack::secret_vault(stack).await.current(),
    )
    .unwrap();
    store.create(&sub, None, u64::MAX).await.unwrap();
    (sub, secret)
}

/// `local-stack up` as a child process on stack `stack_name`.
struct Up {
    child: tokio::process::Child,
}

impl Up {
    /// Starts it and waits until it serves.
    async fn start(stack_name: &str, template: &Path) -> Self {
        let free = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .to_string()
        };
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_local-stack"))
            .arg("up")
            .env("LOCAL_DEMO", "0")
            .env("LOCAL_STACK_NAME", stack_name)
            .env("TEMPLATE_PATH", template)
            .env("LOCAL_STACK_PARAMETERS", "StreamBatchingWindowSeconds=0")
            .env("LOCAL_API_ADDR", free())
            .env("LOCAL_RECEIVER_ADDR", free())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let serving = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if line.starts_with("Serving.") {
                    return true;
                }
            }
            false
        })
        .await;
        assert_eq!(serving, Ok(true), "local-stack up serves");
        // Keep draining its output so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self { child }
    }

    /// SIGKILL: no batch is finished, no checkpoint written on the way out.
    async fn kill(mut self) {
        self.child.kill().await.unwrap();
    }
}

#[tokio::test]
async fn the_deploy_starts_the_keyring_through_secret_keys_also_when_an_update_adds_it() {
    let audit = test_kit::iam::Audit::start();
    let sdk = audit.sdk().await;
    // A stack deployed before the keyring was started by the deploy.
    let mut deployment = Deployment::isolated(&[]);
    deployment.template = edited_template(&[(
        "  SigningKeyring:\n    Type: Custom::SigningKeyring\n    Properties:\n      \
         ServiceToken: !GetAtt SecretKeysFunction.Arn\n      KeyringTable: !Ref KeyringTable\n      \
         # An answer that never comes fails the stack operation in 5 minutes,\n      \
         # not CloudFormation's default hour.\n      ServiceTimeout: 300\n",
        "",
    )]);
    let versions = |stack: DeployedStack| async move {
        let config = shared::storage::keyring::KeyringConfig::from_vars(&stack::function_vars(
            &stack,
            ids::API_FUNCTION,
            &[],
        ))
        .unwrap();
        let sdk = emulator::sdk_config().await;
        shared::storage::keyring::KeyringStore::new(
            aws_sdk_dynamodb::Client::new(&sdk),
            aws_sdk_kms::Client::new(&sdk),
            config,
        )
        .versions()
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.version)
        .collect::<Vec<_>>()
    };
    let older = local_infra::cloudformation::deploy_stack(&sdk, &deployment, CUSTOM_RESOURCES)
        .await
        .unwrap();
    assert_eq!(versions(older).await, Vec::<u32>::new());
    assert_eq!(audit.recorded(), 0, "no function ran");

    // The update adds SigningKeyring: its Create runs secret-keys, which
    // adds version 1; deploying again changes nothing.
    deployment.template = local_infra::cloudformation::template_path();
    let updated = local_infra::cloudformation::deploy_stack(&sdk, &deployment, CUSTOM_RESOURCES)
        .await
        .unwrap();
    assert_eq!(versions(updated.clone()).await, [1]);
    let again = local_infra::cloudformation::deploy_stack(&sdk, &deployment, CUSTOM_RESOURCES)
        .await
        .unwrap();
    assert_eq!(versions(again).await, [1]);
    // With the function's own grants.
    assert!(audit.recorded() > 0);
    audit.assert_granted(&updated);
}

#[tokio::test]
async fn a_stack_that_failed_to_deploy_is_created_again() {
    // A stream mapping on a stream that does not exist: moto fails the
    // stack at JobEventsStreamMapping.
    let sdk = emulator::sdk_config().await;
    let mut broken = Deployment::isolated(&[(
        "JobsTableStreamArn",
        "arn:aws:dynamodb:us-east-1:123456789012:table/missing/stream/2026-01-01T00:00:00.000",
    )]);
    let err = local_infra::cloudformation::deploy_stack(&sdk, &broken, CUSTOM_RESOURCES)
        .await
        .expect_err("the stream does not exist");
    assert!(err.to_string().contains(&broken.stack_name), "{err}");
    broken.parameters.retain(|(k, _)| k != "JobsTableStreamArn");
    let stack = local_infra::cloudformation::deploy_stack(&sdk, &broken, CUSTOM_RESOURCES)
        .await
        .expect("the same stack deploys once the template is fixed");
    assert!(stack.table(ids::JOBS_TABLE).is_ok());
    assert_eq!(stack.mappings_of(ids::INGEST_FUNCTION).count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hard_killed_runner_resumes_from_its_checkpoints_and_loses_nothing() {
    // Messages a killed runner held come back after the queues' visibility
    // timeout; a short one keeps the test short.
    let template = edited_template(&[
        (
            "      VisibilityTimeout: 180\n",
            "      VisibilityTimeout: 3\n",
        ),
        (
            "      VisibilityTimeout: 180\n",
            "      VisibilityTimeout: 3\n",
        ),
    ]);
    let stack_name = local_infra::cloudformation::unique_stack_name();
    let sdk = emulator::sdk_config().await;
    // Killed before it handled anything: the restart must still begin
    // where the first start did, not at LATEST again.
    Up::start(&stack_name, &template).await.kill().await;
    let stack = DeployedStack::read_existing(&sdk, &stack_name)
        .await
        .unwrap();
    let receiver = Receiver::http().await;
    let company = emulator::unique_name("restart");
    let (sub, secret) = subscribe(&stack, &company, &receiver).await;
    let simulator = Simulator::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        stack.table(ids::JOBS_TABLE).unwrap(),
    )
    .with_pause(Duration::from_millis(20));
    let mut rng = fastrand::Rng::with_seed(12);
    let plan = simulate::plan(&company, 24, &mut rng);
    let (before, rest) = plan.split_at(8);
    let (while_down, after) = rest.split_at(8);

    let mut written = simulator.run_plan(before, &mut rng).await.unwrap();
    let second = Up::start(&stack_name, &template).await;
    receiver.wait_for(1, Duration::from_secs(30)).await;
    second.kill().await;
    written.extend(simulator.run_plan(while_down, &mut rng).await.unwrap());
    let _third = Up::start(&stack_name, &template).await;
    written.extend(simulator.run_plan(after, &mut rng).await.unwrap());

    let expected: BTreeSet<(String, String)> = written
        .iter()
        .map(|t| (t.job_id.clone(), t.state.as_str().to_owned()))
        .collect();
    let key = shared::signing::key_bytes(secret.expose());
    let secrets = HashMap::from([(sub.subscription_id.clone(), key)]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let mut seen = BTreeSet::new();
    while seen.len() < expected.len() && tokio::time::Instant::now() < deadline {
        let got = receiver.received();
        seen = got
            .iter()
            .filter_map(|r| r.verified_event(|s| secrets.get(s).cloned()))
            .map(|(_, job, state)| (job, state))
            .collect();
        // The next request, or half a second (what is missing may never come).
        let next = receiver.wait_for(got.len() + 1, Duration::from_secs(3600));
        let _ = tokio::time::timeout(Duration::from_millis(500), next).await;
    }
    let missing: Vec<_> = expected.difference(&seen).collect();
    assert!(
        missing.is_empty(),
        "{} of {} transitions never arrived after the restart: {missing:?}",
        missing.len(),
        expected.len()
    );
}
