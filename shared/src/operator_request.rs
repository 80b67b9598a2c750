//! Requests of the operator functions (the dead-letter redrive, the ingest
//! replay): the error of an invocation input that is not a valid request.

/// The invocation input is not a valid request: nothing was read from or
/// written to any queue. The invocation fails with error type
/// `InvalidRequest`.
#[derive(Debug, thiserror::Error)]
#[error("invalid {request} request: {reason}")]
pub struct RequestError {
    /// What kind of request it was meant to be (`redrive`, `replay`).
    pub request: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

impl RequestError {
    /// A `request` request that is invalid for `reason`.
    pub fn new(request: &'static str, reason: impl Into<String>) -> Self {
        Self {
            request,
            reason: reason.into(),
        }
    }
}

impl From<RequestError> for lambda_runtime::Diagnostic {
    fn from(e: RequestError) -> Self {
        Self {
            error_type: "InvalidRequest".to_owned(),
            error_message: e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_become_invalid_request_diagnostics() {
        let d: lambda_runtime::Diagnostic = RequestError::new("replay", "unknown field `x`").into();
        assert_eq!(d.error_type, "InvalidRequest");
        assert_eq!(d.error_message, "invalid replay request: unknown field `x`");
    }
}
