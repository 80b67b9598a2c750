//! The prober against the emulator: a run near its deadline leaves due
//! subscriptions for the next run; a due breaker with nothing parked to
//! probe with is closed and its (empty) drain ends.

use std::time::Instant;

use chrono::Utc;
use endpoint_prober::{Prober, ProberConfig};
use shared::domain::filters::Filters;
use shared::domain::health::BreakerState;
use shared::domain::subscription::{NewSubscription, Subscription};
use shared::signing::sealed::Keyring;
use shared::storage::subscriptions::SubscriptionStore;
use test_support::emulator;
use test_support::stack::{self, ids};

#[tokio::test]
async fn a_run_near_its_deadline_defers_and_a_breaker_with_nothing_parked_closes() {
    let sdk = emulator::sdk_config().await;
    let stack = stack::deploy().await;
    let config =
        ProberConfig::from_vars(&stack::function_vars(&stack, ids::PROBER_FUNCTION, &[])).unwrap();
    let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
    let store = SubscriptionStore::new(dynamo.clone(), config.subscriptions_table.clone());
    let sub = Subscription::create(
        &emulator::unique_name("acme"),
        NewSubscription {
            url: "https://hooks.example.com/jobs".to_owned(),
            description: None,
            filters: Filters::default(),
        },
        Utc::now(),
        // Ingest and the prober never open a secret: any keyring seals it.
        &Keyring::generate(),
    )
    .unwrap()
    .0;
    store.create(&sub, None, u64::MAX).await.unwrap();
    let now = Utc::now();
    store
        .open_breaker(&sub, now, now)
        .await
        .unwrap()
        .expect("the breaker opens");
    let prober = Prober::new(
        &config,
        dynamo,
        aws_sdk_sqs::Client::new(&sdk),
        aws_sdk_eventbridge::Client::new(&sdk),
    );

    let late = prober.run(Utc::now(), Some(Instant::now())).await;
    assert_eq!(
        (late.deferred, late.probes_sent, late.closed_without_probe),
        (1, 0, 0)
    );
    let stored = store
        .get(&sub.company_id, &sub.subscription_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.health.breaker, BreakerState::Open, "nothing claimed");

    let run = prober.run(Utc::now(), None).await;
    assert_eq!((run.closed_without_probe, run.errors), (1, 0), "{run:?}");
    let closed = store
        .get(&sub.company_id, &sub.subscription_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(closed.health.breaker, BreakerState::Closed);
    // The drain starts after its delay, finds nothing and ends.
    let later = Utc::now() + shared::domain::health::DRAIN_START_DELAY;
    let drained = prober.run(later, None).await;
    assert_eq!(drained.drains_finished, 1, "{drained:?}");
    let done = store
        .get(&sub.company_id, &sub.subscription_id)
        .await
        .unwrap()
        .unwrap();
    assert!(done.health.probe_lane.is_none());
}
