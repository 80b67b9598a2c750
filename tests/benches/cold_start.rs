//! Cold start and size of each function's release binary.
//!
//! Every function's binary in the release output directory
//! (`target/release/`, next to this bench's own `deps/`) is started
//! [`LAUNCHES`] times under a Lambda Runtime API on loopback
//! ([`RuntimeApi`]), with the Lambda environment and the configuration of a
//! stack of `template.yaml` deployed in the emulator. A launch measures the
//! time from just before the spawn to the function's first
//! `GET /runtime/invocation/next`: process start, configuration, logging
//! and AWS SDK set-up, what the function reads at cold start (the API and
//! delivery functions read the signing-secret keyring: one Scan, one KMS
//! Decrypt per key version, here against the emulator), and the runtime's
//! first request. No event is handed over. One extra launch per binary warms
//! the page cache and is not counted. Next to the wall time, the table gives
//! the process's CPU time and its threads' run-queue wait up to the first
//! poll (from `/proc/<pid>/task/*/schedstat`), which tell start-up work from
//! a busy or slowed-down machine. A last table times the keyring load alone,
//! in-process, with one to three key versions.
//!
//! `cargo bench` writes unstripped bench-profile builds of a package's
//! binaries to the same paths, so the bench refuses a binary that still has a
//! symbol table: run it through `make bench-cold-start`, which builds the
//! release binaries first.
//!
//! Run: `make bench-cold-start`; `infra/with-emulator.sh cargo bench -p
//! test-kit --bench cold_start -- <function>...` measures only the named
//! functions, and
//! `COLD_START_DIR=<dir>` reads the binaries from another directory.

use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use local_infra::cloudformation::DeployedStack;
use shared::storage::keyring::{KeyringConfig, KeyringStore, SecretVault};
use test_kit::emulator;
use test_kit::runtime_api::RuntimeApi;
use test_kit::stack::{self, ids};
use tokio::io::AsyncReadExt;
use tokio::process::Command;

/// Measured launches per binary.
const LAUNCHES: usize = 20;
/// How long one launch may take to ask for work.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Targets from the issue.
const TARGET_MS: f64 = 10.0;
const TARGET_BYTES: u64 = 8_000_000;

const CURSOR_KEY: &str = "cold-start-bench-cursor-signing-key-0123456789";

/// Each function's binary and its resource in `template.yaml`.
const FUNCTIONS: [(&str, &str); 7] = [
    ("subscriptions-api", ids::API_FUNCTION),
    ("job-events-ingest", ids::INGEST_FUNCTION),
    ("ingest-replay", ids::INGEST_REPLAY_FUNCTION),
    ("webhook-delivery", ids::DELIVERY_FUNCTION),
    ("dlq-redrive", ids::REDRIVE_FUNCTION),
    ("endpoint-prober", ids::PROBER_FUNCTION),
    ("secret-keys", ids::SECRET_KEYS_FUNCTION),
];

/// Each function with its environment in a stack of `template.yaml`
/// deployed in the emulator (the local cursor key in place of the secret
/// the template resolves).
fn functions(stack: &DeployedStack) -> Vec<(&'static str, Vec<(String, String)>)> {
    FUNCTIONS
        .iter()
        .map(|(binary, id)| {
            let env = stack::function_environment(stack, id, &[("CURSOR_SIGNING_KEY", CURSOR_KEY)]);
            (*binary, env)
        })
        .collect()
}

/// The release output directory: `COLD_START_DIR`, else the parent of this
/// bench's `deps/` directory.
fn binary_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("COLD_START_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("bench executable path");
    exe.parent()
        .and_then(Path::parent)
        .expect("bench runs from <target>/<profile>/deps")
        .to_path_buf()
}

/// Whether the ELF file has a symbol table (`SHT_SYMTAB` section), i.e. was
/// not stripped.
fn has_symbol_table(bytes: &[u8]) -> bool {
    let u16_at = |at: usize| u16::from_le_bytes([bytes[at], bytes[at + 1]]) as usize;
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()) as usize;
    // 64-bit little-endian ELF only (x86_64 and aarch64 Linux).
    if bytes.len() < 64 || &bytes[..6] != b"\x7fELF\x02\x01" {
        return false;
    }
    let (offset, size, count) = (u64_at(0x28), u16_at(0x3a), u16_at(0x3c));
    (0..count).any(|i| {
        let header = offset + i * size;
        header + 8 <= bytes.len() && u32_at(header + 4) == 2
    })
}

