//! SQS batch calls with per-entry outcomes: entries packed into batches of
//! at most ten (and, for sends, at most a batch's bytes), the entries SQS
//! did not take retried with a doubling backoff, and the ones it never
//! took reported one by one with the error code of their last rejection.
//!
//! Entry ids are positions in the caller's list, so every outcome names
//! the item it is about.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use aws_sdk_sqs::types::BatchResultErrorEntry;
use futures::StreamExt;

/// Most entries SQS accepts in one batch call.
pub const MAX_BATCH_ENTRIES: usize = 10;

/// Most bytes of message bodies in one `SendMessageBatch` (256 KiB, the
/// smallest limit SQS has had, so it holds on every queue).
pub const MAX_BATCH_BYTES: usize = 262_144;

/// The batch being filled: at most [`MAX_BATCH_ENTRIES`] entries and
/// `max_bytes` of bodies. A lone entry always fits (SQS judges it).
#[derive(Debug, Clone, Copy)]
pub struct BatchLimit {
    max_bytes: usize,
    entries: usize,
    bytes: usize,
}

impl BatchLimit {
    /// An empty batch of at most `max_bytes` of bodies.
    pub fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            entries: 0,
            bytes: 0,
        }
    }

    /// Whether an entry of `size` bytes still fits in this batch.
    pub fn fits(&self, size: usize) -> bool {
        self.entries == 0
            || (self.entries < MAX_BATCH_ENTRIES && self.bytes + size <= self.max_bytes)
    }

    /// Counts an entry of `size` bytes in.
    pub fn add(&mut self, size: usize) {
        self.entries += 1;
        self.bytes += size;
    }

    /// Starts the next batch.
    pub fn clear(&mut self) {
        self.entries = 0;
        self.bytes = 0;
    }
}

/// Groups positions `0..sizes.len()` (entry sizes in bytes) into batches
/// of at most ten entries and `max_bytes`, in order.
pub fn chunks(sizes: &[usize], max_bytes: usize) -> Vec<Vec<usize>> {
    let mut chunks: Vec<Vec<usize>> = Vec::new();
    let mut limit = BatchLimit::new(max_bytes);
    for (i, &size) in sizes.iter().enumerate() {
        if chunks.is_empty() || !limit.fits(size) {
            chunks.push(Vec::with_capacity(MAX_BATCH_ENTRIES));
            limit.clear();
        }
        limit.add(size);
        chunks.last_mut().expect("a chunk exists").push(i);
    }
    chunks
}

/// An entry SQS did not take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// Its position in the caller's list.
    pub index: usize,
    /// SQS says the request itself is wrong: retrying cannot help.
    pub sender_fault: bool,
    /// SQS's error code.
    pub code: String,
    /// SQS's explanation, if any.
    pub message: Option<String>,
}

/// What one batch call answered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answer {
    /// Positions SQS took.
    pub accepted: Vec<usize>,
    /// Entries SQS did not take.
    pub rejected: Vec<Rejected>,
}

impl Answer {
    /// Reads a batch answer whose entry ids are positions.
    pub fn read<'a>(
        successful: impl Iterator<Item = &'a str>,
        failed: &[BatchResultErrorEntry],
    ) -> Self {
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
        Self { accepted, rejected }
    }
}

/// How the entries SQS did not take are tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retries {
    /// Calls per batch, the first included.
    pub attempts: u32,
    /// Wait before the first retry; doubled for each further one.
    pub backoff: Duration,
    /// Whether entries rejected as the sender's fault are tried again too.
    pub sender_faults: bool,
}

impl Retries {
    /// `attempts` calls per batch, 50 ms before the first retry, entries
    /// rejected as the sender's fault given up at once.
    pub const fn new(attempts: u32) -> Self {
        Self {
            attempts,
            backoff: Duration::from_millis(50),
            sender_faults: false,
        }
    }

    /// The same, trying entries rejected as the sender's fault again too.
    pub const fn with_sender_faults(self) -> Self {
        Self {
            sender_faults: true,
            ..self
        }
    }
}

/// An entry SQS never took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed {
    /// Its position in the caller's list.
    pub index: usize,
    /// The error code of its last rejection; `None` when the last call
    /// failed as a whole.
    pub code: Option<String>,
}

