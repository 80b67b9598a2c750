//! The caller's company, from the API Gateway authorizer context only.

use lambda_http::request::RequestContext;
use lambda_http::{Request, RequestExt};

/// The company id in the authorizer context of `req`: the JWT claim named
/// `claim` (HTTP API JWT authorizer), or the same key in a Lambda
/// authorizer's context. Headers and bodies are never consulted.
pub fn company_id(req: &Request, claim: &str) -> Option<String> {
    let authorizer = req
        .request_context_ref()
        .and_then(RequestContext::authorizer)?;
    let from_jwt = authorizer
        .jwt
        .as_ref()
        .and_then(|jwt| jwt.claims.get(claim))
        .cloned();
    let from_lambda = || match authorizer.fields.get(claim)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    from_jwt
        .or_else(from_lambda)
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty() && c.len() <= 256 && !c.chars().any(char::is_control))
}
