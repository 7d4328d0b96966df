//! Group commit: concurrent submissions to a scroll — single receipts and batches — are
//! coalesced into one append transaction (bounded by a row count and a short wait); a
//! request is answered only after that transaction has committed. A request is never split
//! across transactions, so a batch stays all or nothing; batches in the group carry no
//! idempotency keys (keyed batches are written on their own, [`Ingest::submit_keyed_batch`]),
//! so the only per-item outcome (an idempotency conflict) concerns single requests, and one
//! request's conflict never fails another's.
//!
//! Keyless groups are written in one round trip at the position the committer expects the
//! scroll's head to be at ([`ReceiptLog::append_at`]); up to `depth` groups are in flight, each
//! waiting in Postgres for the previous one's head-row lock. When the expectation is wrong
//! (another portal wrote, or a write failed) the group falls back to the locking path, so
//! positions stay gap-free whatever happens.
//!
//! One request never fails another's: a group that Postgres refuses for its data (SQLSTATE
//! class 22 or 23 — the append gate catches what it can before grouping, this is the backstop)
//! is split, and each request is written on its own, so only the offending one fails (400
//! `rejected_by_database`). And no request waits longer than the store's call bound
//! ([`ledger::store::DbTimeouts::call_bound`]): past it the request is answered 503
//! `database_unavailable` and, if its group has not been sent yet, it is never written.

use crate::metrics::{type_label, RECEIPTS_TOTAL, RECEIPT_WRITE_DURATION, RECEIPT_WRITE_ERRORS};
use ledger::api_error::ApiError;
use ledger::gate::Admitted;
use ledger::storage::ReceiptLog;
use ledger::store::{AppendOutcome, StoreError};
use ledger::telemetry::REPEATED_LOGS;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, Mutex, Semaphore};

type Reply = oneshot::Sender<Result<Vec<AppendOutcome>, ApiError>>;

struct Job {
    batch: Admitted,
    reply: Reply,
}

/// The receipt log the committers write to.
type Log = Arc<dyn ReceiptLog>;

