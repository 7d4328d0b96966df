//! `vaultmesh-portal` binary.

use clap::Parser;
use ledger::config::CommonArgs;

/// VaultMesh portal: the receipt API: submission, reads, proofs and checkpoints (SPEC §4).
#[derive(Parser)]
#[command(name = "vaultmesh-portal", version)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    ledger::context::run_until_stopped(&cli.common, portal::defaults(), portal::start).await?;
    Ok(())
}
