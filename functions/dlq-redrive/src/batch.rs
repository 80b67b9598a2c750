//! SQS batch calls with per-entry outcomes: `SendMessageBatch`,
//! `DeleteMessageBatch` and `ChangeMessageVisibilityBatch`, in chunks of at
//! most ten entries, entries SQS could not take (not the caller's fault)
//! retried with a short backoff.
//!
//! Every function takes a list of items and returns the positions in that
//! list that SQS accepted.

use std::future::Future;
use std::time::Duration;

use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::{
    BatchResultErrorEntry, ChangeMessageVisibilityBatchRequestEntry,
    DeleteMessageBatchRequestEntry, SendMessageBatchRequestEntry,
};
use futures::StreamExt;

/// Most entries SQS accepts in one batch call.
pub const MAX_BATCH_ENTRIES: usize = 10;

/// Most bytes of message bodies in one `SendMessageBatch` (the smallest
/// limit SQS has had, so it holds on every queue).
pub const MAX_BATCH_BYTES: usize = 262_144;

/// Calls per chunk before entries still not accepted are given up.
const ATTEMPTS: u32 = 3;

/// Wait before the first retry; doubled for each further one.
const BACKOFF: Duration = Duration::from_millis(50);

/// `ChangeMessageVisibilityBatch` calls in flight when releasing.
const RELEASE_CONCURRENCY: usize = 8;

/// An entry SQS did not take.
struct Rejected {
    index: usize,
    /// SQS says the request itself is wrong: retrying cannot help.
    sender_fault: bool,
    code: String,
    message: Option<String>,
}

/// What one batch call answered: accepted positions and rejected entries.
type Answer = (Vec<usize>, Vec<Rejected>);

/// Entry ids are the item's position in the caller's list.
fn entry_id(index: usize) -> String {
    index.to_string()
}

fn answer<'a>(
    successful: impl Iterator<Item = &'a str>,
    failed: &[BatchResultErrorEntry],
) -> Answer {
    let accepted = successful.filter_map(|id| id.parse().ok()).collect();
    let rejected = failed
        .iter()
        .filter_map(|f| {
            Some(Rejected {
                index: f.id.parse().ok()?,
                sender_fault: f.sender_fault,
                code: f.code.clone(),
                message: f.message.clone(),
            })
        })
        .collect();
    (accepted, rejected)
}

/// Runs one batch call for `indices` (at most ten), retrying the entries
/// that were neither accepted nor rejected as the sender's fault. Returns
/// the accepted positions.
async fn with_retries<F, Fut>(operation: &'static str, indices: Vec<usize>, call: F) -> Vec<usize>
where
    F: Fn(Vec<usize>) -> Fut,
    Fut: Future<Output = Result<Answer, String>>,
{
    let mut pending = indices;
    let mut done = Vec::with_capacity(pending.len());
    for attempt in 1..=ATTEMPTS {
        if attempt > 1 {
            tokio::time::sleep(BACKOFF * 2u32.pow(attempt - 2)).await;
        }
        match call(pending.clone()).await {
            Ok((accepted, rejected)) => {
                for r in &rejected {
                    tracing::warn!(
                        operation,
                        entry = r.index,
                        code = %r.code,
                        sender_fault = r.sender_fault,
                        message = r.message.as_deref().unwrap_or_default(),
                        attempt,
                        "SQS did not take a batch entry"
                    );
                }
                let accepted: Vec<usize> = accepted
                    .into_iter()
                    .filter(|i| pending.contains(i))
                    .collect();
                pending.retain(|i| {
                    !accepted.contains(i)
                        && !rejected.iter().any(|r| r.index == *i && r.sender_fault)
                });
                done.extend(accepted);
            }
            Err(error) => {
                tracing::warn!(operation, error = %error, attempt, "SQS batch call failed");
            }
        }
        if pending.is_empty() {
            break;
        }
    }
    done
}

/// Groups positions `0..sizes.len()` into batches of at most ten entries
/// and [`MAX_BATCH_BYTES`] bytes, in order.
pub fn chunks(sizes: &[usize]) -> Vec<Vec<usize>> {
    let mut chunks: Vec<Vec<usize>> = Vec::new();
    let mut bytes = 0;
    for (i, &size) in sizes.iter().enumerate() {
        let fits = chunks
            .last()
            .is_some_and(|c| c.len() < MAX_BATCH_ENTRIES && bytes + size <= MAX_BATCH_BYTES);
        if !fits {
            chunks.push(Vec::with_capacity(MAX_BATCH_ENTRIES));
            bytes = 0;
        }
        bytes += size;
        chunks.last_mut().expect("a chunk exists").push(i);
    }
    chunks
}

/// Runs `call` for positions `0..sizes.len()` in [`chunks`] of them, each
/// with [`with_retries`] and at most `concurrency` chunks in flight; returns
/// the accepted positions, chunk by chunk in order when `concurrency` is 1.
async fn batched<F, Fut>(
    operation: &'static str,
    sizes: &[usize],
    concurrency: usize,
    call: F,
) -> Vec<usize>
where
    F: Fn(Vec<usize>) -> Fut,
    Fut: Future<Output = Result<Answer, String>>,
{
    futures::stream::iter(chunks(sizes))
        .map(|chunk| with_retries(operation, chunk, &call))
        .buffer_unordered(concurrency)
        .concat()
        .await
}

/// A message to send to the delivery queue.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// `MessageGroupId`: the company, so the standard queue is fair across
    /// companies.
    pub group: String,
    /// The message body.
    pub body: String,
}