/// What a batched operation achieved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Positions SQS took, batch by batch in order when one batch is in
    /// flight at a time.
    pub accepted: Vec<usize>,
    /// Entries SQS never took.
    pub failed: Vec<Failed>,
    /// Batch calls made, retries included.
    pub calls: usize,
}

impl Outcome {
    fn merge(mut self, other: Self) -> Self {
        self.accepted.extend(other.accepted);
        self.failed.extend(other.failed);
        self.calls += other.calls;
        self
    }
}

/// Runs one batch call for `indices` (one batch), retrying as `retries`
/// says; SQS's rejections and failed calls are logged as warnings.
pub async fn with_retries<F, Fut>(
    operation: &'static str,
    indices: Vec<usize>,
    retries: Retries,
    call: F,
) -> Outcome
where
    F: Fn(Vec<usize>) -> Fut,
    Fut: Future<Output = Result<Answer, String>>,
{
    let mut pending = indices;
    let mut outcome = Outcome::default();
    let mut codes: HashMap<usize, String> = HashMap::new();
    for attempt in 1..=retries.attempts {
        if attempt > 1 {
            tokio::time::sleep(retries.backoff * 2u32.pow(attempt - 2)).await;
        }
        outcome.calls += 1;
        match call(pending.clone()).await {
            Ok(Answer { accepted, rejected }) => {
                let accepted: Vec<usize> = accepted
                    .into_iter()
                    .filter(|i| pending.contains(i))
                    .collect();
                pending.retain(|i| !accepted.contains(i));
                outcome.accepted.extend(accepted);
                for r in rejected {
                    tracing::warn!(
                        operation,
                        entry = r.index,
                        code = %r.code,
                        sender_fault = r.sender_fault,
                        message = r.message.as_deref().unwrap_or_default(),
                        attempt,
                        "SQS did not take a batch entry"
                    );
                    if !pending.contains(&r.index) {
                        continue;
                    }
                    if r.sender_fault && !retries.sender_faults {
                        pending.retain(|&i| i != r.index);
                        codes.remove(&r.index);
                        outcome.failed.push(Failed {
                            index: r.index,
                            code: Some(r.code),
                        });
                    } else {
                        codes.insert(r.index, r.code);
                    }
                }
            }
            Err(error) => {
                tracing::warn!(operation, error = %error, attempt, "SQS batch call failed");
                codes.clear();
            }
        }
        if pending.is_empty() {
            break;
        }
    }
    outcome
        .failed
        .extend(pending.into_iter().map(|index| Failed {
            index,
            code: codes.remove(&index),
        }));
    outcome
}

