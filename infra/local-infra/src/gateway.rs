//! A loopback stand-in for API Gateway's HTTP API in front of a
//! `lambda_http` handler (the subscriptions function's): bearer-token check (except on the routes the
//! deployed template declares without an authorizer), the API Gateway v2
//! event, and the response back to the client. Locally it also serves the
//! console's one-time sign-in ([`crate::dev_sign_in`]), which the deployed
//! API does not have.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use futures::future::BoxFuture;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use tokio::net::TcpListener;

use crate::cloudformation::{DeployedStack, PublicRoute};
use crate::dev_sign_in::{self, DevSignIn};
use crate::http_server;
use crate::jwt;

/// The function behind the gateway: a `lambda_http` handler, called as
/// Lambda calls it with the API Gateway event of each request.
pub type Handler = Arc<
    dyn Fn(lambda_http::Request) -> BoxFuture<'static, lambda_http::Response<lambda_http::Body>>
        + Send
        + Sync,
>;

/// The routes served without the authorizer, as the deployed stack
/// declares them.
#[derive(Debug, Clone, Default)]
pub struct PublicRoutes(Vec<PublicRoute>);

impl PublicRoutes {
    /// The public routes of `stack`'s HTTP API.
    pub fn of(stack: &DeployedStack) -> Self {
        Self(stack.public_routes.clone())
    }

    /// Whether `method` `path` matches a public route (the router's path
    /// matching, as API Gateway's).
    pub fn matches(&self, method: &str, path: &str) -> bool {
        self.0.iter().any(|route| {
            route.method.eq_ignore_ascii_case(method) && route_matches(&route.path, path)
        })
    }
}

/// Whether `path` matches the route template `template` as API Gateway
/// matches it: literal segments equal, a `{name}` segment matches any one
/// non-empty segment.
fn route_matches(template: &str, path: &str) -> bool {
    let wanted: Vec<&str> = template.trim_matches('/').split('/').collect();
    let given: Vec<&str> = path.trim_matches('/').split('/').collect();
    wanted.len() == given.len()
        && wanted.iter().zip(&given).all(|(w, g)| {
            let variable = w.starts_with('{') && w.ends_with('}');
            if variable { !g.is_empty() } else { w == g }
        })
}

/// API Gateway's payload limit.
const MAX_PAYLOAD: usize = 10 * 1024 * 1024;

/// The API Gateway (HTTP API, payload v2.0) event for one request, with
/// `claims` as the JWT authorizer's verified claims.
pub fn api_gateway_event(
    method: &str,
    path: &str,
    raw_query: &str,
    headers: &HeaderMap,
    body: &[u8],
    claims: Option<&HashMap<String, String>>,
) -> serde_json::Value {
    let mut header_map = serde_json::Map::new();
    for name in headers.keys() {
        let joined = headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join(",");
        header_map.insert(name.as_str().to_owned(), joined.into());
    }
    let mut query: serde_json::Map<String, serde_json::Value> = serde_json::Map::new();
    for (k, v) in url::form_urlencoded::parse(raw_query.as_bytes()) {
        match query.get_mut(k.as_ref()) {
            Some(serde_json::Value::String(existing)) => {
                existing.push(',');
                existing.push_str(&v);
            }
            _ => {
                query.insert(k.into_owned(), v.into_owned().into());
            }
        }
    }
    let (body, is_base64) = match std::str::from_utf8(body) {
        _ if body.is_empty() => (serde_json::Value::Null, false),
        Ok(text) => (text.into(), false),
        Err(_) => (STANDARD.encode(body).into(), true),
    };
    let now = chrono::Utc::now();
    let user_agent = headers
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let mut context = serde_json::json!({
        "accountId": "000000000000",
        "apiId": "local",
        "domainName": "127.0.0.1",
        "domainPrefix": "local",
        "http": {
            "method": method,
            "path": path,
            "protocol": "HTTP/1.1",
            "sourceIp": "127.0.0.1",
            "userAgent": user_agent,
        },
        "requestId": uuid::Uuid::new_v4().to_string(),
        "routeKey": "$default",
        "stage": "$default",
        "time": now.format("%d/%b/%Y:%H:%M:%S %z").to_string(),
        "timeEpoch": now.timestamp_millis(),
    });
    if let Some(claims) = claims {
        context["authorizer"] = serde_json::json!({ "jwt": { "claims": claims, "scopes": null } });
    }
    let mut event = serde_json::json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": raw_query,
        "headers": header_map,
        "requestContext": context,
        "isBase64Encoded": is_base64,
    });
    if !query.is_empty() {
        event["queryStringParameters"] = query.into();
    }
    if !body.is_null() {
        event["body"] = body;
    }
    event
}

/// The claims of the request's bearer token (decoded, not verified).
pub fn bearer_claims(headers: &HeaderMap) -> Option<HashMap<String, String>> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    jwt::claims_unverified(token.trim()).ok()
}

