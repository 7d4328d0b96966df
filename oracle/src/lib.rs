//! VaultMesh oracle: compliance answers with citations and ledger evidence, each answer receipted.
//!
//! Corpus and query routes land with the oracle issue; this crate currently serves the shared
//! health, readiness, status and metrics endpoints.

use ledger::config::{CommonConfig, ServiceDefaults};
use ledger::context::{ServiceContext, StartError};
use ledger::service::{no_routes, RunningService, Shutdown};

/// Service name, used in logs, metrics and `/v1/health`.
pub const SERVICE: &str = "oracle";

/// Default listen addresses: API on port 8082, metrics on 9090.
pub fn defaults() -> ServiceDefaults {
    ledger::context::defaults(8082)
}

/// Starts the oracle and returns once it is listening.
pub async fn start(config: CommonConfig, shutdown: Shutdown) -> Result<RunningService, StartError> {
    let ctx = ServiceContext::init(SERVICE, config, shutdown).await?;
    ctx.serve(no_routes()).await
}
