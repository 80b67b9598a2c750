//! Query-string parameters of the list routes: unknown names are refused
//! and `limit` is range-checked, with the same errors on every route.

use lambda_http::aws_lambda_events::query_map::QueryMap;

use crate::error::ApiError;

/// Largest page size of every list route.
pub const MAX_PAGE_SIZE: usize = 100;

/// Refuses any parameter not in `allowed` with `400 unknown_parameter`.
pub fn only(params: &QueryMap, allowed: &[&str]) -> Result<(), ApiError> {
    for (name, _) in params.iter() {
        if !allowed.contains(&name) {
            return Err(ApiError::bad_request(
                "unknown_parameter",
                format!(
                    "unknown query parameter {name:?}; allowed: {}",
                    allowed.join(", ")
                ),
            )
            .with_field(name.to_owned()));
        }
    }
    Ok(())
}

/// The `limit` parameter: an integer from 1 to [`MAX_PAGE_SIZE`], or
/// `default` when absent.
pub fn limit(params: &QueryMap, default: usize) -> Result<usize, ApiError> {
    match params.first("limit") {
        None => Ok(default),
        Some(raw) => raw
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_PAGE_SIZE).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_parameter",
                    format!("limit must be an integer from 1 to {MAX_PAGE_SIZE}"),
                )
                .with_field("limit")
            }),
    }
}

/// The `cursor` parameter; an empty one (`cursor=`, as clients send for the
/// first page) is the same as none.
pub fn cursor(params: &QueryMap) -> Option<&str> {
    params.first("cursor").filter(|c| !c.is_empty())
}

/// `400 invalid_cursor` naming the `cursor` parameter.
pub fn invalid_cursor(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_cursor", message).with_field("cursor")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(query: &str) -> QueryMap {
        query.parse().expect("query parses")
    }

    #[test]
    fn limits_and_unknown_names() {
        assert_eq!(limit(&params(""), 20), Ok(20));
        assert_eq!(limit(&params("limit=100"), 20), Ok(100));
        for bad in ["limit=0", "limit=101", "limit=-1", "limit=x", "limit="] {
            let e = limit(&params(bad), 20).unwrap_err();
            assert_eq!(
                (e.code, e.field.as_deref()),
                ("invalid_parameter", Some("limit")),
                "{bad}"
            );
        }
        assert!(only(&params("limit=1&cursor=x"), &["limit", "cursor"]).is_ok());
        let e = only(&params("limit=1&page=2"), &["limit", "cursor"]).unwrap_err();
        assert_eq!(
            (e.code, e.field.as_deref()),
            ("unknown_parameter", Some("page"))
        );
        assert!(
            e.message.ends_with("allowed: limit, cursor"),
            "{}",
            e.message
        );
    }

    #[test]
    fn an_empty_cursor_is_the_first_page() {
        assert_eq!(cursor(&params("cursor=")), None);
        assert_eq!(cursor(&params("limit=5")), None);
        assert_eq!(cursor(&params("cursor=abc")), Some("abc"));
    }
}
