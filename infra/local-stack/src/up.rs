//! `local-stack up`: the whole service on one machine. Deploys
//! `template.yaml` into the local AWS emulator with CloudFormation, serves
//! the API on 127.0.0.1:3000, drives the jobs stream and the delivery
//! queues into the function handlers as the deployed event source mappings
//! say, runs a verifying demo receiver on 127.0.0.1:3001, and plays a short
//! demo.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use shared::config::{self, ConfigError};
use shared::cursor::MIN_KEY_LEN;
use shared::delivery::retry::RetrySchedule;
use shared::storage::subscriptions::SubscriptionStore;
use shared::target_guard::allow_list::AllowList;

use crate::pipeline::{Pipeline, PipelineConfig};
use aws_sdk_dynamodb::types::AttributeValue::S;
use local_infra::cloudformation::{self, ids};
use local_infra::dev_sign_in::{self, DevSignIn};
use local_infra::publish::{self, Publisher};
use local_infra::receiver::{self, Receiver};
use local_infra::simulate::Simulator;
use local_infra::vendors::{self, IncidentStatus, PagerDutyState};
use local_infra::{gateway, jwt};

/// Cursor key used locally when `CURSOR_SIGNING_KEY` is unset: the
/// emulator creates no secret to resolve the template's reference to. Not a
/// secret.
pub const LOCAL_CURSOR_KEY: &str = "local-development-cursor-signing-key-not-secret";
/// Company of the demo.
pub const DEMO_COMPANY: &str = "demo-company";
/// The app whose events the demo subscribes to.
pub const DEMO_APP: &str = "app_demo";
/// Local default of `TARGET_ALLOW_LIST`: loopback receivers.
pub const LOCAL_ALLOW_LIST: &str = local_infra::receiver::LOOPBACK_ALLOW_LIST;

/// Settings of the local stack, from the environment.
#[derive(Debug, Clone)]
pub struct LocalConfig {
    /// `LOCAL_API_ADDR`, default `127.0.0.1:3000`.
    pub api_addr: SocketAddr,
    /// `LOCAL_RECEIVER_ADDR`, default `127.0.0.1:3001`.
    pub receiver_addr: SocketAddr,
    /// `LOCAL_STACK_NAME`, default [`cloudformation::DEFAULT_STACK_NAME`].
    pub stack_name: String,
    /// Stack parameters: the local ones, `COMPANY_CLAIM` as `CompanyClaim`,
    /// `RETRY_SCHEDULE` as `RetrySchedule`, then `LOCAL_STACK_PARAMETERS`
    /// (`Key=Value,...`).
    pub parameters: Vec<(String, String)>,
    /// `LOCAL_DEMO=0` skips the start-up demo.
    pub demo: bool,
    /// `LOCAL_RUNNERS=0` serves the API only: no stream or queue runners,
    /// so nothing is delivered (the contract fuzzer's setting). Needs
    /// `LOCAL_DEMO=0`.
    pub runners: bool,
    /// `TARGET_ALLOW_LIST`, default loopback.
    pub allow_list: String,
    /// `LOCAL_MAX_POLLERS` (default 2, the fewest concurrent batches Lambda
    /// scales an idle SQS mapping down to): pollers per queue.
    pub max_pollers: usize,
    /// `LOCAL_SCHEDULE_INTERVAL_SECONDS` (default 5, where the template's
    /// rule says every minute): how often the scheduled prober runs.
    pub schedule_interval: Option<std::time::Duration>,
    /// `CURSOR_SIGNING_KEY`, default a fixed local key.
    pub cursor_key: String,
}

fn loopback(var: &'static str, default: SocketAddr) -> Result<SocketAddr, ConfigError> {
    let addr = config::parse_or(var, default)?;
    if !addr.ip().is_loopback() {
        return Err(ConfigError::new(
            var,
            "the local stack only listens on loopback addresses",
        ));
    }
    Ok(addr)
}

