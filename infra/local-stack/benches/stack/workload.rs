//! The workload the end-to-end benchmarks share: 20 companies with one or
//! two subscriptions each (varied filters), simulated jobs, and loopback
//! receivers that verify every request's signature and note the first
//! verified receipt of each event.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use local_infra::simulate::{self, PlannedJob, Transition};
use local_stack::pipeline::PipelineConfig;
use shared::domain::filters::FiltersInput;
use shared::domain::subscription::{NewSubscription, Subscription};
use shared::signing;
use shared::signing::sealed::Keyring;
use shared::signing::secret::WebhookSecret;
use shared::storage::subscriptions::SubscriptionStore;
use test_kit::receiver::{Received, Receiver, Reply};

/// Queue pollers per delivery queue, as in the end-to-end test.
pub const POLLERS: usize = 4;

/// The settings of a benchmark run on a fresh stack: `RetrySchedule` and
/// `StreamBatchingWindowSeconds` as stack parameters when given (else the
/// template's defaults), loopback receivers, [`POLLERS`] pollers, 5 s
/// delivery timeout. A window that is not whole seconds (AWS takes only
/// whole seconds) is deployed as 0 and set on the local stream runner.
pub fn pipeline_config(retry_schedule: Option<&str>, window: Option<Duration>) -> PipelineConfig {
    let whole = window.filter(|w| w.subsec_nanos() == 0);
    let seconds = window.map(|w| if whole.is_some() { w.as_secs() } else { 0 }.to_string());
    let mut parameters = Vec::new();
    if let Some(schedule) = retry_schedule {
        parameters.push(("RetrySchedule", schedule));
    }
    if let Some(seconds) = &seconds {
        parameters.push(("StreamBatchingWindowSeconds", seconds.as_str()));
    }
    let mut config = PipelineConfig::isolated(&parameters, &[("REQUEST_TIMEOUT_MS", "5000")]);
    config.max_pollers = POLLERS;
    if whole.is_none() {
        config.stream_window = window;
    }
    config
}

/// Companies in the workload.
pub const COMPANIES: usize = 20;
/// Simulated jobs per company.
pub const JOBS_PER_COMPANY: usize = 20;

/// (subscription, job, state).
pub type EventId = (String, String, String);

/// What the receivers saw.
#[derive(Default)]
pub struct Ledger {
    /// HMAC key of each subscription.
    pub secrets: HashMap<String, Vec<u8>>,
    /// First verified, accepted receipt of each event.
    pub first: HashMap<EventId, Instant>,
    /// Requests received, accepted or not.
    pub requests: usize,
    /// Requests whose signature did not verify.
    pub bad_signatures: usize,
}

impl Ledger {
    /// Notes the subscription's signing key.
    pub fn add(&mut self, sub: &Subscription, secret: &WebhookSecret) {
        self.secrets.insert(
            sub.subscription_id.clone(),
            signing::key_bytes(secret.expose()),
        );
    }
}

/// The event a request carries, when its signature verifies.
pub fn verified_event(ledger: &Ledger, req: &Received) -> Option<EventId> {
    req.verified_event(|sub| ledger.secrets.get(sub).cloned())
}

/// A receiver that verifies every request (401 when the signature does not
/// verify) and answers with `reply`, given the request's number; a 2xx
/// reply counts as the event's receipt.
pub async fn receiver(
    ledger: &Arc<Mutex<Ledger>>,
    reply: impl Fn(usize) -> Reply + Send + Sync + 'static,
) -> Receiver {
    let receiver = Receiver::http().await;
    let ledger = Arc::clone(ledger);
    receiver.set_handler(move |n, req| {
        let mut ledger = ledger.lock().unwrap();
        ledger.requests += 1;
        let Some(event) = verified_event(&ledger, req) else {
            ledger.bad_signatures += 1;
            return Reply::status(401);
        };
        let reply = reply(n);
        if matches!(
            reply,
            Reply::Respond {
                status: 200..=299,
                ..
            }
        ) {
            let now = Instant::now();
            ledger.first.entry(event).or_insert(now);
        }
        reply
    });
    receiver
}

