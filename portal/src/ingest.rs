//! Group commit: concurrent submissions to a scroll — single receipts and batches — are
//! coalesced into one append transaction (bounded by a row count and a short wait); a
//! request is answered only after that transaction has committed. A request is never split
//! across transactions, so a batch stays all or nothing; batches in the group carry no
//! idempotency keys (keyed batches are written on their own, [`Ingest::submit_keyed_batch`]),
//! so the only per-item outcome (an idempotency conflict) concerns single requests, and one
//! request's conflict never fails another's.
//!
//! Keyless groups are written in one round trip at the position the committer expects the
//! scroll's head to be at ([`Store::append_at`]); up to `depth` groups are in flight, each
//! waiting in Postgres for the previous one's head-row lock. When the expectation is wrong
//! (another portal wrote, or a write failed) the group falls back to the locking path, so
//! positions stay gap-free whatever happens.

use crate::metrics::{type_label, RECEIPTS_TOTAL, RECEIPT_WRITE_DURATION, RECEIPT_WRITE_ERRORS};
use ledger::api_error::ApiError;
use ledger::gate::Admitted;
use ledger::store::{AppendOutcome, Store, StoreError};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, Mutex, Semaphore};

type Reply = oneshot::Sender<Result<Vec<AppendOutcome>, ApiError>>;

struct Job {
    batch: Admitted,
    reply: Reply,
}

/// Per-scroll committers, created on first use.
#[derive(Clone)]
pub struct Ingest {
    store: Store,
    shape: GroupShape,
    queues: Arc<Mutex<HashMap<String, mpsc::Sender<Job>>>>,
}

/// How a committer forms and sends groups.
#[derive(Clone, Copy)]
struct GroupShape {
    max_rows: usize,
    wait: Duration,
    depth: usize,
}

impl Ingest {
    /// Group commit over `store` with at most `max_rows` per transaction, waiting up to
    /// `wait` for more submissions once one has arrived, and up to `depth` transactions in
    /// flight per scroll.
    pub fn new(store: Store, max_rows: usize, wait: Duration, depth: usize) -> Self {
        Self {
            store,
            shape: GroupShape {
                max_rows: max_rows.max(1),
                wait,
                depth: depth.max(1),
            },
            queues: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Appends one admitted receipt through the scroll's group commit; returns once durable.
    pub async fn submit(&self, batch: Admitted) -> Result<AppendOutcome, ApiError> {
        self.submit_many(batch)
            .await?
            .pop()
            .ok_or_else(|| ApiError::Unavailable("the write returned no outcome".into()))
    }

    /// Appends an admitted batch (no idempotency keys), all or nothing; returns once durable.
    pub async fn submit_batch(&self, batch: Admitted) -> Result<Vec<AppendOutcome>, ApiError> {
        self.submit_many(batch).await
    }

    /// Appends a batch whose items carry idempotency keys in its own transaction, all or
    /// nothing: a key seen with another request fails the whole batch (409), and a replay of
    /// the same batch returns the original receipts. (Outside the group commit, whose
    /// per-item outcomes could split a batch.)
    pub async fn submit_keyed_batch(&self, batch: Admitted) -> Result<Vec<AppendOutcome>, ApiError> {
        let start = Instant::now();
        let scroll = batch.scroll().to_string();
        let result = self.store.append_receipts(batch, true).await;
        record(&scroll, start, result.as_ref().map(Vec::as_slice));
        result.map_err(ApiError::from)
    }

    async fn submit_many(&self, batch: Admitted) -> Result<Vec<AppendOutcome>, ApiError> {
        let scroll = batch.scroll().to_string();
        let scroll = scroll.as_str();
        let (reply, answer) = oneshot::channel();
        let mut job = Job { batch, reply };
        for _ in 0..2 {
            let sender = self.queue(scroll).await;
            match sender.send(job).await {
                Ok(()) => {
                    return answer.await.unwrap_or_else(|_| {
                        Err(ApiError::Unavailable("the write was interrupted".into()))
                    })
                }
                Err(mpsc::error::SendError(j)) => {
                    job = j;
                    self.queues.lock().await.remove(scroll);
                }
            }
        }
        Err(ApiError::Unavailable(
            "the scroll's committer is not running".into(),
        ))
    }

    async fn queue(&self, scroll: &str) -> mpsc::Sender<Job> {
        let mut queues = self.queues.lock().await;
        if let Some(q) = queues.get(scroll) {
            if !q.is_closed() {
                return q.clone();
            }
        }
        let (tx, rx) = mpsc::channel(self.shape.max_rows * 4);
        tokio::spawn(committer(
            self.store.clone(),
            scroll.to_string(),
            rx,
            self.shape,
        ));
        queues.insert(scroll.to_string(), tx.clone());
        tx
    }
}

/// The committer's belief about the scroll's next position: `None` until a write tells it,
/// and again after a mismatch (another writer moved the head, or a write failed).
type HeadGuess = Arc<std::sync::Mutex<Option<u64>>>;

async fn committer(store: Store, scroll: String, mut rx: mpsc::Receiver<Job>, shape: GroupShape) {
    let head: HeadGuess = Arc::new(std::sync::Mutex::new(None));
    let slots = Arc::new(Semaphore::new(shape.depth));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = rx.recv().await else {
            return;
        };
        let (batch, replies) = gather(first, &mut rx, shape).await;
        let Some(batch) = batch else {
            // A scroll's queue only ever holds batches admitted for that scroll.
            answer(
                replies,
                Err(StoreError::Integrity(format!("{scroll}: a group mixed scrolls"))),
            );
            continue;
        };
        let keyless = batch.items().iter().all(|i| i.idempotency_key.is_none());
        let expected = if keyless {
            advance(&head, batch.len() as u64)
        } else {
            None
        };
        let (store, scroll, head) = (store.clone(), scroll.clone(), head.clone());
        tokio::spawn(async move {
            let start = Instant::now();
            let result = commit_group(&store, &head, expected, batch).await;
            record(&scroll, start, result.as_ref().map(Vec::as_slice));
            answer(replies, result);
            drop(slot);
        });
    }
}

/// Collects jobs after `first` until `max_rows` or until `wait` passes without filling up.
async fn gather(
    first: Job,
    rx: &mut mpsc::Receiver<Job>,
    shape: GroupShape,
) -> (Option<Admitted>, Vec<(Reply, usize)>) {
    let mut rows = first.batch.len();
    let mut jobs = vec![first];
    while rows < shape.max_rows {
        match rx.try_recv() {
            Ok(j) => {
                rows += j.batch.len();
                jobs.push(j);
            }
            Err(_) => break,
        }
    }
    if rows < shape.max_rows && !shape.wait.is_zero() {
        let deadline = tokio::time::Instant::now() + shape.wait;
        while rows < shape.max_rows {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(j)) => {
                    rows += j.batch.len();
                    jobs.push(j);
                }
                _ => break,
            }
        }
    }
    let mut replies = Vec::with_capacity(jobs.len());
    let mut batches = Vec::with_capacity(jobs.len());
    for j in jobs {
        replies.push((j.reply, j.batch.len()));
        batches.push(j.batch);
    }
    (Admitted::join(batches), replies)
}

