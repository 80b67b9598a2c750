//! The served routes: one table that both dispatch and the OpenAPI
//! conformance test read, so a route can't exist without being documented.

use http::Method;

/// An operation of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// `POST /webhooks`
    CreateWebhook,
    /// `GET /webhooks`
    ListWebhooks,
    /// `POST /webhooks/preview`
    PreviewFormat,
    /// `GET /webhooks/{id}`
    GetWebhook,
    /// `PATCH /webhooks/{id}`
    UpdateWebhook,
    /// `DELETE /webhooks/{id}`
    ArchiveWebhook,
    /// `POST /webhooks/{id}/rotate-secret`
    RotateSecret,
    /// `GET /webhooks/{id}/deliveries`
    ListDeliveries,
    /// `POST /webhooks/{id}/test`
    SendTestEvent,
    /// `GET /webhooks/{id}/failed-events`
    ListFailedEvents,
    /// `POST /webhooks/{id}/recover`
    RecoverEvents,
    /// `POST /webhooks/{id}/enable`
    EnableWebhook,
    /// `GET /job-types`
    ListJobTypes,
    /// `GET /event-types`
    ListEventTypes,
    /// `GET /console` and `GET /console/{file}`: the console's static files,
    /// the only routes without the authorizer.
    Console,
}

impl Operation {
    /// Whether the route is served without the authorizer (API Gateway
    /// passes no claims, and the handler needs none).
    pub const fn is_public(self) -> bool {
        matches!(self, Operation::Console)
    }
}

/// One row of the routing table.
#[derive(Debug, Clone)]
pub struct Route {
    /// HTTP method.
    pub method: Method,
    /// Path template; `{id}` (`{file}` for the console) matches one
    /// non-empty segment.
    pub path: &'static str,
    /// The operation served.
    pub operation: Operation,
    /// `operationId` in the OpenAPI document.
    pub operation_id: &'static str,
}

const fn route(
    method: Method,
    path: &'static str,
    operation: Operation,
    operation_id: &'static str,
) -> Route {
    Route {
        method,
        path,
        operation,
        operation_id,
    }
}

/// Every route the API serves.
pub const ROUTES: &[Route] = &[
    route(
        Method::POST,
        "/webhooks",
        Operation::CreateWebhook,
        "createWebhook",
    ),
    route(
        Method::GET,
        "/webhooks",
        Operation::ListWebhooks,
        "listWebhooks",
    ),
    route(
        Method::POST,
        "/webhooks/preview",
        Operation::PreviewFormat,
        "previewFormat",
    ),
    route(
        Method::GET,
        "/webhooks/{id}",
        Operation::GetWebhook,
        "getWebhook",
    ),
    route(
        Method::PATCH,
        "/webhooks/{id}",
        Operation::UpdateWebhook,
        "updateWebhook",
    ),
    route(
        Method::DELETE,
        "/webhooks/{id}",
        Operation::ArchiveWebhook,
        "archiveWebhook",
    ),
    route(
        Method::POST,
        "/webhooks/{id}/rotate-secret",
        Operation::RotateSecret,
        "rotateWebhookSecret",
    ),
    route(
        Method::GET,
        "/webhooks/{id}/deliveries",
        Operation::ListDeliveries,
        "listDeliveries",
    ),
    route(
        Method::POST,
        "/webhooks/{id}/test",
        Operation::SendTestEvent,
        "sendTestEvent",
    ),
    route(
        Method::GET,
        "/webhooks/{id}/failed-events",
        Operation::ListFailedEvents,
        "listFailedEvents",
    ),
    route(
        Method::POST,
        "/webhooks/{id}/recover",
        Operation::RecoverEvents,
        "recoverEvents",
    ),
    route(
        Method::POST,
        "/webhooks/{id}/enable",
        Operation::EnableWebhook,
        "enableWebhook",
    ),
    route(
        Method::GET,
        "/job-types",
        Operation::ListJobTypes,
        "listJobTypes",
    ),
    route(
        Method::GET,
        "/event-types",
        Operation::ListEventTypes,
        "listEventTypes",
    ),
    route(Method::GET, "/console", Operation::Console, "getConsole"),
    route(
        Method::GET,
        "/console/{file}",
        Operation::Console,
        "getConsoleFile",
    ),
];