/// Each company's planned jobs and subscriptions ([`subscription_filters`]),
/// the subscriptions spread over `receivers`, sealed with `keyring`, stored,
/// and their keys noted in
/// `ledger`. Company names end in `unique`, so runs keep their job ids apart
/// while one seed gives every run the same plans.
pub async fn subscribe(
    store: &SubscriptionStore,
    keyring: &Keyring,
    ledger: &Mutex<Ledger>,
    receivers: &[Receiver],
    unique: &str,
    rng: &mut fastrand::Rng,
) -> (Vec<Vec<PlannedJob>>, Vec<Subscription>) {
    let mut plans = Vec::new();
    let mut subs: Vec<Subscription> = Vec::new();
    for c in 0..COMPANIES {
        let company = format!("company-{c:02}-{unique}");
        let jobs = simulate::plan(&company, JOBS_PER_COMPANY, rng);
        for filters in subscription_filters(c, &jobs) {
            let url = receivers[subs.len() % receivers.len()].url(&format!("/hooks/{c}"));
            let new = NewSubscription {
                url,
                description: None,
                filters: filters.validate().expect("valid filters"),
            };
            let (sub, secret) =
                Subscription::create(&company, new, Utc::now(), keyring).expect("a keyring");
            store
                .create(&sub, None, u64::MAX)
                .await
                .expect("subscription stored");
            ledger.lock().unwrap().add(&sub, &secret);
            subs.push(sub);
        }
        plans.push(jobs);
    }
    (plans, subs)
}

/// One or two subscriptions per company with varied filters: everything;
/// final states, or a few job types; every third job in two states; failed
/// and running jobs of one type.
pub fn subscription_filters(c: usize, jobs: &[PlannedJob]) -> Vec<FiltersInput> {
    let strings = |v: &[&str]| Some(v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>());
    let types: BTreeSet<&str> = jobs.iter().map(|j| j.job_type).collect();
    let types: Vec<&str> = types.into_iter().take(3).collect();
    let every_third = jobs.iter().step_by(3).map(|j| j.job_id.clone()).collect();
    match c % 4 {
        0 => vec![FiltersInput::default()],
        1 => vec![
            FiltersInput {
                states: strings(&["completed", "failed", "cancelled"]),
                ..Default::default()
            },
            FiltersInput {
                job_types: strings(&types),
                ..Default::default()
            },
        ],
        2 => vec![FiltersInput {
            job_ids: Some(every_third),
            states: strings(&["running", "completed"]),
            ..Default::default()
        }],
        _ => vec![
            FiltersInput {
                job_types: strings(&types[..1]),
                states: strings(&["failed", "running"]),
                ..Default::default()
            },
            FiltersInput::default(),
        ],
    }
}

/// The events the transitions make for the subscriptions.
pub fn expected_events(transitions: &[Transition], subs: &[Subscription]) -> BTreeSet<EventId> {
    let mut expected = BTreeSet::new();
    for t in transitions {
        for sub in subs.iter().filter(|s| s.company_id == t.company_id) {
            if sub.filters.matches(&t.job_id, &t.job_type, t.state) {
                let state = t.state.as_str().to_owned();
                expected.insert((sub.subscription_id.clone(), t.job_id.clone(), state));
            }
        }
    }
    expected
}

/// Waits until the receivers have a first verified receipt of every
/// `expected` event, polling every 100 ms.
///
/// # Panics
/// When they do not within `deadline`, naming `label` and how many
/// arrived.
pub async fn await_receipts(
    ledger: &Mutex<Ledger>,
    expected: &BTreeSet<EventId>,
    deadline: Duration,
    label: &str,
) {
    let started = Instant::now();
    loop {
        let arrived = {
            let ledger = ledger.lock().unwrap();
            expected
                .iter()
                .filter(|e| ledger.first.contains_key(*e))
                .count()
        };
        if arrived == expected.len() {
            return;
        }
        assert!(
            started.elapsed() < deadline,
            "{label}: {arrived} of {} events arrived {deadline:?} after the last write",
            expected.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
