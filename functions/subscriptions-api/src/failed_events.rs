//! `GET /webhooks/{id}/failed-events` and `POST /webhooks/{id}/recover`:
//! the events kept for a subscription (parked while its endpoint was
//! failing or disabled, or failed after their whole schedule), and putting
//! a time window of them back on the delivery queue.

use chrono::{DateTime, Utc};
use http::StatusCode;
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Deserialize;
use shared::cursor::CursorPosition;
use shared::delivery::requeue::Pacer;
use shared::queue::MAX_DELAY_SECONDS;
use shared::storage::parked::{Order, ParkedQuery, ParkedStatus};

use crate::app::App;
use crate::body;
use crate::error::ApiError;
use crate::query;
use crate::views::{FailedEventListView, FailedEventView, RecoverView, json_response};

/// Default page size of `GET /webhooks/{id}/failed-events`.
pub const DEFAULT_PAGE_SIZE: usize = 20;
/// Payload bytes past which a `failed-events` page ends early.
pub const MAX_PAGE_BYTES: usize = 4 * 1024 * 1024;
/// Most events one `recover` call re-queues; a continuation token covers
/// the rest.
pub const RECOVER_BATCH: usize = 100;
/// Longest a continuation's events wait (seconds) for those of the calls
/// before it to become visible.
pub const RECOVER_MAX_WAIT: u32 = 60;

fn cursor_scope(company: &str, subscription_id: &str, what: &str) -> String {
    format!("{company}\0{what}\0{subscription_id}")
}

fn parse_time(raw: &str, field: &'static str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            ApiError::bad_request(
                "invalid_time",
                format!("{field} must be an RFC 3339 time, e.g. 2026-12-01T10:00:00Z"),
            )
            .with_field(field)
        })
}

fn check_window(
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
) -> Result<(), ApiError> {
    if let (Some(since), Some(until)) = (since, until)
        && until <= since
    {
        return Err(
            ApiError::bad_request("invalid_time_window", "until must be later than since")
                .with_field("until"),
        );
    }
    Ok(())
}

/// What a recover continuation holds: the position after which the next
/// call goes on, and the time (epoch milliseconds) by which every event
/// the calls so far sent is visible.
struct Continuation<'a> {
    after: &'a str,
    not_before_ms: i64,
}

impl<'a> Continuation<'a> {
    /// `{position}|{not_before_ms}` (a token of an older version holds the
    /// position alone).
    fn parse(text: &'a str) -> Self {
        match text.rsplit_once('|') {
            Some((after, ms)) => Self {
                after,
                not_before_ms: ms.parse().unwrap_or(0),
            },
            None => Self {
                after: text,
                not_before_ms: 0,
            },
        }
    }
}

impl std::fmt::Display for Continuation<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}|{}", self.after, self.not_before_ms)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecoverRequest {
    since: String,
    #[serde(default)]
    until: Option<String>,
    #[serde(default)]
    continuation: Option<String>,
}