impl LocalConfig {
    /// Reads the settings; the emulator endpoint must be configured.
    pub fn from_env() -> Result<Self, ConfigError> {
        config::required("AWS_ENDPOINT_URL")?;
        let mut parameters = cloudformation::local_parameters();
        if let Some(schedule) = config::optional("RETRY_SCHEDULE") {
            RetrySchedule::parse(&schedule)
                .map_err(|e| ConfigError::new("RETRY_SCHEDULE", e.to_string()))?;
            parameters.push(("RetrySchedule".to_owned(), schedule));
        }
        if let Some(claim) = config::optional("COMPANY_CLAIM") {
            parameters.push(("CompanyClaim".to_owned(), claim));
        }
        // Locally the breaker opens on five consecutive failures without
        // the two-minute span, so the demo's outage shows in seconds
        // (LOCAL_STACK_PARAMETERS=BreakerMinFailingSeconds=120 restores it).
        parameters.push(("BreakerMinFailingSeconds".to_owned(), "0".to_owned()));
        let parameters = cloudformation::with_overrides(
            parameters,
            &config::optional("LOCAL_STACK_PARAMETERS").unwrap_or_default(),
        )
        .map_err(|e| ConfigError::new("LOCAL_STACK_PARAMETERS", e))?;
        let allow_list = config::optional(shared::target_guard::allow_list::ENV_VAR)
            .unwrap_or_else(|| LOCAL_ALLOW_LIST.to_owned());
        AllowList::parse(&allow_list).map_err(|e| {
            ConfigError::new(shared::target_guard::allow_list::ENV_VAR, e.to_string())
        })?;
        let cursor_key =
            config::optional("CURSOR_SIGNING_KEY").unwrap_or_else(|| LOCAL_CURSOR_KEY.to_owned());
        if cursor_key.len() < MIN_KEY_LEN {
            return Err(ConfigError::new(
                "CURSOR_SIGNING_KEY",
                format!("must be at least {MIN_KEY_LEN} bytes long"),
            ));
        }
        let config = Self {
            api_addr: loopback("LOCAL_API_ADDR", SocketAddr::from(([127, 0, 0, 1], 3000)))?,
            receiver_addr: loopback(receiver::ADDR_VAR, receiver::DEFAULT_ADDR)?,
            stack_name: config::optional("LOCAL_STACK_NAME")
                .unwrap_or_else(|| cloudformation::DEFAULT_STACK_NAME.to_owned()),
            parameters,
            demo: config::optional("LOCAL_DEMO").as_deref() != Some("0"),
            runners: config::optional("LOCAL_RUNNERS").as_deref() != Some("0"),
            allow_list,
            max_pollers: config::parse_in_range("LOCAL_MAX_POLLERS", 2usize, 1, 16)?,
            schedule_interval: Some(std::time::Duration::from_secs(config::parse_in_range(
                "LOCAL_SCHEDULE_INTERVAL_SECONDS",
                5u64,
                1,
                3600,
            )?)),
            cursor_key,
        };
        if config.demo && !config.runners {
            return Err(ConfigError::new(
                "LOCAL_RUNNERS",
                "LOCAL_RUNNERS=0 delivers nothing, so the demo can't run: set LOCAL_DEMO=0 too",
            ));
        }
        Ok(config)
    }

    /// The pipeline settings of this configuration.
    pub fn pipeline(&self, region: &str) -> PipelineConfig {
        let mut local_vars = vec![(
            shared::target_guard::allow_list::ENV_VAR,
            self.allow_list.clone(),
        )];
        if let Some(ca) = config::optional("TARGET_EXTRA_CA_FILE") {
            local_vars.push(("TARGET_EXTRA_CA_FILE", ca));
        }
        PipelineConfig {
            deployment: cloudformation::Deployment {
                stack_name: self.stack_name.clone(),
                template: cloudformation::template_path(),
                parameters: self.parameters.clone(),
                region: region.to_owned(),
            },
            local_vars,
            local_cursor_key: self.cursor_key.clone(),
            max_pollers: self.max_pollers,
            schedule_interval: self.schedule_interval,
            stream_window: None,
        }
    }
}

