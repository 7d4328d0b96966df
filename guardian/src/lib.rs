//! VaultMesh guardian: integrates receipts into each scroll's stored Merkle tree, signs
//! checkpoints, anchors epochs into the hash-linked ProofChain and its sinks. One guardian
//! leads (Postgres advisory lock); others stand by and take over.

pub mod anchor;
pub mod error;
pub mod integrate;
pub mod leader;
pub mod metrics;
pub mod options;
pub mod routes;
pub mod sinks;

pub use options::GuardianArgs;

use anchor::Anchorer;
use chrono::{DateTime, Utc};
use error::GuardianError;
use integrate::Integrator;
use leader::Leadership;
use ledger::config::{CommonConfig, ServiceDefaults};
use ledger::context::{ServiceContext, StartError};
use ledger::note::NoteSigner;
use ledger::service::{RunningService, Shutdown};
use metrics::{sentinel, PROOFCHAIN_DIVERGENCE, RECEIPTS_SINCE_ANCHOR};
use std::sync::Arc;
use tokio::sync::Mutex;

/// Service name, used in logs, metrics and `/v1/health`.
pub const SERVICE: &str = "guardian";

/// Default listen addresses: API on port 8081, metrics on 9090.
pub fn defaults() -> ServiceDefaults {
    ledger::context::defaults(8081)
}

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
    /// The advisory lock, when held.
    pub leadership: Mutex<Leadership>,
    /// When the next epoch is due (set on becoming leader from the newest stored epoch).
    next_epoch: Mutex<Option<DateTime<Utc>>>,
    /// Serialises epochs (the loop's and on-demand ones).
    epoch_lock: Mutex<()>,
}

impl Guardian {
    /// One integration pass; divergence is flagged, counted and logged.
    pub async fn integrate(&self) -> Result<Vec<integrate::Signed>, GuardianError> {
        let (signed, diverged) = self.integrator.pass().await?;
        for d in &diverged {
            if let GuardianError::Divergence {
                scroll,
                size,
                detail,
            } = d
            {
                PROOFCHAIN_DIVERGENCE.set(1.0);
                sentinel("divergence", "critical");
                tracing::error!(scroll = %scroll, size, detail = %detail, "divergence detected: not signing this scroll");
                self.anchorer
                    .write_event(
                        "anchor_divergence",
                        serde_json::json!({"scroll": scroll, "size": size, "detail": detail}),
                    )
                    .await;
            }
        }
        if !signed.is_empty() {
            if let Ok(n) = self.anchorer.receipts_since_anchor().await {
                RECEIPTS_SINCE_ANCHOR.set(n as f64);
            }
        }
        Ok(signed)
    }

    /// Integrates, then runs one epoch now. Only the leader anchors.
    pub async fn anchor_now(&self) -> Result<anchor::EpochOutcome, GuardianError> {
        if !self.leadership.lock().await.is_leader() {
            return Err(GuardianError::NotLeader);
        }
        let _one_at_a_time = self.epoch_lock.lock().await;
        self.integrate().await?;
        let outcome = self.anchorer.epoch().await?;
        *self.next_epoch.lock().await = Some(Utc::now() + self.epoch_interval());
        if let Ok(n) = self.anchorer.receipts_since_anchor().await {
            RECEIPTS_SINCE_ANCHOR.set(n as f64);
        }
        Ok(outcome)
    }

    fn epoch_interval(&self) -> chrono::TimeDelta {
        chrono::TimeDelta::from_std(self.opts.epoch_interval()).unwrap_or(chrono::TimeDelta::MAX)
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
        if !leader {
            return;
        }
        if acquired {
            let due = match self.ctx.store.latest_anchor().await {
                Ok(Some(a)) => DateTime::parse_from_rfc3339(&a.record.anchored_at)
                    .map(|t| t.with_timezone(&Utc) + self.epoch_interval())
                    .unwrap_or_else(|_| Utc::now()),
                _ => Utc::now() + self.epoch_interval(),
            };
            *self.next_epoch.lock().await = Some(due);
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

/// Starts the guardian with default options and returns once it is listening.
pub async fn start(config: CommonConfig, shutdown: Shutdown) -> Result<RunningService, StartError> {
    start_with(config, GuardianArgs::default(), shutdown).await
}

/// Starts the guardian and returns once it is listening; its loop runs until `shutdown`.
pub async fn start_with(
    config: CommonConfig,
    opts: GuardianArgs,
    shutdown: Shutdown,
) -> Result<RunningService, StartError> {
    let signer = NoteSigner::load(&opts.signing_key_file).map_err(|e| {
        std::io::Error::other(format!(
            "signing key {}: {e} (create one with `vaultmesh keygen`)",
            opts.signing_key_file.display()
        ))
    })?;
    let ctx = ServiceContext::init(SERVICE, config, shutdown.clone()).await?;
    metrics::register(&ctx.registry)?;
    let mut sinks = Vec::new();
    if !opts.journal_path.as_os_str().is_empty() {
        sinks.push(sinks::Sink::Journal(sinks::journal::Journal::new(
            opts.journal_path.clone(),
        )));
    }
    let mesh = ctx.config.mesh_id.clone();
    let guardian = Arc::new(Guardian {
        integrator: Integrator {
            store: ctx.store.clone(),
            signer,
            mesh: mesh.clone(),
            batch: opts.integrate_batch,
        },
        anchorer: Anchorer {
            store: ctx.store.clone(),
            mesh,
            sinks,
        },
        leadership: Mutex::new(Leadership::default()),
        next_epoch: Mutex::new(None),
        epoch_lock: Mutex::new(()),
        opts,
        ctx: ctx.clone(),
    });
    let mut running = ctx.serve(routes::routes(guardian.clone())).await?;
    running.add_task(tokio::spawn(run(guardian, shutdown)));
    Ok(running)
}

async fn run(g: Arc<Guardian>, shutdown: Shutdown) {
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
