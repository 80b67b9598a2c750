//! The built `endpoint-prober` binary under a Lambda Runtime API: it boots
//! with its deployed environment, answers the scheduled sample event with
//! its run report, and refuses to start without its configuration, naming
//! the variable.

use std::time::Duration;

use serde_json::Value;
use test_kit::runtime_api::{self, Outcome};
use test_kit::stack::{self, ids};

const BINARY: &str = env!("CARGO_BIN_EXE_endpoint-prober");
const NAME: &str = "endpoint-prober";

#[tokio::test]
async fn binary_boots_and_runs_on_the_scheduled_sample_event() {
    let event: Value = serde_json::from_str(
        &std::fs::read_to_string(test_kit::event_path("eventbridge-schedule.json")).unwrap(),
    )
    .unwrap();
    let stack = stack::deploy().await;
    let env = stack::function_environment(&stack, ids::PROBER_FUNCTION, &[]);
    let (runtime, _child) = runtime_api::boot(BINARY, NAME, &stack::borrowed(&env)).await;
    let outcome = runtime.invoke(event, Duration::from_secs(30)).await;
    let Some(Outcome::Response(report)) = outcome else {
        panic!("expected a response, got {outcome:?}");
    };
    assert_eq!(report["errors"], 0, "{report}");
    assert_eq!(
        report["probes_sent"], 0,
        "a fresh stack has nothing to probe"
    );
}

#[tokio::test]
async fn cold_start_fails_naming_a_missing_or_bad_variable() {
    let complete = [
        ("SUBSCRIPTIONS_TABLE", "SubscriptionsTable"),
        ("PARKED_EVENTS_TABLE", "ParkedEventsTable"),
        (
            "DELIVERY_QUEUE_URL",
            "http://127.0.0.1:9/000000000000/DeliveryQueue",
        ),
        ("EVENT_BUS_NAME", "webhooks-operational"),
    ];
    let bad = [
        ("RETRY_SCHEDULE", "5s,soon"),
        ("DRAIN_RATE_PER_SECOND", "0"),
        ("DISABLE_AFTER_SECONDS", "-1"),
        ("PROBE_LEASE_SECONDS", "forever"),
    ];
    runtime_api::assert_cold_start_names(BINARY, NAME, &complete, &bad).await;
}
