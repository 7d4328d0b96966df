//! Handing stored epochs to the sinks: every epoch a sink has not accepted yet, in order,
//! stopping at its first refusal; each answer is stored. Leadership is re-checked on the
//! lock's own connection immediately before every sink write, so a deposed guardian writes
//! nothing after losing the lock. A sink whose own history disagrees with the stored records
//! is a divergence finding as well as a failure.

use crate::divergence::Finding;
use crate::error::GuardianError;
use crate::leader::Fence;
use crate::metrics::{sentinel, ANCHOR_FAILURES_TOTAL};
use crate::sinks::{Sink, SinkError};
use ledger::storage::AnchorStore;
use ledger::store::SinkResult;
use serde_json::{json, Value};

/// What one hand-off did.
#[derive(Debug, Default)]
pub struct Handoff {
    /// One entry per epoch handed to a sink: `{"epoch", "sink", "ok"}`.
    pub answers: Vec<Value>,
    /// Refusals: (epoch, sink, reason).
    pub failures: Vec<(u64, String, String)>,
    /// Sinks whose history disagrees with the stored records.
    pub findings: Vec<Finding>,
}

impl Handoff {
    /// The failures as JSON, as receipts list them.
    pub fn failures_json(&self) -> Vec<Value> {
        self.failures
            .iter()
            .map(|(e, s, r)| json!({"epoch": e, "sink": s, "reason": r}))
            .collect()
    }
}

/// Hands every epoch each sink has not accepted to it, in order; a sink's first refusal
/// ends its turn (it is retried from there next time). Fails with
/// [`GuardianError::NotLeader`] as soon as this guardian no longer holds the lock.
pub async fn ship_pending(
    store: &dyn AnchorStore,
    sinks: &[Sink],
    fence: &Fence,
) -> Result<Handoff, GuardianError> {
    let mut out = Handoff::default();
    for sink in sinks {
        for pending in store.epochs_pending_for_sink(sink.name()).await? {
            let Some(stored) = store.anchor(pending).await? else {
                continue;
            };
            fence.check().await?;
            let (ok, answer) = match sink.submit(&stored.record).await {
                Ok(v) => (true, v),
                Err(e) => {
                    if let SinkError::Inconsistent(detail) = &e {
                        out.findings.push(Finding {
                            scroll: None,
                            size: Some(pending),
                            detail: format!("{} sink: {detail}", sink.name()),
                        });
                    }
                    (false, json!({"error": e.to_string()}))
                }
            };
            store
                .insert_sink_result(
                    pending,
                    &SinkResult {
                        sink: sink.name().to_string(),
                        ok,
                        result: answer.clone(),
                    },
                )
                .await?;
            out.answers
                .push(json!({"epoch": pending, "sink": sink.name(), "ok": ok}));
            if !ok {
                let reason = answer["error"].as_str().unwrap_or_default().to_string();
                ANCHOR_FAILURES_TOTAL
                    .with_label_values(&[&format!("sink_{}", sink.name())])
                    .inc();
                sentinel("anchor_failure", "critical");
                out.failures
                    .push((pending, sink.name().to_string(), reason));
                break;
            }
        }
    }
    Ok(out)
}
