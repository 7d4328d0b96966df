//! VaultMesh guardian: integrates receipts into each scroll's stored Merkle tree, signs
//! checkpoints, anchors epochs into the hash-linked ProofChain and its sinks. One guardian
//! leads (Postgres advisory lock); others stand by and take over.

pub mod anchor;
pub mod cosigning;
pub mod discrepancy;
pub mod divergence;
pub mod error;
pub mod findings;
pub mod frontier;
pub mod handoff;
pub mod integrate;
pub mod leader;
pub mod mesh_watch;
pub mod metrics;
pub mod options;
pub mod psi;
pub mod remote_watch;
pub mod route_probes;
pub mod routes;
pub mod sinks;
pub mod state;
pub mod verify_once;
pub mod witness;

pub use findings::DIVERGENCE_ACK;
pub use options::GuardianArgs;
pub use state::Guardian;
pub use verify_once::{verify_once, VerifyReport};

use anchor::Anchorer;
use findings::Findings;
use integrate::Integrator;
use leader::{Fence, Leadership};
use ledger::config::{CommonConfig, ServiceDefaults};
use ledger::context::{ServiceContext, StartError};
use ledger::cosignature::WitnessSigner;
use ledger::note::NoteSigner;
use ledger::service::{RunningService, Shutdown};
use std::sync::Arc;
use tokio::sync::Mutex;

/// Service name, used in logs, metrics and `/v1/health`.
pub const SERVICE: &str = "guardian";

/// Default listen addresses: API on port 8081, metrics on 9090.
pub fn defaults() -> ServiceDefaults {
    ledger::context::defaults(8081, ledger::store::DbRole::Guardian)
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
    let head_signer = load_signer(&opts)?;
    let ctx = ServiceContext::init(SERVICE, config, shutdown.clone()).await?;
    metrics::register(&ctx.registry)?;
    let sinks = configured_sinks(&opts)?;
    metrics::init_anchor_failures(sinks.iter().map(sinks::Sink::name));
    let mesh = ctx.config.mesh_id.clone();
    let auditor = divergence::Auditor {
        store: ctx.store.clone(),
        verifier: signer.verifier(),
        mesh: mesh.clone(),
        journal: (!opts.journal_path.as_os_str().is_empty()).then(|| opts.journal_path.clone()),
    };
    let discrepancies = Arc::new(discrepancy::Discrepancies {
        store: ctx.store.clone(),
        gate: ctx.gate(),
    });
    let witness = match &opts.witness_key_file {
        Some(path) => Some(witness::Witness {
            discrepancies: discrepancies.clone(),
            store: ctx.store.clone(),
            signer: WitnessSigner::load(path).map_err(|e| {
                std::io::Error::other(format!(
                    "witness key {}: {e} (create one with `vaultmesh keygen --witness`)",
                    path.display()
                ))
            })?,
            remotes: opts.remote_meshes.clone(),
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_millis(opts.witness_timeout_ms))
                .build()
                .map_err(|e| std::io::Error::other(format!("witness HTTP client: {e}")))?,
        }),
        None if !opts.remote_meshes.is_empty() => {
            return Err(std::io::Error::other("--remote-mesh needs --witness-key-file").into())
        }
        None => None,
    };
    let cosigner = if opts.witnesses.is_empty() {
        None
    } else {
        Some(
            cosigning::Cosigner::new(
                ctx.store.clone(),
                opts.witnesses.clone(),
                std::time::Duration::from_millis(opts.witness_timeout_ms),
            )
            .map_err(|e| std::io::Error::other(format!("witness HTTP client: {e}")))?,
        )
    };
    let remote_watch = if opts.remote_meshes.is_empty() {
        None
    } else {
        Some(
            remote_watch::RemoteWatch::new(
                ctx.store.clone(),
                opts.remote_meshes.clone(),
                discrepancies.clone(),
                std::time::Duration::from_secs(opts.rollback_grace_secs),
                std::time::Duration::from_millis(opts.witness_timeout_ms),
            )
            .map_err(|e| std::io::Error::other(format!("remote portal HTTP client: {e}")))?,
        )
    };
    metrics::init_federation(
        opts.witnesses.iter().map(|w| w.mesh.as_str()),
        opts.remote_meshes.iter().map(|r| r.mesh.as_str()),
    );
    if let Err(e) = discrepancies.refresh().await {
        tracing::warn!(error = %e, "could not read federation discrepancies at start");
    }
    let leadership = Arc::new(Mutex::new(Leadership::default()));
    ctx.store.lease_term().set(0);
    let leading = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let probes = route_probes::probes(&opts, &sinks, ctx.config.mesh.probe_timeout())
        .map_err(|e| std::io::Error::other(format!("route probe HTTP client: {e}")))?;
    let findings = Findings::new(ctx.store.clone(), mesh.clone(), load_signer(&opts)?);
    let storage: Arc<dyn ledger::storage::Storage> = Arc::new(ctx.store.clone());
    let guardian = Arc::new(Guardian {
        auditor,
        findings,
        integrator: Integrator {
            store: storage.clone(),
            signer,
            mesh: mesh.clone(),
            batch: opts.integrate_batch,
        },
        anchorer: Anchorer {
            store: storage,
            mesh,
            sinks,
            signer: head_signer,
            fence: Fence {
                leadership: leadership.clone(),
            },
            gate: ctx.gate(),
        },
        witness,
        cosigner,
        discrepancies,
        remote_watch,
        leadership,
        next_epoch: Mutex::new(None),
        epoch_lock: Mutex::new(()),
        psi_lock: Mutex::new(()),
        last_clean_pass: std::sync::Mutex::new(None),
        last_pass: std::sync::Mutex::new(None),
        leading: leading.clone(),
        opts,
        ctx: ctx.clone(),
    });
    let mut running = ctx
        .serve_counted(
            routes::routes(guardian.clone()),
            Some(routes::table()),
            None,
        )
        .await?;
    running.add_task(tokio::spawn(cosigning::run(
        guardian.clone(),
        shutdown.clone(),
    )));
    running.add_task(tokio::spawn(remote_watch::run(
        guardian.clone(),
        shutdown.clone(),
    )));
    running.add_task(tokio::spawn(psi::run(guardian.clone(), shutdown.clone())));
    running.add_task(tokio::spawn(state::run(guardian, shutdown)));
    let role = leading.clone();
    ctx.join_mesh(
        &mut running,
        Arc::new(move || {
            if role.load(std::sync::atomic::Ordering::Relaxed) {
                "leader".into()
            } else {
                "standby".into()
            }
        }),
        probes,
    )?;
    Ok(running)
}

pub(crate) fn load_signer(opts: &GuardianArgs) -> Result<NoteSigner, StartError> {
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
