//! `vaultmesh-oracle` binary.

use clap::Parser;
use ledger::config::CommonArgs;

/// VaultMesh oracle: compliance answers with citations and ledger evidence, each answer receipted.
#[derive(Parser)]
#[command(name = "vaultmesh-oracle", version)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    ledger::context::run_until_stopped(&cli.common, oracle::defaults(), oracle::start).await?;
    Ok(())
}
