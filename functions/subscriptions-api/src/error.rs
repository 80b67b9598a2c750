//! API errors and their JSON form `{"error": {"code", "message", "field"}}`.

use std::borrow::Cow;

use http::StatusCode;
use lambda_http::{Body, Response};
use shared::domain::headers::{ApplyError, HeadersError};
use shared::signing::sealed::{EmptyKeyring, OpenError, ResealError};
use shared::storage::StoreError;
use shared::storage::keyring::KeyringError;
use shared::validation::ValidationError;

/// An error response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// Human-readable message.
    pub message: String,
    /// Offending field or parameter, if any.
    pub field: Option<Cow<'static, str>>,
}

impl ApiError {
    /// An error without a field.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }

    /// The same error with another status.
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// The same error naming `field`.
    pub fn with_field(mut self, field: impl Into<Cow<'static, str>>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// 400 with `code`.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 404 for a subscription that does not exist for the caller, whether it
    /// is missing or belongs to another company.
    pub fn subscription_not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such webhook subscription",
        )
    }

    /// 409 for a write to an archived subscription.
    pub fn archived() -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "subscription_archived",
            "the webhook subscription is archived and can't be modified",
        )
    }

    /// 409 for a test event to an archived subscription.
    pub fn archived_receives_nothing() -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "subscription_archived",
            "the webhook subscription is archived and receives no events",
        )
    }

    /// The JSON response.
    pub fn into_response(self) -> Response<Body> {
        #[derive(serde::Serialize)]
        struct Detail<'a> {
            code: &'a str,
            message: &'a str,
            field: Option<&'a str>,
        }
        #[derive(serde::Serialize)]
        struct Envelope<'a> {
            error: Detail<'a>,
        }
        let body = Envelope {
            error: Detail {
                code: self.code,
                message: &self.message,
                field: self.field.as_deref(),
            },
        };
        crate::views::json_response(self.status, &body)
    }
}

/// Validation codes of requests the document's schema admits but that
/// are refused on what they mean: `422`. A template is checked by
/// compiling and rendering it, which no schema can express.
const UNPROCESSABLE_CODES: [&str; 2] = ["template_invalid", "template_fails"];

impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> Self {
        Self {
            status: if UNPROCESSABLE_CODES.contains(&e.code) {
                StatusCode::UNPROCESSABLE_ENTITY
            } else {
                StatusCode::BAD_REQUEST
            },
            code: e.code,
            message: e.message,
            field: e.field,
        }
    }
}

impl From<HeadersError> for ApiError {
    fn from(e: HeadersError) -> Self {
        match e {
            HeadersError::Invalid(e) => e.into(),
            HeadersError::Unprocessable(e) => Self {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                ..e.into()
            },
        }
    }
}

impl From<ApplyError> for ApiError {
    fn from(e: ApplyError) -> Self {
        match e {
            ApplyError::Headers(e) => e.into(),
            ApplyError::Seal(e) => e.into(),
        }
    }
}

impl From<KeyringError> for ApiError {
    fn from(e: KeyringError) -> Self {
        tracing::error!(error = %e, "signing-secret keyring unavailable");
        Self::unavailable()
    }
}

impl From<ResealError> for ApiError {
    fn from(e: ResealError) -> Self {
        Self::unreadable_secret(&e)
    }
}

impl From<OpenError> for ApiError {
    fn from(e: OpenError) -> Self {
        Self::unreadable_secret(&e)
    }
}

impl From<EmptyKeyring> for ApiError {
    fn from(e: EmptyKeyring) -> Self {
        Self::unreadable_secret(&e)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        Self::store(e, "subscription store")
    }
}

impl ApiError {
    /// The response to a failure of `store` (named in the log): `409` for
    /// a lost concurrent write, `503` when DynamoDB is unreachable, `500`
    /// for an unreadable item. Server errors are logged here.
    pub fn store(e: StoreError, store: &'static str) -> Self {
        match e {
            StoreError::VersionConflict(_) => Self::new(
                StatusCode::CONFLICT,
                "conflict",
                "the webhook subscription was changed concurrently; retry the request",
            ),
            StoreError::QuotaExceeded { quota, .. } => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "subscription_quota_exceeded",
                format!(
                    "the company already has {quota} webhook subscriptions that are not \
                     archived, its quota (MAX_SUBSCRIPTIONS_PER_COMPANY); archive one or ask \
                     for a higher quota"
                ),
            ),
            StoreError::Dynamo { .. } => {
                tracing::error!(error = %e, store, "store unavailable");
                Self::unavailable()
            }
            StoreError::Mapping { .. } | StoreError::PlaintextSecret(_) => {
                tracing::error!(error = %e, store, "store returned an unreadable item");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_error",
                    "an internal error occurred",
                )
            }
        }
    }

    /// 500: a stored signing secret does not open (or nothing can seal
    /// one). Logged here; the secret itself never is.
    fn unreadable_secret(e: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %e, "signing secret could not be sealed or opened");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "an internal error occurred",
        )
    }

    /// 503: a dependency (DynamoDB, SQS) could not be reached. The caller
    /// logs the cause.
    pub fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the service is temporarily unavailable; retry the request",
        )
    }
}
