//! Webhook subscriptions: an HTTPS URL of a company plus filters.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::filters::Filters;
use crate::domain::headers::{ApplyError, HeaderValues, HeadersPatch, SealedHeaders};
use crate::domain::health::Health;
use crate::domain::jobs::JobState;
use crate::format::{Format, FormatSetting, OpenFormatError, StoredFormat};
use crate::signing::ed25519::{PublicKey, SigningKey, StoredSigningKey};
use crate::signing::sealed::{
    EmptyKeyring, Keyring, OpenError, ResealError, SecretOwner, StoredSecret,
};
use crate::signing::secret::WebhookSecret;
use crate::signing::{SignatureScheme, SigningKeys};
use crate::validation::ValidationError;

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
    /// Current signing secret, sealed (items written before encryption at
    /// rest hold it in the clear until their next write).
    pub secret: StoredSecret,
    /// The secret before the last rotation, valid until
    /// `previous_secret_expires_at`, sealed like `secret`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_secret: Option<StoredSecret>,
    /// End of the rotation grace period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    /// The schemes deliveries are signed with, in header order; items
    /// written before the choice existed read as `v1`.
    #[serde(default = "SignatureScheme::default_set")]
    pub signature_schemes: Vec<SignatureScheme>,
    /// The `v1a` (Ed25519) key pair, once `v1a` was chosen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key: Option<StoredSigningKey>,
    /// The key pair before the last rotation, valid until
    /// `previous_secret_expires_at`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_signing_key: Option<StoredSigningKey>,
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
    /// Custom headers sent with every delivery, values sealed.
    #[serde(default, skip_serializing_if = "SealedHeaders::is_empty")]
    pub headers: SealedHeaders,
    /// The body format of its deliveries (absent: `standard`).
    #[serde(default, skip_serializing_if = "StoredFormat::is_standard")]
    pub format: StoredFormat,
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
    /// A new active subscription with a fresh id and secret, sealed with
    /// the keyring's newest version; the secret is returned in the clear
    /// once, for the create response.
    pub fn create(
        company_id: &str,
        new: NewSubscription,
        now: DateTime<Utc>,
        keyring: &Keyring,
    ) -> Result<(Self, WebhookSecret), EmptyKeyring> {
        let subscription_id = new_subscription_id();
        let secret = WebhookSecret::generate();
        let sealed = keyring.seal(
            &secret,
            SecretOwner {
                company_id,
                subscription_id: &subscription_id,
            },
        )?;
        let sub = Self {
            company_id: company_id.to_owned(),
            subscription_id,
            url: new.url,
            description: new.description,
            filters: new.filters,
            status: SubscriptionStatus::Active,
            secret: StoredSecret::Sealed(sealed),
            previous_secret: None,
            previous_secret_expires_at: None,
            signature_schemes: SignatureScheme::default_set(),
            signing_key: None,
            previous_signing_key: None,
            created_at: now,
            updated_at: now,
            archived_at: None,
            archived_reason: None,
            disabled_at: None,
            disabled_reason: None,
            health: Health::default(),
            headers: SealedHeaders::default(),
            format: StoredFormat::Standard,
            version: 1,
        };
        Ok((sub, secret))
    }

    /// The associated data its secrets are sealed for.
    pub fn secret_owner(&self) -> SecretOwner<'_> {
        SecretOwner {
            company_id: &self.company_id,
            subscription_id: &self.subscription_id,
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

    /// Replaces the secret with a fresh one, sealed with the keyring's
    /// newest version; the old one stays valid for `grace`. Returns the new
    /// secret in the clear, for the rotate response.
    pub fn rotate_secret(
        &mut self,
        grace: Duration,
        now: DateTime<Utc>,
        keyring: &Keyring,
    ) -> Result<WebhookSecret, EmptyKeyring> {
        let secret = WebhookSecret::generate();
        let sealed = keyring.seal(&secret, self.secret_owner())?;
        let old = std::mem::replace(&mut self.secret, StoredSecret::Sealed(sealed));
        let old_key = match self.signing_key {
            Some(_) => self.signing_key.replace(StoredSigningKey::seal(
                &SigningKey::generate(),
                keyring,
                self.secret_owner(),
            )?),
            None => None,
        };
        if grace > Duration::zero() {
            self.previous_secret = Some(old);
            self.previous_signing_key = old_key;
            self.previous_secret_expires_at = Some(now + grace);
        } else {
            self.previous_secret = None;
            self.previous_signing_key = None;
            self.previous_secret_expires_at = None;
        }
        Ok(secret)
    }

    /// Whether its deliveries carry signatures of `scheme`.
    pub fn signs_with(&self, scheme: SignatureScheme) -> bool {
        self.signature_schemes.contains(&scheme)
    }

    /// Signs with `schemes` (non-empty, validated) from now on, in header
    /// order; choosing `v1a` for the first time makes its key pair, sealed
    /// with the keyring's newest version. Returns whether anything changed.
    pub fn set_signature_schemes(
        &mut self,
        schemes: &[SignatureScheme],
        keyring: &Keyring,
    ) -> Result<bool, EmptyKeyring> {
        let chosen: Vec<SignatureScheme> = SignatureScheme::ALL
            .into_iter()
            .filter(|s| schemes.contains(s))
            .collect();
        let mut changed = chosen != self.signature_schemes;
        self.signature_schemes = chosen;
        if self.signs_with(SignatureScheme::V1a) && self.signing_key.is_none() {
            let key = SigningKey::generate();
            self.signing_key = Some(StoredSigningKey::seal(&key, keyring, self.secret_owner())?);
            changed = true;
        }
        Ok(changed)
    }

    /// The public key receivers verify its `v1a` signatures with (`whpk_`
    /// form), while it signs with `v1a`.
    pub fn public_key(&self) -> Option<&str> {
        self.signing_key
            .as_ref()
            .filter(|_| self.signs_with(SignatureScheme::V1a))
            .map(|k| k.public_key.as_str())
    }

    /// The public keys a `v1a` signature of a delivery at `now` may verify
    /// with: the current one, plus the previous one during a grace period;
    /// none unless it signs with `v1a`.
    pub fn verifying_keys(&self, now: DateTime<Utc>) -> Vec<PublicKey> {
        if !self.signs_with(SignatureScheme::V1a) {
            return Vec::new();
        }
        let previous = self.previous_key_in_grace(now).map(|(k, _)| k);
        self.signing_key
            .iter()
            .chain(previous)
            .filter_map(|k| PublicKey::from_standard_webhooks_form(&k.public_key).ok())
            .collect()
    }

    /// The previous key pair while its grace period lasts at `now`.
    fn previous_key_in_grace(
        &self,
        now: DateTime<Utc>,
    ) -> Option<(&StoredSigningKey, DateTime<Utc>)> {
        match (&self.previous_signing_key, self.previous_secret_expires_at) {
            (Some(prev), Some(until)) if now < until => Some((prev, until)),
            _ => None,
        }
    }

    /// The previous secret while its grace period lasts at `now`.
    fn previous_in_grace(&self, now: DateTime<Utc>) -> Option<(&StoredSecret, DateTime<Utc>)> {
        match (&self.previous_secret, self.previous_secret_expires_at) {
            (Some(prev), Some(until)) if now < until => Some((prev, until)),
            _ => None,
        }
    }

    /// The secrets a delivery at `now` must be signed with, decrypted: the
    /// current one, plus the previous one while its grace period lasts.
    pub fn signing_secrets(
        &self,
        keyring: &Keyring,
        now: DateTime<Utc>,
    ) -> Result<Vec<WebhookSecret>, OpenError> {
        let owner = self.secret_owner();
        let mut secrets = vec![keyring.open_stored(&self.secret, owner)?];
        if let Some((prev, _)) = self.previous_in_grace(now) {
            secrets.push(keyring.open_stored(prev, owner)?);
        }
        Ok(secrets)
    }

    /// Its secrets decrypted into signing keys, for a cache that signs many
    /// deliveries: the previous one keeps its grace end and drops out of
    /// the signature when that passes.
    pub fn signing_keys(
        &self,
        keyring: &Keyring,
        now: DateTime<Utc>,
    ) -> Result<SigningKeys, OpenError> {
        let owner = self.secret_owner();
        let mut keys = SigningKeys::empty();
        if self.signs_with(SignatureScheme::V1) {
            let current = keyring.open_stored(&self.secret, owner)?;
            let previous = match self.previous_in_grace(now) {
                Some((prev, until)) => Some((keyring.open_stored(prev, owner)?, until)),
                None => None,
            };
            keys = keys.with_v1(&current, previous.as_ref().map(|(s, t)| (s, *t)));
        }
        if let Some(stored) = self.signing_key.as_ref()
            && self.signs_with(SignatureScheme::V1a)
        {
            let current = stored.open(keyring, owner)?;
            let previous = match self.previous_key_in_grace(now) {
                Some((prev, until)) => Some((prev.open(keyring, owner)?, until)),
                None => None,
            };
            keys = keys.with_v1a(&current, previous.as_ref().map(|(k, t)| (k, *t)));
        }
        Ok(keys)
    }

    /// Replaces its custom headers with `values`, sealed with the keyring's
    /// newest version.
    pub fn set_headers(
        &mut self,
        values: &HeaderValues,
        keyring: &Keyring,
    ) -> Result<(), EmptyKeyring> {
        self.headers = SealedHeaders::seal(values, keyring, self.secret_owner())?;
        Ok(())
    }

    /// Merges `patch` into its custom headers (see [`HeadersPatch::apply`]);
    /// `None` removes them all. Returns whether anything changed.
    pub fn patch_headers(
        &mut self,
        patch: Option<&HeadersPatch>,
        keyring: &Keyring,
    ) -> Result<bool, ApplyError> {
        let Some(patch) = patch else {
            return Ok(!std::mem::take(&mut self.headers).is_empty());
        };
        let owner = SecretOwner {
            company_id: &self.company_id,
            subscription_id: &self.subscription_id,
        };
        patch.apply(&mut self.headers, keyring, owner)
    }

    /// Whether a job of `job_type` with id `job_id` entering `state` is
    /// sent to it: its filters pass it, and, when they name no states, its
    /// format takes that state by default (PagerDuty takes only `failed`
    /// and `completed`).
    pub fn receives_job(&self, job_id: &str, job_type: &str, state: JobState) -> bool {
        self.filters.matches(job_id, job_type, state) && self.format_takes(state)
    }

    /// Whether its format takes job events entering `state`: always when
    /// its filters name states, else per the format's default states.
    fn format_takes(&self, state: JobState) -> bool {
        self.filters.states.is_some()
            || self
                .format
                .kind()
                .default_states()
                .is_none_or(|states| states.contains(&state))
    }

    /// Whether an event of `event_type` queued for it is still to be sent:
    /// `false` for a job event of a state its format no longer takes (one
    /// queued or parked before the format changed to PagerDuty, say).
    pub fn takes_event_type(&self, event_type: &str) -> bool {
        event_type
            .strip_prefix("job.")
            .and_then(JobState::parse)
            .is_none_or(|state| self.format_takes(state))
    }

    /// Sets its body format; a PagerDuty format without a routing key
    /// keeps the stored one. Returns whether anything changed, or `None`
    /// when a new PagerDuty format gives no routing key.
    pub fn set_format(
        &mut self,
        setting: &FormatSetting,
        keyring: &Keyring,
    ) -> Result<Option<bool>, EmptyKeyring> {
        let Some(stored) = setting.seal(&self.format, keyring, self.secret_owner())? else {
            return Ok(None);
        };
        // A new routing key always counts as a change.
        let changed = stored != self.format;
        self.format = stored;
        Ok(Some(changed))
    }

    /// Its body format, opened for deliveries.
    pub fn open_format(&self, keyring: &Keyring) -> Result<Format, OpenFormatError> {
        self.format.open(keyring, self.secret_owner())
    }

    /// Its custom headers, opened for a delivery.
    pub fn header_values(&self, keyring: &Keyring) -> Result<HeaderValues, OpenError> {
        self.headers.open(keyring, self.secret_owner())
    }

    /// Seals its secrets and header values with the keyring's newest
    /// version (those in the clear, and those of an older version).
    /// Returns whether any changed.
    pub fn reseal_secrets(&mut self, keyring: &Keyring) -> Result<bool, ResealError> {
        let owner = SecretOwner {
            company_id: &self.company_id,
            subscription_id: &self.subscription_id,
        };
        let mut changed = keyring.reseal(&mut self.secret, owner)?;
        if let Some(prev) = self.previous_secret.as_mut() {
            changed |= keyring.reseal(prev, owner)?;
        }
        for key in [&mut self.signing_key, &mut self.previous_signing_key]
            .into_iter()
            .flatten()
        {
            changed |= key.reseal(keyring, owner)?;
        }
        changed |= self.headers.reseal(keyring, owner)?;
        changed |= self.format.reseal(keyring, owner)?;
        Ok(changed)
    }

    /// Its stored secrets: the current one, and the previous one if kept.
    fn stored_secrets(&self) -> impl Iterator<Item = &StoredSecret> {
        std::iter::once(&self.secret).chain(&self.previous_secret)
    }

    /// The key versions its secrets and header values are sealed with (a
    /// keyring must hold them all to open them).
    pub fn secret_key_versions(&self) -> impl Iterator<Item = u32> + '_ {
        let key_pairs = self.signing_key.iter().chain(&self.previous_signing_key);
        self.stored_secrets()
            .filter_map(StoredSecret::key_version)
            .chain(key_pairs.map(|k| k.sealed.key_version))
            .chain(self.headers.key_versions())
            .chain(self.format.key_version())
    }

    /// Whether a secret of it is stored in the clear.
    pub fn has_plaintext_secret(&self) -> bool {
        self.stored_secrets()
            .any(|s| matches!(s, StoredSecret::Plaintext(_)))
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

/// The signature schemes a request names: `v1`, `v1a` or both, each once,
/// in any order.
pub fn check_signature_schemes(names: &[String]) -> Result<Vec<SignatureScheme>, ValidationError> {
    const FIELD: &str = "signature_schemes";
    const ALLOWED: &str = r#"allowed: ["v1"], ["v1a"] or ["v1", "v1a"]"#;
    if names.is_empty() {
        return Err(ValidationError::field(
            "invalid_signature_schemes",
            FIELD,
            format!("signature_schemes can't be empty; {ALLOWED}"),
        ));
    }
    let mut schemes = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let scheme = SignatureScheme::parse(name).ok_or_else(|| {
            ValidationError::field(
                "invalid_signature_schemes",
                format!("{FIELD}[{i}]"),
                format!("unknown signature scheme {name:?}; {ALLOWED}"),
            )
        })?;
        if schemes.contains(&scheme) {
            return Err(ValidationError::field(
                "invalid_signature_schemes",
                format!("{FIELD}[{i}]"),
                format!("signature scheme {name:?} is named twice; {ALLOWED}"),
            ));
        }
        schemes.push(scheme);
    }
    Ok(schemes)
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

    fn sample(now: DateTime<Utc>, keyring: &Keyring) -> Subscription {
        Subscription::create(
            "acme",
            NewSubscription {
                url: "https://example.com/hook".into(),
                description: None,
                filters: Filters::default(),
            },
            now,
            keyring,
        )
        .unwrap()
        .0
    }

    #[test]
    fn pagerduty_takes_failed_and_completed_unless_the_filters_name_states() {
        let ring = Keyring::generate();
        let mut sub = sample(Utc::now(), &ring);
        let setting = crate::format::FormatInput {
            kind: "pagerduty".into(),
            routing_key: Some("key".into()),
            ..Default::default()
        }
        .validate()
        .unwrap();
        let states = |sub: &Subscription| -> Vec<JobState> {
            JobState::ALL
                .into_iter()
                .filter(|s| sub.receives_job("j1", "forecast", *s))
                .collect()
        };
        assert_eq!(states(&sub), JobState::ALL);
        assert_eq!(sub.set_format(&setting, &ring).unwrap(), Some(true));
        assert_eq!(states(&sub), [JobState::Completed, JobState::Failed]);
        assert!(!sub.takes_event_type("job.running"));
        assert!(sub.takes_event_type("job.failed") && sub.takes_event_type("webhook.test"));
        sub.filters.states = Some(vec![JobState::Running, JobState::Failed]);
        assert_eq!(states(&sub), [JobState::Running, JobState::Failed]);
        assert!(sub.takes_event_type("job.running"));
        // The routing key is sealed, opens, and re-seals with a new key.
        let opened = sub.open_format(&ring).unwrap();
        assert!(matches!(opened, Format::Pagerduty(o) if o.routing_key == "key"));
        assert_eq!(sub.secret_key_versions().count(), 2);
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
        let ring = Keyring::generate();
        let mut s = sample(now, &ring);
        let old = s.signing_secrets(&ring, now).unwrap().remove(0);
        let new = s.rotate_secret(Duration::hours(1), now, &ring).unwrap();
        assert_ne!(new, old);
        let during = s
            .signing_secrets(&ring, now + Duration::minutes(59))
            .unwrap();
        assert_eq!(during, vec![new.clone(), old]);
        let after = s.signing_secrets(&ring, now + Duration::hours(1)).unwrap();
        assert_eq!(after, vec![new]);
    }

    #[test]
    fn secrets_are_sealed_for_their_subscription() {
        let now = Utc::now();
        let ring = Keyring::generate();
        let (mut s, secret) = Subscription::create(
            "acme",
            NewSubscription {
                url: "https://example.com/hook".into(),
                description: None,
                filters: Filters::default(),
            },
            now,
            &ring,
        )
        .unwrap();
        assert!(!s.has_plaintext_secret());
        assert_eq!(s.signing_secrets(&ring, now).unwrap(), vec![secret]);
        let mut other = sample(now, &ring);
        other.secret = s.secret.clone();
        assert!(matches!(
            other.signing_secrets(&ring, now),
            Err(OpenError::Rejected(1))
        ));
        s.secret = StoredSecret::Plaintext(WebhookSecret::generate());
        assert!(s.has_plaintext_secret());
        assert!(s.reseal_secrets(&ring).unwrap());
        assert!(!s.has_plaintext_secret());
    }

    #[test]
    fn items_round_trip_with_health_at_the_top_level() {
        use crate::domain::health::{BreakerState, LastFailure, ProbeLane};
        use serde_dynamo::aws_sdk_dynamodb_1::{from_item, to_item};
        let now = Utc::now();
        let mut s = sample(now, &Keyring::generate());
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

    /// Whether `header` carries a `v1` signature by `secret` and a `v1a`
    /// one by `key`.
    fn signed_by(
        header: &str,
        secret: &WebhookSecret,
        key: Option<PublicKey>,
        ts: i64,
    ) -> (bool, bool) {
        let hmac = crate::signing::key_bytes(secret.expose());
        let v1 = crate::signing::verify(&[&hmac], "evt_1", &ts.to_string(), header, b"{}", ts);
        let v1a = key.map(|k| {
            crate::signing::verify_v1a(&[k], "evt_1", &ts.to_string(), header, b"{}", ts).is_ok()
        });
        (v1.is_ok(), v1a.unwrap_or(false))
    }

    #[test]
    fn requested_schemes_are_v1_v1a_or_both_and_errors_name_the_allowed_sets() {
        use crate::signing::SignatureScheme::{V1, V1a};
        let names = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(check_signature_schemes(&names(&["v1"])).unwrap(), [V1]);
        assert_eq!(check_signature_schemes(&names(&["v1a"])).unwrap(), [V1a]);
        assert_eq!(
            check_signature_schemes(&names(&["v1a", "v1"])).unwrap(),
            [V1a, V1]
        );
        for (bad, field) in [
            (&[][..], "signature_schemes"),
            (&["v2"][..], "signature_schemes[0]"),
            (&["v1", "V1A"][..], "signature_schemes[1]"),
            (&["v1", "v1"][..], "signature_schemes[1]"),
        ] {
            let err = check_signature_schemes(&names(bad)).unwrap_err();
            assert_eq!(err.code, "invalid_signature_schemes");
            assert_eq!(err.field.as_deref(), Some(field), "{bad:?}");
            assert!(err.message.contains(r#"["v1", "v1a"]"#), "{}", err.message);
        }
    }

    #[test]
    fn items_without_schemes_sign_with_v1_only() {
        use serde_dynamo::aws_sdk_dynamodb_1::{from_item, to_item};
        let now = Utc::now();
        let ring = Keyring::generate();
        let s = sample(now, &ring);
        let mut item: std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue> =
            to_item(&s).unwrap();
        assert!(item.remove("signature_schemes").is_some());
        let old: Subscription = from_item(item).unwrap();
        assert_eq!(old.signature_schemes, [SignatureScheme::V1]);
        assert_eq!((old.public_key(), old.verifying_keys(now).len()), (None, 0));
        let header = old.signing_keys(&ring, now).unwrap().signature_header(
            "evt_1",
            now.timestamp(),
            b"{}",
            now,
        );
        assert!(
            header.starts_with("v1,") && !header.contains(' '),
            "{header}"
        );
    }

    #[test]
    fn choosing_v1a_makes_a_sealed_key_pair_that_signs_and_rotates_with_a_grace() {
        use crate::signing::SignatureScheme::{V1, V1a};
        let now = Utc::now();
        let ts = now.timestamp();
        let ring = Keyring::generate();
        let mut s = sample(now, &ring);
        let secret = s.signing_secrets(&ring, now).unwrap().remove(0);
        assert!(s.set_signature_schemes(&[V1a], &ring).unwrap());
        assert!(
            !s.set_signature_schemes(&[V1a], &ring).unwrap(),
            "no change"
        );
        let stored = s.signing_key.clone().unwrap();
        let public = PublicKey::from_standard_webhooks_form(s.public_key().unwrap()).unwrap();
        assert_eq!(s.verifying_keys(now), [public]);
        assert_eq!(s.secret_key_versions().count(), 2);
        let sign = |s: &Subscription, at| {
            s.signing_keys(&ring, at)
                .unwrap()
                .signature_header("evt_1", ts, b"{}", at)
        };
        assert_eq!(
            signed_by(&sign(&s, now), &secret, Some(public), ts),
            (false, true)
        );

        assert!(s.set_signature_schemes(&[V1a, V1], &ring).unwrap());
        assert_eq!(s.signature_schemes, [V1, V1a], "header order");
        assert_eq!(
            s.signing_key.as_ref(),
            Some(&stored),
            "the key pair is kept"
        );
        let both = sign(&s, now);
        assert!(both.starts_with("v1,") && both.contains(" v1a,"), "{both}");
        assert_eq!(signed_by(&both, &secret, Some(public), ts), (true, true));

        let new_secret = s.rotate_secret(Duration::hours(1), now, &ring).unwrap();
        let new_public = PublicKey::from_standard_webhooks_form(s.public_key().unwrap()).unwrap();
        assert_ne!(new_public, public);
        assert_eq!(s.verifying_keys(now), [new_public, public]);
        let during = sign(&s, now);
        assert_eq!(during.split(' ').count(), 4);
        assert_eq!(signed_by(&during, &secret, Some(public), ts), (true, true));
        assert_eq!(
            signed_by(&during, &new_secret, Some(new_public), ts),
            (true, true)
        );
        let later = now + Duration::hours(1);
        let after = sign(&s, later);
        assert_eq!(after.split(' ').count(), 2);
        assert_eq!(signed_by(&after, &secret, Some(public), ts), (false, false));
        assert_eq!(
            signed_by(&after, &new_secret, Some(new_public), ts),
            (true, true)
        );
        assert_eq!(s.verifying_keys(later), [new_public]);

        assert!(s.set_signature_schemes(&[V1], &ring).unwrap());
        assert_eq!((s.public_key(), s.verifying_keys(now).len()), (None, 0));
        assert!(!sign(&s, now).contains("v1a,"));
    }

    #[test]
    fn key_pairs_are_sealed_for_their_subscription_and_resealed_with_the_secrets() {
        let now = Utc::now();
        let old = Keyring::new([(1, [3u8; 32].as_slice())]).unwrap();
        let mut s = sample(now, &old);
        s.set_signature_schemes(&[SignatureScheme::V1a], &old)
            .unwrap();
        s.rotate_secret(Duration::hours(1), now, &old).unwrap();
        let mut other = sample(now, &old);
        other
            .set_signature_schemes(&[SignatureScheme::V1a], &old)
            .unwrap();
        other.signing_key = s.signing_key.clone();
        assert!(matches!(
            other.signing_keys(&old, now),
            Err(OpenError::Rejected(1))
        ));
        let new = Keyring::new([(1, [3u8; 32].as_slice()), (2, [4u8; 32].as_slice())]).unwrap();
        let before = s
            .signing_keys(&old, now)
            .unwrap()
            .signature_header("e", 1, b"", now);
        assert!(s.reseal_secrets(&new).unwrap());
        assert!(s.secret_key_versions().all(|v| v == 2));
        let after = s
            .signing_keys(&new, now)
            .unwrap()
            .signature_header("e", 1, b"", now);
        assert_eq!(before, after, "Ed25519 signatures are deterministic");
    }

    #[test]
    fn header_values_are_sealed_in_the_item_and_resealed_with_the_secrets() {
        use crate::domain::headers::HeadersInput;
        use serde_dynamo::aws_sdk_dynamodb_1::{from_item, to_item};
        let now = Utc::now();
        let old = Keyring::new([(1, [7u8; 32].as_slice())]).unwrap();
        let mut s = sample(now, &old);
        let values = HeadersInput([("X-Api-Key".to_owned(), "k-0123456789".to_owned())].into())
            .validate()
            .unwrap();
        s.set_headers(&values, &old).unwrap();
        let item: std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue> =
            to_item(&s).unwrap();
        assert!(!format!("{item:?}").contains("k-0123456789"));
        assert!(item["headers"].as_m().unwrap().contains_key("x-api-key"));
        let back: Subscription = from_item(item).unwrap();
        assert_eq!(back.header_values(&old).unwrap(), values);

        let new = Keyring::new([(1, [7u8; 32].as_slice()), (2, [9u8; 32].as_slice())]).unwrap();
        assert!(s.secret_key_versions().all(|v| v == 1));
        assert!(s.reseal_secrets(&new).unwrap());
        assert_eq!(s.secret_key_versions().collect::<Vec<_>>(), [2, 2]);
        assert_eq!(s.header_values(&new).unwrap(), values);
        assert!(s.patch_headers(None, &new).unwrap());
        assert!(s.headers.is_empty());
    }

    #[test]
    fn rotation_without_grace_drops_the_old_secret_at_once() {
        let now = Utc::now();
        let ring = Keyring::generate();
        let mut s = sample(now, &ring);
        s.rotate_secret(Duration::zero(), now, &ring).unwrap();
        assert_eq!(s.signing_secrets(&ring, now).unwrap().len(), 1);
        assert!(s.previous_secret.is_none());
    }
}
