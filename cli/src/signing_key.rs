//! `vaultmesh keygen`: the guardian's checkpoint signing key.

use clap::Args;
use ledger::note::NoteSigner;
use std::path::PathBuf;

/// Options of `vaultmesh keygen`.
#[derive(Args)]
pub struct KeygenArgs {
    /// Key name (appears in every signature line), e.g. `<mesh_id>/guardian`.
    #[arg(long, default_value = "vaultmesh-dev/guardian")]
    name: String,
    /// Where to write the private key (mode 0600). An existing file is kept and reused.
    #[arg(long, default_value = ".vaultmesh/guardian.key")]
    out: PathBuf,
    /// Also write the public verifier key (vkey) to this file.
    #[arg(long)]
    vkey_out: Option<PathBuf>,
}

/// Creates or loads the key and prints its vkey on stdout.
pub fn run(args: &KeygenArgs) -> anyhow::Result<()> {
    let signer = NoteSigner::generate_to_file(&args.name, &args.out)?;
    let vkey = signer.verifier().to_vkey();
    if let Some(path) = &args.vkey_out {
        std::fs::write(path, format!("{vkey}\n"))?;
    }
    println!("{vkey}");
    Ok(())
}
