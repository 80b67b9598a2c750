//! API Gateway (HTTP API) requests for the subscriptions function.

use std::collections::HashMap;

use http::HeaderMap;
use local_infra::gateway;

/// A request to build.
#[derive(Debug, Clone)]
pub struct ApiRequest {
    method: String,
    path: String,
    query: String,
    headers: HeaderMap,
    body: Vec<u8>,
    claims: Option<HashMap<String, String>>,
}

impl ApiRequest {
    /// `method path`, authorised for `company` through the `company_id`
    /// claim. A `?query` in `path` is split off.
    pub fn new(method: &str, path: &str, company: &str) -> Self {
        Self::anonymous(method, path).claim("company_id", company)
    }

    /// `method path` with no authorizer context at all.
    pub fn anonymous(method: &str, path: &str) -> Self {
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        Self {
            method: method.to_owned(),
            path: path.to_owned(),
            query: query.to_owned(),
            headers: HeaderMap::new(),
            body: Vec::new(),
            claims: None,
        }
    }

    /// Adds a JWT claim to the authorizer context.
    pub fn claim(mut self, name: &str, value: &str) -> Self {
        self.claims
            .get_or_insert_with(HashMap::new)
            .insert(name.to_owned(), value.to_owned());
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers
            .append(name, value.parse().expect("valid header value"));
        self
    }

    /// Sets a JSON body and its content type.
    pub fn json(self, body: &serde_json::Value) -> Self {
        self.raw_body(body.to_string().into_bytes())
            .header("content-type", "application/json")
    }

    /// Sets the body bytes as they are.
    pub fn raw_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// The API Gateway v2 event.
    pub fn event(&self) -> serde_json::Value {
        gateway::api_gateway_event(
            &self.method,
            &self.path,
            &self.query,
            &self.headers,
            &self.body,
            self.claims.as_ref(),
        )
    }

    /// The request as `lambda_http` hands it to the handler.
    pub fn build(&self) -> lambda_http::Request {
        lambda_http::request::from_str(&self.event().to_string()).expect("valid API Gateway event")
    }
}

/// The status and JSON body (`Null` when there is none) of a response of
/// the subscriptions function.
pub fn status_and_json(
    response: &lambda_http::Response<lambda_http::Body>,
) -> (u16, serde_json::Value) {
    let body = match response.body() {
        lambda_http::Body::Text(t) => serde_json::from_str(t).unwrap_or(serde_json::Value::Null),
        lambda_http::Body::Binary(b) => {
            serde_json::from_slice(b).unwrap_or(serde_json::Value::Null)
        }
        lambda_http::Body::Empty => serde_json::Value::Null,
        _ => serde_json::Value::Null,
    };
    (response.status().as_u16(), body)
}
