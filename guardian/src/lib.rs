//! VaultMesh guardian: integrates receipts into Merkle trees, signs checkpoints, anchors epochs, detects divergence.
//!
//! The integration, anchoring and divergence loops land with the guardian issue; this crate
//! currently serves the shared health, readiness, status and metrics endpoints.

use ledger::config::{CommonConfig, ServiceDefaults};
use ledger::context::{ServiceContext, StartError};
use ledger::service::{no_routes, RunningService, Shutdown};

/// Service name, used in logs, metrics and `/v1/health`.
pub const SERVICE: &str = "guardian";

/// Default listen addresses: API on port 8081, metrics on 9090.
pub fn defaults() -> ServiceDefaults {
    ledger::context::defaults(8081)
}

/// Starts the guardian and returns once it is listening.
pub async fn start(config: CommonConfig, shutdown: Shutdown) -> Result<RunningService, StartError> {
    let ctx = ServiceContext::init(SERVICE, config, shutdown).await?;
    ctx.serve(no_routes()).await
}
