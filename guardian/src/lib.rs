//! VaultMesh guardian: integrates receipts into each scroll's stored Merkle tree, signs
//! checkpoints, anchors epochs into the hash-linked ProofChain and its sinks. One guardian
//! leads (Postgres advisory lock); others stand by and take over.

pub mod anchor;
pub mod divergence;
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
use divergence::Finding;
use error::GuardianError;
use integrate::Integrator;
use leader::Leadership;
use ledger::config::{CommonConfig, ServiceDefaults};
use ledger::context::{ServiceContext, StartError};
use ledger::note::{NoteSigner, NoteVerifier};
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
    /// Divergence detection.
    pub auditor: divergence::Auditor,
    /// Findings raised so far and whether an operator acknowledged them.
    known_divergence: Mutex<KnownDivergence>,
    /// The advisory lock, when held.
    pub leadership: Mutex<Leadership>,
    /// When the next epoch is due (set on becoming leader from the newest stored epoch).
    next_epoch: Mutex<Option<DateTime<Utc>>>,
    /// Serialises epochs (the loop's and on-demand ones).
    epoch_lock: Mutex<()>,
}

impl Guardian {
    /// One integration pass; a scroll whose tree is not consistent with its last checkpoint
    /// is not signed, and raised as divergence.
    pub async fn integrate(&self) -> Result<Vec<integrate::Signed>, GuardianError> {
        let (signed, diverged) = self.integrator.pass().await?;
        let findings: Vec<Finding> = diverged
            .into_iter()
            .filter_map(|d| match d {
                GuardianError::Divergence {
                    scroll,
                    size,
                    detail,
                } => Some(Finding {
                    scroll: Some(scroll),
                    size: Some(size),
                    detail,
                }),
                _ => None,
            })
            .collect();
        self.raise(&findings).await;
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
        self.raise(&findings).await;
        if findings.is_empty() {
            tracing::info!("verification pass: history intact");
        }
        Ok(findings)
    }

    /// Raises findings not seen before: the divergence gauge goes to 1, and each new finding
    /// is a sentinel event and an error log naming scroll and size; one `anchor_divergence`
    /// receipt lists them. Already-known findings keep the gauge as it is, and findings
    /// acknowledged in the ledger (also by an earlier run) do not raise it.
    async fn raise(&self, findings: &[Finding]) {
        let mut known = self.known_divergence.lock().await;
        if !known.ledger_read {
            match self
                .ctx
                .store
                .receipts_of_type(anchor::GUARDIAN_SCROLL, DIVERGENCE_ACK)
                .await
            {
                Ok(acks) => {
                    for ack in acks {
                        let ids = ack.receipt.payload["findings"].as_array().cloned();
                        for id in ids.unwrap_or_default() {
                            if let Some(id) = id.as_str() {
                                known.findings.insert(id.to_string(), true);
                            }
                        }
                    }
                    known.ledger_read = true;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not read divergence acknowledgements; retried next pass")
                }
            }
        }
        let fresh: Vec<&Finding> = findings
            .iter()
            .filter(|f| {
                let id = finding_id(f);
                if known.findings.contains_key(&id) {
                    return false;
                }
                known.findings.insert(id, false);
                true
            })
            .collect();
        if known.findings.values().any(|acked| !acked) {
            PROOFCHAIN_DIVERGENCE.set(1.0);
        }
        drop(known);
        if fresh.is_empty() {
            return;
        }
        for f in &fresh {
            sentinel("divergence", "critical");
            tracing::error!(
                scroll = f.scroll.as_deref().unwrap_or("-"),
                size = f.size,
                detail = %f.detail,
                "divergence detected"
            );
        }
        self.anchorer
            .write_event(
                "anchor_divergence",
                serde_json::json!({
                    "findings": fresh.iter().take(50).collect::<Vec<_>>(),
                    "count": fresh.len(),
                }),
            )
            .await;
    }

