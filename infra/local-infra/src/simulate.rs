//! A job simulator: writes jobs to the jobs table the way the data platform
//! does, so the stream carries realistic state changes for the service to
//! turn into webhook events.
//!
//! Each job is created with one `PutItem` of the full item in `pending`,
//! then moved along one of the [`JobPath`]s with one conditional
//! `UpdateItem` per state change: `state` and `updated_at` set, the new
//! state appended to `state_history`, and `error` (`reason`, `message`) set
//! when the job fails or is cancelled. Jobs of a run are interleaved as on
//! the platform: several are in flight at once, each one's changes in order.
//!
//! Everything is drawn from a caller's [`fastrand::Rng`]: the same seed
//! gives the same jobs (ids included, which mix in the company), types,
//! inputs, paths, errors and interleaving. Only the timestamps come from the
//! clock (`updated_at` is when a state was entered), strictly increasing
//! across a run. Creation is conditional on the job id being new, so a run
//! never silently rewrites an earlier run's job: running the same seed for
//! the same company twice against one table fails with
//! [`SimulateError::JobExists`].

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use shared::domain::job_event::{JobError, MAX_ID_LEN, timestamp};
use shared::domain::jobs::{JOB_TYPES, JobState};

/// Most jobs a run keeps in flight at once.
const MAX_IN_FLIGHT: usize = 3;

/// Writing a simulated job failed.
#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    /// The local stack's jobs table could not be found.
    #[error("{0}")]
    Stack(String),
    /// The table does not exist (in the emulator the SDK points at).
    #[error(
        "jobs table {table} does not exist: start the local stack first or set JOBS_TABLE to an existing table"
    )]
    TableMissing {
        /// Table name.
        table: String,
    },
    /// A job with the id to create is already in the table (the same seed
    /// was run for the same company before).
    #[error("job {job_id} already exists in table {table}: use another seed")]
    JobExists {
        /// Table name.
        table: String,
        /// The job.
        job_id: String,
    },
    /// The job was not in the state the step starts from: someone else
    /// changed it.
    #[error("job {job_id} in table {table} is no longer {from}, cannot move it to {to}")]
    StateConflict {
        /// Table name.
        table: String,
        /// The job.
        job_id: String,
        /// The state the step expected.
        from: JobState,
        /// The state it was to enter.
        to: JobState,
    },
    /// DynamoDB refused the write or could not be reached.
    #[error("DynamoDB {operation} of job {job_id} on table {table} failed: {message}")]
    Dynamo {
        /// The API call, `PutItem` or `UpdateItem`.
        operation: &'static str,
        /// Table name.
        table: String,
        /// The job.
        job_id: String,
        /// The SDK's error with its context.
        message: String,
    },
    /// The company id is not one the ingest function accepts.
    #[error(
        "company id {0:?} must be 1 to {max} printable bytes without surrounding spaces",
        max = MAX_ID_LEN
    )]
    InvalidCompany(String),
    /// A job's input or resource could not be turned into DynamoDB values.
    #[error("job {job_id}: {attribute} cannot be written to DynamoDB: {source}")]
    Mapping {
        /// The job.
        job_id: String,
        /// `input` or `resource`.
        attribute: &'static str,
        /// The mapping error.
        source: serde_dynamo::Error,
    },
}

/// The states a job goes through, from creation to its final state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobPath {
    /// `pending → running → completed`.
    Completes,
    /// `pending → running → failed`, with an error.
    Fails,
    /// `pending → pending_cancellation → cancelled`, with an error.
    CancelledWhilePending,
    /// `pending → running → pending_cancellation → cancelled`, with an error.
    CancelledWhileRunning,
}

impl JobPath {
    /// Every path.
    pub const ALL: [JobPath; 4] = [
        JobPath::Completes,
        JobPath::Fails,
        JobPath::CancelledWhilePending,
        JobPath::CancelledWhileRunning,
    ];

