//! Epoch anchoring: build the ProofChain record over every scroll's latest checkpoint, link
//! it to the previous record, store it (the epoch's primary key makes a second anchor for the
//! same epoch impossible), hand it — and any earlier epoch a sink has not accepted yet — to
//! each sink, store each answer, and write an `anchor_success` or `anchor_failure` receipt to
//! the `guardian` scroll.

use crate::error::GuardianError;
use crate::metrics::{
    sentinel, status, ANCHORS_TOTAL, ANCHOR_DURATION, ANCHOR_EPOCH, ANCHOR_FAILURES_TOTAL,
    ANCHOR_STATUS, LAST_ANCHOR_TIMESTAMP, PROOFCHAIN_ROOT_INFO,
};
use crate::sinks::Sink;
use chrono::Utc;
use ledger::hash::to_hex;
use ledger::proofchain::{AnchorRecord, AnchoredScroll, GENESIS_PREV};
use ledger::receipt::{format_timestamp, ReceiptDraft};
use ledger::store::{NewReceipt, SinkResult, Store};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Instant;

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
}

/// Builds, stores and ships epochs.
pub struct Anchorer {
    /// The ledger.
    pub store: Store,
    /// Mesh id.
    pub mesh: String,
    /// Configured sinks.
    pub sinks: Vec<Sink>,
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
        let record = AnchorRecord::build(epoch, &self.mesh, &at, scrolls, &prev_hash)?;
        self.store.insert_anchor(&record).await?;
        ANCHOR_EPOCH.set(epoch as f64);
        PROOFCHAIN_ROOT_INFO.reset();
        for s in &record.scrolls {
            PROOFCHAIN_ROOT_INFO
                .with_label_values(&[s.scroll.as_str(), s.root.as_str()])
                .set(1.0);
        }
        let mut failures = Vec::new();
        let mut answers = Vec::new();
        for sink in &self.sinks {
            for pending in self.store.epochs_pending_for_sink(sink.name()).await? {
                let Some(stored) = self.store.anchor(pending).await? else {
                    continue;
                };
                let (ok, answer) = match sink.submit(&stored.record).await {
                    Ok(v) => (true, v),
                    Err(e) => (false, json!({"error": e.to_string()})),
                };
                self.store
                    .insert_sink_result(
                        pending,
                        &SinkResult {
                            sink: sink.name().to_string(),
                            ok,
                            result: answer.clone(),
                        },
                    )
                    .await?;
                answers.push(json!({"epoch": pending, "sink": sink.name(), "ok": ok}));
                if !ok {
                    let reason = answer["error"].as_str().unwrap_or_default().to_string();
                    ANCHOR_FAILURES_TOTAL
                        .with_label_values(&[&format!("sink_{}", sink.name())])
                        .inc();
                    sentinel("anchor_failure", "critical");
                    failures.push((pending, sink.name().to_string(), reason));
                    break;
                }
            }
        }
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
            "sinks": answers,
            "failures": failures.iter().map(|(e, s, r)| json!({"epoch": e, "sink": s, "reason": r})).collect::<Vec<Value>>(),
        });
        self.write_event(kind, payload).await;
        Ok(EpochOutcome { record, failures })
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
        let draft = ReceiptDraft::new(kind, payload)?;
        let item = NewReceipt {
            draft,
            submitter: GUARDIAN_SUBMITTER.into(),
            idempotency_key: None,
            request_hash: None,
        };
        self.store
            .append_receipts(GUARDIAN_SCROLL, vec![item], true)
            .await?;
        Ok(())
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