/// Runs the local stack until Ctrl-C.
pub async fn run(config: LocalConfig) -> Result<(), Box<dyn std::error::Error>> {
    let sdk = config::aws_sdk_config().await;
    let region = sdk
        .region()
        .map_or_else(|| "us-east-1".to_owned(), ToString::to_string);
    let started = std::time::Instant::now();
    let pipeline = Pipeline::build(&sdk, config.pipeline(&region)).await?;
    println!(
        "Deployed stack {} from {} into the emulator in {} ms ({} resources).",
        pipeline.stack.name,
        cloudformation::template_path()
            .file_name()
            .map_or_else(String::new, |f| f.to_string_lossy().into_owned()),
        started.elapsed().as_millis(),
        pipeline.stack.resources().count(),
    );
    println!("{}", pipeline.gaps_summary());
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };

    // With an OpenID client the console signs in as deployed, through the
    // provider only; without one, with the one-time links printed here.
    let oidc = pipeline
        .stack
        .function(ids::API_FUNCTION)?
        .environment
        .get("CONSOLE_OIDC_CLIENT_ID")
        .is_some_and(|id| !id.is_empty());
    let dev_sign_in = (!oidc).then(|| Arc::new(DevSignIn::new(pipeline.company_claim.clone())));
    let listener = tokio::net::TcpListener::bind(config.api_addr)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.api_addr))?;
    let api = tokio::spawn(gateway::serve(
        listener,
        pipeline.api(),
        gateway::PublicRoutes::of(&pipeline.stack),
        dev_sign_in.clone(),
        stopped(shutdown.clone()),
    ));
    let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
    let store = SubscriptionStore::new(
        dynamo.clone(),
        pipeline.stack.table(ids::SUBSCRIPTIONS_TABLE)?,
    );
    let jobs_table = pipeline.stack.table(ids::JOBS_TABLE)?.to_owned();
    let mut receiver = Receiver::bind(config.receiver_addr)
        .verifying(store, Arc::clone(&pipeline.secrets))
        .printing(|line| println!("{line}"))
        .until(stopped(shutdown.clone()))
        .start()?;
    let receiver_url = receiver.url("/webhooks");
    let mut runners = if config.runners {
        pipeline.start(shutdown.clone()).await?
    } else {
        println!("\nLOCAL_RUNNERS=0: the API only; nothing is ingested or delivered.");
        tokio::task::JoinSet::new()
    };

    // Kept for the whole run: the demo's Slack and PagerDuty
    // subscriptions keep receiving what `make simulate` writes.
    let fakes = VendorFakes::start().await?;
    let base = format!("http://{}", config.api_addr);
    let token = jwt::dev_token(DEMO_COMPANY, &pipeline.company_claim);
    println!("\nThe webhooks service is running locally (tokens are decoded, NOT verified):");
    println!("  API            {base}");
    println!("  console        {base}/console");
    println!("  demo receiver  {receiver_url}  (verifies signatures, prints events)");
    println!(
        "  Slack fake     {}  (checks Block Kit messages)",
        fakes.slack.url("/")
    );
    println!(
        "  PagerDuty fake {}  (checks Events API v2 events, keeps incidents)",
        fakes.pagerduty.url("/")
    );
    println!("  jobs table     {jobs_table}");
    if config.demo {
        let simulator = Simulator::new(dynamo.clone(), &jobs_table)
            .with_pause(Duration::from_millis(300))
            .with_observer(|t| println!("   jobs table: {t}"));
        let publisher = Publisher::new(
            aws_sdk_sqs::Client::new(&sdk),
            pipeline.stack.queue_url(ids::PLATFORM_EVENTS_QUEUE)?,
        );
        if let Err(e) = demo(
            &base,
            &token,
            &receiver_url,
            &simulator,
            &publisher,
            &receiver,
        )
        .await
        {
            println!("\nThe demo did not complete: {e}");
        }
        let auth = format!("Bearer {token}");
        if let Err(e) = formats(&base, &auth, &fakes, &dynamo, &jobs_table).await {
            println!("\nThe body formats demo did not complete: {e}");
        }
    }
    println!("\nTry it (make token COMPANY=acme prints a token for another company):\n");
    println!("  export TOKEN={token}");
    println!("  curl -s {base}/webhooks -H \"authorization: Bearer $TOKEN\"");
    println!("  make simulate COMPANY={DEMO_COMPANY} JOBS=3");
    println!(
        "  make publish COMPANY={DEMO_COMPANY} TYPES=\"engine.slow_query_event app.installed\""
    );
    match &dev_sign_in {
        Some(dev) => {
            let minutes = dev_sign_in::CODE_TTL.as_secs() / 60;
            println!(
                "\nOpen the console, signed in as {DEMO_COMPANY} (the link works once, within {minutes} minutes):"
            );
            println!("  {}", dev.link(&base, DEMO_COMPANY));
            println!(
                "Press Enter here for a new link, or type a company, then Enter, for a link that signs in as it."
            );
            print_links_on_request(Arc::clone(dev), base.clone());
        }
        None => println!("\nThe console signs in through the OpenID provider: {base}/console"),
    }
    println!("\nServing. Ctrl-C stops.");

    let _ = tokio::signal::ctrl_c().await;
    println!("\nStopping: finishing the batches in hand...");
    let _ = stop.send(true);
    while runners.join_next().await.is_some() {}
    api.await??;
    receiver.stopped().await?;
    println!("Stopped.");
    Ok(())
}