    /// The states entered, in order, starting with `pending`.
    pub const fn states(self) -> &'static [JobState] {
        use JobState::*;
        match self {
            JobPath::Completes => &[Pending, Running, Completed],
            JobPath::Fails => &[Pending, Running, Failed],
            JobPath::CancelledWhilePending => &[Pending, PendingCancellation, Cancelled],
            JobPath::CancelledWhileRunning => &[Pending, Running, PendingCancellation, Cancelled],
        }
    }

    /// The final state.
    pub const fn final_state(self) -> JobState {
        let states = self.states();
        states[states.len() - 1]
    }

    /// A path drawn with the platform's rough proportions: most jobs
    /// complete, a fifth fail, a quarter are cancelled.
    fn draw(rng: &mut fastrand::Rng) -> Self {
        match rng.u32(0..100) {
            0..55 => JobPath::Completes,
            55..75 => JobPath::Fails,
            75..85 => JobPath::CancelledWhilePending,
            _ => JobPath::CancelledWhileRunning,
        }
    }
}

/// One job to simulate: the item's content and the path it takes.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedJob {
    /// Owning company.
    pub company_id: String,
    /// The job id: `job-` and 12 hex digits.
    pub job_id: String,
    /// Catalogue job type.
    pub job_type: &'static str,
    /// The job's input parameters (`input`).
    pub input: Value,
    /// What the job is about (`resource`).
    pub resource: Value,
    /// The states it goes through.
    pub path: JobPath,
    /// The `error` written with the final state of a failed or cancelled
    /// job; `None` for a completed one.
    pub error: Option<JobError>,
}

/// One state change written to the jobs table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// Owning company.
    pub company_id: String,
    /// The job.
    pub job_id: String,
    /// Catalogue job type.
    pub job_type: String,
    /// The state entered.
    pub state: JobState,
    /// The state left; `None` when the job was created.
    pub previous_state: Option<JobState>,
    /// The `error` written with this state (failed and cancelled jobs).
    pub error: Option<JobError>,
}

impl fmt::Display for Transition {
    /// `job-… (type) running → failed (timeout)`, or `job-… (type) created
    /// pending` for a new job.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}) ", self.job_id, self.job_type)?;
        match self.previous_state {
            Some(previous) => write!(f, "{previous} → {}", self.state)?,
            None => write!(f, "created {}", self.state)?,
        }
        if let Some(reason) = self.error.as_ref().and_then(|e| e.reason.as_deref()) {
            write!(f, " ({reason})")?;
        }
        Ok(())
    }
}

/// Draws `jobs` jobs for `company`: types from the whole catalogue, inputs
/// and resources fitting each type, a path each, and the error of those
/// that fail or are cancelled.
pub fn plan(company: &str, jobs: usize, rng: &mut fastrand::Rng) -> Vec<PlannedJob> {
    (0..jobs).map(|_| plan_job(company, rng)).collect()
}

fn plan_job(company: &str, rng: &mut fastrand::Rng) -> PlannedJob {
    let job_id = job_id(company, rng.u64(..));
    let job_type = JOB_TYPES[rng.usize(..JOB_TYPES.len())].name;
    let (input, resource) = inputs(job_type, rng);
    let path = JobPath::draw(rng);
    let error = match path {
        JobPath::Completes => None,
        JobPath::Fails => Some(failure(job_type, &input, rng)),
        JobPath::CancelledWhilePending | JobPath::CancelledWhileRunning => {
            Some(cancellation(job_type, rng))
        }
    };
    PlannedJob {
        company_id: company.to_owned(),
        job_id,
        job_type,
        input,
        resource,
        path,
        error,
    }
}

/// `job-` and 12 hex digits of a digest of the company and a drawn number,
/// so equal seeds for different companies never share a job id (the jobs
/// table is keyed by `job_id` alone).
fn job_id(company: &str, nonce: u64) -> String {
    let digest = Sha256::new()
        .chain_update(company.as_bytes())
        .chain_update(b"\n")
        .chain_update(nonce.to_be_bytes())
        .finalize();
    let mut id = String::from("job-");
    for b in &digest[..6] {
        id.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        id.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
    }
    id
}

