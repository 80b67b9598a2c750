//! The invocation handler: request in, report out.

use std::time::Instant;

use serde_json::Value;
use shared::metrics::Metrics;
use shared::operator_request::RequestError;

use crate::redrive::{RedriveReport, Redriver};
use crate::request::RedriveRequest;

impl Redriver {
    /// Handles one invocation: validates the payload (an invalid one is an
    /// error and touches no queue), runs one pass until `deadline`, logs
    /// and emits the counts, and returns the report.
    pub async fn handle(
        &self,
        event: Value,
        deadline: Instant,
    ) -> Result<RedriveReport, RequestError> {
        let request = RedriveRequest::from_event(event)
            .inspect_err(|e| tracing::warn!(error = %e, "rejected redrive request"))?;
        tracing::info!(
            company_id = request.selection.company_id.as_deref(),
            subscription_id = request.selection.subscription_id.as_deref(),
            max_messages = request.max_messages,
            dry_run = request.dry_run,
            "redrive started"
        );
        let started = Instant::now();
        let report = self.run(&request, deadline).await;
        tracing::info!(
            examined = report.examined,
            matched = report.matched,
            moved = report.moved,
            skipped = report.skipped,
            malformed = report.malformed,
            failed = report.failed,
            not_deleted = report.not_deleted,
            dry_run = report.dry_run,
            stopped = ?report.stopped,
            elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
            "redrive finished"
        );
        Metrics::new()
            .count("RedriveExamined", report.examined as u64)
            .count("RedriveMoved", report.moved as u64)
            .count("RedriveFailed", report.failed as u64)
            .count("RedriveNotDeleted", report.not_deleted as u64)
            .count("RedriveMalformed", report.malformed as u64)
            .emit("dlq-redrive");
        Ok(report)
    }
}
