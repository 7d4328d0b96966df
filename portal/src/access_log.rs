//! The read audit (SPEC §13, the data-vault runbook's hash-chained read log): every read of
//! receipt contents with a reader or admin key is counted here and, once per window, written
//! as `access_recorded` receipts in the `access` scroll — one per (key, scroll) with the
//! number of requests and receipts read, the positions read as ranges, and the RFC 6962 root
//! of their leaf hashes in position order — so who read what is as tamper-evident as the
//! receipts, without one write per read. `vaultmesh_access_total{scroll,action,result}`
//! counts reads and denials as they happen.

use chrono::{DateTime, Utc};
use ledger::gate::{AppendGate, Service, Writer};
use ledger::hash::{to_hex, Hash};
use ledger::merkle::CompactTree;
use ledger::receipt::ReceiptDraft;
use ledger::storage::ReceiptLog;
use ledger::store::NewReceipt;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// The scroll access receipts go to.
pub const ACCESS_SCROLL: &str = "access";

/// Distinct positions one access receipt holds; a (key, scroll) pair that reads more in a
/// window gets several receipts (memory per pair stays bounded).
pub const MAX_POSITIONS_PER_RECEIPT: usize = 2048;

/// Access payloads waiting to be written (Postgres unreachable) beyond which reads of
/// receipt contents are refused with 503: the audit fails closed rather than let reads go
/// unrecorded or memory grow without bound.
pub const MAX_BACKLOG: usize = 10_000;

/// The label for a denial whose scroll is not known to exist (names are client-chosen, so
/// they never become labels unchecked).
pub const UNKNOWN_SCROLL: &str = "_unknown";

/// The reads of one key in one scroll within a window.
#[derive(Debug, Default)]
struct Reads {
    first_at: Option<DateTime<Utc>>,
    requests: u64,
    receipts: u64,
    actions: BTreeMap<&'static str, u64>,
    positions: BTreeMap<u64, Hash>,
}

/// A (key, scroll) pair's reads closed before its window ended (it reached the position
/// cap), kept raw so the payload is built at flush time, off the read path.
#[derive(Debug)]
struct Closed {
    key_id: String,
    scroll: String,
    reads: Reads,
    window_start: DateTime<Utc>,
    closed_at: DateTime<Utc>,
}

#[derive(Debug)]
struct Window {
    started: DateTime<Utc>,
    /// key id → scroll → reads (looked up by `&str`, so a read allocates nothing once its
    /// pair is known).
    open: HashMap<String, HashMap<String, Reads>>,
    closed: Vec<Closed>,
    /// Payloads a failed flush handed back.
    retry: Vec<Value>,
}

impl Default for Window {
    fn default() -> Self {
        Self {
            started: Utc::now(),
            open: HashMap::new(),
            closed: Vec::new(),
            retry: Vec::new(),
        }
    }
}

/// Reads counted since the last flush, and payloads waiting to be written.
#[derive(Clone, Default)]
pub struct AccessLog {
    window: Arc<Mutex<Window>>,
    /// Closed pairs and payloads waiting (`closed` + `retry`), readable without the lock.
    backlog: Arc<std::sync::atomic::AtomicUsize>,
}

impl AccessLog {
    /// Records one request by `key_id` that read `read` (position, leaf hash) of `scroll`.
    pub fn record(&self, key_id: &str, scroll: &str, action: &'static str, read: &[(u64, Hash)]) {
        crate::metrics::ACCESS_TOTAL
            .with_label_values(&[scroll, action, "allowed"])
            .inc();
        let Ok(mut guard) = self.window.lock() else {
            return;
        };
        let w = &mut *guard;
        if !w.open.contains_key(key_id) {
            w.open.insert(key_id.to_string(), HashMap::new());
        }
        let Some(scrolls) = w.open.get_mut(key_id) else {
            return;
        };
        if !scrolls.contains_key(scroll) {
            scrolls.insert(scroll.to_string(), Reads::default());
        }
        let Some(reads) = scrolls.get_mut(scroll) else {
            return;
        };
        // A receipt never holds more than MAX_POSITIONS_PER_RECEIPT positions: a pair whose
        // next read would overflow it is closed first.
        if !reads.positions.is_empty()
            && reads.positions.len() + read.len() > MAX_POSITIONS_PER_RECEIPT
        {
            w.closed.push(Closed {
                key_id: key_id.to_string(),
                scroll: scroll.to_string(),
                reads: std::mem::take(reads),
                window_start: w.started,
                closed_at: Utc::now(),
            });
            self.backlog.store(
                w.closed.len() + w.retry.len(),
                std::sync::atomic::Ordering::Relaxed,
            );
        }
        if reads.first_at.is_none() {
            reads.first_at = Some(Utc::now());
        }
        reads.requests += 1;
        reads.receipts += read.len() as u64;
        *reads.actions.entry(action).or_default() += 1;
        for (seq, hash) in read {
            reads.positions.insert(*seq, *hash);
        }
    }

