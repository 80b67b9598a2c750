//! Webhook signing secrets.

use base64::Engine;
use serde::{Deserialize, Serialize};

/// A subscription's signing secret: a UUID whose UTF-8 bytes are the HMAC
/// key. Its `Debug` output is redacted so it never reaches a log line.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WebhookSecret(String);

impl WebhookSecret {
    /// A fresh random secret.
    pub fn generate() -> Self {
        Self(uuid::Uuid::new_v4().hyphenated().to_string())
    }

    /// Wraps an existing secret value.
    pub fn from_string(value: String) -> Self {
        Self(value)
    }

    /// The secret itself: only for signing and for the create/rotate
    /// responses.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The Standard Webhooks form of the same key, `whsec_<base64(secret)>`,
    /// accepted by any Standard Webhooks library.
    pub fn standard_webhooks_form(&self) -> String {
        format!(
            "whsec_{}",
            base64::engine::general_purpose::STANDARD.encode(self.0.as_bytes())
        )
    }
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secret_is_a_uuid_and_debug_is_redacted() {
        let s = WebhookSecret::generate();
        assert!(uuid::Uuid::parse_str(s.expose()).is_ok());
        let dbg = format!("{s:?}");
        assert!(!dbg.contains(s.expose()));
        assert!(dbg.contains("redacted"));
    }

    #[test]
    fn standard_webhooks_form_is_base64_of_the_utf8_secret() {
        let s = WebhookSecret::from_string("5b6c1f7e-2f1a-4c1e-9a0e-1d2c3b4a5f60".into());
        let whsec = s.standard_webhooks_form();
        let b64 = whsec.strip_prefix("whsec_").unwrap();
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        assert_eq!(raw, s.expose().as_bytes());
    }
}