const DATASETS: &[&str] = &[
    "web_events",
    "mobile_device_ids",
    "purchase_history",
    "ctv_impressions",
    "geo_visits",
    "hashed_emails",
    "retail_transactions",
    "audience_segments",
];
const COLUMNS: &[&str] = &[
    "event_timestamp",
    "unique_id",
    "hashed_email",
    "country_code",
    "device_type",
    "purchase_amount",
    "iab_category",
];
const SOURCES: &[&str] = &[
    "company_data",
    "narrative.rosetta_stone",
    "partner_feed_us",
    "partner_feed_eu",
];
const CONNECTORS: &[&str] = &[
    "s3",
    "google_ads",
    "the_trade_desk",
    "snowflake",
    "liveramp",
];
const DATA_PLANES: &[&str] = &["aws-us-east-1", "aws-eu-west-1", "gcp-us-central1"];
const BASE_MODELS: &[&str] = &["llama-3.1-8b", "mistral-7b", "gemma-2-9b"];

fn pick<T: Copy>(rng: &mut fastrand::Rng, from: &[T]) -> T {
    from[rng.usize(..from.len())]
}

/// Realistic `input` and `resource` for a job type, following the
/// catalogue's input parameters.
fn inputs(job_type: &str, rng: &mut fastrand::Rng) -> (Value, Value) {
    let dataset_id = rng.u32(10_000..100_000);
    let dataset_name = pick(rng, DATASETS);
    let dataset = json!({ "dataset_id": dataset_id, "dataset_name": dataset_name });
    let source = pick(rng, SOURCES);
    let column = pick(rng, COLUMNS);
    let nql = format!(
        "SELECT {column}, COUNT(*) AS n FROM {source}.\"{dataset_name}\" \
         WHERE event_timestamp > CURRENT_TIMESTAMP - INTERVAL '{} days' GROUP BY {column}",
        rng.u32(1..91)
    );
    let accuracy = if rng.bool() { "standard" } else { "high" };
    match job_type {
        "materialize-view" => (
            json!({
                "dataset_id": dataset_id,
                "dataset_name": dataset_name,
                "nql": format!("CREATE MATERIALIZED VIEW \"{dataset_name}\" AS {nql}"),
                "first_run": rng.u8(..4) == 0,
                "create_as_view": rng.u8(..5) == 0,
                "stats_enabled": rng.bool(),
            }),
            dataset,
        ),
        "forecast" => (
            json!({
                "query_definition": { "source": source, "dataset_name": dataset_name, "filters": [
                    { "column": column, "operator": "is_not_null" }
                ] },
                "accuracy": accuracy,
                "target_data_sources": [source],
            }),
            json!({ "forecast_id": format!("fc-{}", rng.u32(100_000..1_000_000)) }),
        ),
        "nql-forecast" => (
            json!({
                "nql": nql,
                "accuracy": accuracy,
                "target_data_sources": [source],
            }),
            json!({ "forecast_id": format!("fc-{}", rng.u32(100_000..1_000_000)) }),
        ),
        "costs" => (
            json!({
                "nql": nql,
                "currency": "USD",
                "target_data_sources": [source],
            }),
            json!({ "estimate_id": format!("est-{}", rng.u32(100_000..1_000_000)) }),
        ),
        "datasets_sample" => (
            json!({
                "dataset_id": dataset_id,
                "dataset_name": dataset_name,
                "sample_size": pick(rng, &[100, 500, 1000]),
            }),
            dataset,
        ),
        "datasets_calculate_column_stats" => (
            json!({
                "dataset_id": dataset_id,
                "dataset_name": dataset_name,
                "columns": [column, pick(rng, COLUMNS)],
                "stats_enabled": true,
            }),
            dataset,
        ),
        "datasets_delete_table" => (
            json!({ "dataset_id": dataset_id, "dataset_name": dataset_name }),
            dataset,
        ),
        "datasets_suggest_mappings" => (
            json!({
                "dataset_id": dataset_id,
                "dataset_name": dataset_name,
                "columns": [column, pick(rng, COLUMNS)],
                "target_attributes": ["unique_id", "event_timestamp", "hashed_email"],
            }),
            dataset,
        ),
        "datasets_deliver_data" => {
            let connector = pick(rng, CONNECTORS);
            (
                json!({
                    "dataset_id": dataset_id,
                    "dataset_name": dataset_name,
                    "connector": connector,
                    "destination": format!("{connector}://exports/{dataset_name}"),
                    "incremental": rng.bool(),
                }),
                json!({
                    "dataset_id": dataset_id,
                    "dataset_name": dataset_name,
                    "connection_id": format!("conn-{}", rng.u32(1000..10_000)),
                }),
            )
        }
        "delete-snowflake-table" => {
            let table = dataset_name.to_uppercase();
            (
                json!({ "database": "NARRATIVE", "schema": "COMPANY_DATA", "table": table }),
                json!({ "dataset_id": dataset_id, "table_name": format!("NARRATIVE.COMPANY_DATA.{table}") }),
            )
        }
        "upload-stats" => (
            json!({
                "dataset_id": dataset_id,
                "dataset_name": dataset_name,
                "stats_enabled": true,
                "row_count": rng.u64(10_000..500_000_000),
            }),
            dataset,
        ),
        "model_training_run" => {
            let model_name = format!("{dataset_name}_classifier");
            (
                json!({
                    "model_name": model_name,
                    "base_model": pick(rng, BASE_MODELS),
                    "training_dataset_id": dataset_id,
                    "epochs": rng.u32(1..6),
                    "learning_rate": pick(rng, &[0.0001, 0.0002, 0.0005]),
                }),
                json!({ "model_id": format!("mdl-{}", rng.u32(1000..10_000)), "model_name": model_name, "dataset_id": dataset_id }),
            )
        }
        "models_deliver_model" => {
            let model_id = format!("mdl-{}", rng.u32(1000..10_000));
            (
                json!({
                    "model_id": model_id,
                    "model_version": rng.u32(1..12),
                    "target_data_plane": pick(rng, DATA_PLANES),
                }),
                json!({ "model_id": model_id, "model_name": format!("{dataset_name}_classifier") }),
            )
        }
        // Catalogue types added later get the common dataset parameters.
        _ => (dataset.clone(), dataset),
    }
}

