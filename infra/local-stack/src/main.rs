//! `local-stack`: the webhooks service on one machine.
//!
//! - `local-stack up`: deploys `template.yaml` into the local AWS emulator
//!   with CloudFormation, serves the API on 127.0.0.1:3000, drives the jobs
//!   stream and the delivery queues into the functions as the deployed
//!   event source mappings say, runs a verifying demo receiver on
//!   127.0.0.1:3001 and plays a short demo.
//! - `local-stack token COMPANY`: prints a development bearer token.
//! - `local-stack publish COMPANY [EVENT_TYPE ...]`: publishes one sample
//!   CloudEvent of each type (engine and app events by default) for
//!   COMPANY to the local ingress queue (`PlatformEventsQueue`).
//! - `local-stack ingress-url`: prints that queue's URL, for publishing
//!   CloudEvents with any SQS client.
//! - `local-stack simulate COMPANY [JOBS]`: writes JOBS (default 5)
//!   simulated jobs of COMPANY to the local jobs table (`JOBS_TABLE`,
//!   default the deployed stack's `JobsTable`), printing each state change. `SIMULATE_SEED`
//!   reproduces a run, `SIMULATE_PAUSE_MS` paces it (default 300).
//! - `local-stack secret-keys JSON`: the signing-secret key function
//!   (`{"action": "rotate"}`, `{"action": "reencrypt"}`) against the stack
//!   `make run` serves;
//! - `local-stack redrive [JSON]`: the dead-letter redrive function against
//!   the local queues, with the function's input.
//! - `local-stack replay-ingest-failures [JSON]`: the ingest-replay function
//!   against the local IngestFailureQueue and jobs stream.

use local_infra::{jwt, publish, simulate};
use local_stack::{redrive, replay_ingest, secret_keys, up};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["up"] => {
            init_logs();
            match up::LocalConfig::from_env() {
                Ok(config) => up::run(config).await,
                Err(e) => Err(e.into()),
            }
        }
        ["token", company] => {
            let claim = std::env::var("COMPANY_CLAIM").unwrap_or_else(|_| "company_id".into());
            println!("{}", jwt::dev_token(company, &claim));
            Ok(())
        }
        ["simulate", company, jobs @ ..] if jobs.len() <= 1 => {
            let Some(jobs) = jobs.first().map_or(Some(5), |n| n.parse::<usize>().ok()) else {
                eprintln!("local-stack simulate: JOBS must be a whole number");
                std::process::exit(2);
            };
            match simulate::CliConfig::from_env() {
                Ok(config) => simulate::run_cli(&config, company, jobs)
                    .await
                    .map(drop)
                    .map_err(Into::into),
                Err(e) => Err(e.into()),
            }
        }
        ["ingress-url"] => {
            let sdk = shared::config::aws_sdk_config().await;
            publish::Publisher::for_local_stack(&sdk)
                .await
                .map(|p| println!("{}", p.queue_url()))
                .map_err(Into::into)
        }
        ["publish", company, types @ ..] => {
            if shared::config::optional("AWS_ENDPOINT_URL").is_none() {
                eprintln!(
                    "local-stack publish: AWS_ENDPOINT_URL must point at the local AWS emulator"
                );
                std::process::exit(2);
            }
            let types: Vec<String> = types.iter().map(|t| (*t).to_owned()).collect();
            publish::run_cli(company, &types)
                .await
                .map(drop)
                .map_err(Into::into)
        }
        ["redrive", request @ ..] if request.len() <= 1 => {
            match redrive::run(request.first().copied().unwrap_or_default()).await {
                Ok(report) => {
                    println!("{}", serde_json::to_string(&report).unwrap_or_default());
                    Ok(())
                }
                Err(e) => Err(e),
            }
        }
        ["replay-ingest-failures", request @ ..] if request.len() <= 1 => {
            match replay_ingest::run(request.first().copied().unwrap_or_default()).await {
                Ok(report) => {
                    println!("{}", serde_json::to_string(&report).unwrap_or_default());
                    Ok(())
                }
                Err(e) => Err(e),
            }
        }
        ["secret-keys", request] => match secret_keys::run(request).await {
            Ok(report) => {
                println!("{}", serde_json::to_string(&report).unwrap_or_default());
                Ok(())
            }
            Err(e) => Err(e),
        },
        _ => {
            eprintln!(
                "usage: local-stack up | local-stack token COMPANY | local-stack simulate COMPANY [JOBS] | local-stack publish COMPANY [EVENT_TYPE ...] | local-stack ingress-url | local-stack redrive ['{{\"company_id\":..,\"subscription_id\":..,\"max_messages\":..,\"dry_run\":..}}'] | local-stack replay-ingest-failures ['{{\"max_entries\":..,\"dry_run\":..,\"discard_expired\":..}}'] | local-stack secret-keys '{{\"action\":\"rotate\"|\"reencrypt\",..}}'"
            );
            std::process::exit(2);
        }
    };
    if let Err(e) = result {
        eprintln!("local-stack: {e}");
        std::process::exit(1);
    }
}

fn init_logs() {
    // The runners' batch lines and the demo's output; handlers' own lines
    // at warn and above (RUST_LOG=info shows every delivery).
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "warn,local_stack=info".to_owned());
    tracing_subscriber::fmt()
        .compact()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .init();
}
