//! The redrive's own SQS batch calls on the DeadLetterQueue:
//! `DeleteMessageBatch` and `ChangeMessageVisibilityBatch`, in batches of
//! at most ten entries, entries SQS could not take (not the caller's fault)
//! retried with a short backoff ([`shared::queue::batch`]). Sends go
//! through the DeliveryQueue's writer ([`shared::queue::QueueWriter`]).
//!
//! Every function takes a list of items and returns the positions in that
//! list that SQS accepted.

use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry,
};
use shared::queue::batch::{self, Answer, Retries};

/// Calls per batch before entries still not accepted are given up.
pub const RETRIES: Retries = Retries::new(3);

/// `ChangeMessageVisibilityBatch` calls in flight when releasing.
const RELEASE_CONCURRENCY: usize = 8;

/// Batches of ten receipt handles (their size does not count).
fn receipt_chunks(receipts: &[String]) -> Vec<Vec<usize>> {
    batch::chunks(&vec![0; receipts.len()], usize::MAX)
}

/// Deletes the messages with these receipt handles from `queue_url`, one
/// batch after the other; returns the positions SQS deleted.
pub async fn delete(
    client: &aws_sdk_sqs::Client,
    queue_url: &str,
    receipts: &[String],
) -> Vec<usize> {
    batch::batched(
        "DeleteMessageBatch",
        receipt_chunks(receipts),
        1,
        RETRIES,
        |indices| async move {
            let entries = indices
                .iter()
                .map(|&i| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(&receipts[i])
                        .build()
                        .expect("id and receipt handle are set")
                })
                .collect();
            client
                .delete_message_batch()
                .queue_url(queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map(|out| Answer::read(out.successful.iter().map(|s| s.id.as_str()), &out.failed))
                .map_err(|e| DisplayErrorContext(e).to_string())
        },
    )
    .await
    .accepted
}

/// Makes the messages with these receipt handles visible again at once
/// (visibility timeout 0), [`RELEASE_CONCURRENCY`] batches at a time;
/// returns how many SQS released.
pub async fn release(client: &aws_sdk_sqs::Client, queue_url: &str, receipts: &[String]) -> usize {
    batch::batched(
        "ChangeMessageVisibilityBatch",
        receipt_chunks(receipts),
        RELEASE_CONCURRENCY,
        RETRIES,
        |indices| async move {
            let entries = indices
                .iter()
                .map(|&i| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(&receipts[i])
                        .visibility_timeout(0)
                        .build()
                        .expect("id and receipt handle are set")
                })
                .collect();
            client
                .change_message_visibility_batch()
                .queue_url(queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map(|out| Answer::read(out.successful.iter().map(|s| s.id.as_str()), &out.failed))
                .map_err(|e| DisplayErrorContext(e).to_string())
        },
    )
    .await
    .accepted
    .len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipts_go_ten_a_batch_in_order() {
        let receipts = vec![String::from("r"); 23];
        let chunks = receipt_chunks(&receipts);
        let sizes: Vec<usize> = chunks.iter().map(Vec::len).collect();
        assert_eq!(sizes, [10, 10, 3]);
        let order: Vec<usize> = chunks.into_iter().flatten().collect();
        assert_eq!(order, (0..23).collect::<Vec<_>>());
    }
}
