//! Webhook subscriptions: an HTTPS URL of a company plus filters.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::filters::Filters;
use crate::domain::health::Health;
use crate::signing::secret::WebhookSecret;

/// Prefix of every subscription id.
pub const ID_PREFIX: &str = "sub_";
/// Longest accepted description, in characters.
pub const MAX_DESCRIPTION_LEN: usize = 1024;
/// Default rotation grace period: the previous secret stays valid this long.
pub const DEFAULT_ROTATION_GRACE: Duration = Duration::hours(24);
/// Longest rotation grace period a caller may ask for.
pub const MAX_ROTATION_GRACE: Duration = Duration::days(7);

/// Whether a subscription receives events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionStatus {
    /// Live: receives matching events.
    Active,
    /// Disabled and kept for audit: receives nothing, can't be modified.
    Archived,
    /// Turned off after its endpoint failed for `DisableAfter`: its events
    /// are parked until their retention ends; `POST /webhooks/{id}/enable`
    /// turns it back on and drains them.
    Disabled,
}

impl SubscriptionStatus {
    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            SubscriptionStatus::Active => "active",
            SubscriptionStatus::Archived => "archived",
            SubscriptionStatus::Disabled => "disabled",
        }
    }

    /// The status named `name`, if any.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "active" => Some(Self::Active),
            "archived" => Some(Self::Archived),
            "disabled" => Some(Self::Disabled),
            _ => None,
        }
    }
}

/// A webhook subscription as stored in the subscriptions table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subscription {
    /// Owning company: the table's partition key.
    pub company_id: String,
    /// `sub_` + 32 hex digits of a time-ordered UUID: the sort key.
    pub subscription_id: String,
    /// HTTPS target, already checked by the URL guard.
    pub url: String,
    /// Free text for the customer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Which transitions are delivered.
    #[serde(default)]
    pub filters: Filters,
    /// Active or archived.
    pub status: SubscriptionStatus,
    /// Current signing secret.
    pub secret: WebhookSecret,
    /// The secret before the last rotation, valid until
    /// `previous_secret_expires_at`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_secret: Option<WebhookSecret>,
    /// End of the rotation grace period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// When it was archived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archived_at: Option<DateTime<Utc>>,
    /// Why it was archived (`deleted by API`, `endpoint answered 410 Gone`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archived_reason: Option<String>,
    /// When it was disabled for failing too long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_at: Option<DateTime<Utc>>,
    /// Why it was disabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
    /// Its endpoint's health and circuit breaker (top-level attributes, so
    /// delivery instances update them atomically).
    #[serde(flatten)]
    pub health: Health,
    /// Optimistic-locking version, incremented by every write.
    pub version: u64,
}

/// What a caller provides to create a subscription (already validated).
#[derive(Debug, Clone, PartialEq)]
pub struct NewSubscription {
    /// Checked HTTPS target.
    pub url: String,
    /// Optional free text.
    pub description: Option<String>,
    /// Validated filters.
    pub filters: Filters,
}

impl Subscription {
    /// A new active subscription with a fresh id and secret.
    pub fn create(company_id: &str, new: NewSubscription, now: DateTime<Utc>) -> Self {
        Self {
            company_id: company_id.to_owned(),
            subscription_id: new_subscription_id(),
            url: new.url,
            description: new.description,
            filters: new.filters,
            status: SubscriptionStatus::Active,
            secret: WebhookSecret::generate(),
            previous_secret: None,
            previous_secret_expires_at: None,
            created_at: now,
            updated_at: now,
            archived_at: None,
            archived_reason: None,
            disabled_at: None,
            disabled_reason: None,
            health: Health::default(),
            version: 1,
        }
    }

    /// Whether it is archived.
    pub fn is_archived(&self) -> bool {
        self.status == SubscriptionStatus::Archived
    }

    /// Whether it is disabled.
    pub fn is_disabled(&self) -> bool {
        self.status == SubscriptionStatus::Disabled
    }

    /// Whether its events are parked instead of attempted: it is disabled
    /// or its breaker is not closed.
    pub fn parks_events(&self) -> bool {
        self.is_disabled() || self.health.breaker.is_open()
    }

    /// Turns a disabled subscription back on (or resets a failing one):
    /// health cleared, breaker closed, parked events due to drain now.
    /// Returns whether it was disabled.
    pub fn enable(&mut self, now: DateTime<Utc>) -> bool {
        let was_disabled = self.is_disabled();
        if was_disabled {
            self.status = SubscriptionStatus::Active;
        }
        self.disabled_at = None;
        self.disabled_reason = None;
        self.health.reset_for_drain(now);
        was_disabled
    }

