//! `POST /webhooks/preview`: a format (or a draft template) rendered
//! against the catalogue's example of an event type: the body a
//! subscription with that format would be sent. Nothing is stored or
//! sent; a routing key shows masked.

use http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use shared::catalogue;
use shared::format::{FormatInput, FormatKind};

use crate::app::App;
use crate::body;
use crate::error::ApiError;
use crate::views::json_response;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PreviewRequest {
    format: FormatInput,
    event_type: String,
}

/// The rendered body and what it was rendered from.
#[derive(Debug, Serialize)]
struct PreviewView<'a> {
    event_type: &'a str,
    format: FormatKind,
    content_type: &'static str,
    /// The body, as JSON.
    body: Box<RawValue>,
}

impl App {
    pub(crate) async fn preview(&self, req: &Request) -> Result<Response<Body>, ApiError> {
        let input: PreviewRequest = body::decode(body::raw(req)?)?;
        let setting = input.format.validate()?;
        let Some(event_type) = catalogue::find(&input.event_type) else {
            return Err(ApiError::bad_request(
                "unknown_event_type",
                format!(
                    "unknown event type {:?}; GET /event-types lists them",
                    input.event_type
                ),
            )
            .with_field("event_type"));
        };
        let format = setting.preview();
        let rendered = format.render(&event_type.example).map_err(|e| {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.class(), e.to_string())
                .with_field("format")
        })?;
        let text = String::from_utf8_lossy(rendered.as_bytes()).into_owned();
        let body = RawValue::from_string(text).map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "template_not_json",
                e.to_string(),
            )
            .with_field("format")
        })?;
        let view = PreviewView {
            event_type: &event_type.name,
            format: format.kind(),
            content_type: "application/json",
            body,
        };
        Ok(json_response(StatusCode::OK, &view))
    }
}
