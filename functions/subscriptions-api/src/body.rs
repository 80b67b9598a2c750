//! Request bodies: size and media-type checks, and JSON decoding whose
//! errors name the offending field.

use http::StatusCode;
use http::header::CONTENT_TYPE;
use lambda_http::Request;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The raw body of `req` after the size and media-type checks; empty when
/// the request has no body.
pub fn raw(req: &Request) -> Result<&[u8], ApiError> {
    let bytes: &[u8] = req.body().as_ref();
    if bytes.len() > MAX_BODY_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!(
                "request body is {} bytes; the limit is {MAX_BODY_BYTES}",
                bytes.len()
            ),
        ));
    }
    if !bytes.is_empty()
        && let Some(ct) = req.headers().get(CONTENT_TYPE)
    {
        let ct = ct.to_str().unwrap_or_default().to_ascii_lowercase();
        let essence = ct.split(';').next().unwrap_or_default().trim();
        if essence != "application/json" && !essence.ends_with("+json") {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "request bodies must be JSON (content-type: application/json)",
            ));
        }
    }
    Ok(bytes)
}

/// Decodes a JSON body into `T`, mapping every decoding problem to a 400
/// that names the field.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "missing_body",
            "a JSON request body is required",
        ));
    }
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(
            match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
                Err(e) => decode_error("", e),
                Ok(_) => {
                    ApiError::bad_request("invalid_type", "the request body must be a JSON object")
                }
            },
        );
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        decode_error(&path, e.into_inner())
    })?;
    de.end().map_err(|e| decode_error("", e))?;
    Ok(value)
}

/// Deserializes an optional JSON integer the way JSON Schema counts them: a
/// number with no fractional part, so `759.0` is 759 (as the OpenAPI
/// document's `type: integer` promises), while `759.5` is refused.
pub fn integer<'de, D>(de: D) -> Result<Option<i64>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    use serde::Deserialize;
    let Some(n) = Option::<serde_json::Number>::deserialize(de)? else {
        return Ok(None);
    };
    if let Some(i) = n.as_i64() {
        return Ok(Some(i));
    }
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Some(f as i64)),
        _ => Err(serde::de::Error::invalid_type(
            serde::de::Unexpected::Other(&format!("number {n}")),
            &"an integer",
        )),
    }
}

/// Decodes an optional JSON body: `T::default()` when there is none (or it
/// is only white space), else as [`decode`] does.
pub fn decode_optional<T: DeserializeOwned + Default>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    decode(bytes)
}

fn decode_error(path: &str, err: serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    if matches!(
        err.classify(),
        Category::Syntax | Category::Eof | Category::Io
    ) {
        return ApiError::bad_request(
            "malformed_json",
            format!("request body is not valid JSON: {err}"),
        );
    }
    let full = err.to_string();
    let message = full
        .rsplit_once(" at line ")
        .map_or(full.as_str(), |(m, _)| m)
        .to_owned();
    let parent = if path == "." { "" } else { path };
    let join = |name: &str| {
        if parent == name || parent.ends_with(&format!(".{name}")) {
            parent.to_owned()
        } else if parent.is_empty() {
            name.to_owned()
        } else {
            format!("{parent}.{name}")
        }
    };
    let quoted = message
        .split('`')
        .nth(1)
        .map(str::to_owned)
        .unwrap_or_default();
    if message.starts_with("unknown field") {
        ApiError::bad_request("unknown_field", message).with_field(join(&quoted))
    } else if message.starts_with("missing field") {
        ApiError::bad_request("missing_field", message).with_field(join(&quoted))
    } else {
        let field = if parent.is_empty() {
            None
        } else {
            Some(parent.to_owned())
        };
        let mut e = ApiError::bad_request("invalid_type", message);
        e.field = field.map(Into::into);
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        url: String,
        inner: Option<Inner>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        list: Vec<String>,
    }

    fn err(json: &str) -> ApiError {
        decode::<Outer>(json.as_bytes()).unwrap_err()
    }

    #[derive(Debug, Default, Deserialize)]
    struct Seconds {
        #[serde(default, deserialize_with = "integer")]
        n: Option<i64>,
    }

    #[test]
    fn integers_with_a_zero_fraction_are_integers() {
        let n = |json: &str| decode::<Seconds>(json.as_bytes()).map(|s| s.n);
        assert_eq!(n(r#"{"n": 759}"#), Ok(Some(759)));
        assert_eq!(n(r#"{"n": 759.0}"#), Ok(Some(759)));
        assert_eq!(n(r#"{"n": -3e2}"#), Ok(Some(-300)));
        assert_eq!(n(r#"{"n": null}"#), Ok(None));
        assert_eq!(n("{}"), Ok(None));
        for bad in [r#"{"n": 759.5}"#, r#"{"n": 1e300}"#, r#"{"n": "7"}"#] {
            let e = n(bad).unwrap_err();
            assert_eq!(
                (e.code, e.field.as_deref()),
                ("invalid_type", Some("n")),
                "{bad}"
            );
        }
    }

    #[test]
    fn decoding_errors_name_their_field() {
        let e = err(r#"{"url": "x", "inner": {"list": ["a", 3]}}"#);
        assert_eq!(
            (e.code, e.field.as_deref()),
            ("invalid_type", Some("inner.list[1]"))
        );
        let e = err(r#"{"url": "x", "inner": {"lst": []}}"#);
        assert_eq!(
            (e.code, e.field.as_deref()),
            ("unknown_field", Some("inner.lst"))
        );
        let e = err(r#"{"inner": null}"#);
        assert_eq!((e.code, e.field.as_deref()), ("missing_field", Some("url")));
        let e = err(r#"{"url": "x", "extra": 1}"#);
        assert_eq!(
            (e.code, e.field.as_deref()),
            ("unknown_field", Some("extra"))
        );
    }

    #[test]
    fn malformed_and_missing_bodies() {
        assert_eq!(err(r#"{"url": "#).code, "malformed_json");
        assert_eq!(err(r#"{"url": "x"} trailing"#).code, "malformed_json");
        assert_eq!(err("  ").code, "missing_body");
        assert_eq!(err("[]").code, "invalid_type");
    }

    #[derive(Debug, Default, PartialEq, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Options {
        #[serde(default)]
        grace: Option<u32>,
    }

    #[test]
    fn optional_bodies_default_when_absent() {
        let decode = |json: &str| decode_optional::<Options>(json.as_bytes());
        assert_eq!(decode("").unwrap(), Options::default());
        assert_eq!(decode(" \n").unwrap(), Options::default());
        assert_eq!(decode("{}").unwrap(), Options::default());
        assert_eq!(
            decode(r#"{"grace": 5}"#).unwrap(),
            Options { grace: Some(5) }
        );
        assert_eq!(decode(r#"{"other": 5}"#).unwrap_err().code, "unknown_field");
        assert_eq!(decode("[]").unwrap_err().code, "invalid_type");
    }
}
