//! The running guardian: its shared state, the main loop and one tick of it (keep or seek
//! leadership; as leader integrate, and anchor when an epoch is due).

use crate::anchor::{self, Anchorer};
use crate::divergence::{self, Finding};
use crate::error::GuardianError;
use crate::findings::{AckError, Findings, KnownFinding, Source};
use crate::integrate::{self, Integrator};
use crate::leader::{Fence, Leadership};
use crate::metrics::RECEIPTS_SINCE_ANCHOR;
use crate::GuardianArgs;
use chrono::{DateTime, Utc};
use ledger::context::ServiceContext;
use ledger::service::Shutdown;
use ledger::storage::AnchorStore;
use std::sync::Arc;
use tokio::sync::Mutex;

/// The guardian's shared state: its loops and its admin routes use the same pieces.
pub struct Guardian {
    /// Store, cache, registry, config.
    pub ctx: ServiceContext,
    /// Options.
    pub opts: GuardianArgs,
    /// Integration and signing.
    pub integrator: Integrator,
    /// Epoch anchoring.
    pub anchorer: Anchorer,
    /// Divergence detection.
    pub auditor: divergence::Auditor,
    /// Findings raised so far and whether an operator acknowledged them.
    pub findings: Findings,
    /// The witness role, when this guardian has a witness key.
    pub witness: Option<crate::witness::Witness>,
    /// The log side of federation, when witnesses are configured.
    pub cosigner: Option<crate::cosigning::Cosigner>,
    /// Federation discrepancies found by the witness and the remote checks.
    pub discrepancies: Arc<crate::discrepancy::Discrepancies>,
    /// Checks of remote meshes' portals, when this guardian witnesses any.
    pub remote_watch: Option<crate::remote_watch::RemoteWatch>,
    /// The advisory lock, when held (shared with the anchorer's [`Fence`]).
    pub leadership: Arc<Mutex<Leadership>>,
    /// When the next epoch is due (set on becoming leader from the newest stored epoch).
    pub(crate) next_epoch: Mutex<Option<DateTime<Utc>>>,
    /// Serialises epochs (the loop's and on-demand ones).
    pub(crate) epoch_lock: Mutex<()>,
    /// Serialises psi evaluations and transmutation changes.
    pub(crate) psi_lock: Mutex<()>,
    /// When the last verification pass that found nothing finished.
    pub(crate) last_clean_pass: std::sync::Mutex<Option<DateTime<Utc>>>,
    /// When the last verification pass finished, whatever it found.
    pub(crate) last_pass: std::sync::Mutex<Option<DateTime<Utc>>>,
    /// Whether this guardian led at its last tick (its mesh node's role).
    pub(crate) leading: Arc<std::sync::atomic::AtomicBool>,
}

impl Guardian {
    /// One integration pass (see [`integrate`]); what it refused to sign is raised as
    /// divergence.
    pub async fn integrate(&self) -> Result<Vec<integrate::Signed>, GuardianError> {
        let integrate::Pass { signed, findings } = self.integrator.pass().await?;
        self.raise(Source::Integration, &findings).await;
        if !signed.is_empty() {
            if let Ok(n) = self.anchorer.receipts_since_anchor().await {
                RECEIPTS_SINCE_ANCHOR.set(n as f64);
            }
        }
        Ok(signed)
    }

    /// One full verification pass (see [`divergence`]); findings are raised.
    pub async fn verify_now(&self) -> Result<Vec<Finding>, GuardianError> {
        let findings = self.auditor.pass().await?;
        self.raise(Source::Verification, &findings).await;
        if let Ok(mut t) = self.last_pass.lock() {
            *t = Some(Utc::now());
        }
        if findings.is_empty() {
            tracing::info!("verification pass: history intact");
            if let Ok(mut t) = self.last_clean_pass.lock() {
                *t = Some(Utc::now());
            }
        }
        Ok(findings)
    }

    /// When the last verification pass that found nothing finished.
    pub fn last_clean_pass(&self) -> Option<DateTime<Utc>> {
        self.last_clean_pass.lock().ok().and_then(|t| *t)
    }

    /// When the last verification pass finished, whatever it found.
    pub fn last_pass(&self) -> Option<DateTime<Utc>> {
        self.last_pass.lock().ok().and_then(|t| *t)
    }

    /// Raises what one pass of `source` found (see [`Findings::raise`]).
    pub async fn raise(&self, source: Source, findings: &[Finding]) {
        self.findings.raise(&self.anchorer, source, findings).await;
    }

    /// Every divergence finding known, acknowledged or not.
    pub async fn divergence_findings(&self) -> Result<Vec<KnownFinding>, GuardianError> {
        self.findings.list().await
    }

    /// An operator's acknowledgement of exactly `ids` by admin key `by` (see
    /// [`Findings::acknowledge`]).
    pub async fn acknowledge_divergence(
        &self,
        ids: &[String],
        by: &str,
    ) -> Result<Vec<String>, AckError> {
        self.findings.acknowledge(&self.anchorer, ids, by).await
    }