    /// An operator's acknowledgement: every finding raised so far is recorded as
    /// acknowledged in a `divergence_acknowledged` receipt (naming the admin key), then
    /// marked seen and the gauge returns to 0; only new findings raise it again, also after a
    /// restart. Nothing is marked if the receipt cannot be written.
    pub async fn acknowledge_divergence(&self, by: &str) -> Result<usize, GuardianError> {
        let mut known = self.known_divergence.lock().await;
        let ids: Vec<String> = known
            .findings
            .iter()
            .filter(|(_, acked)| !**acked)
            .map(|(id, _)| id.clone())
            .collect();
        if !ids.is_empty() {
            self.anchorer
                .append_event(
                    DIVERGENCE_ACK,
                    serde_json::json!({"findings": ids, "count": ids.len(), "acknowledged_by": by}),
                )
                .await?;
            for id in &ids {
                known.findings.insert(id.clone(), true);
            }
        }
        PROOFCHAIN_DIVERGENCE.set(0.0);
        tracing::warn!(
            acknowledged = ids.len(),
            by,
            "divergence acknowledged by an operator"
        );
        Ok(ids.len())
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
            if let Err(e) = self.verify_now().await {
                tracing::error!(error = %e, "verification pass failed; retried next epoch");
            }
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
    let signer = load_signer(&opts)?;
    let ctx = ServiceContext::init(SERVICE, config, shutdown.clone()).await?;
    metrics::register(&ctx.registry)?;
    let sinks = configured_sinks(&opts)?;
    let mesh = ctx.config.mesh_id.clone();
    let auditor = divergence::Auditor {
        store: ctx.store.clone(),
        verifier: signer.verifier(),
        mesh: mesh.clone(),
        journal: (!opts.journal_path.as_os_str().is_empty()).then(|| opts.journal_path.clone()),
    };
    let guardian = Arc::new(Guardian {
        auditor,
        known_divergence: Mutex::new(KnownDivergence::default()),
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

/// Receipt type of an operator's acknowledgement of divergence findings.
pub const DIVERGENCE_ACK: &str = "divergence_acknowledged";

/// Divergence findings this guardian knows of, by [`finding_id`], and whether acknowledged.
#[derive(Default)]
struct KnownDivergence {
    findings: std::collections::HashMap<String, bool>,
    /// Whether acknowledgements already in the ledger have been read.
    ledger_read: bool,
}

/// A finding's stable identity: SHA3-256 (hex) of its JSON form.
fn finding_id(f: &Finding) -> String {
    let json = serde_json::to_string(f).unwrap_or_default();
    ledger::hash::to_hex(&ledger::hash::Sha3Hasher::plain(json.as_bytes()))
}

/// What `--verify-once` found.
#[derive(Debug, serde::Serialize)]
pub struct VerifyReport {
    /// True when there is no finding.
    pub intact: bool,
    /// Scrolls checked.
    pub scrolls: usize,
    /// Anchored epochs checked (ProofChain records).
    pub epochs: u64,
    /// Whether a journal file was compared with the stored records.
    pub journal: Option<std::path::PathBuf>,
    /// Every disagreement found.
    pub findings: Vec<Finding>,
}

/// One verification pass over the database named by `config` (and the journal file, unless
/// its path is empty), with the verifier of the configured signing key; no migrations, no
/// listener, no writes. Signatures are checked with `--vkey-file` when given, else with the
/// signing key's public half.
pub async fn verify_once(
    config: &CommonConfig,
    opts: &GuardianArgs,
) -> Result<VerifyReport, StartError> {
    let verifier = match &opts.vkey_file {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|text| NoteVerifier::from_vkey(text.trim()).map_err(|e| e.to_string()))
            .map_err(|e| std::io::Error::other(format!("vkey {}: {e}", path.display())))?,
        None => load_signer(opts)?.verifier(),
    };
    let store = ledger::store::Store::connect(
        &config.database_url,
        &ledger::store::PoolOptions {
            max_size: 2,
            ..Default::default()
        },
    )?;
    let journal = (!opts.journal_path.as_os_str().is_empty()).then(|| opts.journal_path.clone());
    let auditor = divergence::Auditor {
        store: store.clone(),
        verifier,
        mesh: config.mesh_id.clone(),
        journal: journal.clone(),
    };
    let checked = async {
        let findings = auditor.pass().await?;
        let scrolls = store.list_scrolls().await?.len();
        let epochs = store.latest_anchor().await?.map_or(0, |a| a.record.epoch);
        Ok::<_, GuardianError>((findings, scrolls, epochs))
    };
    let (findings, scrolls, epochs) = checked
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(VerifyReport {
        intact: findings.is_empty(),
        scrolls,
        epochs,
        journal,
        findings,
    })
}

fn load_signer(opts: &GuardianArgs) -> Result<NoteSigner, StartError> {
    Ok(NoteSigner::load(&opts.signing_key_file).map_err(|e| {
        std::io::Error::other(format!(
            "signing key {}: {e} (create one with `vaultmesh keygen`)",
            opts.signing_key_file.display()
        ))
    })?)
}

/// The sinks the options ask for: the journal unless its path is empty, and the TSA when a
/// URL is given (its certificate must load).
fn configured_sinks(opts: &GuardianArgs) -> Result<Vec<sinks::Sink>, StartError> {
    let mut out = Vec::new();
    if !opts.journal_path.as_os_str().is_empty() {
        out.push(sinks::Sink::Journal(sinks::journal::Journal::new(
            opts.journal_path.clone(),
        )));
    }
    if let Some(url) = &opts.tsa_url {
        let path = opts.tsa_cert_file.as_ref().ok_or_else(|| {
            std::io::Error::other("--tsa-url needs --tsa-cert-file (the TSA's certificate)")
        })?;
        let pem = std::fs::read_to_string(path).map_err(|e| {
            std::io::Error::other(format!("TSA certificate {}: {e}", path.display()))
        })?;
        let tsa = sinks::tsa::Tsa::new(
            url,
            &pem,
            std::time::Duration::from_secs(opts.tsa_timeout_secs),
        )
        .map_err(|e| std::io::Error::other(e.to_string()))?;
        out.push(sinks::Sink::Tsa(Box::new(tsa)));
    }
    Ok(out)
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