fn job_error(reason: &str, message: String) -> JobError {
    JobError {
        reason: Some(reason.to_owned()),
        message: Some(message),
    }
}

/// Why a job failed: a timeout, running out of memory, or bad input.
fn failure(job_type: &str, input: &Value, rng: &mut fastrand::Rng) -> JobError {
    let subject = input["dataset_name"]
        .as_str()
        .or_else(|| input["model_name"].as_str())
        .or_else(|| input["model_id"].as_str())
        .or_else(|| input["table"].as_str())
        .unwrap_or("the request");
    match rng.u8(..3) {
        0 => job_error(
            "timeout",
            format!(
                "The {job_type} job exceeded its time limit of {} minutes.",
                pick(rng, &[30, 60, 120])
            ),
        ),
        1 => job_error(
            "out_of_memory",
            format!("The {job_type} job ran out of memory while processing {subject}."),
        ),
        _ => {
            let message = if input.get("nql").is_some() {
                "The NQL query could not be parsed: unexpected token 'FORM' at line 1.".to_owned()
            } else {
                format!(
                    "The input for {subject} is invalid. Please verify the configuration is correct and try again."
                )
            };
            job_error("invalid_input", message)
        }
    }
}

/// Why a job was cancelled.
fn cancellation(job_type: &str, rng: &mut fastrand::Rng) -> JobError {
    if job_type == "materialize-view" && rng.bool() {
        job_error(
            "superseded",
            "A newer refresh of this view was requested; this one was cancelled.".to_owned(),
        )
    } else {
        job_error(
            "cancelled_by_user",
            "The job was cancelled by a user.".to_owned(),
        )
    }
}

