//! Validation errors shown to API users.

use std::borrow::Cow;

/// A client mistake in a request: a stable machine-readable `code`, a
/// message for humans, and the offending field when there is one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ValidationError {
    /// Stable error code, e.g. `unknown_job_type`.
    pub code: &'static str,
    /// Human-readable explanation, naming allowed values where useful.
    pub message: String,
    /// Dotted path of the offending field, e.g. `filters.job_types[2]`.
    pub field: Option<Cow<'static, str>>,
}

impl ValidationError {
    /// A validation error about `field`.
    pub fn field(
        code: &'static str,
        field: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            code,
            message: message.into(),
            field: Some(field.into()),
        }
    }
}
