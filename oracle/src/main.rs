//! `vaultmesh-oracle` binary.

use clap::Parser;
use ledger::config::CommonArgs;
use oracle::OracleArgs;

/// VaultMesh oracle: compliance answers with citations and ledger evidence, each answer receipted.
#[derive(Parser)]
#[command(name = "vaultmesh-oracle", version)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    oracle: OracleArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let opts = cli.oracle;
    ledger::context::run_until_stopped(&cli.common, oracle::defaults(), move |cfg, sd| {
        oracle::start_with(cfg, opts, sd)
    })
    .await?;
    Ok(())
}