impl App {
    pub(crate) async fn list_failed_events(
        &self,
        company: &str,
        id: &str,
        req: &Request,
    ) -> Result<Response<Body>, ApiError> {
        let params = req.query_string_parameters();
        query::only(&params, &["limit", "cursor", "status", "since", "until"])?;
        let limit = query::limit(&params, DEFAULT_PAGE_SIZE)?;
        let status = match params.first("status") {
            None => None,
            Some(raw) => Some(ParkedStatus::parse(raw).ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_parameter",
                    format!("unknown status {raw:?}; allowed: parked, failed"),
                )
                .with_field("status")
            })?),
        };
        let since = params
            .first("since")
            .map(|t| parse_time(t, "since"))
            .transpose()?;
        let until = params
            .first("until")
            .map(|t| parse_time(t, "until"))
            .transpose()?;
        check_window(since, until)?;
        // Archived subscriptions keep theirs until they expire.
        let sub = self.load(company, id).await?;
        let scope = cursor_scope(company, &sub.subscription_id, "failed-events");
        // The cursor is bound to the filters it was made with.
        let filter = format!(
            "{}|{}|{}",
            status.map_or("", ParkedStatus::as_str),
            since.map(|t| t.timestamp_millis()).unwrap_or_default(),
            until.map(|t| t.timestamp_millis()).unwrap_or_default(),
        );
        let after = match query::cursor(&params) {
            None => None,
            Some(cursor) => Some(
                self.config
                    .cursors
                    .decode(&scope, cursor, Some(&filter))
                    .map_err(|e| query::invalid_cursor(e.to_string()))?
                    .after,
            ),
        };
        let page = self
            .parked
            .list(
                company,
                &sub.subscription_id,
                &ParkedQuery {
                    status,
                    since,
                    until,
                },
                Order::NewestFirst,
                limit,
                after.as_deref(),
            )
            .await
            .map_err(|e| ApiError::store(e, "parked events"))?;
        // A page stays well inside Lambda's 6 MB response limit, however
        // large the payloads: past MAX_PAGE_BYTES the rest is the next page.
        let (mut items, mut has_more) = (page.items, page.has_more);
        let mut bytes = 0;
        if let Some(cut) = items.iter().position(|e| {
            bytes += e.message.len();
            bytes > MAX_PAGE_BYTES
        }) {
            items.truncate(cut.max(1));
            has_more = true;
        }
        let next_cursor = match items.last() {
            Some(last) if has_more => Some(self.config.cursors.encode(
                &scope,
                &CursorPosition {
                    after: last.position(),
                    filter: Some(filter),
                },
            )),
            _ => None,
        };
        let view = FailedEventListView {
            data: items.iter().map(FailedEventView::of).collect(),
            has_more,
            next_cursor,
        };
        Ok(json_response(StatusCode::OK, &view))
    }

    pub(crate) async fn recover(
        &self,
        company: &str,
        id: &str,
        req: &Request,
    ) -> Result<Response<Body>, ApiError> {
        let input: RecoverRequest = body::decode(body::raw(req)?)?;
        let now = Utc::now();
        let since = parse_time(&input.since, "since")?;
        let until = input
            .until
            .as_deref()
            .map(|t| parse_time(t, "until"))
            .transpose()?;
        if until.is_none() && since >= now {
            return Err(
                ApiError::bad_request("invalid_time_window", "since is in the future")
                    .with_field("since"),
            );
        }
        check_window(Some(since), until)?;
        let end = until.unwrap_or(now);
        if end - since > self.config.retention {
            return Err(ApiError::bad_request(
                "invalid_time_window",
                format!(
                    "the window is longer than the {}-day retention of failed events",
                    self.config.retention.num_days()
                ),
            )
            .with_field("since"));
        }
        let sub = self.load(company, id).await?;
        if sub.is_archived() {
            return Err(ApiError::archived_receives_nothing());
        }
        if sub.is_disabled() {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "subscription_disabled",
                "the webhook subscription is disabled: enable it (POST /webhooks/{id}/enable), which also delivers its parked events",
            ));
        }
        let scope = cursor_scope(company, &sub.subscription_id, "recover");
        // Bound to the window as asked: without `until` the window ends at
        // each call's time, and a continuation still resumes it.
        let filter = format!(
            "{}|{}",
            since.timestamp_millis(),
            until.map_or_else(|| "now".to_owned(), |t| t.timestamp_millis().to_string())
        );
        let after = match input.continuation.as_deref().filter(|c| !c.is_empty()) {
            None => None,
            Some(token) => Some(
                self.config
                    .cursors
                    .decode(&scope, token, Some(&filter))
                    .map_err(|e| {
                        ApiError::bad_request("invalid_continuation", e.to_string())
                            .with_field("continuation")
                    })?
                    .after,
            ),
        };
        // The continuation holds where the last call stopped and when the
        // last of its events becomes visible: this call's events come after.
        let (after, not_before) = match after.as_deref().map(Continuation::parse) {
            Some(c) => (Some(c.after.to_owned()), c.not_before_ms),
            None => (None, 0),
        };
        let page = self
            .parked
            .list(
                company,
                &sub.subscription_id,
                &ParkedQuery {
                    status: None,
                    since: Some(since),
                    until: Some(end),
                },
                Order::OldestFirst,
                RECOVER_BATCH,
                after.as_deref(),
            )
            .await
            .map_err(|e| ApiError::store(e, "parked events"))?;
        // At once, but each job's events a second apart in the order of its
        // states, so the endpoint receives them in that order; a
        // continuation's events after the calls before it.
        // At most RECOVER_MAX_WAIT: a client that loops on continuations
        // faster than the events go out would otherwise push each call
        // further back, up to SQS's 15-minute limit.
        let wait_ms = (not_before - now.timestamp_millis()).max(0);
        let offset = u32::try_from((wait_ms + 999) / 1000)
            .unwrap_or(RECOVER_MAX_WAIT)
            .min(RECOVER_MAX_WAIT);
        let mut pacer = Pacer::new(None, offset, MAX_DELAY_SECONDS + 1, usize::MAX);
        let report = self
            .requeuer
            .requeue(&sub.subscription_id, &page.items, &mut pacer, None)
            .await;
        tracing::info!(
            subscription_id = %sub.subscription_id,
            recovered = report.sent,
            not_sent = report.not_sent,
            not_deleted = report.not_deleted,
            "events recovered to the delivery queue"
        );
        // Where the next call goes on: after the last event handled (all of
        // the page, unless the pacing's 15-minute span filled first).
        let handled = &page.items[..report.handled.min(page.items.len())];
        let more = page.has_more || handled.len() < page.items.len();
        let continuation = match handled.last() {
            Some(last) if more => Some(
                self.config.cursors.encode(
                    &scope,
                    &CursorPosition {
                        after: Continuation {
                            after: &last.position(),
                            // From when the sends ended: an event sent
                            // last with the longest delay is visible then.
                            not_before_ms: Utc::now().timestamp_millis()
                                + i64::from(pacer.span()) * 1000,
                        }
                        .to_string(),
                        filter: Some(filter),
                    },
                ),
            ),
            _ => None,
        };
        let view = RecoverView {
            status: "queued",
            recovered: report.sent,
            not_recovered: report.not_sent + report.unreadable,
            continuation,
        };
        Ok(json_response(StatusCode::ACCEPTED, &view))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_differ_per_list_and_subscription() {
        let a = cursor_scope("acme", "sub_1", "recover");
        assert_ne!(a, cursor_scope("acme", "sub_1", "failed-events"));
        assert_ne!(a, cursor_scope("acme", "sub_2", "recover"));
        assert_ne!(a, cursor_scope("globex", "sub_1", "recover"));
    }

    #[test]
    fn continuations_carry_the_position_and_when_the_sent_events_are_visible() {
        let text = Continuation {
            after: "1795341600123#0042#evt_a",
            not_before_ms: 1_795_341_700_000,
        }
        .to_string();
        let back = Continuation::parse(&text);
        assert_eq!(back.after, "1795341600123#0042#evt_a");
        assert_eq!(back.not_before_ms, 1_795_341_700_000);
        let old = Continuation::parse("1795341600123#evt_a");
        assert_eq!((old.after, old.not_before_ms), ("1795341600123#evt_a", 0));
    }

    #[test]
    fn windows_must_run_forwards() {
        let t = Utc::now();
        assert!(check_window(Some(t), Some(t + chrono::Duration::seconds(1))).is_ok());
        let e = check_window(Some(t), Some(t)).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("until"));
        assert_eq!(
            parse_time("yesterday", "since")
                .unwrap_err()
                .field
                .as_deref(),
            Some("since")
        );
    }
}
