//! `local-stack up`: provision the emulator, serve the API, show it working.

use std::net::SocketAddr;
use std::sync::Arc;

use shared::allow_list::AllowList;
use shared::config::{self, ConfigError};
use shared::cursor::CursorCodec;
use subscriptions_api::{ApiConfig, App};

use crate::template::{self, Template};
use crate::{gateway, jwt, provision};

/// Local logical id of the subscriptions table; also its local name.
pub const SUBSCRIPTIONS_TABLE: &str = "SubscriptionsTable";
/// Logical id of the delivery attempt log; also its local name.
pub const DELIVERIES_TABLE: &str = "DeliveriesTable";
/// Logical id of the delivery queue; also its local name.
pub const DELIVERY_QUEUE: &str = "DeliveryQueue";
/// Cursor key used locally when `CURSOR_SIGNING_KEY` is unset. Not a secret.
const LOCAL_CURSOR_KEY: &str = "local-development-cursor-signing-key-not-secret";

/// Settings of the local stack, from the environment.
#[derive(Debug, Clone)]
pub struct LocalConfig {
    /// `LOCAL_API_ADDR`, default `127.0.0.1:3000`.
    pub api_addr: SocketAddr,
    /// `COMPANY_CLAIM`, default `company_id`.
    pub company_claim: String,
    /// `LOCAL_DEMO=0` skips the start-up demo.
    pub demo: bool,
}

impl LocalConfig {
    /// Reads the settings; the emulator endpoint must be configured.
    pub fn from_env() -> Result<Self, ConfigError> {
        config::required("AWS_ENDPOINT_URL")?;
        let api_addr =
            config::parse_or("LOCAL_API_ADDR", SocketAddr::from(([127, 0, 0, 1], 3000)))?;
        if !api_addr.ip().is_loopback() {
            return Err(ConfigError::new(
                "LOCAL_API_ADDR",
                "the local stack only listens on loopback addresses",
            ));
        }
        Ok(Self {
            api_addr,
            company_claim: config::optional("COMPANY_CLAIM")
                .unwrap_or_else(|| "company_id".to_owned()),
            demo: config::optional("LOCAL_DEMO").as_deref() != Some("0"),
        })
    }
}

/// Creates the API's tables and queue in the emulator and builds the API.
pub async fn build_app(config: &LocalConfig) -> Result<App, Box<dyn std::error::Error>> {
    let sdk = config::aws_sdk_config().await;
    let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let template = Template::load(&template::default_path())?;
    for table in [SUBSCRIPTIONS_TABLE, DELIVERIES_TABLE] {
        provision::ensure_table(&dynamo, &template.table(table)?, table).await?;
    }
    let delivery_queue_url = provision::ensure_queue(&sqs, DELIVERY_QUEUE, &[]).await?;
    let key = config::optional("CURSOR_SIGNING_KEY").unwrap_or_else(|| LOCAL_CURSOR_KEY.to_owned());
    let cursors = CursorCodec::new(key.as_bytes())
        .ok_or_else(|| ConfigError::new("CURSOR_SIGNING_KEY", "must be at least 32 bytes long"))?;
    let api = ApiConfig {
        table: SUBSCRIPTIONS_TABLE.to_owned(),
        deliveries_table: DELIVERIES_TABLE.to_owned(),
        delivery_queue_url,
        company_claim: config.company_claim.clone(),
        cursors,
        allow_list: AllowList::from_env()?,
    };
    Ok(App::new(api, dynamo, sqs))
}

/// Runs the local stack until Ctrl-C.
pub async fn run(config: LocalConfig) -> Result<(), Box<dyn std::error::Error>> {
    let app = Arc::new(build_app(&config).await?);
    let listener = tokio::net::TcpListener::bind(config.api_addr)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.api_addr))?;
    let base = format!("http://{}", config.api_addr);
    let token = jwt::dev_token("demo-company", &config.company_claim);
    tracing::info!(api = %base, "subscriptions API listening (local mode: bearer tokens are decoded, NOT verified)");
    let server = tokio::spawn(gateway::serve(listener, app, async {
        let _ = tokio::signal::ctrl_c().await;
    }));
    if config.demo {
        demo(&base, &token).await?;
    }
    println!(
        "\nTry it (local tokens are not verified; make token COMPANY=acme prints one for another company):\n"
    );
    println!("  export TOKEN={token}");
    println!("  curl -s {base}/job-types -H \"authorization: Bearer $TOKEN\"");
    println!("\nServing on {base}. Ctrl-C stops.");
    server.await??;
    tracing::info!("stopped");
    Ok(())
}

/// Creates, reads and lists a subscription over HTTP, printing each step.
async fn demo(base: &str, token: &str) -> Result<(), Box<dyn std::error::Error>> {
    let http = reqwest::Client::new();
    let auth = format!("Bearer {token}");
    let created: serde_json::Value = http
        .post(format!("{base}/webhooks"))
        .header("authorization", &auth)
        .json(&serde_json::json!({
            "url": "https://example.com/webhooks/jobs",
            "description": "demo: failed and completed materialize-view jobs",
            "filters": { "job_types": ["materialize-view"], "states": ["completed", "failed"] }
        }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    println!(
        "\nPOST /webhooks created:\n{}",
        serde_json::to_string_pretty(&created)?
    );
    let listed: serde_json::Value = http
        .get(format!("{base}/webhooks?limit=5&status=active"))
        .header("authorization", &auth)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let count = listed["data"].as_array().map_or(0, Vec::len);
    println!("GET /webhooks?status=active: {count} active subscription(s) for demo-company");
    Ok(())
}
