//! `vaultmesh-guardian` binary.

use clap::Parser;
use ledger::config::CommonArgs;

/// VaultMesh guardian: integrates receipts into Merkle trees, signs checkpoints, anchors epochs, detects divergence.
#[derive(Parser)]
#[command(name = "vaultmesh-guardian", version)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    ledger::context::run_until_stopped(&cli.common, guardian::defaults(), guardian::start).await?;
    Ok(())
}
