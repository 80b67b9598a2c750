//! Scripted replies: what the receiver answers, and failure injection
//! (errors, delays, dropped connections, requests never answered).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Response;
use http_body_util::Full;

use super::record::Received;

/// How the receiver answers one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Answer with this status, headers and body, `delay` after the request
    /// body was read.
    Respond {
        /// HTTP status code.
        status: u16,
        /// Response headers, in order.
        headers: Vec<(String, String)>,
        /// Response body.
        body: String,
        /// Wait this long before answering.
        delay: Duration,
    },
    /// Read the request, then close the connection without any response.
    Drop,
    /// Never answer: keep the connection open until the client gives up or
    /// the receiver is dropped.
    Hang,
}

impl Reply {
    /// Answer with `status`, no headers, an empty body and no delay.
    ///
    /// # Panics
    /// If `status` is not a valid HTTP status code (100..=999).
    pub fn status(status: u16) -> Self {
        http::StatusCode::from_u16(status).expect("valid HTTP status code");
        Self::Respond {
            status,
            headers: Vec::new(),
            body: String::new(),
            delay: Duration::ZERO,
        }
    }

    /// Adds a response header.
    ///
    /// # Panics
    /// On [`Reply::Drop`] or [`Reply::Hang`], or an invalid header name or
    /// value.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let (name, value) = (name.into(), value.into());
        http::HeaderName::from_bytes(name.as_bytes()).expect("valid header name");
        http::HeaderValue::from_str(&value).expect("valid header value");
        match &mut self {
            Self::Respond { headers, .. } => headers.push((name, value)),
            other => not_respond("header", other),
        }
        self
    }

    /// Sets the response body.
    ///
    /// # Panics
    /// On [`Reply::Drop`] or [`Reply::Hang`].
    pub fn body(mut self, body: impl Into<String>) -> Self {
        match &mut self {
            Self::Respond { body: b, .. } => *b = body.into(),
            other => not_respond("body", other),
        }
        self
    }

    /// Answers only after `delay`.
    ///
    /// # Panics
    /// On [`Reply::Drop`] or [`Reply::Hang`].
    pub fn after(mut self, delay: Duration) -> Self {
        match &mut self {
            Self::Respond { delay: d, .. } => *d = delay,
            other => not_respond("after", other),
        }
        self
    }
}

fn not_respond(builder: &str, reply: &Reply) -> ! {
    panic!("Reply::{builder} applies to Reply::status(..), not to Reply::{reply:?}")
}

/// How requests are answered once the script is empty: the request's
/// 0-based index among all requests, and the request.
pub(super) type Policy = Arc<dyn Fn(usize, &Received) -> Reply + Send + Sync>;

pub(super) type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl Reply {
    /// The response, after the reply's delay; an error for [`Reply::Drop`]
    /// (hyper then closes the connection); never for [`Reply::Hang`].
    pub(super) async fn respond(self) -> Result<Response<Full<Bytes>>, BoxError> {
        match self {
            Self::Respond {
                status,
                headers,
                body,
                delay,
            } => {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                let mut response = Response::builder().status(status);
                for (name, value) in headers {
                    response = response.header(name, value);
                }
                Ok(response.body(Full::new(Bytes::from(body)))?)
            }
            Self::Drop => Err("Reply::Drop: closing the connection without a response".into()),
            Self::Hang => std::future::pending().await,
        }
    }
}
