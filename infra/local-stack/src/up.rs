//! `local-stack up`: the whole service on one machine. Provisions the
//! template's tables and queues in the local AWS emulator, serves the API
//! on 127.0.0.1:3000, drives the jobs stream and the delivery queues into
//! the function handlers, runs a verifying demo receiver on
//! 127.0.0.1:3001, and plays a short demo.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use shared::allow_list::AllowList;
use shared::config::{self, ConfigError};
use shared::cursor::CursorCodec;
use shared::retry::RetrySchedule;
use shared::store::SubscriptionStore;

use crate::demo_receiver::{self, DemoReceiver};
use crate::pipeline::{Pipeline, PipelineConfig};
use crate::simulate::Simulator;
use crate::stream::StartPosition;
use crate::template::{self, Template};
use crate::{gateway, jwt, stack};

/// Cursor key used locally when `CURSOR_SIGNING_KEY` is unset. Not a secret.
const LOCAL_CURSOR_KEY: &str = "local-development-cursor-signing-key-not-secret";
/// Company of the demo.
pub const DEMO_COMPANY: &str = "demo-company";
/// Local default of `TARGET_ALLOW_LIST`: loopback receivers.
const LOCAL_ALLOW_LIST: &str = "127.0.0.0/8,::1";

/// Settings of the local stack, from the environment.
#[derive(Debug, Clone)]
pub struct LocalConfig {
    /// `LOCAL_API_ADDR`, default `127.0.0.1:3000`.
    pub api_addr: SocketAddr,
    /// `LOCAL_RECEIVER_ADDR`, default `127.0.0.1:3001`.
    pub receiver_addr: SocketAddr,
    /// `COMPANY_CLAIM`, default `company_id`.
    pub company_claim: String,
    /// `LOCAL_DEMO=0` skips the start-up demo.
    pub demo: bool,
    /// `LOCAL_RUNNERS=0` serves the API only: no stream or queue runners,
    /// so nothing is delivered (the contract fuzzer's setting). Needs
    /// `LOCAL_DEMO=0`.
    pub runners: bool,
    /// `RETRY_SCHEDULE`, default the template's.
    pub retry_schedule: Option<RetrySchedule>,
    /// `TARGET_ALLOW_LIST`, default loopback.
    pub allow_list: AllowList,
    /// `LOCAL_MAX_POLLERS` (default 2): pollers per queue.
    pub max_pollers: usize,
    /// `CURSOR_SIGNING_KEY`, default a fixed local key.
    pub cursors: CursorCodec,
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
        let retry_schedule = config::optional("RETRY_SCHEDULE")
            .map(|s| RetrySchedule::parse(&s))
            .transpose()
            .map_err(|e| ConfigError::new("RETRY_SCHEDULE", e.to_string()))?;
        let allow_text = config::optional(shared::allow_list::ENV_VAR)
            .unwrap_or_else(|| LOCAL_ALLOW_LIST.to_owned());
        let allow_list = AllowList::parse(&allow_text)
            .map_err(|e| ConfigError::new(shared::allow_list::ENV_VAR, e.to_string()))?;
        let key =
            config::optional("CURSOR_SIGNING_KEY").unwrap_or_else(|| LOCAL_CURSOR_KEY.to_owned());
        let cursors = CursorCodec::new(key.as_bytes()).ok_or_else(|| {
            ConfigError::new("CURSOR_SIGNING_KEY", "must be at least 32 bytes long")
        })?;
        Ok(Self {
            api_addr: loopback("LOCAL_API_ADDR", SocketAddr::from(([127, 0, 0, 1], 3000)))?,
            receiver_addr: loopback(demo_receiver::ADDR_VAR, demo_receiver::DEFAULT_ADDR)?,
            company_claim: config::optional("COMPANY_CLAIM")
                .unwrap_or_else(|| "company_id".to_owned()),
            demo: config::optional("LOCAL_DEMO").as_deref() != Some("0"),
            runners: config::optional("LOCAL_RUNNERS").as_deref() != Some("0"),
            retry_schedule,
            allow_list,
            max_pollers: config::parse_in_range("LOCAL_MAX_POLLERS", 2usize, 1, 16)?,
            cursors,
        })
        .and_then(|c: Self| {
            if c.demo && !c.runners {
                return Err(ConfigError::new(
                    "LOCAL_RUNNERS",
                    "LOCAL_RUNNERS=0 delivers nothing, so the demo can't run: set LOCAL_DEMO=0 too",
                ));
            }
            Ok(c)
        })
    }
}

