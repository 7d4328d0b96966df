//! Divergence bookkeeping: every finding this guardian has raised, under an id that includes
//! the epoch in which it was first seen, whether it is still reported, and whether an
//! operator acknowledged it. New findings raise the gauge and are recorded in
//! `anchor_divergence` receipts; acknowledgements name explicit ids and are recorded in
//! `divergence_acknowledged` receipts carrying a note signed by the guardian's key. After a
//! restart both are read back, and only receipts the guardian itself wrote count.

use crate::anchor::{Anchorer, GUARDIAN_SCROLL, GUARDIAN_SUBMITTER};
use crate::divergence::Finding;
use crate::error::GuardianError;
use crate::metrics::{sentinel, ANCHOR_EPOCH, PROOFCHAIN_DIVERGENCE};
use ledger::hash::{to_hex, Sha3Hasher};
use ledger::note::{NoteSigner, NoteVerifier};
use ledger::store::{DbRole, Store, StoredReceipt};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use tokio::sync::Mutex;

/// Receipt type of an operator's acknowledgement of divergence findings.
pub const DIVERGENCE_ACK: &str = "divergence_acknowledged";
/// Receipt type that records newly raised findings.
pub const DIVERGENCE_EVENT: &str = "anchor_divergence";
/// Findings listed per `anchor_divergence` receipt (well within a payload's 64 KiB).
const PER_RECEIPT: usize = 25;
/// Most findings one acknowledgement may name (its ids appear twice in a payload).
pub const MAX_ACK_IDS: usize = 200;
/// Most findings recorded by one raise (the rest are counted and logged).
const MAX_RECORDED: usize = 1_000;

/// The pass that reported a finding. Each source reports all of its current findings on
/// every pass, so a finding its source no longer reports has cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Integration: receipts and tiles checked before a checkpoint is signed.
    Integration,
    /// A full verification pass (recompute, checkpoints, ProofChain, journal).
    Verification,
    /// A sink whose own history disagrees with the stored records.
    Sink,
    /// Checks run once when a guardian becomes leader.
    Start,
}

/// One known finding.
#[derive(Debug, Clone, Serialize)]
pub struct KnownFinding {
    /// Its id: see [`finding_id`].
    pub id: String,
    /// What was found.
    #[serde(flatten)]
    pub finding: Finding,
    /// The newest anchored epoch when it was first seen (0 before the first epoch).
    pub first_seen_epoch: u64,
    /// The pass that reports it.
    pub source: Source,
    /// Whether an operator acknowledged it.
    pub acknowledged: bool,
    /// Whether the latest pass of its source still reported it.
    pub active: bool,
}

/// How a finding is listed in an `anchor_divergence` receipt.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Recorded {
    id: String,
    first_seen_epoch: u64,
    source: Source,
    scroll: Option<String>,
    size: Option<u64>,
    detail: String,
}

