//! `GET /webhooks/{id}/deliveries`: one subscription's delivery attempts,
//! newest first, a page at a time.

use http::StatusCode;
use lambda_http::{Body, Request, RequestExt, Response};
use shared::cursor::CursorPosition;

use crate::app::App;
use crate::error::ApiError;
use crate::query;
use crate::views::{AttemptListView, AttemptView, json_response};

/// Default page size of `GET /webhooks/{id}/deliveries`.
pub const DEFAULT_PAGE_SIZE: usize = 20;

/// The scope that binds a deliveries cursor to the company and the
/// subscription, so it is refused by every other list. Company ids never
/// contain control characters (see `auth`), so the NUL separators keep the
/// scope unambiguous and distinct from the plain company scope of
/// `GET /webhooks`.
fn cursor_scope(company: &str, subscription_id: &str) -> String {
    format!("{company}\0deliveries\0{subscription_id}")
}

impl App {
    pub(crate) async fn list_deliveries(
        &self,
        company: &str,
        id: &str,
        req: &Request,
    ) -> Result<Response<Body>, ApiError> {
        let params = req.query_string_parameters();
        query::only(&params, &["limit", "cursor"])?;
        let limit = query::limit(&params, DEFAULT_PAGE_SIZE)?;
        // Archived subscriptions keep their log; only ownership matters.
        let sub = self.load(company, id).await?;
        let scope = cursor_scope(company, &sub.subscription_id);
        let after = match query::cursor(&params) {
            None => None,
            Some(cursor) => Some(
                self.config
                    .cursors
                    .decode(&scope, cursor, None)
                    .map_err(|e| query::invalid_cursor(e.to_string()))?
                    .after,
            ),
        };
        let page = self
            .deliveries
            .list(company, &sub.subscription_id, limit, after.as_deref())
            .await
            .map_err(|e| ApiError::store(e, "delivery log"))?;
        let next_cursor = match page.items.last() {
            Some(last) if page.has_more => Some(self.config.cursors.encode(
                &scope,
                &CursorPosition {
                    after: last.attempt_id.clone(),
                    filter: None,
                },
            )),
            _ => None,
        };
        let view = AttemptListView {
            data: page.items.iter().map(AttemptView::of).collect(),
            has_more: page.has_more,
            next_cursor,
        };
        Ok(json_response(StatusCode::OK, &view))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_scopes_differ_per_subscription_and_from_the_company_scope() {
        let a = cursor_scope("acme", "sub_1");
        assert_ne!(a, cursor_scope("acme", "sub_2"));
        assert_ne!(a, cursor_scope("globex", "sub_1"));
        assert_ne!(a, "acme");
    }
}
