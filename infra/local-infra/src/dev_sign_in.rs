//! One-time sign-in links for the local console.
//!
//! `local-stack up` prints a console link that carries a one-time code in
//! its fragment (`/console#dev-code=...`), never a token. The console
//! exchanges the code for a development token with a POST to [`PATH`],
//! which only the local gateway serves: the deployed API has no such route
//! and the console it serves takes nothing from the address. A code is 256
//! random bits, works once, and only within [`CODE_TTL`] of being issued,
//! so a link that leaks (shell history, a chat, a screenshot) is worth
//! nothing later, and a link made by someone else's stack is worth nothing
//! here.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use ring::rand::{SecureRandom, SystemRandom};
use serde::Deserialize;

use crate::jwt;

/// The exchange route, served by the local gateway only.
pub const PATH: &str = "/console/dev-sign-in";
/// How long a code works after it was issued (printed).
pub const CODE_TTL: Duration = Duration::from_secs(300);
/// The fragment parameter of the link that carries the code.
pub const FRAGMENT_PARAM: &str = "dev-code";

/// Why a code was not exchanged. Unknown, used and expired codes are one
/// answer, so the exchange tells a guesser nothing.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ExchangeError {
    /// No live code matches.
    #[error(
        "this sign-in link is not valid: a link works once, within {} minutes of being printed; press Enter where local-stack runs for a new one",
        CODE_TTL.as_secs() / 60
    )]
    InvalidCode,
    /// The request is not a same-origin JSON POST of `{"code": ...}`.
    #[error("{0}")]
    BadRequest(&'static str),
}

/// A code waiting to be exchanged.
#[derive(Debug)]
struct Pending {
    company: String,
    expires: Instant,
}

/// The one-time codes of one local stack, in memory.
#[derive(Debug)]
pub struct DevSignIn {
    claim: String,
    rng: SystemRandom,
    codes: Mutex<HashMap<String, Pending>>,
}

#[derive(Deserialize)]
struct ExchangeRequest {
    code: String,
}

impl DevSignIn {
    /// Codes whose tokens carry the company in claim `claim`.
    pub fn new(claim: impl Into<String>) -> Self {
        Self {
            claim: claim.into(),
            rng: SystemRandom::new(),
            codes: Mutex::new(HashMap::new()),
        }
    }

    /// A new code that signs in as `company`, valid for [`CODE_TTL`].
    pub fn issue(&self, company: &str) -> String {
        self.issue_at(company, Instant::now())
    }

    fn issue_at(&self, company: &str, now: Instant) -> String {
        let mut bytes = [0u8; 32];
        self.rng
            .fill(&mut bytes)
            .expect("the system's random source works");
        let code = URL_SAFE_NO_PAD.encode(bytes);
        let mut codes = self.codes.lock().expect("the code table is not poisoned");
        codes.retain(|_, p| p.expires > now);
        codes.insert(
            code.clone(),
            Pending {
                company: company.to_owned(),
                expires: now + CODE_TTL,
            },
        );
        code
    }

    /// A console link on the API at `base` that signs in as `company`.
    pub fn link(&self, base: &str, company: &str) -> String {
        format!("{base}/console#{FRAGMENT_PARAM}={}", self.issue(company))
    }

    /// A development token for the company of `code`; the code is used up.
    pub fn exchange(&self, code: &str) -> Result<String, ExchangeError> {
        self.exchange_at(code, Instant::now())
    }

    fn exchange_at(&self, code: &str, now: Instant) -> Result<String, ExchangeError> {
        let pending = self
            .codes
            .lock()
            .expect("the code table is not poisoned")
            .remove(code)
            .filter(|p| p.expires > now)
            .ok_or(ExchangeError::InvalidCode)?;
        Ok(jwt::dev_token(&pending.company, &self.claim))
    }

    /// Answers `POST` [`PATH`]: `{"code": ...}` as JSON from the console's
    /// own origin gets `{"token": ...}`.
    pub fn serve(&self, method: &http::Method, headers: &HeaderMap, body: &[u8]) -> Response {
        let result = check_request(method, headers)
            .and_then(|()| {
                serde_json::from_slice::<ExchangeRequest>(body)
                    .map_err(|_| ExchangeError::BadRequest("the body must be {\"code\": \"...\"}"))
            })
            .and_then(|req| self.exchange(&req.code));
        match result {
            Ok(token) => {
                tracing::info!("a console sign-in link was exchanged");
                Response::json(StatusCode::OK, &serde_json::json!({ "token": token }))
            }
            Err(e) => {
                tracing::warn!(error = %e, "a console sign-in link was refused");
                let (status, code) = match e {
                    ExchangeError::InvalidCode => (StatusCode::BAD_REQUEST, "invalid_code"),
                    ExchangeError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
                };
                Response::json(
                    status,
                    &serde_json::json!({ "error": { "code": code, "message": e.to_string() } }),
                )
            }
        }
    }
}