/// Result of matching a request line against [`ROUTES`].
#[derive(Debug, PartialEq, Eq)]
pub enum Resolution<'a> {
    /// A route matched; `id` is the `{id}` (or `{file}`) segment, if the
    /// path has one.
    Found {
        /// The operation.
        operation: Operation,
        /// The path parameter.
        id: Option<&'a str>,
    },
    /// The path exists, but not for this method.
    MethodNotAllowed(Vec<Method>),
    /// No route has this path.
    NotFound,
}

/// Matches `path` against a path template whose `{param}` segments match
/// one non-empty segment each, as API Gateway's do; `Some` holds the last
/// parameter's value, if the template has one.
pub fn match_path<'a>(template: &str, path: &'a str) -> Option<Option<&'a str>> {
    let mut id = None;
    let mut want = template.trim_matches('/').split('/');
    let mut have = path.trim_matches('/').split('/');
    loop {
        match (want.next(), have.next()) {
            (None, None) => return Some(id),
            (Some(w), Some(seg)) if w.starts_with('{') && w.ends_with('}') && !seg.is_empty() => {
                id = Some(seg);
            }
            (Some(w), Some(h)) if w == h => {}
            _ => return None,
        }
    }
}

/// Matches `method` and `path` against the routing table.
pub fn resolve<'a>(method: &Method, path: &'a str) -> Resolution<'a> {
    let mut allowed = Vec::new();
    // A path that a route names literally (`/webhooks/preview`) is that
    // route's resource, not an `{id}` of another: another method on it is
    // a 405, not a lookup of the id `preview`.
    let literal = ROUTES
        .iter()
        .any(|r| !r.path.contains('{') && match_path(r.path, path).is_some());
    let routes = ROUTES.iter().filter(|r| !literal || !r.path.contains('{'));
    for r in routes {
        if let Some(id) = match_path(r.path, path) {
            if r.method == *method {
                return Resolution::Found {
                    operation: r.operation,
                    id,
                };
            }
            allowed.push(r.method.clone());
        }
    }
    if allowed.is_empty() {
        Resolution::NotFound
    } else {
        Resolution::MethodNotAllowed(allowed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_paths_with_and_without_ids() {
        assert_eq!(
            resolve(&Method::POST, "/webhooks/sub_1/rotate-secret"),
            Resolution::Found {
                operation: Operation::RotateSecret,
                id: Some("sub_1")
            }
        );
        assert_eq!(
            resolve(&Method::GET, "/webhooks/"),
            Resolution::Found {
                operation: Operation::ListWebhooks,
                id: None
            }
        );
        assert_eq!(
            resolve(&Method::PUT, "/webhooks/x"),
            Resolution::MethodNotAllowed(vec![Method::GET, Method::PATCH, Method::DELETE])
        );
        assert_eq!(
            resolve(&Method::GET, "/webhooks/sub_1/deliveries"),
            Resolution::Found {
                operation: Operation::ListDeliveries,
                id: Some("sub_1")
            }
        );
        assert_eq!(
            resolve(&Method::GET, "/webhooks/sub_1/test"),
            Resolution::MethodNotAllowed(vec![Method::POST])
        );
        assert_eq!(resolve(&Method::GET, "/webhooks/x/y"), Resolution::NotFound);
        assert_eq!(
            resolve(&Method::PATCH, "/webhooks/preview"),
            Resolution::MethodNotAllowed(vec![Method::POST])
        );
        assert_eq!(
            resolve(&Method::GET, "/console/console.js"),
            Resolution::Found {
                operation: Operation::Console,
                id: Some("console.js")
            }
        );
        assert_eq!(
            resolve(&Method::GET, "/console"),
            Resolution::Found {
                operation: Operation::Console,
                id: None
            }
        );
        assert!(Operation::Console.is_public() && !Operation::ListEventTypes.is_public());
        assert_eq!(resolve(&Method::GET, "/"), Resolution::NotFound);
    }
}