    /// Whether so many access payloads wait to be written that reads must be refused.
    pub fn backlog_full(&self) -> bool {
        self.backlog.load(std::sync::atomic::Ordering::Relaxed) >= MAX_BACKLOG
    }

    /// Counts a refused read of receipt contents.
    pub fn denied(&self, scroll_label: &str, action: &'static str) {
        crate::metrics::ACCESS_TOTAL
            .with_label_values(&[scroll_label, action, "denied"])
            .inc();
    }

    /// Closes the window: every payload to write.
    fn take(&self) -> Vec<Value> {
        let (retry, closed, open, started, now) = {
            let Ok(mut w) = self.window.lock() else {
                return Vec::new();
            };
            let now = Utc::now();
            let started = std::mem::replace(&mut w.started, now);
            let retry = std::mem::take(&mut w.retry);
            let closed = std::mem::take(&mut w.closed);
            let open = std::mem::take(&mut w.open);
            self.backlog.store(0, std::sync::atomic::Ordering::Relaxed);
            (retry, closed, open, started, now)
        };
        let mut out = retry;
        for c in closed {
            out.push(payload(
                &c.key_id,
                &c.scroll,
                c.reads,
                c.window_start,
                c.closed_at,
            ));
        }
        let mut open: Vec<(String, String, Reads)> = open
            .into_iter()
            .flat_map(|(k, scrolls)| scrolls.into_iter().map(move |(s, r)| (k.clone(), s, r)))
            .collect();
        open.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        for (key_id, scroll, reads) in open {
            out.push(payload(&key_id, &scroll, reads, started, now));
        }
        out
    }

    /// Puts back payloads that could not be written (they are written with the next window).
    fn restore(&self, mut payloads: Vec<Value>) {
        if let Ok(mut w) = self.window.lock() {
            payloads.append(&mut w.retry);
            w.retry = payloads;
            self.backlog.store(
                w.closed.len() + w.retry.len(),
                std::sync::atomic::Ordering::Relaxed,
            );
        }
    }

