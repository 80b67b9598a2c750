//! `POST /webhooks/{id}/test`: a `webhook.test` event for one
//! subscription, queued on the DeliveryQueue like any other event.

use chrono::Utc;
use http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde::Deserialize;
use shared::domain::message::{self, TEST_EVENT_TYPE};
use shared::queue::Outgoing;

use crate::app::App;
use crate::body;
use crate::error::ApiError;
use crate::views::{TestEventView, json_response};

/// The optional body: nothing, or `{}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestRequest {}

/// The test event could not be put on the delivery queue.
#[derive(Debug, thiserror::Error)]
#[error("SQS SendMessage to {queue_url} for subscription {subscription_id} failed: {message}")]
pub struct EnqueueError {
    /// The delivery queue.
    pub queue_url: String,
    /// The target subscription.
    pub subscription_id: String,
    /// The test event's id (`webhook-id`).
    pub webhook_id: String,
    /// The SDK's error with its context.
    pub message: String,
}

impl From<EnqueueError> for ApiError {
    fn from(e: EnqueueError) -> Self {
        tracing::error!(
            error = %e,
            webhook_id = %e.webhook_id,
            "test event not queued"
        );
        ApiError::unavailable()
    }
}

impl App {
    pub(crate) async fn send_test_event(
        &self,
        company: &str,
        id: &str,
        req: &Request,
    ) -> Result<Response<Body>, ApiError> {
        let TestRequest {} = body::decode_optional(body::raw(req)?)?;
        let sub = self.load(company, id).await?;
        if sub.is_archived() {
            return Err(ApiError::archived_receives_nothing());
        }
        let (key, message_body) =
            message::test_event_message(company, &sub.subscription_id, Utc::now());
        self.enqueue(company, &sub.subscription_id, &key, message_body)
            .await?;
        tracing::info!(
            subscription_id = %sub.subscription_id,
            webhook_id = %key,
            "test event queued"
        );
        let view = TestEventView {
            webhook_id: &key,
            event_type: TEST_EVENT_TYPE,
            status: "queued",
        };
        Ok(json_response(StatusCode::ACCEPTED, &view))
    }

    async fn enqueue(
        &self,
        company: &str,
        subscription_id: &str,
        webhook_id: &str,
        message_body: String,
    ) -> Result<(), EnqueueError> {
        // SQS fair queues: the company is the message group.
        let message = Outgoing::of_company(message_body, company);
        self.delivery_queue
            .send_one(&message)
            .await
            .map_err(|e| EnqueueError {
                queue_url: e.queue_url,
                subscription_id: subscription_id.to_owned(),
                webhook_id: webhook_id.to_owned(),
                message: e.message,
            })
    }
}