    /// Hands every epoch a sink has not accepted to that sink now (after a crash or a
    /// failover, not at the next epoch), and records the outcome in an `anchor_success` or
    /// `anchor_failure` receipt when there was anything to hand over.
    pub async fn catch_up_sinks(&self) -> Result<(), GuardianError> {
        let _one_at_a_time = self.epoch_lock.lock().await;
        let handoff =
            crate::handoff::ship_pending(&self.ctx.store, &self.anchorer.sinks, &self.fence())
                .await?;
        self.raise(Source::Sink, &handoff.findings).await;
        if handoff.answers.is_empty() {
            return Ok(());
        }
        let kind = if handoff.failures.is_empty() {
            "anchor_success"
        } else {
            "anchor_failure"
        };
        let latest = self.ctx.store.latest_anchor().await?;
        tracing::warn!(
            handed = handoff.answers.len(),
            failures = handoff.failures.len(),
            "sinks caught up on becoming leader"
        );
        self.anchorer
            .write_event(
                kind,
                serde_json::json!({
                    "epoch": latest.as_ref().map(|a| a.record.epoch),
                    "anchor_hash": latest.as_ref().map(|a| a.record.anchor_hash.clone()),
                    "catch_up": true,
                    "sinks": handoff.answers,
                    "failures": handoff.failures_json(),
                }),
            )
            .await;
        Ok(())
    }

    /// A fence on this guardian's leadership.
    pub fn fence(&self) -> Fence {
        Fence {
            leadership: self.leadership.clone(),
        }
    }

    /// Integrates, then runs one epoch now. Only the leader anchors.
    pub async fn anchor_now(&self) -> Result<anchor::EpochOutcome, GuardianError> {
        if !self.leadership.lock().await.is_leader() {
            return Err(GuardianError::NotLeader);
        }
        let _one_at_a_time = self.epoch_lock.lock().await;
        self.integrate().await?;
        let outcome = self.anchorer.epoch().await?;
        self.raise(Source::Sink, &outcome.findings).await;
        *self.next_epoch.lock().await = Some(Utc::now() + self.epoch_interval());
        if let Err(e) = self.verify_now().await {
            tracing::error!(error = %e, "verification pass failed; retried next epoch");
        }
        if let Ok(n) = self.anchorer.receipts_since_anchor().await {
            RECEIPTS_SINCE_ANCHOR.set(n as f64);
        }
        Ok(outcome)
    }

    fn epoch_interval(&self) -> chrono::TimeDelta {
        chrono::TimeDelta::from_std(self.opts.epoch_interval()).unwrap_or(chrono::TimeDelta::MAX)
    }

    /// What a guardian does once on becoming leader: sign the heads of epochs anchored before
    /// heads existed (once checked; a broken one is raised instead), hand the sinks every
    /// epoch they have not accepted, schedule the next epoch from the newest stored one, and
    /// run a verification pass.
    async fn on_leadership_acquired(&self) {
        match self.anchorer.sign_missing_heads().await {
            Ok(findings) => self.raise(Source::Start, &findings).await,
            Err(e) => tracing::error!(error = %e, "signing the heads of earlier epochs failed"),
        }
        if let Err(e) = self.catch_up_sinks().await {
            tracing::error!(error = %e, "sink catch-up failed; retried at the next epoch");
        }
        let due = match self.ctx.store.latest_anchor().await {
            Ok(Some(a)) => DateTime::parse_from_rfc3339(&a.record.anchored_at)
                .map(|t| t.with_timezone(&Utc) + self.epoch_interval())
                .unwrap_or_else(|_| Utc::now()),
            _ => Utc::now() + self.epoch_interval(),
        };
        *self.next_epoch.lock().await = Some(due);
        if let Err(e) = self.verify_now().await {
            tracing::error!(error = %e, "verification pass failed; retried next epoch");
        }
    }

    /// One tick of the main loop: keep or seek leadership; as leader, integrate, and anchor
    /// when an epoch is due.
    async fn tick(&self) {
        let (leader, acquired) = {
            let mut l = self.leadership.lock().await;
            let was = l.is_leader();
            let now = l.ensure(&self.ctx.store).await;
            (now, now && !was)
        };
        self.leading
            .store(leader, std::sync::atomic::Ordering::Relaxed);
        if !leader {
            return;
        }
        if acquired {
            self.on_leadership_acquired().await;
        }
        if let Err(e) = self.integrate().await {
            tracing::error!(error = %e, "integration pass failed; retrying next interval");
            return;
        }
        let due = self
            .next_epoch
            .lock()
            .await
            .is_some_and(|t| Utc::now() >= t);
        if due {
            if let Err(e) = self.anchor_now().await {
                tracing::error!(error = %e, "epoch failed");
                *self.next_epoch.lock().await = Some(Utc::now() + self.epoch_interval());
            }
        }
    }
}

/// The main loop: one tick per integration interval until `shutdown`.
pub async fn run(g: Arc<Guardian>, shutdown: Shutdown) {
    let mut ticks = tokio::time::interval(g.opts.integrate_interval());
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stop = shutdown.wait();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = ticks.tick() => g.tick().await,
            _ = &mut stop => break,
        }
    }
}
