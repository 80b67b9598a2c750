//! The job simulator against the local AWS emulator: what it writes reaches
//! the jobs table's stream as the INSERT and MODIFY records the ingest
//! function turns into the transitions written. Needs the emulator:
//! `infra/with-emulator.sh cargo test -p local-infra`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use local_infra::simulate::{JobPath, SimulateError, Simulator, Transition, plan};
use local_infra::stream::{StartPosition, StreamReader, StreamRecord};
use serde_json::Value;
use shared::domain::job_event::{ChangeKind, JobTransition, transition};
use shared::domain::jobs::{JobState, job_type};
use test_kit::emulator;
use test_kit::stack;

/// Every record of the stream, which must hold exactly `n`: polls until
/// they are there (the emulator may lag), then checks no more follow.
async fn read_stream(arn: &str, n: usize) -> Vec<StreamRecord> {
    let streams = aws_sdk_dynamodbstreams::Client::new(&emulator::sdk_config().await);
    let mut reader = StreamReader::open(streams, arn, StartPosition::TrimHorizon)
        .await
        .expect("stream opens");
    let mut records = Vec::new();
    for _ in 0..100 {
        if records.len() >= n {
            break;
        }
        let batch = reader.poll(1000).await.expect("poll succeeds");
        if batch.is_empty() {
            // The stream offers nothing to await: ask again shortly.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        records.extend(batch);
    }
    assert_eq!(records.len(), n, "stream records");
    assert!(reader.poll(1000).await.expect("poll succeeds").is_empty());
    records
}

/// A record's event name and the transition the ingest function reads.
fn parse(record: &StreamRecord) -> (String, JobTransition) {
    let name = record.record.event_name.as_ref().expect("event name");
    let change = record.record.dynamodb.as_ref().expect("change");
    let image = |i: &Option<HashMap<_, _>>| serde_dynamo::Item::from(i.clone().unwrap_or_default());
    let parsed = transition(
        ChangeKind::from_event_name(name.as_str()),
        &image(&change.new_image),
        &image(&change.old_image),
    )
    .expect("the record parses")
    .expect("the record is a transition");
    (name.as_str().to_owned(), parsed)
}

/// The transitions of each job, in order.
fn by_job<T>(items: impl IntoIterator<Item = (String, T)>) -> BTreeMap<String, Vec<T>> {
    let mut jobs: BTreeMap<String, Vec<T>> = BTreeMap::new();
    for (job, item) in items {
        jobs.entry(job).or_default().push(item);
    }
    jobs
}

#[tokio::test]
async fn forty_jobs_reach_the_stream_as_the_transitions_written_covering_every_path() {
    let db = emulator::dynamodb().await;
    let (table, arn) = stack::jobs_table().await;
    let company = emulator::unique_name("acme");
    let simulator = Simulator::new(db, &table);
    let written = simulator
        .run(&company, 40, &mut fastrand::Rng::with_seed(2026))
        .await
        .expect("the run is written");

    let records = read_stream(&arn, written.len()).await;
    let read: Vec<(String, JobTransition)> = records.iter().map(parse).collect();

    let written_by_job = by_job(written.iter().map(|t| (t.job_id.clone(), t)));
    let read_by_job = by_job(
        read.iter()
            .map(|(n, t)| (t.job_id.clone(), (n.as_str(), t))),
    );
    assert_eq!(written_by_job.len(), 40);
    assert_eq!(
        written_by_job.keys().collect::<Vec<_>>(),
        read_by_job.keys().collect::<Vec<_>>()
    );
    let mut paths = BTreeSet::new();
    let mut types = BTreeSet::new();
    for (job, written) in &written_by_job {
        let read = &read_by_job[job];
        let names: Vec<&str> = read.iter().map(|(name, _)| *name).collect();
        let mut expected_names = vec!["MODIFY"; written.len()];
        expected_names[0] = "INSERT";
        assert_eq!(names, expected_names, "records of {job}");

        let states: Vec<JobState> = read.iter().map(|(_, t)| t.state).collect();
        let path = JobPath::ALL
            .into_iter()
            .find(|p| p.states() == states.as_slice())
            .unwrap_or_else(|| panic!("{job} took no known path: {states:?}"));
        paths.insert(format!("{path:?}"));

        for (i, (w, (_, r))) in written.iter().zip(read).enumerate() {
            assert_eq!(
                (r.state, r.previous_state),
                (w.state, w.previous_state),
                "{job} #{i}"
            );
            assert_eq!(r.company_id, company);
            assert_eq!(r.job_type, w.job_type);
            assert!(job_type(&r.job_type).is_some(), "{}", r.job_type);
            assert!(r.input.as_object().is_some_and(|m| !m.is_empty()));
            assert!(r.resource.as_object().is_some_and(|m| !m.is_empty()));
            // The history holds every state entered so far, the last one
            // entered at `updated_at`.
            let history: Vec<&str> = r.state_history.iter().map(|h| h.state.as_str()).collect();
            let entered: Vec<&str> = states[..=i].iter().map(|s| s.as_str()).collect();
            assert_eq!(history, entered, "{job} #{i}");
            assert_eq!(r.state_history[i].at, r.state_changed_at);
            // Errors come with failed and cancelled, with reason and message.
            let terminal_error = matches!(r.state, JobState::Failed | JobState::Cancelled);
            assert_eq!(
                r.error.is_some(),
                terminal_error,
                "{job} #{i}: {:?}",
                r.error
            );
            assert_eq!(r.error, w.error);
            if let Some(error) = &r.error {
                let reason = error.reason.as_deref().expect("a reason");
                assert!(error.message.as_deref().is_some_and(|m| !m.is_empty()));
                if r.state == JobState::Failed {
                    assert!(
                        ["timeout", "out_of_memory", "invalid_input"].contains(&reason),
                        "{reason}"
                    );
                }
            }
            types.insert(r.job_type.clone());
        }
        let times: Vec<&str> = read
            .iter()
            .map(|(_, t)| t.state_changed_at.as_str())
            .collect();
        assert!(
            times
                .windows(2)
                .all(|w| chrono::DateTime::parse_from_rfc3339(w[0]).unwrap()
                    < chrono::DateTime::parse_from_rfc3339(w[1]).unwrap()),
            "updated_at advances: {times:?}"
        );
    }
    assert_eq!(paths.len(), JobPath::ALL.len(), "paths taken: {paths:?}");
    assert!(types.len() >= 5, "job types: {types:?}");
    // Jobs run side by side, as on the platform: some job's changes have
    // another job's changes between them.
    let interleaved = written_by_job.keys().any(|job| {
        let first = written.iter().position(|t| &t.job_id == job).unwrap();
        let last = written.iter().rposition(|t| &t.job_id == job).unwrap();
        last - first + 1 > written_by_job[job].len()
    });
    assert!(interleaved, "jobs run one after another");
}

/// The items of a table keyed by job id, without the attributes that hold
/// clock times.
async fn items_without_times(
    db: &aws_sdk_dynamodb::Client,
    table: &str,
) -> BTreeMap<String, Value> {
    let items = db
        .scan()
        .table_name(table)
        .send()
        .await
        .expect("table is scanned")
        .items
        .unwrap_or_default();
    items
        .into_iter()
        .map(|item| {
            let mut item: Value = serde_dynamo::aws_sdk_dynamodb_1::from_item(item).unwrap();
            let object = item.as_object_mut().unwrap();
            for time in ["created_at", "updated_at", "started_at", "finished_at"] {
                object.remove(time);
            }
            for entry in object["state_history"].as_array_mut().unwrap() {
                entry.as_object_mut().unwrap().remove("at");
            }
            (item["job_id"].as_str().unwrap().to_owned(), item)
        })
        .collect()
}

#[tokio::test]
async fn a_seed_reproduces_a_run_and_another_seed_does_not() {
    let db = emulator::dynamodb().await;
    let company = emulator::unique_name("acme");
    let mut runs = Vec::new();
    for seed in [11, 11, 12] {
        let (table, _) = stack::jobs_table().await;
        let transitions = Simulator::new(db.clone(), &table)
            .run(&company, 8, &mut fastrand::Rng::with_seed(seed))
            .await
            .expect("the run is written");
        runs.push((transitions, items_without_times(&db, &table).await));
    }
    assert_eq!(runs[0].0, runs[1].0, "same seed, same transitions");
    assert_eq!(runs[0].1, runs[1].1, "same seed, same items");
    assert_eq!(runs[0].1.len(), 8);
    assert_ne!(runs[0].0, runs[2].0, "another seed, another run");
    // The same seed for another company gives other job ids: the jobs
    // table is keyed by job id alone.
    let other = plan("globex", 8, &mut fastrand::Rng::with_seed(11));
    assert!(other.iter().all(|j| !runs[0].1.contains_key(&j.job_id)));
}

#[tokio::test]
async fn rerunning_a_seed_on_the_same_table_fails_without_touching_the_job() {
    let db = emulator::dynamodb().await;
    let (table, arn) = stack::jobs_table().await;
    let company = emulator::unique_name("acme");
    let simulator = Simulator::new(db, &table);
    let first = simulator
        .run(&company, 2, &mut fastrand::Rng::with_seed(5))
        .await
        .expect("the first run is written");
    let err = simulator
        .run(&company, 2, &mut fastrand::Rng::with_seed(5))
        .await
        .expect_err("the job ids exist already");
    match &err {
        SimulateError::JobExists { table: t, job_id } => {
            assert_eq!(t, &table);
            assert_eq!(job_id, &first[0].job_id);
        }
        other => panic!("unexpected error {other}"),
    }
    assert!(err.to_string().contains("another seed"), "{err}");
    // Nothing beyond the first run reached the stream.
    read_stream(&arn, first.len()).await;
}

#[tokio::test]
async fn a_missing_table_and_a_bad_company_are_refused_with_context() {
    let db = emulator::dynamodb().await;
    let missing = emulator::unique_name("NoSuchJobsTable");
    let err = Simulator::new(db.clone(), &missing)
        .run("acme", 1, &mut fastrand::Rng::with_seed(1))
        .await
        .expect_err("no table");
    assert!(
        matches!(&err, SimulateError::TableMissing { table } if table == &missing),
        "{err}"
    );
    assert!(err.to_string().contains(&missing));

    let (table, arn) = stack::jobs_table().await;
    for company in ["", " acme", "ac\nme", &"x".repeat(257)] {
        let err = Simulator::new(db.clone(), &table)
            .run(company, 1, &mut fastrand::Rng::with_seed(1))
            .await
            .expect_err("bad company");
        assert!(matches!(err, SimulateError::InvalidCompany(_)), "{err}");
    }
    read_stream(&arn, 0).await;
}

#[tokio::test]
async fn observers_see_each_transition_and_pauses_space_the_writes() {
    let db = emulator::dynamodb().await;
    let (table, _) = stack::jobs_table().await;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Transition>::new()));
    let pause = Duration::from_millis(20);
    let simulator = Simulator::new(db, &table).with_pause(pause).with_observer({
        let seen = seen.clone();
        move |t| seen.lock().unwrap().push(t.clone())
    });
    let started = std::time::Instant::now();
    let written = simulator
        .run(
            &emulator::unique_name("acme"),
            2,
            &mut fastrand::Rng::with_seed(3),
        )
        .await
        .expect("the run is written");
    assert_eq!(*seen.lock().unwrap(), written);
    let gaps = u32::try_from(written.len() - 1).unwrap();
    assert!(started.elapsed() >= pause * gaps, "{:?}", started.elapsed());
}