/// Sends `messages` to `queue_url`, one chunk after the other; returns the
/// positions SQS accepted.
pub async fn send(
    client: &aws_sdk_sqs::Client,
    queue_url: &str,
    messages: &[Outgoing],
) -> Vec<usize> {
    let sizes: Vec<usize> = messages.iter().map(|m| m.body.len()).collect();
    batched("SendMessageBatch", &sizes, 1, |indices| async move {
        let entries = indices
            .iter()
            .map(|&i| {
                SendMessageBatchRequestEntry::builder()
                    .id(entry_id(i))
                    .message_group_id(&messages[i].group)
                    .message_body(&messages[i].body)
                    .build()
                    .expect("id and body are set")
            })
            .collect();
        client
            .send_message_batch()
            .queue_url(queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .map(|out| answer(out.successful.iter().map(|s| s.id.as_str()), &out.failed))
            .map_err(|e| DisplayErrorContext(e).to_string())
    })
    .await
}

/// Deletes the messages with these receipt handles from `queue_url`, one
/// chunk after the other; returns the positions SQS deleted.
pub async fn delete(
    client: &aws_sdk_sqs::Client,
    queue_url: &str,
    receipts: &[String],
) -> Vec<usize> {
    batched(
        "DeleteMessageBatch",
        &vec![0; receipts.len()],
        1,
        |indices| async move {
            let entries = indices
                .iter()
                .map(|&i| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(entry_id(i))
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
                .map(|out| answer(out.successful.iter().map(|s| s.id.as_str()), &out.failed))
                .map_err(|e| DisplayErrorContext(e).to_string())
        },
    )
    .await
}

/// Makes the messages with these receipt handles visible again at once
/// (visibility timeout 0), [`RELEASE_CONCURRENCY`] chunks at a time;
/// returns how many SQS released.
pub async fn release(client: &aws_sdk_sqs::Client, queue_url: &str, receipts: &[String]) -> usize {
    batched(
        "ChangeMessageVisibilityBatch",
        &vec![0; receipts.len()],
        RELEASE_CONCURRENCY,
        |indices| async move {
            let entries = indices
                .iter()
                .map(|&i| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(entry_id(i))
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
                .map(|out| answer(out.successful.iter().map(|s| s.id.as_str()), &out.failed))
                .map_err(|e| DisplayErrorContext(e).to_string())
        },
    )
    .await
    .len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_hold_at_most_ten_entries_in_order() {
        let sizes: Vec<usize> = chunks(&[1; 23]).iter().map(Vec::len).collect();
        assert_eq!(sizes, [10, 10, 3]);
        let order: Vec<usize> = chunks(&[1; 23]).into_iter().flatten().collect();
        assert_eq!(order, (0..23).collect::<Vec<_>>());
        assert!(chunks(&[]).is_empty());
    }

    #[test]
    fn chunks_respect_the_batch_byte_limit() {
        let half = MAX_BATCH_BYTES / 2;
        let sizes: Vec<usize> = chunks(&[half, half, 1, MAX_BATCH_BYTES, 1])
            .iter()
            .map(Vec::len)
            .collect();
        assert_eq!(sizes, [2, 1, 1, 1]);
    }

    fn rejected(index: usize, sender_fault: bool) -> Rejected {
        Rejected {
            index,
            sender_fault,
            code: "X".into(),
            message: None,
        }
    }

    #[tokio::test]
    async fn only_retryable_entries_are_retried() {
        let calls = std::sync::Mutex::new(Vec::new());
        let accepted = with_retries("Test", vec![0, 1, 2, 3], |indices| {
            calls.lock().unwrap().push(indices.clone());
            async move {
                // 0 goes through, 1 is the sender's fault, 2 fails once,
                // 3 never answers and is retried until attempts run out.
                let ok = indices.iter().copied().filter(|&i| i == 0 || i == 2);
                let first = indices.contains(&1);
                let accepted = if first { vec![0] } else { ok.collect() };
                let mut failed = vec![];
                if first {
                    failed.push(rejected(1, true));
                    failed.push(rejected(2, false));
                }
                Ok((accepted, failed))
            }
        })
        .await;
        assert_eq!(accepted, [0, 2]);
        assert_eq!(
            *calls.lock().unwrap(),
            [vec![0, 1, 2, 3], vec![2, 3], vec![3]]
        );
    }

    #[tokio::test]
    async fn batched_calls_cover_every_chunk() {
        let accept_all = |indices: Vec<usize>| async move { Ok((indices, vec![])) };
        let sequential = batched("Test", &[1; 23], 1, accept_all).await;
        assert_eq!(sequential, (0..23).collect::<Vec<_>>(), "in order");
        let mut concurrent = batched("Test", &[1; 23], 8, accept_all).await;
        concurrent.sort_unstable();
        assert_eq!(concurrent, sequential);
    }

    #[tokio::test]
    async fn failed_calls_are_retried_then_given_up() {
        let calls = std::sync::atomic::AtomicU32::new(0);
        let accepted = with_retries("Test", vec![0, 1], |_| {
            calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async { Err::<Answer, _>("boom".to_owned()) }
        })
        .await;
        assert!(accepted.is_empty());
        assert_eq!(calls.into_inner(), ATTEMPTS);
    }
}