    /// Writes the window's access receipts through the gate as the portal; returns how many.
    pub async fn flush(&self, gate: &AppendGate, store: &dyn ReceiptLog) -> Result<usize, String> {
        let payloads = self.take();
        if payloads.is_empty() {
            return Ok(0);
        }
        let writer = Writer::Service(Service::Portal);
        let mut items = Vec::with_capacity(payloads.len());
        for p in &payloads {
            match ReceiptDraft::new("access_recorded", p.clone()) {
                Ok(draft) => items.push(NewReceipt {
                    draft,
                    submitter: writer.submitter().to_string(),
                    idempotency_key: None,
                    request_hash: None,
                }),
                Err(e) => return Err(format!("access receipt: {e}")),
            }
        }
        let n = items.len();
        let result = match gate.admit(&writer, ACCESS_SCROLL, items) {
            Ok(admitted) => store
                .append_receipts(admitted, true)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match result {
            Ok(()) => Ok(n),
            Err(e) => {
                self.restore(payloads);
                Err(e)
            }
        }
    }
}

/// The `access_recorded` payload of one key's reads of one scroll in the window that began
/// at `window_start`.
fn payload(
    key_id: &str,
    scroll: &str,
    reads: Reads,
    window_start: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Value {
    let mut ranges: Vec<[u64; 2]> = Vec::new();
    let mut tree = CompactTree::<ledger::hash::Sha3Digest>::default();
    for (seq, hash) in &reads.positions {
        match ranges.last_mut() {
            Some(r) if r[1] + 1 == *seq => r[1] = *seq,
            _ => ranges.push([*seq, *seq]),
        }
        tree.push(*hash);
    }
    let first_at = reads.first_at.unwrap_or(now);
    json!({
        "key_id": key_id,
        "scroll": scroll,
        "window_start": ledger::receipt::format_timestamp(window_start),
        "window_end": ledger::receipt::format_timestamp(now),
        "first_read_at": ledger::receipt::format_timestamp(first_at),
        "requests": reads.requests,
        "receipts_read": reads.receipts,
        "actions": reads.actions,
        "positions": ranges,
        "distinct": reads.positions.len(),
        "leaf_root": to_hex(&tree.root()),
    })
}

/// Flushes the read audit every `window`, and once more when the portal stops.
pub async fn run(
    log: AccessLog,
    gate: AppendGate,
    store: std::sync::Arc<dyn ReceiptLog>,
    window: std::time::Duration,
    shutdown: ledger::service::Shutdown,
) {
    let stop = shutdown.wait();
    tokio::pin!(stop);
    loop {
        let stopping = tokio::select! {
            _ = &mut stop => true,
            _ = tokio::time::sleep(window) => false,
        };
        match log.flush(&gate, store.as_ref()).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(receipts = n, "read audit receipted"),
            Err(e) => {
                tracing::warn!(error = %e, "read audit not written; kept for the next window")
            }
        }
        if stopping {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_become_ranges_and_a_root_over_their_leaf_hashes() {
        let log = AccessLog::default();
        let h = |i: u64| ledger::hash::Sha3Hasher::plain(&i.to_be_bytes());
        log.record("key_r", "drills", "get", &[(3, h(3))]);
        log.record(
            "key_r",
            "drills",
            "list",
            &[(4, h(4)), (5, h(5)), (9, h(9))],
        );
        log.record("key_r", "drills", "get", &[(3, h(3))]);
        log.record("key_s", "drills", "by_hash", &[(1, h(1))]);
        let out = log.take();
        assert_eq!(out.len(), 2);
        let r = &out[0];
        assert_eq!(r["key_id"], "key_r");
        assert_eq!(r["requests"], 3);
        assert_eq!(r["receipts_read"], 5);
        assert_eq!(r["distinct"], 4);
        assert_eq!(r["positions"], json!([[3, 5], [9, 9]]));
        let mut tree = CompactTree::<ledger::hash::Sha3Digest>::default();
        for i in [3, 4, 5, 9] {
            tree.push(h(i));
        }
        assert_eq!(r["leaf_root"], to_hex(&tree.root()));
        assert!(log.take().is_empty());
    }

    #[test]
    fn an_unwritable_backlog_closes_reads() {
        let log = AccessLog::default();
        assert!(!log.backlog_full());
        log.restore(vec![json!({}); MAX_BACKLOG]);
        assert!(log.backlog_full());
        assert_eq!(log.take().len(), MAX_BACKLOG);
        assert!(!log.backlog_full());
    }

    #[test]
    fn a_heavy_reader_gets_several_bounded_receipts() {
        let log = AccessLog::default();
        let h = [7u8; 32];
        for i in 0..(MAX_POSITIONS_PER_RECEIPT as u64 * 2 + 5) {
            log.record("key_r", "drills", "get", &[(i, h)]);
        }
        let out = log.take();
        assert_eq!(out.len(), 3);
        assert!(out
            .iter()
            .all(|p| p["distinct"].as_u64() <= Some(MAX_POSITIONS_PER_RECEIPT as u64)));
        let total: u64 = out.iter().filter_map(|p| p["receipts_read"].as_u64()).sum();
        assert_eq!(total, MAX_POSITIONS_PER_RECEIPT as u64 * 2 + 5);
    }
}