/// Per-scroll committers, created on first use.
#[derive(Clone)]
pub struct Ingest {
    store: Log,
    call_bound: Duration,
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
    /// Group commit into `store` with at most `max_rows` per transaction, waiting up to
    /// `wait` for more submissions once one has arrived, and up to `depth` transactions in
    /// flight per scroll; no request waits longer than `call_bound`.
    pub fn new(
        store: Log,
        call_bound: Duration,
        max_rows: usize,
        wait: Duration,
        depth: usize,
    ) -> Self {
        Self {
            store,
            call_bound,
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
    pub async fn submit_keyed_batch(
        &self,
        batch: Admitted,
    ) -> Result<Vec<AppendOutcome>, ApiError> {
        let start = Instant::now();
        let scroll = batch.scroll().to_string();
        let result = self.store.append_receipts(batch, true).await;
        record(&scroll, start, result.as_ref().map(Vec::as_slice));
        result.map_err(api_error)
    }

    /// Hands `batch` to its scroll's committer and waits for the outcome, at most the
    /// store's call bound; a request that gives up is skipped if its group has not been
    /// sent (its reply channel is closed).
    async fn submit_many(&self, batch: Admitted) -> Result<Vec<AppendOutcome>, ApiError> {
        let scroll = batch.scroll().to_string();
        let bound = self.call_bound;
        match tokio::time::timeout(bound, self.enqueue(&scroll, batch)).await {
            Ok(outcome) => outcome,
            Err(_) => {
                RECEIPT_WRITE_ERRORS
                    .with_label_values(&[scroll.as_str(), "database_unavailable"])
                    .inc();
                if let Some(suppressed) = REPEATED_LOGS.admit("receipt write timed out", &scroll) {
                    tracing::error!(
                        scroll = %scroll,
                        bound_ms = u64::try_from(bound.as_millis()).unwrap_or(u64::MAX),
                        suppressed,
                        "receipt write timed out"
                    );
                }
                Err(ApiError::Unavailable(format!(
                    "no commit within {} ms",
                    bound.as_millis()
                )))
            }
        }
    }

    async fn enqueue(&self, scroll: &str, batch: Admitted) -> Result<Vec<AppendOutcome>, ApiError> {
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

async fn committer(store: Log, scroll: String, mut rx: mpsc::Receiver<Job>, shape: GroupShape) {
    let head: HeadGuess = Arc::new(std::sync::Mutex::new(None));
    let slots = Arc::new(Semaphore::new(shape.depth));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = rx.recv().await else {
            return;
        };
        let group = gather(first, &mut rx, shape).await;
        if group.parts.is_empty() {
            continue;
        }
        let keyless = group
            .parts
            .iter()
            .all(|p| p.items().iter().all(|i| i.idempotency_key.is_none()));
        let expected = if keyless {
            advance(&head, group.rows() as u64)
        } else {
            None
        };
        let (store, scroll, head) = (store.clone(), scroll.clone(), head.clone());
        tokio::spawn(async move {
            commit(&store, &scroll, &head, expected, group).await;
            drop(slot);
        });
    }
}

/// The requests of one group commit, each with its reply channel.
struct Group {
    parts: Vec<Admitted>,
    replies: Vec<Reply>,
}

impl Group {
    fn rows(&self) -> usize {
        self.parts.iter().map(Admitted::len).sum()
    }
}

/// Collects jobs after `first` until `max_rows` or until `wait` passes without filling up,
/// leaving out requests that have stopped waiting.
async fn gather(first: Job, rx: &mut mpsc::Receiver<Job>, shape: GroupShape) -> Group {
    let mut group = Group {
        parts: Vec::new(),
        replies: Vec::new(),
    };
    let mut rows = 0;
    let mut take = |j: Job, rows: &mut usize| {
        if !j.reply.is_closed() {
            *rows += j.batch.len();
            group.parts.push(j.batch);
            group.replies.push(j.reply);
        }
    };
    take(first, &mut rows);
    while rows < shape.max_rows {
        match rx.try_recv() {
            Ok(j) => take(j, &mut rows),
            Err(_) => break,
        }
    }
    if rows < shape.max_rows && !shape.wait.is_zero() {
        let deadline = tokio::time::Instant::now() + shape.wait;
        while rows < shape.max_rows {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(j)) => take(j, &mut rows),
                _ => break,
            }
        }
    }
    group
}

/// Writes a group and answers its requests; if Postgres refuses the group's data, writes
/// each request on its own instead, so that only the offending one fails.
async fn commit(store: &Log, scroll: &str, head: &HeadGuess, expected: Option<u64>, group: Group) {
    let start = Instant::now();
    let Group { parts, replies } = group;
    let sizes: Vec<usize> = parts.iter().map(Admitted::len).collect();
    let (joined, kept) = if parts.len() > 1 {
        (Admitted::join(parts.clone()), parts)
    } else {
        (Admitted::join(parts), Vec::new())
    };
    let Some(joined) = joined else {
        // A scroll's queue only ever holds batches admitted for that scroll.
        let e = StoreError::Integrity(format!("{scroll}: a group mixed scrolls"));
        answer(replies.into_iter().zip(sizes).collect(), Err(e));
        return;
    };
    let result = commit_group(store, head, expected, joined).await;
    match result {
        Err(e) if e.is_data_error() && kept.len() > 1 => {
            tracing::debug!(
                scroll,
                error = %e,
                requests = kept.len(),
                "group refused for its data; writing its requests one by one"
            );
            for (part, reply) in kept.into_iter().zip(replies) {
                if reply.is_closed() {
                    continue;
                }
                let start = Instant::now();
                let result = commit_group(store, head, None, part).await;
                record(scroll, start, result.as_ref().map(Vec::as_slice));
                let _ = reply.send(result.map_err(api_error));
            }
        }
        result => {
            record(scroll, start, result.as_ref().map(Vec::as_slice));
            answer(replies.into_iter().zip(sizes).collect(), result);
        }
    }
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
    store: &Log,
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
            let err = api_error(e);
            for (reply, _) in replies {
                let _ = reply.send(Err(err.clone()));
            }
        }
    }
}

/// The client's answer for a failed write: a refusal of the data itself is the client's
/// (400, naming only the SQLSTATE: no SQL text or values reach a client), anything else the
/// shared mapping.
fn api_error(e: StoreError) -> ApiError {
    match e.sqlstate() {
        Some(code) if e.is_data_error() => ApiError::bad(
            "rejected_by_database",
            format!("the database refused this request's receipts (SQLSTATE {code})"),
        ),
        _ => ApiError::from(e),
    }
}

/// Counts a write's outcome: receipts and duration when it committed; a failure of the
/// ledger's own (logged at most once per 10 s per scroll, with the number held back) in
/// `vaultmesh_receipt_write_errors_total`, as `database_unavailable` when Postgres could not
/// be reached or did not answer in time.
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
        // A conflict, an unknown scroll or refused data is the client's answer, not a failed
        // write: only the ledger's own failures count (and page, via ReceiptWriteFailure).
        Err(StoreError::UnknownScroll(_) | StoreError::IdempotencyConflict(_)) => {}
        Err(e) if e.is_data_error() => {
            if let Some(suppressed) = REPEATED_LOGS.admit("receipt refused by the database", scroll)
            {
                tracing::warn!(
                    scroll,
                    sqlstate = e.sqlstate(),
                    suppressed,
                    "receipt refused by the database"
                );
            }
        }
        Err(e) => {
            let kind = if e.is_unavailable() {
                "database_unavailable"
            } else {
                "database_error"
            };
            RECEIPT_WRITE_ERRORS
                .with_label_values(&[scroll, kind])
                .inc();
            if let Some(suppressed) = REPEATED_LOGS.admit("receipt write failed", scroll) {
                tracing::error!(scroll, error = %e, suppressed, "receipt write failed");
            }
        }
    }
}