/// One launch.
#[derive(Clone, Copy)]
struct Launch {
    /// From just before the spawn to the first poll.
    wall: Duration,
    /// CPU time of the process until then (all threads).
    cpu: Duration,
    /// Time its threads waited for a CPU until then.
    queued: Duration,
}

/// Starts `binary` once and waits for its first poll.
async fn launch(binary: &Path, name: &str, config: &[(String, String)]) -> Result<Launch, String> {
    let runtime = RuntimeApi::start().await;
    let mut command = Command::new(binary);
    command
        .env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", runtime.address())
        .env("AWS_LAMBDA_FUNCTION_NAME", name)
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
        .env("AWS_LAMBDA_LOG_LEVEL", "INFO")
        .env("AWS_ENDPOINT_URL", emulator::endpoint())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "local")
        .env("AWS_SECRET_ACCESS_KEY", "local")
        .env("AWS_SESSION_TOKEN", "local")
        .envs(config.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let started = Instant::now();
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
    let polled = tokio::select! {
        at = runtime.first_poll(TIMEOUT) => at,
        status = child.wait() => {
            let mut logs = String::new();
            if let Some(mut out) = child.stdout.take() {
                let _ = out.read_to_string(&mut logs).await;
            }
            if let Some(mut err) = child.stderr.take() {
                let _ = err.read_to_string(&mut logs).await;
            }
            return Err(format!("{name} exited ({status:?}) before asking for work:\n{logs}"));
        }
    };
    let sched = child.id().map(scheduler_times).unwrap_or_default();
    let _ = child.kill().await;
    let at = polled.ok_or_else(|| format!("{name} did not ask for work within {TIMEOUT:?}"))?;
    Ok(Launch {
        wall: at.saturating_duration_since(started),
        cpu: sched.0,
        queued: sched.1,
    })
}

/// CPU time and run-queue wait of all threads of `pid` so far, from
/// `/proc/<pid>/task/*/schedstat`. The process is idle once it has asked
/// for work, so read after the first poll this is its start-up cost.
fn scheduler_times(pid: u32) -> (Duration, Duration) {
    let mut cpu = 0;
    let mut queued = 0;
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Default::default();
    };
    for task in tasks.flatten() {
        let Ok(text) = std::fs::read_to_string(task.path().join("schedstat")) else {
            continue;
        };
        let mut fields = text
            .split_whitespace()
            .map(|f| f.parse::<u64>().unwrap_or(0));
        cpu += fields.next().unwrap_or(0);
        queued += fields.next().unwrap_or(0);
    }
    (Duration::from_nanos(cpu), Duration::from_nanos(queued))
}

/// Sorted samples in milliseconds.
struct Samples(Vec<f64>);

impl Samples {
    fn new(values: impl Iterator<Item = Duration>) -> Self {
        let mut ms: Vec<f64> = values.map(|d| d.as_secs_f64() * 1000.0).collect();
        ms.sort_by(f64::total_cmp);
        Self(ms)
    }

    fn median(&self) -> f64 {
        let n = self.0.len();
        (self.0[(n - 1) / 2] + self.0[n / 2]) / 2.0
    }

    /// Nearest-rank 90th percentile.
    fn p90(&self) -> f64 {
        self.0[(self.0.len() * 9).div_ceil(10) - 1]
    }

    fn min(&self) -> f64 {
        self.0[0]
    }
}

struct Row {
    name: &'static str,
    bytes: u64,
    wall: Samples,
    cpu: Samples,
    queued: Samples,
}

impl Row {
    fn new(name: &'static str, bytes: u64, launches: &[Launch]) -> Self {
        Self {
            name,
            bytes,
            wall: Samples::new(launches.iter().map(|l| l.wall)),
            cpu: Samples::new(launches.iter().map(|l| l.cpu)),
            queued: Samples::new(launches.iter().map(|l| l.queued)),
        }
    }

