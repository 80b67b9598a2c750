//! Bearer tokens for local development.
//!
//! In AWS, API Gateway's JWT authorizer verifies the token's signature,
//! issuer, audience and expiry, then hands the claims to the function. The
//! local gateway only decodes the claims: it does NOT verify signatures, so
//! any well-formed token is accepted locally.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The token is not a decodable JWT.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not a JWT: {0}")]
pub struct JwtError(&'static str);

/// The claims of `token`, decoded WITHOUT verifying its signature, with
/// values turned into strings the way API Gateway's JWT authorizer passes
/// them to the function.
pub fn claims_unverified(token: &str) -> Result<HashMap<String, String>, JwtError> {
    let mut parts = token.split('.');
    let (Some(_header), Some(payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError("expected three dot-separated parts"));
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| JwtError("payload is not base64url"))?;
    let claims: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&bytes).map_err(|_| JwtError("payload is not a JSON object"))?;
    Ok(claims
        .into_iter()
        .map(|(k, v)| {
            let text = match v {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            (k, text)
        })
        .collect())
}

/// Key of the development tokens. Not a secret: local mode verifies nothing.
const DEV_KEY: &[u8] = b"local-development-only-not-verified";

/// Issuer (`iss`) of the development tokens; the local stack deploys the
/// template with it as `JwtIssuer`.
pub const ISSUER: &str = "https://auth.local.invalid/";
/// Audience (`aud`) of the development tokens (`JwtAudience` locally).
pub const AUDIENCE: &str = "job-webhooks-local";

/// A development token for `company` in claim `claim`, valid for a day.
pub fn dev_token(company: &str, claim: &str) -> String {
    let now = chrono::Utc::now().timestamp();
    let header = serde_json::json!({"alg": "HS256", "typ": "JWT"});
    let payload = serde_json::json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": format!("dev-user@{company}"),
        "iat": now,
        "exp": now + 86_400,
        claim: company,
    });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(payload.to_string())
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(DEV_KEY).expect("HMAC takes any key length");
    mac.update(signing_input.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signing_input}.{signature}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_tokens_carry_the_company_claim() {
        let token = dev_token("acme", "company_id");
        let claims = claims_unverified(&token).unwrap();
        assert_eq!(claims["company_id"], "acme");
        assert!(claims["exp"].parse::<i64>().is_ok());
    }

    #[test]
    fn malformed_tokens_are_refused() {
        for bad in ["", "a.b", "a.b.c.d", "a.!!!.c", "a.bm90LWpzb24.c"] {
            assert!(claims_unverified(bad).is_err(), "{bad}");
        }
    }
}
