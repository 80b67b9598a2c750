//! The request handler: authentication, routing, logging.

use std::sync::Arc;
use std::time::Instant;

use http::StatusCode;
use http::header::ALLOW;
use lambda_http::{Body, Request, RequestExt, Response};
use shared::delivery::requeue::Requeuer;
use shared::operational::Publisher;
use shared::queue::QueueWriter;
use shared::storage::deliveries::DeliveryLog;
use shared::storage::keyring::SecretVault;
use shared::storage::parked::ParkedEvents;
use shared::storage::subscriptions::SubscriptionStore;

use crate::auth;
use crate::config::ApiConfig;
use crate::error::ApiError;
use crate::query;
use crate::routes::{self, Operation, Resolution};
use crate::views;

/// The subscriptions API: configuration plus the stores and the delivery
/// queue client, built once per process and shared by every request.
#[derive(Debug, Clone)]
pub struct App {
    pub(crate) config: ApiConfig,
    pub(crate) store: SubscriptionStore,
    pub(crate) deliveries: DeliveryLog,
    pub(crate) parked: ParkedEvents,
    pub(crate) requeuer: Requeuer,
    pub(crate) publisher: Publisher,
    pub(crate) delivery_queue: QueueWriter,
    pub(crate) vault: Arc<SecretVault>,
}

impl App {
    /// An app over the DynamoDB client `dynamo`, the SQS client `sqs` and
    /// the EventBridge client `events`, with `config`, sealing signing
    /// secrets with `vault`'s keyring.
    pub fn new(
        config: ApiConfig,
        dynamo: aws_sdk_dynamodb::Client,
        sqs: aws_sdk_sqs::Client,
        events: aws_sdk_eventbridge::Client,
        vault: Arc<SecretVault>,
    ) -> Self {
        let store = SubscriptionStore::new(dynamo.clone(), config.table.clone());
        let parked = ParkedEvents::new(dynamo.clone(), config.parked_events_table.clone());
        let deliveries = DeliveryLog::new(dynamo, config.deliveries_table.clone());
        // The event catalogue is built once, at cold start, not on a request.
        std::sync::LazyLock::force(&views::EVENT_TYPE_BODIES);
        let delivery_queue = QueueWriter::new(sqs, config.delivery_queue_url.clone());
        Self {
            requeuer: Requeuer::new(delivery_queue.clone(), parked.clone()),
            publisher: Publisher::new(events, config.event_bus_name.clone()),
            parked,
            config,
            store,
            deliveries,
            delivery_queue,
            vault,
        }
    }

    /// Handles one request. Never fails: errors become JSON responses.
    pub async fn handle(&self, req: Request) -> Response<Body> {
        let started = Instant::now();
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let response = match self.dispatch(&req).await {
            Ok(response) => response,
            Err(err) => err.into_response(),
        };
        let status = response.status().as_u16();
        let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
        if response.status().is_server_error() {
            tracing::error!(%method, %path, status, elapsed_ms, "request failed");
        } else {
            tracing::info!(%method, %path, status, elapsed_ms, "request");
        }
        response
    }

    async fn dispatch(&self, req: &Request) -> Result<Response<Body>, ApiError> {
        let (operation, id) = match routes::resolve(req.method(), req.uri().path()) {
            Resolution::Found { operation, id } => (operation, id),
            Resolution::MethodNotAllowed(allowed) => {
                let allow = allowed
                    .iter()
                    .map(http::Method::as_str)
                    .collect::<Vec<_>>()
                    .join(", ");
                let mut response = ApiError::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method_not_allowed",
                    format!("allowed methods: {allow}"),
                )
                .into_response();
                if let Ok(value) = allow.parse() {
                    response.headers_mut().insert(ALLOW, value);
                }
                return Ok(response);
            }
            Resolution::NotFound => {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "route_not_found",
                    "no such route; see the OpenAPI document",
                ));
            }
        };
        if operation.is_public() {
            return Ok(self.config.console.serve(id));
        }
        let company = auth::company_id(req, &self.config.company_claim).ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "no company in the request's authorization",
            )
        })?;
        let file = id;
        let id = id.unwrap_or_default();
        match operation {
            Operation::ListJobTypes => Ok(views::json_response(
                StatusCode::OK,
                &views::job_types_body(),
            )),
            Operation::ListEventTypes => {
                let params = req.query_string_parameters();
                query::only(&params, &["group"])?;
                Ok(views::event_types_response(params.first("group")))
            }
            Operation::Console => Ok(self.config.console.serve(file)),
            Operation::CreateWebhook => self.create(&company, req).await,
            Operation::ListWebhooks => self.list(&company, req).await,
            Operation::PreviewFormat => self.preview(req).await,
            Operation::GetWebhook => self.get(&company, id).await,
            Operation::UpdateWebhook => self.update(&company, id, req).await,
            Operation::ArchiveWebhook => self.archive(&company, id).await,
            Operation::RotateSecret => self.rotate(&company, id, req).await,
            Operation::ListDeliveries => self.list_deliveries(&company, id, req).await,
            Operation::SendTestEvent => self.send_test_event(&company, id, req).await,
            Operation::ListFailedEvents => self.list_failed_events(&company, id, req).await,
            Operation::RecoverEvents => self.recover(&company, id, req).await,
            Operation::EnableWebhook => self.enable(&company, id).await,
        }
    }
}