    /// Replaces the secret; the old one stays valid for `grace`.
    pub fn rotate_secret(&mut self, grace: Duration, now: DateTime<Utc>) {
        let old = std::mem::replace(&mut self.secret, WebhookSecret::generate());
        if grace > Duration::zero() {
            self.previous_secret = Some(old);
            self.previous_secret_expires_at = Some(now + grace);
        } else {
            self.previous_secret = None;
            self.previous_secret_expires_at = None;
        }
    }

    /// The secrets a delivery at `now` must be signed with: the current one,
    /// plus the previous one while its grace period lasts.
    pub fn signing_secrets(&self, now: DateTime<Utc>) -> Vec<&WebhookSecret> {
        let mut secrets = vec![&self.secret];
        if let (Some(prev), Some(until)) = (&self.previous_secret, self.previous_secret_expires_at)
            && now < until
        {
            secrets.push(prev);
        }
        secrets
    }

    /// Archives it with a reason.
    pub fn archive(&mut self, reason: &str, now: DateTime<Utc>) {
        self.status = SubscriptionStatus::Archived;
        self.archived_at = Some(now);
        self.archived_reason = Some(reason.to_owned());
        self.updated_at = now;
        // Nothing left for the prober to do.
        self.health.probe_lane = None;
        self.health.next_probe_at = None;
    }
}

/// A new time-ordered subscription id.
pub fn new_subscription_id() -> String {
    format!("{ID_PREFIX}{}", uuid::Uuid::now_v7().simple())
}

/// Whether `id` has the shape of a subscription id. Anything else is unknown
/// without touching the table.
pub fn is_subscription_id(id: &str) -> bool {
    id.strip_prefix(ID_PREFIX).is_some_and(|hex| {
        hex.len() == 32
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(now: DateTime<Utc>) -> Subscription {
        Subscription::create(
            "acme",
            NewSubscription {
                url: "https://example.com/hook".into(),
                description: None,
                filters: Filters::default(),
            },
            now,
        )
    }

    #[test]
    fn ids_are_recognised_and_time_ordered() {
        let a = new_subscription_id();
        let b = new_subscription_id();
        assert!(is_subscription_id(&a), "{a}");
        assert!(a < b, "{a} !< {b}");
        for bad in [
            "",
            "sub_",
            "sub_XYZ",
            "idem#abc",
            &format!("{a}0"),
            &a.to_uppercase(),
        ] {
            assert!(!is_subscription_id(bad), "{bad}");
        }
    }

    #[test]
    fn rotation_keeps_the_previous_secret_for_the_grace_period() {
        let now = Utc::now();
        let mut s = sample(now);
        let old = s.secret.clone();
        s.rotate_secret(Duration::hours(1), now);
        assert_ne!(s.secret, old);
        let during = s.signing_secrets(now + Duration::minutes(59));
        assert_eq!(during, vec![&s.secret, &old]);
        let after = s.signing_secrets(now + Duration::hours(1));
        assert_eq!(after, vec![&s.secret]);
    }

    #[test]
    fn items_round_trip_with_health_at_the_top_level() {
        use crate::domain::health::{BreakerState, LastFailure, ProbeLane};
        use serde_dynamo::aws_sdk_dynamodb_1::{from_item, to_item};
        let now = Utc::now();
        let mut s = sample(now);
        let item: std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue> =
            to_item(&s).unwrap();
        assert!(!item.contains_key("breaker") && !item.contains_key("probe_lane"));
        s.health.consecutive_failures = 7;
        s.health.failing_since = Some(now);
        s.health.breaker = BreakerState::HalfOpen;
        s.health.probe_lane = Some(ProbeLane::Probe);
        s.health.next_probe_at = Some(now.timestamp_millis());
        s.health.last_failure = Some(LastFailure {
            at: now,
            status: Some(503),
            error: None,
        });
        let item: std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue> =
            to_item(&s).unwrap();
        assert!(item.contains_key("probe_lane") && item.contains_key("consecutive_failures"));
        let back: Subscription = from_item(item).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn rotation_without_grace_drops_the_old_secret_at_once() {
        let now = Utc::now();
        let mut s = sample(now);
        s.rotate_secret(Duration::zero(), now);
        assert_eq!(s.signing_secrets(now).len(), 1);
        assert!(s.previous_secret.is_none());
    }
}
