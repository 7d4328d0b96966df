//! Epoch anchoring: build the ProofChain record over every scroll's latest checkpoint, link
//! it to the previous record, sign its head, store both in one transaction (the epoch's
//! primary key makes a second anchor for the same epoch impossible), hand it — and any
//! earlier epoch a sink has not accepted yet — to each sink, store each answer, and write an
//! `anchor_success` or `anchor_failure` receipt to the `guardian` scroll. Epochs anchored
//! before heads existed get theirs signed, once checked, when a guardian becomes leader.

use crate::divergence::Finding;
use crate::error::GuardianError;
use crate::metrics::{
    sentinel, status, ANCHORS_TOTAL, ANCHOR_DURATION, ANCHOR_EPOCH, ANCHOR_FAILURES_TOTAL,
    ANCHOR_STATUS, LAST_ANCHOR_TIMESTAMP, PROOFCHAIN_ROOT_INFO,
};
use crate::sinks::Sink;
use chrono::Utc;
use ledger::hash::to_hex;
use ledger::note::NoteSigner;
use ledger::proofchain::{AnchorRecord, AnchoredScroll, GENESIS_PREV};
use ledger::receipt::{format_timestamp, ReceiptDraft};
use ledger::storage::{ReceiptLog, Storage};
use ledger::store::{NewReceipt, StoreError};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Instant;

/// The divergence finding for an epoch whose head is not signed because it is suspect.
fn suspect_finding(epoch: u64, detail: &str) -> Finding {
    Finding {
        scroll: None,
        size: Some(epoch),
        detail: format!(
            "ProofChain epoch {epoch} is suspect, so neither it nor any later unsigned epoch \
             gets a signed head: {detail}"
        ),
    }
}

/// The first unsigned epoch after the newest signed one, when any epoch is signed (`first`
/// is the oldest unsigned epoch: if it is not epoch 1, the epoch before it is signed).
fn unsigned_after_heads_began(first: u64, records: &[AnchorRecord]) -> Option<(u64, String)> {
    let newest_signed = records
        .iter()
        .rev()
        .find(|r| r.signature.is_some())
        .map(|r| r.epoch)
        .or((first > 1).then(|| first - 1))?;
    let injected = records
        .iter()
        .find(|r| r.epoch > newest_signed && r.signature.is_none())?;
    Some((
        injected.epoch,
        format!(
            "it has no head though epoch {newest_signed} before it has one, and new epochs are \
             stored with their heads"
        ),
    ))
}

/// Scroll the guardian writes its anchor events to.
pub const GUARDIAN_SCROLL: &str = "guardian";
/// `submitter` of the guardian's own receipts.
pub const GUARDIAN_SUBMITTER: &str = "guardian";

/// What one epoch did.
#[derive(Debug, Clone)]
pub struct EpochOutcome {
    /// The stored record.
    pub record: AnchorRecord,
    /// Sinks that refused (epoch, sink, reason); empty on success.
    pub failures: Vec<(u64, String, String)>,
    /// Sinks whose own history disagrees with the stored records.
    pub findings: Vec<Finding>,
}

/// Builds, stores and ships epochs.
pub struct Anchorer {
    /// The ledger.
    pub store: std::sync::Arc<dyn Storage>,
    /// Mesh id.
    pub mesh: String,
    /// Configured sinks.
    pub sinks: Vec<Sink>,
    /// The guardian's key, which signs each record's head.
    pub signer: NoteSigner,
    /// Leadership, re-checked before every sink write.
    pub fence: crate::leader::Fence,
    /// The append gate (with the constitution and the freeze) the guardian's events pass.
    pub gate: ledger::gate::AppendGate,
}

impl Anchorer {
    /// Runs one epoch (the caller has integrated first and holds the leadership).
    pub async fn epoch(&self) -> Result<EpochOutcome, GuardianError> {
        ANCHOR_STATUS.set(status::ANCHORING);
        let started = Instant::now();
        let result = self.build_store_ship().await;
        ANCHOR_DURATION.observe(started.elapsed().as_secs_f64());
        match &result {
            Ok(outcome) if outcome.failures.is_empty() => {
                ANCHORS_TOTAL.inc();
                LAST_ANCHOR_TIMESTAMP.set(Utc::now().timestamp() as f64);
                ANCHOR_STATUS.set(status::SUCCESS);
                tracing::info!(
                    epoch = outcome.record.epoch,
                    anchor_hash = %outcome.record.anchor_hash,
                    epoch_root = %outcome.record.epoch_root,
                    scrolls = outcome.record.scrolls.len(),
                    "anchor succeeded"
                );
            }
            Ok(outcome) => {
                ANCHOR_STATUS.set(status::FAILED);
                for (epoch, sink, reason) in &outcome.failures {
                    tracing::error!(epoch, sink = %sink, reason = %reason, "anchor failed: sink refused the record; retried next epoch");
                }
            }
            Err(e) => {
                ANCHOR_STATUS.set(status::FAILED);
                ANCHOR_FAILURES_TOTAL.with_label_values(&["store"]).inc();
                sentinel("anchor_failure", "critical");
                tracing::error!(error = %e, "anchor failed: the epoch was not stored; retried next epoch");
            }
        }
        result
    }