/// Prints a new one-time console link for each line read from stdin: for
/// the company the line names, or the demo company when it is empty. A
/// thread of its own (not the runtime's), so a pending read never holds up
/// Ctrl-C.
fn print_links_on_request(dev: Arc<DevSignIn>, base: String) {
    let minutes = dev_sign_in::CODE_TTL.as_secs() / 60;
    let reader = move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { return };
            let company = match line.trim() {
                "" => DEMO_COMPANY,
                named => named,
            };
            if company.len() > shared::domain::job_event::MAX_ID_LEN
                || company.chars().any(|c| c.is_control() || c.is_whitespace())
            {
                println!("  not a company id: {company:?}");
                continue;
            }
            println!(
                "  console link for {company} (works once, within {minutes} minutes): {}",
                dev.link(&base, company)
            );
        }
    };
    if let Err(e) = std::thread::Builder::new()
        .name("console-links".to_owned())
        .spawn(reader)
    {
        tracing::warn!(error = %e, "no new console links on Enter");
    }
}

/// Subscribes the demo receiver, simulates three jobs, and shows the
/// verified events arriving, then a test event and the delivery log.
async fn demo(
    base: &str,
    token: &str,
    receiver_url: &str,
    simulator: &Simulator,
    publisher: &Publisher,
    receiver: &Receiver,
) -> Result<(), Box<dyn std::error::Error>> {
    let http = reqwest::Client::new();
    let auth = format!("Bearer {token}");
    println!("\n1. POST /webhooks: subscribe the demo receiver to every job of {DEMO_COMPANY}");
    let created: serde_json::Value = http
        .post(format!("{base}/webhooks"))
        .header("authorization", &auth)
        .json(&serde_json::json!({
            "url": receiver_url,
            "description": "demo receiver",
        }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    println!(
        "   created {id}; its signing secret came back in this one response (not printed here)"
    );

    println!("\n2. The platform runs three jobs (written to the jobs table):");
    let mut rng = fastrand::Rng::new();
    let jobs = local_infra::simulate::plan(DEMO_COMPANY, 3, &mut rng);
    let transitions = simulator.run_plan(&jobs, &mut rng).await?;

    println!(
        "\n3. Each state change travels stream -> ingest -> DeliveryQueue -> delivery -> receiver:"
    );
    receiver
        .wait_for_verified(transitions.len(), Duration::from_secs(60))
        .await?;

    println!("\n4. POST /webhooks/{id}/test sends a webhook.test event:");
    http.post(format!("{base}/webhooks/{id}/test"))
        .header("authorization", &auth)
        .send()
        .await?
        .error_for_status()?;
    receiver
        .wait_for_verified(transitions.len() + 1, Duration::from_secs(30))
        .await?;

    let log: serde_json::Value = http
        .get(format!("{base}/webhooks/{id}/deliveries?limit=3"))
        .header("authorization", &auth)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    println!("\n5. GET /webhooks/{id}/deliveries?limit=3 (the attempt log, newest first):");
    for attempt in log["data"].as_array().into_iter().flatten() {
        println!(
            "   {} attempt {} -> {} {} in {} ms",
            attempt["event_type"].as_str().unwrap_or("?"),
            attempt["attempt"],
            attempt["outcome"].as_str().unwrap_or("?"),
            attempt["status_code"],
            attempt["duration_ms"],
        );
    }
    platform_events(base, &auth, receiver_url, publisher, receiver).await?;
    outage(base, &auth, receiver_url, receiver).await
}

/// Fakes of Slack and PagerDuty on loopback for the demo's body formats:
/// each checks every request against the vendor's documented rules and
/// answers as the vendor does (`local_infra::vendors`).
pub struct VendorFakes {
    slack: Receiver,
    pagerduty: Receiver,
    incidents: PagerDutyState,
}

impl VendorFakes {
    /// Starts both on free loopback ports.
    pub async fn start() -> Result<Self, receiver::ReceiverError> {
        let slack = Receiver::builder().start()?;
        slack.set_handler(vendors::slack_handler());
        let pagerduty = Receiver::builder().start()?;
        let incidents = PagerDutyState::default();
        pagerduty.set_handler(vendors::pagerduty_handler(incidents.clone()));
        Ok(Self {
            slack,
            pagerduty,
            incidents,
        })
    }
}

/// The demo's body formats: a Slack-format and a PagerDuty-format
/// subscription to the local fakes; a job fails, is retried and
/// completes: Slack gets a message per change, PagerDuty one incident,
/// opened then resolved.
async fn formats(
    base: &str,
    auth: &str,
    fakes: &VendorFakes,
    dynamo: &aws_sdk_dynamodb::Client,
    jobs_table: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let http = reqwest::Client::new();
    println!(
        "\n10. Body formats: a Slack channel and a PagerDuty service (local fakes that check each request against the vendor's documented rules)"
    );
    for body in [
        serde_json::json!({
            "url": fakes.slack.url("/services/T000/B000/demo"),
            "description": "demo Slack channel",
            "format": {"type": "slack"},
        }),
        serde_json::json!({
            "url": fakes.pagerduty.url("/v2/enqueue"),
            "description": "demo PagerDuty service",
            "format": {"type": "pagerduty", "routing_key": "demo-routing-key-not-a-secret"},
        }),
    ] {
        let created = create(&http, base, auth, &body).await?;
        println!(
            "   created {} ({}, format {})",
            created["id"].as_str().unwrap_or_default(),
            body["description"].as_str().unwrap_or_default(),
            created["format"]
        );
    }
    let job_id = format!(
        "job-demo-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let write = |state: &'static str, failed: bool| {
        let mut put = dynamo
            .put_item()
            .table_name(jobs_table)
            .item("company_id", S(DEMO_COMPANY.to_owned()))
            .item("job_id", S(job_id.clone()))
            .item("type", S("forecast".to_owned()))
            .item("state", S(state.to_owned()))
            .item("updated_at", S(chrono::Utc::now().to_rfc3339()));
        if failed {
            put = put.item(
                "error",
                aws_sdk_dynamodb::types::AttributeValue::M(
                    [
                        ("reason".to_owned(), S("out_of_memory".to_owned())),
                        (
                            "message".to_owned(),
                            S("The forecast job ran out of memory.".to_owned()),
                        ),
                    ]
                    .into(),
                ),
            );
        }
        put.send()
    };
    let dedup_key = format!("job/{job_id}");
    let incident = |status| {
        fakes
            .incidents
            .incident(&dedup_key)
            .is_some_and(|i| i.status == status)
    };
    println!("   {job_id} runs, fails:");
    write("running", false).await?;
    write("failed", true).await?;
    wait(Duration::from_secs(60), || incident(IncidentStatus::Open)).await?;
    println!("   PagerDuty: incident {dedup_key} triggered");
    println!("   {job_id} is retried and completes:");
    write("running", false).await?;
    write("completed", false).await?;
    wait(Duration::from_secs(60), || {
        incident(IncidentStatus::Resolved)
    })
    .await?;
    println!(
        "   PagerDuty: incident {dedup_key} resolved (running states are not sent to PagerDuty)"
    );
    wait(Duration::from_secs(60), || fakes.slack.requests() >= 4).await?;
    for message in fakes.slack.received() {
        let body: serde_json::Value = serde_json::from_slice(&message.body)?;
        println!("   Slack: {}", body["text"].as_str().unwrap_or("(no text)"));
    }
    Ok(())
}

/// `POST /webhooks` with `body`: the subscription created.
async fn create(
    http: &reqwest::Client,
    base: &str,
    auth: &str,
    body: &serde_json::Value,
) -> Result<serde_json::Value, reqwest::Error> {
    http.post(format!("{base}/webhooks"))
        .header("authorization", auth)
        .json(body)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await
}

/// Awaits `condition`, at most `within`.
async fn wait(within: Duration, condition: impl Fn() -> bool) -> Result<(), String> {
    let deadline = std::time::Instant::now() + within;
    while !condition() {
        if std::time::Instant::now() > deadline {
            return Err(format!("not within {within:?}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// The demo's platform events: an `events` subscription of the demo
/// receiver to engine events and one app's events, signed with both
/// schemes and sending a custom header; two platform services publish
/// CloudEvents to the ingress queue, and only the matching ones arrive.
async fn platform_events(
    base: &str,
    auth: &str,
    receiver_url: &str,
    publisher: &Publisher,
    receiver: &Receiver,
) -> Result<(), Box<dyn std::error::Error>> {
    let http = reqwest::Client::new();
    println!(
        "\n6. POST /webhooks with kind events: the demo receiver also takes engine events (signed v1 and v1a, with a custom header), and, as an app webhook, the events of app {DEMO_APP}"
    );
    for body in [
        serde_json::json!({
            "url": receiver_url,
            "description": "demo receiver: engine events",
            "kind": "events",
            "filters": {"event_types": ["engine.*"]},
            "signature_schemes": ["v1", "v1a"],
            "headers": {"x-demo-api-key": "demo-key-not-a-secret"},
        }),
        serde_json::json!({
            "url": receiver_url,
            "description": "demo receiver: one app's events",
            "kind": "events",
            "filters": {"event_types": ["app.*"], "app_ids": [DEMO_APP]},
        }),
    ] {
        let created = create(&http, base, auth, &body).await?;
        println!(
            "   created {} ({}){}",
            created["id"].as_str().unwrap_or_default(),
            body["description"].as_str().unwrap_or_default(),
            created["public_key"]
                .as_str()
                .map(|k| format!("; its Ed25519 public key is {k}"))
                .unwrap_or_default()
        );
    }
    println!(
        "\n7. The engine and the apps service publish CloudEvents to the ingress queue (one app event is another app's, and is not delivered):"
    );
    let mut events = Vec::new();
    for event_type in [
        "engine.aggregate_batch_started",
        "engine.aggregate_batch_result",
        "app.installed",
        "app.run_failed",
    ] {
        let mut event = publish::sample(DEMO_COMPANY, event_type)?;
        if event_type.starts_with("app.") {
            event["appid"] = DEMO_APP.into();
            event["data"]["app_id"] = DEMO_APP.into();
        }
        events.push(event);
    }
    let mut foreign = publish::sample(DEMO_COMPANY, "app.installed")?;
    foreign["appid"] = "app_someone_else".into();
    foreign["data"]["app_id"] = "app_someone_else".into();
    events.push(foreign);
    let before = receiver.verified().len();
    publisher.publish(&events).await?;
    for event in &events {
        println!(
            "   published {} from {}{}",
            event["type"].as_str().unwrap_or_default(),
            event["source"].as_str().unwrap_or_default(),
            event["appid"]
                .as_str()
                .map(|a| format!(" (app {a})"))
                .unwrap_or_default()
        );
    }
    receiver
        .wait_for_verified(before + events.len() - 1, Duration::from_secs(60))
        .await?;
    Ok(())
}

/// The demo's failing endpoint: it goes down, its breaker opens and its
/// events are parked; it comes back, a probe succeeds and they drain.
async fn outage(
    base: &str,
    auth: &str,
    receiver_url: &str,
    receiver: &Receiver,
) -> Result<(), Box<dyn std::error::Error>> {
    let http = reqwest::Client::new();
    let url = format!("{receiver_url}{}", receiver::OUTAGE_PATH);
    println!("\n8. An endpoint goes down: {url} answers 503 to everything");
    receiver.set_outage(true);
    let created: serde_json::Value = http
        .post(format!("{base}/webhooks"))
        .header("authorization", auth)
        .json(&serde_json::json!({"url": url, "description": "demo endpoint with an outage"}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    let health = || async {
        let sub: serde_json::Value = http
            .get(format!("{base}/webhooks/{id}"))
            .header("authorization", auth)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok::<_, reqwest::Error>(sub["health"].clone())
    };
    let send_test = || async {
        http.post(format!("{base}/webhooks/{id}/test"))
            .header("authorization", auth)
            .send()
            .await?
            .error_for_status()
            .map(|_| ())
    };
    let delivered_before = receiver.verified().len();
    let mut sent = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let open = loop {
        let h = health().await?;
        if h["state"] != "closed" {
            break h;
        }
        if std::time::Instant::now() > deadline {
            return Err("the breaker did not open".into());
        }
        if sent < 6 {
            send_test().await?;
            sent += 1;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    println!(
        "   after {} consecutive failed attempts the breaker is {}: events are parked, not retried",
        open["consecutive_failures"],
        open["state"].as_str().unwrap_or("?")
    );
    for _ in 0..3 {
        send_test().await?;
        sent += 1;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let parked = health().await?;
    println!(
        "   3 more events while it is down go straight to the ParkedEventsTable: GET /webhooks/{id} says parked_events = {}",
        parked["parked_events"]
    );

    println!(
        "\n9. It comes back; the prober probes it with its oldest parked event, the breaker closes and the parked events drain:"
    );
    receiver.set_outage(false);
    receiver
        .wait_for_verified(delivered_before + sent, Duration::from_secs(90))
        .await?;
    let healed = health().await?;
    println!(
        "   all {sent} events delivered; breaker {}, parked_events = {}",
        healed["state"].as_str().unwrap_or("?"),
        healed["parked_events"]
    );
    Ok(())
}