fn plain(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

/// The console's settings file, to which the local gateway adds
/// `dev_sign_in` when it exchanges sign-in codes.
const CONSOLE_SETTINGS: &str = "/console/config.json";

/// Serves one request the way API Gateway + Lambda would; with
/// `dev_sign_in`, also the console's one-time sign-in.
pub async fn handle(
    app: &Handler,
    public: &PublicRoutes,
    dev_sign_in: Option<&DevSignIn>,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    if let Some(dev) = dev_sign_in.filter(|_| parts.uri.path() == dev_sign_in::PATH) {
        let Ok(body) = Limited::new(body, 4096).collect().await else {
            return plain(
                StatusCode::PAYLOAD_TOO_LARGE,
                r#"{"message":"Request Entity Too Large"}"#,
            );
        };
        let answer = dev.serve(&parts.method, &parts.headers, &body.to_bytes());
        let mut response = Response::new(Full::new(answer.body));
        *response.status_mut() = answer.status;
        let headers = response.headers_mut();
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        headers.insert(
            http::header::CACHE_CONTROL,
            http::HeaderValue::from_static("no-store"),
        );
        return response;
    }
    let claims = if public.matches(parts.method.as_str(), parts.uri.path()) {
        None
    } else if let Some(claims) = bearer_claims(&parts.headers) {
        Some(claims)
    } else {
        let mut r = plain(StatusCode::UNAUTHORIZED, r#"{"message":"Unauthorized"}"#);
        r.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Bearer"),
        );
        return r;
    };
    let Ok(body) = Limited::new(body, MAX_PAYLOAD).collect().await else {
        return plain(
            StatusCode::PAYLOAD_TOO_LARGE,
            r#"{"message":"Request Entity Too Large"}"#,
        );
    };
    let event = api_gateway_event(
        parts.method.as_str(),
        parts.uri.path(),
        parts.uri.query().unwrap_or_default(),
        &parts.headers,
        &body.to_bytes(),
        claims.as_ref(),
    );
    let request = match lambda_http::request::from_str(&event.to_string()) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "request could not be turned into an API Gateway event");
            return plain(StatusCode::BAD_REQUEST, r#"{"message":"Bad Request"}"#);
        }
    };
    let settings = dev_sign_in.is_some()
        && parts.method == http::Method::GET
        && parts.uri.path() == CONSOLE_SETTINGS;
    let response = app(request).await;
    let (parts, body) = response.into_parts();
    let mut bytes = match body {
        lambda_http::Body::Empty => Bytes::new(),
        lambda_http::Body::Text(t) => Bytes::from(t),
        lambda_http::Body::Binary(b) => Bytes::from(b),
        _ => Bytes::new(),
    };
    if settings && parts.status == StatusCode::OK {
        bytes = with_dev_sign_in(&bytes);
    }
    Response::from_parts(parts, Full::new(bytes))
}

/// The console's settings with `dev_sign_in`: the console then takes a
/// one-time code from its address and offers to paste a token.
fn with_dev_sign_in(settings: &[u8]) -> Bytes {
    match serde_json::from_slice::<serde_json::Value>(settings) {
        Ok(serde_json::Value::Object(mut map)) => {
            map.insert(
                "dev_sign_in".to_owned(),
                serde_json::json!({
                    "path": dev_sign_in::PATH,
                    "code_ttl_seconds": dev_sign_in::CODE_TTL.as_secs(),
                }),
            );
            Bytes::from(serde_json::Value::Object(map).to_string())
        }
        _ => Bytes::copy_from_slice(settings),
    }
}

/// Serves the API on `listener` until `shutdown` completes (then lets
/// requests in flight finish, see [`http_server::serve_until`]), `public`
/// routes without a token; with `dev_sign_in`, the console's one-time
/// sign-in too.
pub async fn serve(
    listener: TcpListener,
    app: Handler,
    public: PublicRoutes,
    dev_sign_in: Option<Arc<DevSignIn>>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let api = Arc::new(Api {
        app,
        public,
        dev_sign_in,
    });
    http_server::serve_until(
        listener,
        http_server::plain,
        api,
        |api: Arc<Api>, req| async move {
            Ok::<_, Infallible>(
                handle(&api.app, &api.public, api.dev_sign_in.as_deref(), req).await,
            )
        },
        shutdown,
    )
    .await
}

/// What the gateway's connections share.
struct Api {
    app: Handler,
    public: PublicRoutes,
    dev_sign_in: Option<Arc<DevSignIn>>,
}

#[cfg(test)]
mod tests {
    use super::route_matches;

    #[test]
    fn route_templates_match_as_api_gateway_matches_them() {
        assert!(route_matches("/console", "/console"));
        assert!(route_matches("/console/{file}", "/console/console.js"));
        assert!(route_matches("/webhooks/{id}/test", "/webhooks/sub_1/test"));
        assert!(!route_matches("/console/{file}", "/console"));
        assert!(!route_matches("/console/{file}", "/console//"));
        assert!(!route_matches("/console/{file}", "/console/a/b"));
        assert!(!route_matches(
            "/webhooks/{id}/test",
            "/webhooks/sub_1/rotate"
        ));
    }
}