    async fn build_store_ship(&self) -> Result<EpochOutcome, GuardianError> {
        let prev = self.store.latest_anchor().await?;
        if let Some(a) = &prev {
            a.record.verify_signed(&self.signer.verifier())?;
        }
        let (epoch, prev_hash) = match &prev {
            Some(a) => (a.record.epoch + 1, a.record.anchor_hash.clone()),
            None => (1, GENESIS_PREV.to_string()),
        };
        let scrolls: Vec<AnchoredScroll> = self
            .store
            .latest_checkpoints()
            .await?
            .into_iter()
            .map(|c| AnchoredScroll {
                scroll: c.scroll,
                tree_size: c.tree_size,
                root: to_hex(&c.root),
            })
            .collect();
        let at = format_timestamp(Utc::now());
        let mut record = AnchorRecord::build(epoch, &self.mesh, &at, scrolls, &prev_hash)?;
        record.signature = Some(record.sign_head(&self.signer)?);
        self.store.insert_anchor(&record).await?;
        ANCHOR_EPOCH.set(epoch as f64);
        PROOFCHAIN_ROOT_INFO.reset();
        for s in &record.scrolls {
            PROOFCHAIN_ROOT_INFO
                .with_label_values(&[s.scroll.as_str(), s.root.as_str()])
                .set(1.0);
        }
        let handoff =
            crate::handoff::ship_pending(self.store.as_ref(), &self.sinks, &self.fence).await?;
        let failures = handoff.failures.clone();
        let kind = if failures.is_empty() {
            "anchor_success"
        } else {
            "anchor_failure"
        };
        let payload = json!({
            "epoch": epoch,
            "anchor_hash": record.anchor_hash,
            "epoch_root": record.epoch_root,
            "scrolls": record.scrolls.len(),
            "sinks": handoff.answers,
            "failures": handoff.failures_json(),
        });
        self.write_event(kind, payload).await;
        Ok(EpochOutcome {
            record,
            failures,
            findings: handoff.findings,
        })
    }

    /// Signs the heads of epochs stored without one (anchored before heads existed), all in
    /// one transaction. The chain from the first such epoch's predecessor to the newest
    /// epoch is checked first: every record's hashes recompute, it names this mesh, carries a
    /// valid head if it has one, and links to its predecessor. An epoch is signed only if it
    /// comes before the first suspect record: for a broken link, both ends are suspect unless
    /// the older one has a valid head; and once any epoch has a head, an unsigned epoch after
    /// the newest signed one cannot be from before the change (new epochs are stored with
    /// their heads), so it is suspect too. The first problem is returned as a divergence
    /// finding. The records themselves never change.
    pub async fn sign_missing_heads(&self) -> Result<Vec<Finding>, GuardianError> {
        let missing = self.store.epochs_without_head().await?;
        let Some(&first) = missing.first() else {
            return Ok(Vec::new());
        };
        let from = first.saturating_sub(1).max(1);
        let records = match self.records_from(from).await {
            Ok(records) => records,
            Err(StoreError::Integrity(detail)) => {
                return Ok(vec![suspect_finding(first, &detail)]);
            }
            Err(e) => return Err(e.into()),
        };
        let suspect = [
            self.first_suspect(from, &records),
            unsigned_after_heads_began(first, &records),
        ]
        .into_iter()
        .flatten()
        .min_by_key(|(epoch, _)| *epoch);
        let mut heads = Vec::new();
        for r in records.iter().filter(|r| r.signature.is_none()) {
            if suspect.as_ref().is_some_and(|(s, _)| r.epoch >= *s) {
                break;
            }
            heads.push((r.epoch, r.sign_head(&self.signer)?));
        }
        self.store.insert_anchor_heads(&heads).await?;
        let signed: Vec<u64> = heads.iter().map(|(e, _)| *e).collect();
        if !signed.is_empty() {
            tracing::warn!(epochs = ?signed, "signed the heads of epochs anchored before heads existed");
        }
        Ok(suspect
            .map(|(epoch, detail)| suspect_finding(epoch, &detail))
            .into_iter()
            .collect())
    }