/// Runs `call` for each of `chunks`, each [`with_retries`], at most
/// `concurrency` in flight.
pub async fn batched<F, Fut>(
    operation: &'static str,
    chunks: Vec<Vec<usize>>,
    concurrency: usize,
    retries: Retries,
    call: F,
) -> Outcome
where
    F: Fn(Vec<usize>) -> Fut,
    Fut: Future<Output = Result<Answer, String>>,
{
    futures::stream::iter(chunks)
        .map(|chunk| with_retries(operation, chunk, retries, &call))
        .buffer_unordered(concurrency.max(1))
        .fold(Outcome::default(), |all, one| async move { all.merge(one) })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_hold_at_most_ten_entries_in_order() {
        let sizes: Vec<usize> = chunks(&[1; 23], MAX_BATCH_BYTES)
            .iter()
            .map(Vec::len)
            .collect();
        assert_eq!(sizes, [10, 10, 3]);
        let order: Vec<usize> = chunks(&[1; 23], MAX_BATCH_BYTES)
            .into_iter()
            .flatten()
            .collect();
        assert_eq!(order, (0..23).collect::<Vec<_>>());
        assert!(chunks(&[], MAX_BATCH_BYTES).is_empty());
    }

    #[test]
    fn chunks_respect_the_batch_byte_limit() {
        let half = MAX_BATCH_BYTES / 2;
        let sizes: Vec<usize> = chunks(&[half, half, 1, MAX_BATCH_BYTES, 1], MAX_BATCH_BYTES)
            .iter()
            .map(Vec::len)
            .collect();
        assert_eq!(sizes, [2, 1, 1, 1]);
        let sizes: Vec<usize> = chunks(&[400, 400, 400, 1000, 10], 1000)
            .iter()
            .map(Vec::len)
            .collect();
        assert_eq!(sizes, [2, 1, 1, 1]);
        let sizes: Vec<usize> = chunks(&[2000, 1], 1000).iter().map(Vec::len).collect();
        assert_eq!(sizes, [1, 1], "an oversized entry goes alone");
    }

    #[test]
    fn a_batch_limit_counts_entries_and_bytes() {
        let mut limit = BatchLimit::new(100);
        assert!(limit.fits(500), "a lone entry always fits");
        for _ in 0..MAX_BATCH_ENTRIES {
            assert!(limit.fits(1));
            limit.add(1);
        }
        assert!(!limit.fits(1), "ten entries");
        limit.clear();
        limit.add(60);
        assert!(limit.fits(40));
        assert!(!limit.fits(41));
    }

    fn rejected(index: usize, sender_fault: bool) -> Rejected {
        Rejected {
            index,
            sender_fault,
            code: format!("E{index}"),
            message: None,
        }
    }

    #[tokio::test]
    async fn only_retryable_entries_are_retried() {
        let calls = std::sync::Mutex::new(Vec::new());
        let outcome = with_retries("Test", vec![0, 1, 2, 3], Retries::new(3), |indices| {
            calls.lock().unwrap().push(indices.clone());
            async move {
                // 0 goes through, 1 is the sender's fault, 2 fails once,
                // 3 never answers and is retried until attempts run out.
                let ok = indices.iter().copied().filter(|&i| i == 0 || i == 2);
                let first = indices.contains(&1);
                let accepted = if first { vec![0] } else { ok.collect() };
                let mut rejected = vec![];
                if first {
                    rejected.push(self::rejected(1, true));
                    rejected.push(self::rejected(2, false));
                }
                Ok(Answer { accepted, rejected })
            }
        })
        .await;
        assert_eq!(outcome.accepted, [0, 2]);
        assert_eq!(
            outcome.failed,
            [
                Failed {
                    index: 1,
                    code: Some("E1".into())
                },
                Failed {
                    index: 3,
                    code: None
                }
            ]
        );
        assert_eq!(outcome.calls, 3);
        assert_eq!(
            *calls.lock().unwrap(),
            [vec![0, 1, 2, 3], vec![2, 3], vec![3]]
        );
    }

    #[tokio::test]
    async fn sender_faults_are_retried_when_asked_and_keep_their_code() {
        let retries = Retries {
            backoff: Duration::ZERO,
            ..Retries::new(2).with_sender_faults()
        };
        let outcome = with_retries("Test", vec![0, 1], retries, |_| async {
            Ok(Answer {
                accepted: vec![0],
                rejected: vec![rejected(1, true)],
            })
        })
        .await;
        assert_eq!(outcome.accepted, [0]);
        assert_eq!(
            outcome.failed,
            [Failed {
                index: 1,
                code: Some("E1".into())
            }]
        );
        assert_eq!(outcome.calls, 2, "the rejected entry was tried again");
    }

    #[tokio::test]
    async fn batched_calls_cover_every_chunk() {
        let accept_all = |indices: Vec<usize>| async move {
            Ok(Answer {
                accepted: indices,
                rejected: vec![],
            })
        };
        let sequential = batched(
            "Test",
            chunks(&[1; 23], MAX_BATCH_BYTES),
            1,
            Retries::new(1),
            accept_all,
        )
        .await;
        assert_eq!(sequential.accepted, (0..23).collect::<Vec<_>>(), "in order");
        assert_eq!(sequential.calls, 3);
        let mut concurrent = batched(
            "Test",
            chunks(&[1; 23], MAX_BATCH_BYTES),
            8,
            Retries::new(1),
            accept_all,
        )
        .await;
        concurrent.accepted.sort_unstable();
        assert_eq!(concurrent, sequential);
    }

    #[tokio::test]
    async fn failed_calls_are_retried_then_given_up() {
        let calls = std::sync::atomic::AtomicU32::new(0);
        let outcome = with_retries("Test", vec![0, 1], Retries::new(3), |_| {
            calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async { Err::<Answer, _>("boom".to_owned()) }
        })
        .await;
        assert!(outcome.accepted.is_empty());
        assert_eq!(
            outcome.failed,
            [0, 1].map(|index| Failed { index, code: None })
        );
        assert_eq!(calls.into_inner(), 3);
    }
}
