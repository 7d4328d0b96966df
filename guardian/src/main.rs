//! `vaultmesh-guardian` binary.

use clap::Parser;
use guardian::GuardianArgs;
use ledger::config::CommonArgs;

/// VaultMesh guardian: integrates receipts into Merkle trees, signs checkpoints, anchors
/// epochs into the ProofChain and its sinks. Run two for high availability: one leads.
#[derive(Parser)]
#[command(name = "vaultmesh-guardian", version)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    guardian: GuardianArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let opts = cli.guardian;
    if opts.verify_once {
        let config = cli.common.load(guardian::defaults())?;
        ledger::telemetry::init_logging(&config.log);
        let report = guardian::verify_once(&config, &opts).await?;
        println!("{}", serde_json::to_string_pretty(&report)?);
        std::process::exit(if report.intact { 0 } else { 1 });
    }
    ledger::context::run_until_stopped(&cli.common, guardian::defaults(), move |cfg, sd| {
        guardian::start_with(cfg, opts, sd)
    })
    .await?;
    Ok(())
}