/// Called with every transition right after it is written.
type Observer = Arc<dyn Fn(&Transition) + Send + Sync>;

/// Writes simulated jobs to a jobs table. Cheap to clone.
#[derive(Clone)]
pub struct Simulator {
    client: Client,
    table: String,
    pause: Duration,
    observer: Option<Observer>,
}

impl fmt::Debug for Simulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Simulator")
            .field("table", &self.table)
            .field("pause", &self.pause)
            .finish_non_exhaustive()
    }
}

/// How far one job has come in a run.
struct Progress<'a> {
    job: &'a PlannedJob,
    /// Index in the path of the state entered last.
    at: usize,
    /// `state_history` so far.
    history: Vec<AttributeValue>,
}

impl Simulator {
    /// A simulator writing to `table` with `client`, without pauses.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            pause: Duration::ZERO,
            observer: None,
        }
    }

    /// Waits `pause` before every write after the first, so a demo shows
    /// events arriving one by one.
    pub fn with_pause(mut self, pause: Duration) -> Self {
        self.pause = pause;
        self
    }

    /// Calls `observer` with every transition right after it is written.
    pub fn with_observer(mut self, observer: impl Fn(&Transition) + Send + Sync + 'static) -> Self {
        self.observer = Some(Arc::new(observer));
        self
    }

    /// The table written to.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Creates `jobs` jobs for `company` ([`plan`]) and walks each through
    /// its path; returns every transition written, in order.
    pub async fn run(
        &self,
        company: &str,
        jobs: usize,
        rng: &mut fastrand::Rng,
    ) -> Result<Vec<Transition>, SimulateError> {
        let jobs = plan(company, jobs, rng);
        self.run_plan(&jobs, rng).await
    }

    /// Creates the `jobs` and walks each through its path, a few in flight
    /// at once, interleaved as drawn from `rng`; returns every transition
    /// written, in order. Stops at the first failed write.
    pub async fn run_plan(
        &self,
        jobs: &[PlannedJob],
        rng: &mut fastrand::Rng,
    ) -> Result<Vec<Transition>, SimulateError> {
        if let Some(job) = jobs.iter().find(|j| !valid_company(&j.company_id)) {
            return Err(SimulateError::InvalidCompany(job.company_id.clone()));
        }
        let mut waiting = jobs.iter();
        let mut in_flight: Vec<Progress<'_>> = Vec::new();
        let mut remaining = jobs.len();
        let mut transitions = Vec::new();
        let mut last: Option<DateTime<Utc>> = None;
        loop {
            let create = remaining > 0
                && (in_flight.is_empty() || (in_flight.len() < MAX_IN_FLIGHT && rng.bool()));
            if !create && in_flight.is_empty() {
                return Ok(transitions);
            }
            if !transitions.is_empty() && !self.pause.is_zero() {
                tokio::time::sleep(self.pause).await;
            }
            let at = next_time(&mut last);
            let transition = if create {
                let Some(job) = waiting.next() else {
                    return Ok(transitions);
                };
                remaining -= 1;
                let mut progress = Progress {
                    job,
                    at: 0,
                    history: Vec::new(),
                };
                let transition = self.create(&mut progress, at).await?;
                in_flight.push(progress);
                transition
            } else {
                let i = rng.usize(..in_flight.len());
                let transition = self.advance(&mut in_flight[i], at).await?;
                if in_flight[i].at + 1 == in_flight[i].job.path.states().len() {
                    in_flight.swap_remove(i);
                }
                transition
            };
            if let Some(observer) = &self.observer {
                observer(&transition);
            }
            transitions.push(transition);
        }
    }

    /// Puts the new job's full item, in `pending`.
    async fn create(
        &self,
        progress: &mut Progress<'_>,
        at: DateTime<Utc>,
    ) -> Result<Transition, SimulateError> {
        let job = progress.job;
        let at = timestamp(at);
        let state = job.path.states()[0];
        progress.history.push(history_entry(state, &at));
        let mapping = |attribute, source| SimulateError::Mapping {
            job_id: job.job_id.clone(),
            attribute,
            source,
        };
        let input = serde_dynamo::aws_sdk_dynamodb_1::to_attribute_value(&job.input)
            .map_err(|e| mapping("input", e))?;
        let resource = serde_dynamo::aws_sdk_dynamodb_1::to_attribute_value(&job.resource)
            .map_err(|e| mapping("resource", e))?;
        let item = HashMap::from([
            ("company_id".to_owned(), s(&job.company_id)),
            ("job_id".to_owned(), s(&job.job_id)),
            ("type".to_owned(), s(job.job_type)),
            ("state".to_owned(), s(state.as_str())),
            ("created_at".to_owned(), s(&at)),
            ("updated_at".to_owned(), s(&at)),
            ("input".to_owned(), input),
            ("resource".to_owned(), resource),
            (
                "state_history".to_owned(),
                AttributeValue::L(progress.history.clone()),
            ),
        ]);
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(job_id)")
            .send()
            .await
            .map_err(|e| {
                let service = e.as_service_error();
                if service.is_some_and(|s| s.is_conditional_check_failed_exception()) {
                    SimulateError::JobExists {
                        table: self.table.clone(),
                        job_id: job.job_id.clone(),
                    }
                } else if service.is_some_and(|s| s.is_resource_not_found_exception()) {
                    self.missing()
                } else {
                    self.dynamo("PutItem", &job.job_id, e)
                }
            })?;
        Ok(Transition {
            company_id: job.company_id.clone(),
            job_id: job.job_id.clone(),
            job_type: job.job_type.to_owned(),
            state,
            previous_state: None,
            error: None,
        })
    }

    /// Moves the job to the next state of its path, if it is still in the
    /// state it was left in.
    async fn advance(
        &self,
        progress: &mut Progress<'_>,
        at: DateTime<Utc>,
    ) -> Result<Transition, SimulateError> {
        let job = progress.job;
        let states = job.path.states();
        let (from, to) = (states[progress.at], states[progress.at + 1]);
        let at = timestamp(at);
        let entry = history_entry(to, &at);
        let mut update = String::from(
            "SET #state = :to, updated_at = :at, state_history = list_append(state_history, :entry)",
        );
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("job_id", s(&job.job_id))
            .condition_expression("#state = :from")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":from", s(from.as_str()))
            .expression_attribute_values(":to", s(to.as_str()))
            .expression_attribute_values(":at", s(&at))
            .expression_attribute_values(":entry", AttributeValue::L(vec![entry.clone()]));
        if to == JobState::Running {
            update.push_str(", started_at = :at");
        }
        let error = match to {
            JobState::Completed | JobState::Failed | JobState::Cancelled => {
                update.push_str(", finished_at = :at");
                job.error.clone().filter(|_| to != JobState::Completed)
            }
            _ => None,
        };
        if let Some(error) = &error {
            update.push_str(", #error = :error");
            let mut map = HashMap::new();
            if let Some(reason) = &error.reason {
                map.insert("reason".to_owned(), s(reason));
            }
            if let Some(message) = &error.message {
                map.insert("message".to_owned(), s(message));
            }
            request = request
                .expression_attribute_names("#error", "error")
                .expression_attribute_values(":error", AttributeValue::M(map));
        }
        request
            .update_expression(update)
            .send()
            .await
            .map_err(|e| {
                let service = e.as_service_error();
                if service.is_some_and(|s| s.is_conditional_check_failed_exception()) {
                    SimulateError::StateConflict {
                        table: self.table.clone(),
                        job_id: job.job_id.clone(),
                        from,
                        to,
                    }
                } else if service.is_some_and(|s| s.is_resource_not_found_exception()) {
                    self.missing()
                } else {
                    self.dynamo("UpdateItem", &job.job_id, e)
                }
            })?;
        progress.at += 1;
        progress.history.push(entry);
        Ok(Transition {
            company_id: job.company_id.clone(),
            job_id: job.job_id.clone(),
            job_type: job.job_type.to_owned(),
            state: to,
            previous_state: Some(from),
            error,
        })
    }

    fn missing(&self) -> SimulateError {
        SimulateError::TableMissing {
            table: self.table.clone(),
        }
    }

    fn dynamo<E, R>(
        &self,
        operation: &'static str,
        job_id: &str,
        e: SdkError<E, R>,
    ) -> SimulateError
    where
        E: std::error::Error + 'static,
        R: fmt::Debug + 'static,
    {
        SimulateError::Dynamo {
            operation,
            table: self.table.clone(),
            job_id: job_id.to_owned(),
            message: DisplayErrorContext(e).to_string(),
        }
    }
}

