//! VaultMesh portal: the receipt API — group-committed durable ingest, reads, proofs,
//! checkpoints and anchors (SPEC §4), with bearer-key auth and per-route metrics.

pub mod access_log;
pub mod ingest;
pub mod metrics;
pub mod openapi;
pub mod options;
pub mod params;
pub mod read_cache;
pub mod routes;
pub mod state;

use ledger::config::{CommonConfig, ServiceDefaults};
use ledger::context::{ServiceContext, StartError};
use ledger::service::{RunningService, Shutdown};
pub use options::PortalArgs;

/// Service name, used in logs, metrics and `/v1/health`.
pub const SERVICE: &str = "portal";

/// Default listen addresses: API on port 8080, metrics on 9090.
pub fn defaults() -> ServiceDefaults {
    ledger::context::defaults(8080, ledger::store::DbRole::Portal)
}

/// Starts the portal with default portal options.
pub async fn start(config: CommonConfig, shutdown: Shutdown) -> Result<RunningService, StartError> {
    start_with(config, PortalArgs::default(), shutdown).await
}

/// Starts the portal and returns once it is listening.
pub async fn start_with(
    config: CommonConfig,
    opts: PortalArgs,
    shutdown: Shutdown,
) -> Result<RunningService, StartError> {
    let ctx = ServiceContext::init(SERVICE, config, shutdown).await?;
    metrics::register(&ctx.registry)?;
    let vkey = match &opts.guardian_vkey_file {
        Some(path) => Some(std::fs::read_to_string(path)?.trim().to_string()),
        None => None,
    };
    let reads = ctx
        .reads(opts.read_database_url.as_deref())
        .map_err(|e| std::io::Error::other(format!("--read-database-url: {e}")))?;
    let portal = state::Portal::new(ctx.clone(), opts, vkey, reads);
    match ctx.store.list_scrolls().await {
        Ok(scrolls) => scrolls
            .iter()
            .for_each(|s| metrics::init_write_errors(&s.name)),
        Err(e) => {
            tracing::warn!(error = %e, "scrolls not listed: write-error counters start at each scroll's first use")
        }
    }
    let audit = tokio::spawn(access_log::run(
        portal.access.clone(),
        portal.gate.clone(),
        std::sync::Arc::new(portal.reads.clone()),
        std::time::Duration::from_secs(portal.opts.access_window_secs),
        ctx.shutdown.clone(),
    ));
    let mut running = ctx
        .serve_counted(
            routes::routes(portal),
            Some(openapi::route_table()),
            Some(metrics::ACTIVE_CONNECTIONS.clone()),
        )
        .await?;
    running.add_task(audit);
    ctx.join_mesh(
        &mut running,
        std::sync::Arc::new(|| "api".into()),
        Vec::new(),
    )?;
    Ok(running)
}