/// Takes the next `n` positions from the guess, if there is one.
fn advance(head: &HeadGuess, n: u64) -> Option<u64> {
    let mut guess = head
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let at = *guess;
    *guess = at.map(|g| g + n);
    at
}

fn set_guess(head: &HeadGuess, value: Option<u64>) {
    *head
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = value;
}

/// Writes one group: in one round trip at the guessed position when there is a guess,
/// otherwise (or when the guess was wrong) through the locking path, which always works.
async fn commit_group(
    store: &Store,
    head: &HeadGuess,
    expected: Option<u64>,
    batch: Admitted,
) -> Result<Vec<AppendOutcome>, StoreError> {
    let batch = match expected {
        Some(at) => match store.append_at(at, batch).await {
            Ok(Ok(outcomes)) => return Ok(outcomes),
            Ok(Err(batch)) => {
                set_guess(head, None);
                batch
            }
            Err(e) => {
                set_guess(head, None);
                return Err(e);
            }
        },
        None => batch,
    };
    let outcomes = store.append_receipts(batch, false).await?;
    let next = outcomes.iter().rev().find_map(|o| match o {
        AppendOutcome::Created(r) => Some(r.receipt.seq + 1),
        _ => None,
    });
    if next.is_some() {
        let mut guess = head
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if guess.is_none() {
            *guess = next;
        }
    }
    Ok(outcomes)
}

/// Hands each request its share of the group's outcomes, or the group's error.
fn answer(replies: Vec<(Reply, usize)>, result: Result<Vec<AppendOutcome>, StoreError>) {
    match result {
        Ok(outcomes) => {
            let mut outcomes = outcomes.into_iter();
            for (reply, n) in replies {
                let _ = reply.send(Ok(outcomes.by_ref().take(n).collect()));
            }
        }
        Err(e) => {
            let err = ApiError::from(e);
            for (reply, _) in replies {
                let _ = reply.send(Err(err.clone()));
            }
        }
    }
}

fn record(scroll: &str, start: Instant, result: Result<&[AppendOutcome], &StoreError>) {
    match result {
        Ok(outcomes) => {
            RECEIPT_WRITE_DURATION
                .with_label_values(&[scroll])
                .observe(start.elapsed().as_secs_f64());
            for o in outcomes {
                if let AppendOutcome::Created(r) = o {
                    RECEIPTS_TOTAL
                        .with_label_values(&[scroll, type_label(&r.receipt.kind)])
                        .inc();
                }
            }
        }
        // A conflict or an unknown scroll is the client's answer, not a failed write: only
        // the ledger's own failures count (and page, via ReceiptWriteFailure).
        Err(
            ledger::store::StoreError::UnknownScroll(_)
            | ledger::store::StoreError::IdempotencyConflict(_),
        ) => {}
        Err(e) => {
            let kind = match e {
                ledger::store::StoreError::Pool(_) => "database_unavailable",
                _ => "database_error",
            };
            RECEIPT_WRITE_ERRORS
                .with_label_values(&[scroll, kind])
                .inc();
            tracing::error!(scroll, error = %e, "receipt write failed");
        }
    }
}
