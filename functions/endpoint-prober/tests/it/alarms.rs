//! The template's alarms on the service's own metrics fire on what the
//! prober binary reports: a run that disables an endpoint writes an EMF
//! line, dimensioned by the function name the deployed stack gave it, in
//! which every `JobWebhooks` alarm finds its metric above its threshold;
//! a run with nothing to report writes no EMF line, which those alarms
//! treat as not breaching.

use std::time::Duration;

use chrono::Utc;
use serde_json::Value;
use shared::domain::filters::Filters;
use shared::domain::health::LastFailure;
use shared::domain::subscription::{NewSubscription, Subscription, SubscriptionStatus};
use shared::signing::sealed::Keyring;
use shared::storage::subscriptions::SubscriptionStore;
use test_kit::alarms;
use test_kit::emulator;
use test_kit::runtime_api::{self, Outcome};
use test_kit::stack::{self, ids};

const BINARY: &str = env!("CARGO_BIN_EXE_endpoint-prober");

/// A subscription whose endpoint has failed since six days ago (longer
/// than the default DisableAfterSeconds, five days) and whose breaker is
/// open with a probe due now.
async fn failing_for_six_days(store: &SubscriptionStore) -> Subscription {
    let now = Utc::now();
    let (sub, _) = Subscription::create(
        &emulator::unique_name("acme"),
        NewSubscription {
            url: "https://hooks.example.com/jobs".to_owned(),
            description: None,
            filters: Filters::default(),
        },
        now,
        // The prober never opens a secret: any keyring seals it.
        &Keyring::generate(),
    )
    .unwrap();
    store.create(&sub, None, u64::MAX).await.unwrap();
    let failure = LastFailure {
        at: now - chrono::Duration::days(6),
        status: Some(500),
        error: None,
    };
    let failed = store
        .record_failure(&sub, &failure)
        .await
        .unwrap()
        .expect("the failure is recorded")
        .sub;
    store
        .open_breaker(&failed, now - chrono::Duration::seconds(1), now)
        .await
        .unwrap()
        .expect("the breaker opens");
    sub
}

/// The run report of one scheduled invocation.
async fn run(runtime: &runtime_api::RuntimeApi, event: &Value) -> Value {
    match runtime.invoke(event.clone(), Duration::from_secs(30)).await {
        Some(Outcome::Response(report)) => report,
        other => panic!("expected a run report, got {other:?}"),
    }
}

#[tokio::test]
async fn every_own_metric_alarm_fires_on_a_disabling_run_and_not_on_an_empty_one() {
    let event: Value = serde_json::from_str(
        &std::fs::read_to_string(test_kit::event_path("eventbridge-schedule.json")).unwrap(),
    )
    .unwrap();
    let stack = stack::deploy().await;
    let function = stack.function(ids::PROBER_FUNCTION).unwrap();
    // Lambda names the function as CloudFormation created it: the logical
    // id with the stack's name and a suffix, never the binary's name.
    assert_ne!(function.name, "endpoint-prober");
    let env = stack::function_environment(&stack, ids::PROBER_FUNCTION, &[]);
    let dynamo = aws_sdk_dynamodb::Client::new(&emulator::sdk_config().await);
    let store = SubscriptionStore::new(dynamo, stack.table(ids::SUBSCRIPTIONS_TABLE).unwrap());
    let sub = failing_for_six_days(&store).await;

    let (runtime, child) =
        runtime_api::boot_logged(BINARY, &function.name, &stack::borrowed(&env)).await;
    let disabling = run(&runtime, &event).await;
    assert_eq!(
        (disabling["disabled"].clone(), disabling["errors"].clone()),
        (1.into(), 0.into()),
        "{disabling}"
    );
    let stored = store
        .get(&sub.company_id, &sub.subscription_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.status, SubscriptionStatus::Disabled);
    // Nothing is due any more: a run with nothing to report.
    let empty = run(&runtime, &event).await;
    assert!(
        empty
            .as_object()
            .unwrap()
            .values()
            .all(|v| v == 0 || v.is_null()),
        "{empty}"
    );
    let emf = alarms::emf_documents(&child.stop().await);
    assert_eq!(emf.len(), 1, "one EMF line, of the disabling run: {emf:?}");

    let template = alarms::template();
    let own = alarms::alarms_in(&template, shared::metrics::NAMESPACE, &stack);
    assert!(
        own.iter().any(|a| a.logical_id == "DisabledEndpointsAlarm"),
        "{own:?}"
    );
    for alarm in &own {
        let value = alarm.datapoint(&emf).unwrap_or_else(|| {
            panic!("{alarm:?} finds no metric in the prober's EMF line {emf:?}")
        });
        assert!(alarm.breaches(value), "{alarm:?} stays quiet at {value}");
        // Nothing to report is no datapoint, which must not breach.
        assert_eq!(alarm.datapoint(&[]), None);
        assert_eq!(alarm.treat_missing_data, "notBreaching", "{alarm:?}");
    }
}