/// Whether the ingest function takes `company` as a company id.
fn valid_company(company: &str) -> bool {
    !company.is_empty()
        && company.len() <= MAX_ID_LEN
        && company.trim() == company
        && !company.chars().any(char::is_control)
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

fn history_entry(state: JobState, at: &str) -> AttributeValue {
    AttributeValue::M(HashMap::from([
        ("state".to_owned(), s(state.as_str())),
        ("at".to_owned(), s(at)),
    ]))
}

/// Now, to the millisecond, and at least a millisecond after `last`, so
/// `updated_at` strictly increases along a run.
fn next_time(last: &mut Option<DateTime<Utc>>) -> DateTime<Utc> {
    let now = Utc::now();
    let now =
        now - TimeDelta::nanoseconds(i64::from(chrono::Timelike::nanosecond(&now) % 1_000_000));
    let at = match *last {
        Some(previous) if now <= previous => previous + TimeDelta::milliseconds(1),
        _ => now,
    };
    *last = Some(at);
    at
}

/// The settings of `local-stack simulate`, from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliConfig {
    /// `JOBS_TABLE`; by default the `JobsTable` of the stack `make run`
    /// deployed (`LOCAL_STACK_NAME`).
    pub table: Option<String>,
    /// `SIMULATE_SEED`; a fresh random seed when unset.
    pub seed: u64,
    /// `SIMULATE_PAUSE_MS` between writes, default 300 ms.
    pub pause: Duration,
}

