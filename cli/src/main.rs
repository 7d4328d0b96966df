//! `vaultmesh`: the umbrella command for operators, auditors and developers.

mod bench;
mod drill;
mod governance;
mod keys;
mod signing_key;
mod verify;

use clap::{Parser, Subcommand};

/// VaultMesh command line: database migrations, signing keys, API keys, governance, drills,
/// verification and benchmarks.
#[derive(Parser)]
#[command(name = "vaultmesh", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply pending database migrations (as the schema owner).
    Migrate {
        /// Postgres URL of the schema owner.
        #[arg(
            long,
            env = "VAULTMESH_MIGRATE_DATABASE_URL",
            default_value = "postgres://vaultmesh:vaultmesh@127.0.0.1:5432/vaultmesh"
        )]
        database_url: String,
    },
    /// Create the guardian's Ed25519 signing key file (kept if it exists) and print its vkey.
    Keygen(signing_key::KeygenArgs),
    /// Manage API keys.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Verify a proof bundle offline, or a live log (exit status 1 if anything fails).
    #[command(subcommand)]
    Verify(verify::VerifyCommand),
    /// Show or adopt the constitution (through a portal; adopting needs an admin key).
    #[command(subcommand)]
    Constitution(governance::ConstitutionCommand),
    /// Raise, lift or show the emergency freeze (through a portal; an admin key).
    #[command(subcommand)]
    Emergency(governance::EmergencyCommand),
    /// Run benchmarks and print their figures.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Run an operational drill against a running stack (exit status 1 if it found a loss).
    #[command(subcommand)]
    Drill(drill::DrillCommand),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Migrate { database_url } => {
            ledger::store::migrate(&database_url).await?;
            eprintln!("migrations applied");
        }
        Command::Keygen(args) => signing_key::run(&args)?,
        Command::Keys(cmd) => keys::run(cmd).await?,
        Command::Bench(cmd) => bench::run(cmd).await?,
        Command::Constitution(cmd) => governance::constitution(cmd).await?,
        Command::Emergency(cmd) => governance::emergency(cmd).await?,
        Command::Drill(cmd) => {
            if !drill::run(cmd).await? {
                std::process::exit(1);
            }
        }
        Command::Verify(cmd) => {
            if !verify::run(cmd).await? {
                std::process::exit(1);
            }
        }
    }
    Ok(())
}
