//! Standard Webhooks signatures: `v1` (symmetric, HMAC-SHA256) here, `v1a`
//! (asymmetric, Ed25519) in [`ed25519`].
//!
//! A delivery carries `webhook-id`, `webhook-timestamp` (unix seconds) and
//! `webhook-signature`: space-separated `v1,<base64(HMAC-SHA256(key,
//! "{id}.{timestamp}.{body}"))>` entries, one per valid secret. The key is
//! the UTF-8 bytes of the subscription's secret, so the same key in
//! Standard Webhooks form is `whsec_` + base64(secret), and any Standard
//! Webhooks library verifies our deliveries.

pub mod ed25519;
pub mod sealed;
pub mod secret;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use ring::hmac;
use serde::{Deserialize, Serialize};

use crate::signing::ed25519::SigningKey;
use crate::signing::secret::WebhookSecret;

pub use crate::signing::ed25519::verify_v1a;

/// A Standard Webhooks signature scheme a subscription signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum SignatureScheme {
    /// Symmetric: HMAC-SHA256 with the subscription's secret.
    #[serde(rename = "v1")]
    V1,
    /// Asymmetric: Ed25519 with the subscription's key pair.
    #[serde(rename = "v1a")]
    V1a,
}

impl SignatureScheme {
    /// Every scheme, in the order their entries appear in a header.
    pub const ALL: [Self; 2] = [Self::V1, Self::V1a];

    /// The wire name, also the signature entries' prefix.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::V1 => "v1",
            Self::V1a => "v1a",
        }
    }

    /// The scheme named `name`, if any.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// The schemes of a subscription that never chose: `v1`.
    pub fn default_set() -> Vec<Self> {
        vec![Self::V1]
    }
}

/// How far a timestamp may be from the receiver's clock, in seconds.
pub const TOLERANCE_SECONDS: i64 = 5 * 60;

/// Header names.
pub const HEADER_ID: &str = "webhook-id";
/// Header with unix seconds.
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
/// Header with the signatures.
pub const HEADER_SIGNATURE: &str = "webhook-signature";

/// An HMAC key ready to sign many messages. Uses ring's HMAC-SHA256, whose
/// assembly implementation is about twice as fast as a portable one on CPUs
/// without SHA instructions: signing is on every delivery's hot path.
#[derive(Clone)]
pub struct Signer {
    key: hmac::Key,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer([redacted])")
    }
}

impl Signer {
    /// A signer for raw key bytes.
    pub fn new(key: &[u8]) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, key),
        }
    }

    /// A signer for a subscription secret (its UTF-8 bytes are the key).
    pub fn for_secret(secret: &WebhookSecret) -> Self {
        Self::new(secret.expose().as_bytes())
    }

    fn tag(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> hmac::Tag {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(msg_id.as_bytes());
        ctx.update(b".");
        ctx.update(itoa::Buffer::new().format(timestamp).as_bytes());
        ctx.update(b".");
        ctx.update(body);
        ctx.sign()
    }

    /// Appends `v1,<base64 signature>` to `out`.
    pub fn sign_into(&self, msg_id: &str, timestamp: i64, body: &[u8], out: &mut String) {
        out.push_str("v1,");
        STANDARD.encode_string(self.tag(msg_id, timestamp, body), out);
    }
}

/// One key of [`SigningKeys`]: a `v1` secret or a `v1a` key pair.
#[derive(Debug, Clone)]
enum AnySigner {
    V1(Signer),
    V1a(SigningKey),
}

/// A subscription's keys ready to sign: for each scheme it signs with, the
/// current key, and the previous one until its rotation grace period ends.
/// Built once per subscription read, so the hot path never decrypts.
#[derive(Debug, Clone)]
pub struct SigningKeys {
    /// In header order; each with the end of its grace period, if any.
    keys: Vec<(AnySigner, Option<DateTime<Utc>>)>,
}

impl SigningKeys {
    /// `v1` keys for `current`, and for `previous` until its grace period
    /// ends.
    pub fn new(current: &WebhookSecret, previous: Option<(&WebhookSecret, DateTime<Utc>)>) -> Self {
        let mut keys = vec![(AnySigner::V1(Signer::for_secret(current)), None)];
        keys.extend(previous.map(|(s, until)| (AnySigner::V1(Signer::for_secret(s)), Some(until))));
        Self { keys }
    }

    /// No keys yet: add them with [`Self::with_v1`] and [`Self::with_v1a`].
    pub fn empty() -> Self {
        Self { keys: Vec::new() }
    }

    /// These keys and `v1` ones for `current`, and `previous` until its
    /// grace period ends.
    pub fn with_v1(
        mut self,
        current: &WebhookSecret,
        previous: Option<(&WebhookSecret, DateTime<Utc>)>,
    ) -> Self {
        self.keys.extend(Self::new(current, previous).keys);
        self
    }