impl CliConfig {
    /// Reads the settings. The emulator endpoint must be configured: the
    /// simulator never writes to a real jobs table.
    pub fn from_env() -> Result<Self, shared::config::ConfigError> {
        use shared::config;
        config::required("AWS_ENDPOINT_URL").map_err(|_| {
            config::ConfigError::new(
                "AWS_ENDPOINT_URL",
                "must point at the local AWS emulator: the simulator only writes to local tables",
            )
        })?;
        Ok(Self {
            table: config::optional("JOBS_TABLE"),
            seed: config::parse_or("SIMULATE_SEED", fastrand::u64(..))?,
            pause: Duration::from_millis(config::parse_in_range(
                "SIMULATE_PAUSE_MS",
                300,
                0,
                60_000,
            )?),
        })
    }
}

/// `local-stack simulate COMPANY [JOBS]`: runs `jobs` simulated jobs for
/// `company` against the table of `config`, printing each transition as it
/// is written.
pub async fn run_cli(
    config: &CliConfig,
    company: &str,
    jobs: usize,
) -> Result<Vec<Transition>, SimulateError> {
    let sdk = shared::config::aws_sdk_config().await;
    let table = match &config.table {
        Some(table) => table.clone(),
        None => {
            let stack = crate::cloudformation::stack_name();
            crate::cloudformation::DeployedStack::read_existing(&sdk, &stack)
                .await
                .and_then(|s| {
                    s.table(crate::cloudformation::ids::JOBS_TABLE)
                        .map(str::to_owned)
                })
                .map_err(|e| SimulateError::Stack(format!("{e} (is `make run` serving?)")))?
        }
    };
    let simulator = Simulator::new(Client::new(&sdk), &table)
        .with_pause(config.pause)
        .with_observer(|t| println!("  {t}"));
    println!(
        "Simulating {jobs} job(s) for {company} in table {} (SIMULATE_SEED={} reproduces this run):",
        table, config.seed
    );
    let mut rng = fastrand::Rng::with_seed(config.seed);
    let transitions = simulator.run(company, jobs, &mut rng).await?;
    println!("{} transition(s) written.", transitions.len());
    Ok(transitions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_are_reproducible_per_seed_and_company() {
        let a = plan("acme", 20, &mut fastrand::Rng::with_seed(7));
        assert_eq!(a, plan("acme", 20, &mut fastrand::Rng::with_seed(7)));
        assert_ne!(a, plan("acme", 20, &mut fastrand::Rng::with_seed(8)));
        let other = plan("globex", 20, &mut fastrand::Rng::with_seed(7));
        assert!(
            a.iter().all(|j| other.iter().all(|o| o.job_id != j.job_id)),
            "companies with one seed share no job id"
        );
        let mut ids: Vec<_> = a.iter().map(|j| j.job_id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 20);
        assert!(
            a.iter()
                .all(|j| j.job_id.len() == 16 && j.job_id.starts_with("job-"))
        );
    }

    #[test]
    fn errors_come_with_failed_and_cancelled_paths_only() {
        for job in plan("acme", 200, &mut fastrand::Rng::with_seed(1)) {
            let reason = job.error.as_ref().and_then(|e| e.reason.as_deref());
            match job.path {
                JobPath::Completes => assert_eq!(job.error, None),
                JobPath::Fails => assert!(
                    matches!(reason, Some("timeout" | "out_of_memory" | "invalid_input")),
                    "{reason:?}"
                ),
                _ => assert!(
                    matches!(reason, Some("cancelled_by_user" | "superseded")),
                    "{reason:?}"
                ),
            }
            assert!(job.error.iter().all(|e| e.message.is_some()));
            assert!(job.input.is_object() && job.resource.is_object());
            assert!(shared::domain::jobs::job_type(job.job_type).is_some());
        }
    }

    #[test]
    fn paths_start_pending_and_end_in_their_final_state() {
        for path in JobPath::ALL {
            assert_eq!(path.states()[0], JobState::Pending);
            assert_eq!(path.states().last(), Some(&path.final_state()));
        }
        assert_eq!(JobPath::CancelledWhileRunning.states().len(), 4);
    }

    #[test]
    fn timestamps_strictly_increase() {
        let mut last = None;
        let times: Vec<_> = (0..50).map(|_| next_time(&mut last)).collect();
        assert!(times.windows(2).all(|w| w[0] < w[1]));
        assert!(
            times
                .iter()
                .all(|t| t.timestamp_subsec_nanos() % 1_000_000 == 0)
        );
    }

    #[test]
    fn transitions_read_as_one_line() {
        let mut t = Transition {
            company_id: "acme".into(),
            job_id: "job-1".into(),
            job_type: "costs".into(),
            state: JobState::Pending,
            previous_state: None,
            error: None,
        };
        assert_eq!(t.to_string(), "job-1 (costs) created pending");
        t.state = JobState::Failed;
        t.previous_state = Some(JobState::Running);
        t.error = Some(job_error("timeout", "late".into()));
        assert_eq!(t.to_string(), "job-1 (costs) running → failed (timeout)");
    }
}