    fn line(&self) -> String {
        let yes = |ok: bool| if ok { "yes" } else { "**no**" };
        format!(
            "| {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {:.2} | {} | {} |",
            self.name,
            self.wall.median(),
            self.wall.p90(),
            self.wall.min(),
            self.cpu.median(),
            self.queued.median(),
            group_digits(self.bytes),
            self.bytes as f64 / 1e6,
            yes(self.wall.median() < TARGET_MS),
            yes(self.bytes < TARGET_BYTES),
        )
    }
}

/// Measured keyring loads per version count.
const KEYRING_LOADS: usize = 20;

/// What the API and delivery functions add to a cold start to read the
/// signing-secret keyring: one Scan of the keyring table and one KMS
/// Decrypt per version, timed in-process against the emulator with one,
/// two and three versions.
async fn keyring_loads(stack: &DeployedStack) {
    let sdk = emulator::sdk_config().await;
    let vars = stack
        .function(ids::DELIVERY_FUNCTION)
        .unwrap_or_else(|e| panic!("{e}"))
        .vars_with(&[]);
    let store = KeyringStore::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        aws_sdk_kms::Client::new(&sdk),
        KeyringConfig::from_vars(&vars).expect("delivery configures its keyring"),
    );
    println!();
    println!("| keyring load at cold start (emulator) | requests | median ms | p90 ms |");
    println!("| --- | ---: | ---: | ---: |");
    for versions in 1..=3 {
        while store.versions().await.expect("keyring table").len() < versions {
            store.add_version(Utc::now()).await.expect("add a version");
        }
        // One uncounted load warms the connections.
        let mut times = Vec::with_capacity(KEYRING_LOADS);
        for i in 0..=KEYRING_LOADS {
            let started = Instant::now();
            SecretVault::load(store.clone())
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            if i > 0 {
                times.push(started.elapsed());
            }
        }
        let times = Samples::new(times.into_iter());
        println!(
            "| {versions} version(s): 1 Scan + {versions} KMS Decrypt | {} | {:.2} | {:.2} |",
            1 + versions,
            times.median(),
            times.p90()
        );
    }
}

/// `8684920` as `8,684,920`.
fn group_digits(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    // `cargo bench` passes `--bench`; other arguments name functions.
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let dir = binary_dir();
    let stack = stack::deploy().await;
    println!(
        "cold start: {} ({LAUNCHES} launches per binary after one warm-up)",
        dir.display()
    );
    let mut rows = Vec::new();
    let mut failed = false;
    for (name, config) in functions(&stack) {
        if !only.is_empty() && !only.iter().any(|o| o == name) {
            continue;
        }
        let binary = dir.join(name);
        let bytes = match std::fs::read(&binary) {
            Ok(bytes) => bytes,
            Err(e) => {
                eprintln!("{name}: cannot read {}: {e}", binary.display());
                failed = true;
                continue;
            }
        };
        if has_symbol_table(&bytes) {
            eprintln!(
                "{name}: {} has a symbol table, so it is not the stripped release build \
                 (`cargo bench` writes unstripped binaries there); run `make bench-cold-start`",
                binary.display()
            );
            failed = true;
            continue;
        }
        let mut launches = Vec::with_capacity(LAUNCHES);
        for i in 0..=LAUNCHES {
            match launch(&binary, name, &config).await {
                Ok(l) if i > 0 => launches.push(l),
                Ok(_) => {}
                Err(e) => {
                    eprintln!("{e}");
                    failed = true;
                    break;
                }
            }
        }
        if launches.len() < LAUNCHES {
            continue;
        }
        let row = Row::new(name, bytes.len() as u64, &launches);
        println!(
            "{name}: median {:.2} ms (CPU {:.2} ms, waiting for a CPU {:.2} ms), p90 {:.2} ms, min {:.2} ms, {} bytes",
            row.wall.median(),
            row.cpu.median(),
            row.queued.median(),
            row.wall.p90(),
            row.wall.min(),
            row.bytes
        );
        rows.push(row);
    }
    println!();
    println!(
        "| function | median ms | p90 ms | min ms | CPU ms | run-queue ms | binary bytes | MB | median < {TARGET_MS:.0} ms | < {} MB |",
        TARGET_BYTES / 1_000_000
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | :---: | :---: |");
    for row in &rows {
        println!("{}", row.line());
    }
    keyring_loads(&stack).await;
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
