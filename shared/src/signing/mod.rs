//! Standard Webhooks (v1, symmetric) signatures.
//!
//! A delivery carries `webhook-id`, `webhook-timestamp` (unix seconds) and
//! `webhook-signature`: space-separated `v1,<base64(HMAC-SHA256(key,
//! "{id}.{timestamp}.{body}"))>` entries, one per valid secret. The key is
//! the UTF-8 bytes of the subscription's secret, so the same key in
//! Standard Webhooks form is `whsec_` + base64(secret), and any Standard
//! Webhooks library verifies our deliveries.

pub mod sealed;
pub mod secret;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use ring::hmac;

use crate::signing::secret::WebhookSecret;

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

/// A subscription's secrets ready to sign: the current one, and the
/// previous one until its rotation grace period ends. Built once per
/// subscription read, so the hot path never decrypts.
#[derive(Debug, Clone)]
pub struct SigningKeys {
    current: Signer,
    previous: Option<(Signer, DateTime<Utc>)>,
}

impl SigningKeys {
    /// Keys for `current`, and for `previous` until its grace period ends.
    pub fn new(current: &WebhookSecret, previous: Option<(&WebhookSecret, DateTime<Utc>)>) -> Self {
        Self {
            current: Signer::for_secret(current),
            previous: previous.map(|(secret, until)| (Signer::for_secret(secret), until)),
        }
    }

    /// The `webhook-signature` value for a delivery at `now`.
    pub fn signature_header(
        &self,
        msg_id: &str,
        timestamp: i64,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> String {
        let previous = self
            .previous
            .as_ref()
            .filter(|(_, until)| now < *until)
            .map(|(signer, _)| signer);
        signatures(
            std::iter::once(&self.current).chain(previous),
            msg_id,
            timestamp,
            body,
        )
    }
}

/// The `webhook-signature` value for `body`: one `v1,` entry per signer.
pub fn signature_header(signers: &[Signer], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    signatures(signers, msg_id, timestamp, body)
}

fn signatures<'a>(
    signers: impl IntoIterator<Item = &'a Signer>,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    let mut out = String::with_capacity(96);
    for (i, signer) in signers.into_iter().enumerate() {
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
    /// No `v1` signature matched any key.
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
    let ts: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| VerifyError::InvalidTimestamp)?;
    if (now - ts).abs() > TOLERANCE_SECONDS {
        return Err(VerifyError::OutsideTolerance);
    }
    let candidates: Vec<Vec<u8>> = signature
        .split_whitespace()
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .filter_map(|b64| STANDARD.decode(b64).ok())
        .collect();
    let mut signed = Vec::with_capacity(msg_id.len() + body.len() + 24);
    signed.extend_from_slice(msg_id.as_bytes());
    signed.push(b'.');
    signed.extend_from_slice(itoa::Buffer::new().format(ts).as_bytes());
    signed.push(b'.');
    signed.extend_from_slice(body);
    for key in keys {
        let key = hmac::Key::new(hmac::HMAC_SHA256, key);
        for candidate in &candidates {
            // Constant-time comparison inside ring.
            if hmac::verify(&key, &signed, candidate).is_ok() {
                return Ok(());
            }
        }
    }
    Err(VerifyError::NoMatch)
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