    /// Every stored record from epoch `from` on, with heads.
    async fn records_from(&self, from: u64) -> Result<Vec<AnchorRecord>, StoreError> {
        const PAGE: u32 = 1_000;
        let mut out: Vec<AnchorRecord> = Vec::new();
        loop {
            let next = out.last().map_or(from, |r| r.epoch + 1);
            let page = self.store.anchors(next, PAGE).await?;
            let n = page.len();
            out.extend(page.into_iter().map(|a| a.record));
            if n < PAGE as usize {
                return Ok(out);
            }
        }
    }

    /// The first epoch of `records` (which must be consecutive from `from`; the first is
    /// trusted for its own link only if it is epoch 1) that must not be signed, and why.
    fn first_suspect(&self, from: u64, records: &[AnchorRecord]) -> Option<(u64, String)> {
        let verifier = self.signer.verifier();
        let mut prev: Option<(&AnchorRecord, bool)> = None;
        for r in records {
            let expected = prev.map_or(from, |(p, _)| p.epoch + 1);
            if r.epoch != expected {
                return Some((expected, format!("epoch {expected} is missing")));
            }
            let own = match &r.signature {
                Some(_) => r.verify_signed(&verifier),
                None => r.verify(),
            };
            if let Err(e) = own {
                return Some((r.epoch, e.to_string()));
            }
            if r.mesh != self.mesh {
                return Some((
                    r.epoch,
                    format!("it names mesh {:?}, not {:?}", r.mesh, self.mesh),
                ));
            }
            let link = match prev {
                _ if r.epoch == 1 => Some((GENESIS_PREV, true)),
                Some((p, signed)) => Some((p.anchor_hash.as_str(), signed)),
                None => None,
            };
            if let Some((expected, prev_signed)) = link {
                if r.prev_anchor_hash != expected {
                    let suspect = if prev_signed { r.epoch } else { r.epoch - 1 };
                    return Some((
                        suspect,
                        format!(
                            "epoch {}'s prev_anchor_hash does not link to epoch {}",
                            r.epoch,
                            r.epoch - 1
                        ),
                    ));
                }
            }
            prev = Some((r, r.signature.is_some()));
        }
        None
    }

    /// Writes one of the guardian's own events to its scroll (best effort: an event that
    /// cannot be written is logged, and the anchor itself stands).
    pub async fn write_event(&self, kind: &str, payload: Value) {
        if let Err(e) = self.append_event(kind, payload).await {
            tracing::error!(kind, error = %e, "could not write a guardian event receipt");
        }
    }

    /// Writes one receipt of `kind` to the `guardian` scroll, reporting failure.
    pub async fn append_event(&self, kind: &str, payload: Value) -> Result<(), GuardianError> {
        append_receipt(
            self.store.as_ref(),
            &self.gate,
            GUARDIAN_SCROLL,
            kind,
            payload,
        )
        .await
    }

    /// Receipts integrated since the newest epoch, summed over scrolls.
    pub async fn receipts_since_anchor(&self) -> Result<u64, GuardianError> {
        let anchored: HashMap<String, u64> = match self.store.latest_anchor().await? {
            Some(a) => a
                .record
                .scrolls
                .into_iter()
                .map(|s| (s.scroll, s.tree_size))
                .collect(),
            None => HashMap::new(),
        };
        Ok(self
            .store
            .latest_checkpoints()
            .await?
            .iter()
            .map(|c| {
                c.tree_size
                    .saturating_sub(anchored.get(&c.scroll).copied().unwrap_or(0))
            })
            .sum())
    }
}

/// Writes one of the guardian's own receipts of `kind` to `scroll` through the append gate.
pub async fn append_receipt(
    store: &dyn ReceiptLog,
    gate: &ledger::gate::AppendGate,
    scroll: &str,
    kind: &str,
    payload: Value,
) -> Result<(), GuardianError> {
    let draft = ReceiptDraft::new(kind, payload)?;
    let item = NewReceipt {
        draft,
        submitter: GUARDIAN_SUBMITTER.into(),
        idempotency_key: None,
        request_hash: None,
    };
    let admitted = gate.admit(
        &ledger::gate::Writer::Service(ledger::gate::Service::Guardian),
        scroll,
        vec![item],
    )?;
    store.append_receipts(admitted, true).await?;
    Ok(())
}