/// Why an acknowledgement was refused.
#[derive(Debug, thiserror::Error)]
pub enum AckError {
    /// The request named no finding.
    #[error("name the findings to acknowledge: {{\"findings\": [\"<id>\", …]}}")]
    Empty,
    /// The request named more findings than one acknowledgement may hold.
    #[error("at most {MAX_ACK_IDS} findings per acknowledgement")]
    TooMany,
    /// Ids this guardian does not know.
    #[error("unknown finding ids: {}", .0.join(", "))]
    Unknown(Vec<String>),
    /// Ids acknowledged before.
    #[error("already acknowledged: {}", .0.join(", "))]
    AlreadyAcknowledged(Vec<String>),
    /// The acknowledgement could not be signed; nothing was acknowledged.
    #[error("signing the acknowledgement: {0}")]
    Sign(#[from] ledger::note::NoteError),
    /// The ledger could not be read or the acknowledgement recorded; nothing was
    /// acknowledged.
    #[error(transparent)]
    Ledger(#[from] GuardianError),
}

/// A finding's id: SHA3-256 (hex) of the epoch in which it was first seen, a newline, and
/// the finding's JSON. A finding that clears and comes back in a later epoch is a new one.
pub fn finding_id(f: &Finding, first_seen_epoch: u64) -> String {
    let json = serde_json::to_string(f).unwrap_or_default();
    to_hex(&Sha3Hasher::plain(
        format!("{first_seen_epoch}\n{json}").as_bytes(),
    ))
}

/// The first line of an acknowledgement note's text.
pub fn ack_origin(mesh: &str) -> String {
    format!("{mesh}/divergence-ack")
}

#[derive(Default)]
struct Book {
    /// Every known finding, by id.
    records: BTreeMap<String, KnownFinding>,
    /// The newest id of each finding (by its JSON).
    latest: HashMap<String, String>,
    /// Ids acknowledged in the ledger, also those not (yet) known.
    acked: HashSet<String>,
    /// Whether the guardian's own receipts have been read back.
    loaded: bool,
}

impl Book {
    fn insert(&mut self, record: KnownFinding) {
        let key = serde_json::to_string(&record.finding).unwrap_or_default();
        self.latest.insert(key, record.id.clone());
        self.records.insert(record.id.clone(), record);
    }

    fn update_gauge(&self) {
        let open = self.records.values().any(|r| !r.acknowledged);
        PROOFCHAIN_DIVERGENCE.set(if open { 1.0 } else { 0.0 });
    }
}

/// The findings raised so far and their acknowledgements.
pub struct Findings {
    store: Store,
    mesh: String,
    signer: NoteSigner,
    verifier: NoteVerifier,
    book: Mutex<Book>,
}

impl Findings {
    /// Bookkeeping for the guardian of `mesh` whose key is `signer`.
    pub fn new(store: Store, mesh: String, signer: NoteSigner) -> Self {
        let verifier = signer.verifier();
        Self {
            store,
            mesh,
            signer,
            verifier,
            book: Mutex::new(Book::default()),
        }
    }

    /// Raises what one pass of `source` found. Findings not known before get an id (with
    /// the current epoch), a sentinel event, an error log, and are recorded in
    /// `anchor_divergence` receipts; known ones its source no longer reports are marked
    /// cleared. The gauge is 1 while any known finding is unacknowledged.
    pub async fn raise(&self, anchorer: &Anchorer, source: Source, findings: &[Finding]) {
        let mut book = self.book.lock().await;
        if let Err(e) = self.load(&mut book).await {
            tracing::warn!(error = %e, "could not read divergence receipts; retried next pass");
        }
        let mut epoch = None;
        let mut reported = HashSet::new();
        let mut fresh = Vec::new();
        for f in findings {
            let key = serde_json::to_string(f).unwrap_or_default();
            let known = book.latest.get(&key).cloned();
            if let Some(r) = known.as_ref().and_then(|id| book.records.get(id)) {
                if r.active {
                    reported.insert(r.id.clone());
                    continue;
                }
            }
            let e = match epoch {
                Some(e) => e,
                None => *epoch.insert(self.current_epoch().await),
            };
            let id = finding_id(f, e);
            reported.insert(id.clone());
            if let Some(r) = book.records.get_mut(&id) {
                r.active = true;
                continue;
            }
            let acknowledged = book.acked.contains(&id);
            let record = KnownFinding {
                id,
                finding: f.clone(),
                first_seen_epoch: e,
                source,
                acknowledged,
                active: true,
            };
            fresh.push(record.clone());
            book.insert(record);
        }
        for r in book.records.values_mut() {
            if r.source == source && r.active && !reported.contains(&r.id) {
                r.active = false;
                tracing::info!(id = %r.id, "divergence finding no longer reported");
            }
        }
        book.update_gauge();
        drop(book);
        if !fresh.is_empty() {
            self.record(anchorer, &fresh).await;
        }
    }

    async fn record(&self, anchorer: &Anchorer, fresh: &[KnownFinding]) {
        for f in fresh {
            sentinel("divergence", "critical");
            tracing::error!(
                id = %f.id,
                scroll = f.finding.scroll.as_deref().unwrap_or("-"),
                size = f.finding.size,
                detail = %f.finding.detail,
                "divergence detected"
            );
        }
        if fresh.len() > MAX_RECORDED {
            tracing::error!(
                found = fresh.len(),
                recorded = MAX_RECORDED,
                "too many new divergence findings to record them all"
            );
        }
        let listed: Vec<Recorded> = fresh
            .iter()
            .take(MAX_RECORDED)
            .map(|f| Recorded {
                id: f.id.clone(),
                first_seen_epoch: f.first_seen_epoch,
                source: f.source,
                scroll: f.finding.scroll.clone(),
                size: f.finding.size,
                detail: f.finding.detail.clone(),
            })
            .collect();
        for chunk in listed.chunks(PER_RECEIPT) {
            anchorer
                .write_event(
                    DIVERGENCE_EVENT,
                    json!({"findings": chunk, "count": fresh.len()}),
                )
                .await;
        }
    }

    /// Every known finding, oldest epoch first (read back from the ledger first if needed).
    pub async fn list(&self) -> Result<Vec<KnownFinding>, GuardianError> {
        let mut book = self.book.lock().await;
        self.load(&mut book).await?;
        let mut all: Vec<KnownFinding> = book.records.values().cloned().collect();
        all.sort_by(|a, b| {
            (a.first_seen_epoch, &a.finding.scroll, a.finding.size, &a.id).cmp(&(
                b.first_seen_epoch,
                &b.finding.scroll,
                b.finding.size,
                &b.id,
            ))
        });
        Ok(all)
    }

    /// An operator's acknowledgement of exactly `ids`: every id must be known and not yet
    /// acknowledged, else nothing is. The ids are signed (a note over `<mesh>/divergence-ack`
    /// and the ids, one per line) and recorded in a `divergence_acknowledged` receipt naming
    /// the admin key `by`; only then are they marked. Returns the ids acknowledged.
    pub async fn acknowledge(
        &self,
        anchorer: &Anchorer,
        ids: &[String],
        by: &str,
    ) -> Result<Vec<String>, AckError> {
        let mut ids: Vec<String> = ids.to_vec();
        ids.sort();
        ids.dedup();
        if ids.is_empty() {
            return Err(AckError::Empty);
        }
        if ids.len() > MAX_ACK_IDS {
            return Err(AckError::TooMany);
        }
        let mut book = self.book.lock().await;
        self.load(&mut book).await?;
        let unknown: Vec<String> = ids
            .iter()
            .filter(|id| !book.records.contains_key(*id))
            .cloned()
            .collect();
        if !unknown.is_empty() {
            return Err(AckError::Unknown(unknown));
        }
        let done: Vec<String> = ids
            .iter()
            .filter(|id| book.records.get(*id).is_some_and(|r| r.acknowledged))
            .cloned()
            .collect();
        if !done.is_empty() {
            return Err(AckError::AlreadyAcknowledged(done));
        }
        let mut text = ack_origin(&self.mesh);
        text.push('\n');
        for id in &ids {
            text.push_str(id);
            text.push('\n');
        }
        let note = self.signer.sign(&text)?;
        anchorer
            .append_event(
                DIVERGENCE_ACK,
                json!({"findings": ids, "count": ids.len(), "acknowledged_by": by, "note": note}),
            )
            .await?;
        for id in &ids {
            book.acked.insert(id.clone());
            if let Some(r) = book.records.get_mut(id) {
                r.acknowledged = true;
            }
        }
        book.update_gauge();
        tracing::warn!(ids = ?ids, by, "divergence findings acknowledged by an operator");
        Ok(ids)
    }

    /// The newest anchored epoch (the gauge's value if it cannot be read).
    async fn current_epoch(&self) -> u64 {
        match self.store.latest_epoch().await {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the newest epoch");
                ANCHOR_EPOCH.get() as u64
            }
        }
    }

    /// Reads back, once, the findings and acknowledgements in the guardian's own receipts.
    /// Receipts anyone else wrote are ignored (and logged).
    async fn load(&self, book: &mut Book) -> Result<(), GuardianError> {
        if book.loaded {
            return Ok(());
        }
        let raised = self
            .store
            .receipts_of_type_with_role(GUARDIAN_SCROLL, DIVERGENCE_EVENT)
            .await?;
        let acks = self
            .store
            .receipts_of_type_with_role(GUARDIAN_SCROLL, DIVERGENCE_ACK)
            .await?;
        for (r, role) in &acks {
            match self.acked_ids(r, role) {
                Ok(ids) => book.acked.extend(ids),
                Err(why) => tracing::warn!(
                    seq = r.receipt.seq,
                    submitter = %r.receipt.submitter,
                    db_role = %role,
                    why,
                    "ignoring a divergence acknowledgement this guardian did not make"
                ),
            }
        }
        for (r, role) in &raised {
            if !is_own(r, role) {
                tracing::warn!(
                    seq = r.receipt.seq,
                    submitter = %r.receipt.submitter,
                    db_role = %role,
                    "ignoring an anchor_divergence receipt this guardian did not write"
                );
                continue;
            }
            let listed = r.receipt.payload.get("findings").cloned();
            let listed: Vec<Recorded> = match listed.map(serde_json::from_value) {
                Some(Ok(l)) => l,
                _ => continue,
            };
            for f in listed {
                let finding = Finding {
                    scroll: f.scroll,
                    size: f.size,
                    detail: f.detail,
                };
                if finding_id(&finding, f.first_seen_epoch) != f.id {
                    continue;
                }
                let acknowledged = book.acked.contains(&f.id);
                book.insert(KnownFinding {
                    id: f.id,
                    finding,
                    first_seen_epoch: f.first_seen_epoch,
                    source: f.source,
                    acknowledged,
                    active: true,
                });
            }
        }
        book.loaded = true;
        book.update_gauge();
        Ok(())
    }

    /// The ids an acknowledgement receipt acknowledges, if this guardian wrote and signed
    /// it; else why it does not count.
    fn acked_ids(&self, r: &StoredReceipt, role: &str) -> Result<Vec<String>, String> {
        if !is_own(r, role) {
            return Err("not written by the guardian's database role".into());
        }
        let note = r
            .receipt
            .payload
            .get("note")
            .and_then(Value::as_str)
            .ok_or("no signed note")?;
        let text = self
            .verifier
            .verify(note)
            .map_err(|e| format!("note: {e}"))?;
        let mut lines = text.lines();
        if lines.next() != Some(ack_origin(&self.mesh).as_str()) {
            return Err("the note is not this mesh's divergence acknowledgement".into());
        }
        let ids: Vec<String> = lines.map(str::to_string).collect();
        if ids.is_empty() {
            return Err("the note names no finding".into());
        }
        Ok(ids)
    }
}

/// Whether a receipt in the guardian's scroll was written by the guardian: its submitter
/// and the database role that inserted it.
fn is_own(r: &StoredReceipt, role: &str) -> bool {
    r.receipt.submitter == GUARDIAN_SUBMITTER && role == DbRole::Guardian.name()
}
