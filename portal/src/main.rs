//! `vaultmesh-portal` binary.

use clap::Parser;
use ledger::config::CommonArgs;
use portal::PortalArgs;

/// VaultMesh portal: the receipt API (submission, reads, proofs, checkpoints, anchors).
#[derive(Parser)]
#[command(name = "vaultmesh-portal", version)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    portal: PortalArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let opts = cli.portal;
    ledger::context::run_until_stopped(&cli.common, portal::defaults(), move |cfg, sd| {
        portal::start_with(cfg, opts, sd)
    })
    .await?;
    Ok(())
}