/// Runs the local stack until Ctrl-C.
pub async fn run(config: LocalConfig) -> Result<(), Box<dyn std::error::Error>> {
    let sdk = config::aws_sdk_config().await;
    let template = Template::load(&template::default_path())?;
    let pipeline = Pipeline::build(
        &sdk,
        &template,
        PipelineConfig {
            prefix: String::new(),
            region: sdk
                .region()
                .map_or_else(|| "us-east-1".to_owned(), ToString::to_string),
            retry_schedule: config.retry_schedule.clone(),
            allow_list: config.allow_list.clone(),
            extra_ca_file: config::optional("TARGET_EXTRA_CA_FILE").map(Into::into),
            max_pollers: config.max_pollers,
            request_timeout: Duration::from_secs(15),
            company_claim: config.company_claim.clone(),
            cursors: config.cursors.clone(),
            stream_start: StartPosition::Latest,
        },
    )
    .await?;
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };

    let listener = tokio::net::TcpListener::bind(config.api_addr)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.api_addr))?;
    let api = tokio::spawn(gateway::serve(
        listener,
        Arc::clone(&pipeline.app),
        stopped(shutdown.clone()),
    ));
    let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
    let store = SubscriptionStore::new(
        dynamo.clone(),
        pipeline.resources.table(stack::SUBSCRIPTIONS_TABLE),
    );
    let receiver = DemoReceiver::bind(config.receiver_addr, store).await?;
    let receiver_url = receiver.url();
    let receiver_log = receiver.log();
    let receiver_task = tokio::spawn(receiver.serve(stopped(shutdown.clone())));
    let mut runners = if config.runners {
        pipeline.start(shutdown.clone()).await?
    } else {
        println!("\nLOCAL_RUNNERS=0: the API only; nothing is ingested or delivered.");
        tokio::task::JoinSet::new()
    };

    let base = format!("http://{}", config.api_addr);
    let token = jwt::dev_token(DEMO_COMPANY, &config.company_claim);
    println!("\nThe webhooks service is running locally (tokens are decoded, NOT verified):");
    println!("  API            {base}");
    println!("  demo receiver  {receiver_url}  (verifies signatures, prints events)");
    println!(
        "  jobs table     {}",
        pipeline.resources.table(stack::JOBS_TABLE)
    );
    if config.demo {
        let simulator = Simulator::new(dynamo, pipeline.resources.table(stack::JOBS_TABLE))
            .with_pause(Duration::from_millis(300))
            .with_observer(|t| println!("   jobs table: {t}"));
        if let Err(e) = demo(&base, &token, &receiver_url, &simulator, &receiver_log).await {
            println!("\nThe demo did not complete: {e}");
        }
    }
    println!("\nTry it (make token COMPANY=acme prints a token for another company):\n");
    println!("  export TOKEN={token}");
    println!("  curl -s {base}/webhooks -H \"authorization: Bearer $TOKEN\"");
    println!("  make simulate COMPANY={DEMO_COMPANY} JOBS=3");
    println!("\nServing. Ctrl-C stops.");

    let _ = tokio::signal::ctrl_c().await;
    println!("\nStopping: finishing the batches in hand...");
    let _ = stop.send(true);
    while runners.join_next().await.is_some() {}
    api.await??;
    receiver_task.await??;
    println!("Stopped.");
    Ok(())
}

/// Subscribes the demo receiver, simulates three jobs, and shows the
/// verified events arriving, then a test event and the delivery log.
async fn demo(
    base: &str,
    token: &str,
    receiver_url: &str,
    simulator: &Simulator,
    receiver_log: &demo_receiver::ReceiverLog,
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
    let jobs = crate::simulate::plan(DEMO_COMPANY, 3, &mut rng);
    let transitions = simulator.run_plan(&jobs, &mut rng).await?;

    println!(
        "\n3. Each state change travels stream -> ingest -> DeliveryQueue -> delivery -> receiver:"
    );
    receiver_log
        .wait_for(transitions.len(), Duration::from_secs(60))
        .await?;

    println!("\n4. POST /webhooks/{id}/test sends a webhook.test event:");
    http.post(format!("{base}/webhooks/{id}/test"))
        .header("authorization", &auth)
        .send()
        .await?
        .error_for_status()?;
    receiver_log
        .wait_for(transitions.len() + 1, Duration::from_secs(30))
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
    Ok(())
}
