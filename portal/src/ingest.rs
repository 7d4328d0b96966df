//! Group commit: concurrent submissions to a scroll — single receipts and batches — are
//! coalesced into one append transaction (bounded by a row count and a short wait); a
//! request is answered only after that transaction has committed. A request is never split
//! across transactions, so a batch stays all or nothing; batch items carry no idempotency
//! keys, so the only per-item outcome (an idempotency conflict) concerns single requests,
//! and one request's conflict never fails another's.

use crate::error::ApiError;
use crate::metrics::{RECEIPTS_TOTAL, RECEIPT_WRITE_DURATION, RECEIPT_WRITE_ERRORS};
use ledger::store::{AppendOutcome, NewReceipt, Store};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, Mutex};

type Reply = oneshot::Sender<Result<Vec<AppendOutcome>, ApiError>>;

struct Job {
    items: Vec<NewReceipt>,
    reply: Reply,
}

/// Per-scroll committers, created on first use.
#[derive(Clone)]
pub struct Ingest {
    store: Store,
    max_rows: usize,
    wait: Duration,
    queues: Arc<Mutex<HashMap<String, mpsc::Sender<Job>>>>,
}

impl Ingest {
    /// Group commit over `store` with at most `max_rows` per transaction, waiting up to
    /// `wait` for more submissions once one has arrived.
    pub fn new(store: Store, max_rows: usize, wait: Duration) -> Self {
        Self {
            store,
            max_rows: max_rows.max(1),
            wait,
            queues: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Appends one receipt through the scroll's group commit; returns once durable.
    pub async fn submit(&self, scroll: &str, item: NewReceipt) -> Result<AppendOutcome, ApiError> {
        self.submit_many(scroll, vec![item])
            .await?
            .pop()
            .ok_or_else(|| ApiError::Unavailable("the write returned no outcome".into()))
    }

    /// Appends a batch (no idempotency keys), all or nothing; returns once durable.
    pub async fn submit_batch(
        &self,
        scroll: &str,
        items: Vec<NewReceipt>,
    ) -> Result<Vec<AppendOutcome>, ApiError> {
        self.submit_many(scroll, items).await
    }

    async fn submit_many(
        &self,
        scroll: &str,
        items: Vec<NewReceipt>,
    ) -> Result<Vec<AppendOutcome>, ApiError> {
        let (reply, answer) = oneshot::channel();
        let mut job = Job { items, reply };
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
        let (tx, rx) = mpsc::channel(self.max_rows * 4);
        tokio::spawn(committer(
            self.store.clone(),
            scroll.to_string(),
            rx,
            self.max_rows,
            self.wait,
        ));
        queues.insert(scroll.to_string(), tx.clone());
        tx
    }
}

async fn committer(
    store: Store,
    scroll: String,
    mut rx: mpsc::Receiver<Job>,
    max_rows: usize,
    wait: Duration,
) {
    while let Some(first) = rx.recv().await {
        let mut rows = first.items.len();
        let mut jobs = vec![first];
        while rows < max_rows {
            match rx.try_recv() {
                Ok(j) => {
                    rows += j.items.len();
                    jobs.push(j);
                }
                Err(_) => break,
            }
        }
        if rows < max_rows && !wait.is_zero() {
            let deadline = tokio::time::Instant::now() + wait;
            while rows < max_rows {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(j)) => {
                        rows += j.items.len();
                        jobs.push(j);
                    }
                    _ => break,
                }
            }
        }
        let mut sizes = Vec::with_capacity(jobs.len());
        let mut replies = Vec::with_capacity(jobs.len());
        let mut items = Vec::with_capacity(rows);
        for j in jobs {
            sizes.push(j.items.len());
            replies.push(j.reply);
            items.extend(j.items);
        }
        let start = Instant::now();
        let result = store.append_receipts(&scroll, items, false).await;
        record(&scroll, start, result.as_ref().map(Vec::as_slice));
        match result {
            Ok(outcomes) => {
                let mut outcomes = outcomes.into_iter();
                for (reply, n) in replies.into_iter().zip(sizes) {
                    let _ = reply.send(Ok(outcomes.by_ref().take(n).collect()));
                }
            }
            Err(e) => {
                let err = ApiError::from(e);
                for reply in replies {
                    let _ = reply.send(Err(err.clone()));
                }
            }
        }
    }
}

fn record(
    scroll: &str,
    start: Instant,
    result: Result<&[AppendOutcome], &ledger::store::StoreError>,
) {
    match result {
        Ok(outcomes) => {
            RECEIPT_WRITE_DURATION
                .with_label_values(&[scroll])
                .observe(start.elapsed().as_secs_f64());
            for o in outcomes {
                if let AppendOutcome::Created(r) = o {
                    RECEIPTS_TOTAL
                        .with_label_values(&[scroll, r.receipt.kind.as_str()])
                        .inc();
                }
            }
        }
        Err(e) => {
            let kind = match e {
                ledger::store::StoreError::UnknownScroll(_) => "unknown_scroll",
                ledger::store::StoreError::IdempotencyConflict(_) => "idempotency_conflict",
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