/// Only a JSON POST, and only from the page's own origin: a JSON body
/// makes any other origin's browser ask first (CORS preflight), which the
/// gateway never grants.
fn check_request(method: &http::Method, headers: &HeaderMap) -> Result<(), ExchangeError> {
    if method != http::Method::POST {
        return Err(ExchangeError::BadRequest("only POST exchanges a code"));
    }
    let json = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(ExchangeError::BadRequest(
            "the body must be JSON (content-type: application/json)",
        ));
    }
    if let Some(origin) = headers.get(http::header::ORIGIN) {
        let host = headers
            .get(http::header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if origin.to_str().ok() != Some(&format!("http://{host}")) {
            return Err(ExchangeError::BadRequest(
                "codes are exchanged from the console's own origin only",
            ));
        }
    }
    Ok(())
}

/// The exchange's answer.
#[derive(Debug)]
pub struct Response {
    /// Status code.
    pub status: StatusCode,
    /// JSON body.
    pub body: Bytes,
}

impl Response {
    fn json(status: StatusCode, body: &serde_json::Value) -> Self {
        Self {
            status,
            body: Bytes::from(body.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        h.insert(
            http::header::HOST,
            http::HeaderValue::from_static("127.0.0.1:3000"),
        );
        h
    }

    #[test]
    fn a_code_signs_in_as_its_company_once() {
        let dev = DevSignIn::new("company_id");
        let code = dev.issue("acme");
        let token = dev.exchange(&code).unwrap();
        assert_eq!(
            jwt::claims_unverified(&token).unwrap()["company_id"],
            "acme"
        );
        assert_eq!(dev.exchange(&code), Err(ExchangeError::InvalidCode));
    }

    #[test]
    fn a_code_expires_five_minutes_after_it_was_issued() {
        let dev = DevSignIn::new("company_id");
        let issued = Instant::now();
        let late = dev.issue_at("acme", issued);
        assert_eq!(
            dev.exchange_at(&late, issued + CODE_TTL),
            Err(ExchangeError::InvalidCode)
        );
        let in_time = dev.issue_at("acme", issued);
        assert!(
            dev.exchange_at(&in_time, issued + CODE_TTL - Duration::from_secs(1))
                .is_ok()
        );
    }

    #[test]
    fn codes_are_256_random_bits_and_unknown_ones_are_refused() {
        let dev = DevSignIn::new("company_id");
        let (a, b) = (dev.issue("acme"), dev.issue("acme"));
        assert_ne!(a, b);
        assert_eq!(URL_SAFE_NO_PAD.decode(&a).unwrap().len(), 32);
        assert_eq!(dev.exchange("guess"), Err(ExchangeError::InvalidCode));
        assert_eq!(dev.exchange(""), Err(ExchangeError::InvalidCode));
    }

    #[test]
    fn only_a_same_origin_json_post_is_exchanged() {
        let dev = DevSignIn::new("company_id");
        let body = |code: &str| serde_json::json!({ "code": code }).to_string();
        let code = dev.issue("acme");

        let mut form = json_headers();
        form.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain"),
        );
        let r = dev.serve(&http::Method::POST, &form, body(&code).as_bytes());
        assert_eq!(r.status, StatusCode::BAD_REQUEST);

        let mut foreign = json_headers();
        foreign.insert(
            http::header::ORIGIN,
            http::HeaderValue::from_static("https://evil.example"),
        );
        let r = dev.serve(&http::Method::POST, &foreign, body(&code).as_bytes());
        assert_eq!(r.status, StatusCode::BAD_REQUEST);

        let r = dev.serve(&http::Method::GET, &json_headers(), body(&code).as_bytes());
        assert_eq!(r.status, StatusCode::BAD_REQUEST);

        // None of those used the code up.
        let mut same = json_headers();
        same.insert(
            http::header::ORIGIN,
            http::HeaderValue::from_static("http://127.0.0.1:3000"),
        );
        let r = dev.serve(&http::Method::POST, &same, body(&code).as_bytes());
        assert_eq!(r.status, StatusCode::OK);
        let answer: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert!(answer["token"].as_str().unwrap().contains('.'));
    }
}
