//! Opaque, tamper-evident pagination cursors.
//!
//! A cursor names the last item of a page. It is bound to the company and the
//! list filter it was issued for by an HMAC tag, so a client can neither forge
//! one nor replay another company's. Queries are keyed by the caller's company
//! anyway; the tag makes a tampered cursor a clean 400 instead of an odd page.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

const TAG_LEN: usize = 16;
/// Shortest accepted signing key, in bytes.
pub const MIN_KEY_LEN: usize = 32;

/// Where the next page starts and which filter it continues.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CursorPosition {
    /// Sort key of the last item already returned.
    #[serde(rename = "a")]
    pub after: String,
    /// The list filter the cursor was issued for.
    #[serde(rename = "f", default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
}

/// Why a cursor was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CursorError {
    /// Not produced by this service, altered, or issued to someone else.
    #[error("the cursor is not valid")]
    Invalid,
    /// Valid, but issued for another list filter.
    #[error("the cursor was issued for a different filter")]
    FilterMismatch,
}

/// Encodes and checks cursors with a server-side key.
#[derive(Clone)]
pub struct CursorCodec {
    key: Vec<u8>,
}

impl std::fmt::Debug for CursorCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CursorCodec([redacted])")
    }
}

impl CursorCodec {
    /// A codec with `key`; `None` if it is shorter than [`MIN_KEY_LEN`].
    pub fn new(key: &[u8]) -> Option<Self> {
        (key.len() >= MIN_KEY_LEN).then(|| Self { key: key.to_vec() })
    }

    fn mac(&self, scope: &str, payload: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(scope.as_bytes());
        mac.update(&[0]);
        mac.update(payload);
        mac
    }

    /// The opaque cursor for `position`, valid only for `scope` (the company).
    pub fn encode(&self, scope: &str, position: &CursorPosition) -> String {
        let payload = serde_json::to_vec(position).expect("cursor position serialises");
        let tag = self.mac(scope, &payload).finalize().into_bytes();
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&payload),
            URL_SAFE_NO_PAD.encode(&tag[..TAG_LEN])
        )
    }

    /// The position in `cursor` if it was issued for `scope` and `filter`.
    pub fn decode(
        &self,
        scope: &str,
        cursor: &str,
        filter: Option<&str>,
    ) -> Result<CursorPosition, CursorError> {
        let (payload, tag) = cursor.split_once('.').ok_or(CursorError::Invalid)?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| CursorError::Invalid)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| CursorError::Invalid)?;
        if tag.len() != TAG_LEN {
            return Err(CursorError::Invalid);
        }
        self.mac(scope, &payload)
            .verify_truncated_left(&tag)
            .map_err(|_| CursorError::Invalid)?;
        let position: CursorPosition =
            serde_json::from_slice(&payload).map_err(|_| CursorError::Invalid)?;
        if position.filter.as_deref() != filter {
            return Err(CursorError::FilterMismatch);
        }
        Ok(position)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codec() -> CursorCodec {
        CursorCodec::new(&[7u8; 32]).unwrap()
    }

    fn pos() -> CursorPosition {
        CursorPosition {
            after: "sub_0192".into(),
            filter: Some("active".into()),
        }
    }

    #[test]
    fn round_trips_for_the_same_scope_and_filter() {
        let c = codec().encode("acme", &pos());
        assert_eq!(codec().decode("acme", &c, Some("active")), Ok(pos()));
    }

    #[test]
    fn another_scope_or_filter_is_refused() {
        let c = codec().encode("acme", &pos());
        assert_eq!(
            codec().decode("globex", &c, Some("active")),
            Err(CursorError::Invalid)
        );
        assert_eq!(
            codec().decode("acme", &c, None),
            Err(CursorError::FilterMismatch)
        );
    }

    #[test]
    fn tampering_is_detected() {
        let c = codec().encode("acme", &pos());
        let (payload, tag) = c.split_once('.').unwrap();
        let forged_payload = URL_SAFE_NO_PAD.encode(br#"{"a":"sub_9999","f":"active"}"#);
        for bad in [
            format!("{forged_payload}.{tag}"),
            format!("{payload}.{}", URL_SAFE_NO_PAD.encode([0u8; TAG_LEN])),
            format!("{payload}{tag}"),
            "not-a-cursor".to_owned(),
            String::new(),
        ] {
            assert_eq!(
                codec().decode("acme", &bad, Some("active")),
                Err(CursorError::Invalid),
                "{bad}"
            );
        }
    }

    #[test]
    fn short_keys_are_refused() {
        assert!(CursorCodec::new(&[1u8; 31]).is_none());
    }
}
