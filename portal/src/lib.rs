//! VaultMesh portal: the receipt API: submission, reads, proofs and checkpoints (SPEC §4).
//!
//! Receipt ingest and read routes land with the portal issue; this crate currently serves the
//! shared health, readiness, status and metrics endpoints.

use ledger::config::{CommonConfig, ServiceDefaults};
use ledger::context::{ServiceContext, StartError};
use ledger::service::{no_routes, RunningService, Shutdown};

/// Service name, used in logs, metrics and `/v1/health`.
pub const SERVICE: &str = "portal";

/// Default listen addresses: API on port 8080, metrics on 9090.
pub fn defaults() -> ServiceDefaults {
    ledger::context::defaults(8080)
}

/// Starts the portal and returns once it is listening.
pub async fn start(config: CommonConfig, shutdown: Shutdown) -> Result<RunningService, StartError> {
    let ctx = ServiceContext::init(SERVICE, config, shutdown).await?;
    ctx.serve(no_routes()).await
}