    /// These keys and `v1a` ones: `current`, and `previous` until its grace
    /// period ends.
    pub fn with_v1a(
        mut self,
        current: &SigningKey,
        previous: Option<(&SigningKey, DateTime<Utc>)>,
    ) -> Self {
        self.keys.push((AnySigner::V1a(current.clone()), None));
        self.keys
            .extend(previous.map(|(k, until)| (AnySigner::V1a(k.clone()), Some(until))));
        self
    }

    /// The `webhook-signature` value for a delivery at `now`: one entry per
    /// key whose grace period has not ended, `v1` ones first.
    pub fn signature_header(
        &self,
        msg_id: &str,
        timestamp: i64,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> String {
        let mut out = String::with_capacity(96 * self.keys.len());
        let valid = self
            .keys
            .iter()
            .filter(|(_, until)| until.is_none_or(|until| now < until));
        for (i, (signer, _)) in valid.enumerate() {
            if i > 0 {
                out.push(' ');
            }
            match signer {
                AnySigner::V1(s) => s.sign_into(msg_id, timestamp, body, &mut out),
                AnySigner::V1a(k) => k.sign_into(msg_id, timestamp, body, &mut out),
            }
        }
        out
    }
}

/// The `webhook-signature` value for `body`: one `v1,` entry per signer.
pub fn signature_header(signers: &[Signer], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut out = String::with_capacity(96);
    for (i, signer) in signers.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        signer.sign_into(msg_id, timestamp, body, &mut out);
    }
    out
}

/// Why a delivery did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// `webhook-timestamp` is not an integer.
    #[error("webhook-timestamp is not a unix timestamp")]
    InvalidTimestamp,
    /// The timestamp is more than five minutes from now.
    #[error("webhook-timestamp is outside the tolerance")]
    OutsideTolerance,
    /// No signature of the scheme verified with any key.
    #[error("no signature matches")]
    NoMatch,
}

/// The key bytes of a secret given either as `whsec_<base64>` or as the
/// subscription's secret itself.
pub fn key_bytes(secret: &str) -> Vec<u8> {
    secret
        .strip_prefix("whsec_")
        .and_then(|b64| STANDARD.decode(b64).ok())
        .unwrap_or_else(|| secret.as_bytes().to_vec())
}

/// Verifies a received delivery: the timestamp is within the tolerance of
/// `now`, and `verifies` accepts the signed content with the decoded
/// signatures of the header's entries that start with `prefix`.
fn verify_entries(
    prefix: &str,
    received: Received<'_>,
    now: i64,
    verifies: impl FnOnce(&[u8], &[Vec<u8>]) -> bool,
) -> Result<(), VerifyError> {
    let ts: i64 = received
        .timestamp
        .trim()
        .parse()
        .map_err(|_| VerifyError::InvalidTimestamp)?;
    if (now - ts).abs() > TOLERANCE_SECONDS {
        return Err(VerifyError::OutsideTolerance);
    }
    let candidates: Vec<Vec<u8>> = received
        .signature
        .split_whitespace()
        .filter_map(|entry| entry.strip_prefix(prefix))
        .filter_map(|b64| STANDARD.decode(b64).ok())
        .collect();
    let signed = signed_content(received.msg_id, ts, received.body);
    if verifies(&signed, &candidates) {
        Ok(())
    } else {
        Err(VerifyError::NoMatch)
    }
}

/// A delivery as a receiver got it.
#[derive(Clone, Copy)]
struct Received<'a> {
    msg_id: &'a str,
    timestamp: &'a str,
    signature: &'a str,
    body: &'a [u8],
}

/// `"{id}.{timestamp}.{body}"`, the signed content of both schemes.
fn signed_content(msg_id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
    let mut signed = Vec::with_capacity(msg_id.len() + body.len() + 24);
    signed.extend_from_slice(msg_id.as_bytes());
    signed.push(b'.');
    signed.extend_from_slice(itoa::Buffer::new().format(timestamp).as_bytes());
    signed.push(b'.');
    signed.extend_from_slice(body);
    signed
}

/// Verifies a delivery as a receiver: the timestamp is within five minutes
/// of `now` (unix seconds) and at least one `v1` signature of the header
/// matches one of `keys`. Signatures are compared in constant time.
pub fn verify(
    keys: &[&[u8]],
    msg_id: &str,
    timestamp: &str,
    signature: &str,
    body: &[u8],
    now: i64,
) -> Result<(), VerifyError> {
    let received = Received {
        msg_id,
        timestamp,
        signature,
        body,
    };
    verify_entries("v1,", received, now, |signed, candidates| {
        keys.iter().any(|key| {
            let key = hmac::Key::new(hmac::HMAC_SHA256, key);
            // Constant-time comparison inside ring.
            candidates
                .iter()
                .any(|candidate| hmac::verify(&key, signed, candidate).is_ok())
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Test vector of the Standard Webhooks specification.
    const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SPEC_TS: i64 = 1614265330;
    const SPEC_BODY: &str = r#"{"test": 2432232314}"#;
    const SPEC_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn matches_the_specification_test_vector() {
        let signer = Signer::new(&key_bytes(SPEC_SECRET));
        let header = signature_header(&[signer], SPEC_ID, SPEC_TS, SPEC_BODY.as_bytes());
        assert_eq!(header, SPEC_SIGNATURE);
    }

    #[test]
    fn verifies_with_any_matching_key_and_signature() {
        let old = WebhookSecret::generate();
        let new = WebhookSecret::generate();
        let signers = [Signer::for_secret(&new), Signer::for_secret(&old)];
        let header = signature_header(&signers, "evt_1", 1000, b"{}");
        assert_eq!(header.split(' ').count(), 2);
        let whsec_old = old.standard_webhooks_form();
        for key in [key_bytes(new.expose()), key_bytes(&whsec_old)] {
            assert_eq!(
                verify(&[&key], "evt_1", "1000", &header, b"{}", 1100),
                Ok(())
            );
        }
        let other = key_bytes(WebhookSecret::generate().expose());
        assert_eq!(
            verify(&[&other], "evt_1", "1000", &header, b"{}", 1000),
            Err(VerifyError::NoMatch)
        );
        let key = key_bytes(new.expose());
        assert_eq!(
            verify(&[&key], "evt_1", "1000", &header, b"{ }", 1000),
            Err(VerifyError::NoMatch),
            "body tampering"
        );
        assert_eq!(
            verify(&[&key], "evt_2", "1000", &header, b"{}", 1000),
            Err(VerifyError::NoMatch),
            "id tampering"
        );
    }

    #[test]
    fn keys_of_both_schemes_sign_and_previous_ones_stop_after_their_grace() {
        use chrono::TimeZone;
        let now = Utc.timestamp_opt(1_000, 0).unwrap();
        let until = now + chrono::Duration::minutes(10);
        let (old_secret, new_secret) = (WebhookSecret::generate(), WebhookSecret::generate());
        let (old_key, new_key) = (SigningKey::generate(), SigningKey::generate());
        let keys = SigningKeys::empty()
            .with_v1(&new_secret, Some((&old_secret, until)))
            .with_v1a(&new_key, Some((&old_key, until)));
        let verify_both = |header: &str, secret: &WebhookSecret, key: &SigningKey| {
            let hmac = key_bytes(secret.expose());
            (
                verify(&[&hmac], "evt_1", "1000", header, b"{}", 1000).is_ok(),
                verify_v1a(&[key.public_key()], "evt_1", "1000", header, b"{}", 1000).is_ok(),
            )
        };

        let during = keys.signature_header("evt_1", 1000, b"{}", now);
        let prefixes: Vec<&str> = during
            .split(' ')
            .map(|e| e.split(',').next().unwrap())
            .collect();
        assert_eq!(prefixes, ["v1", "v1", "v1a", "v1a"]);
        assert_eq!(verify_both(&during, &new_secret, &new_key), (true, true));
        assert_eq!(verify_both(&during, &old_secret, &old_key), (true, true));

        let after = keys.signature_header("evt_1", 1000, b"{}", until);
        assert_eq!(after.split(' ').count(), 2);
        assert_eq!(verify_both(&after, &new_secret, &new_key), (true, true));
        assert_eq!(verify_both(&after, &old_secret, &old_key), (false, false));

        let v1a_only = SigningKeys::empty().with_v1a(&new_key, None);
        let header = v1a_only.signature_header("evt_1", 1000, b"{}", now);
        assert!(
            header.starts_with("v1a,") && !header.contains(' '),
            "{header}"
        );
        assert_eq!(verify_both(&header, &new_secret, &new_key), (false, true));
    }

    #[test]
    fn schemes_have_their_wire_names() {
        for scheme in SignatureScheme::ALL {
            assert_eq!(SignatureScheme::parse(scheme.as_str()), Some(scheme));
            assert_eq!(
                serde_json::to_value(scheme).unwrap(),
                serde_json::json!(scheme.as_str())
            );
        }
        assert_eq!(SignatureScheme::parse("v2"), None);
        assert_eq!(SignatureScheme::default_set(), [SignatureScheme::V1]);
    }

    #[test]
    fn timestamps_outside_five_minutes_are_refused() {
        let key = key_bytes("k");
        let header = signature_header(&[Signer::new(&key)], "e", 1000, b"x");
        assert_eq!(verify(&[&key], "e", "1000", &header, b"x", 1300), Ok(()));
        assert_eq!(
            verify(&[&key], "e", "1000", &header, b"x", 1301),
            Err(VerifyError::OutsideTolerance)
        );
        assert_eq!(
            verify(&[&key], "e", "1000", &header, b"x", 699),
            Err(VerifyError::OutsideTolerance)
        );
        assert_eq!(
            verify(&[&key], "e", "soon", &header, b"x", 1000),
            Err(VerifyError::InvalidTimestamp)
        );
    }
}
