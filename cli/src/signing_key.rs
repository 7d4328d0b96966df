//! `vaultmesh keygen`: the guardian's checkpoint signing key, or with `--witness` its witness
//! (cosignature/v1) key.

use clap::Args;
use ledger::cosignature::WitnessSigner;
use ledger::note::NoteSigner;
use std::path::PathBuf;

/// Options of `vaultmesh keygen`.
#[derive(Args)]
pub struct KeygenArgs {
    /// Make a witness key (Ed25519, cosignature/v1, vkey algorithm byte 0x04) instead of a
    /// checkpoint key; the guardian cosigns remote meshes' checkpoints with it.
    #[arg(long)]
    witness: bool,
    /// Key name (appears in every signature line), e.g. `<mesh_id>/guardian`; default
    /// `vaultmesh-dev/guardian`, or `vaultmesh-dev/witness` with `--witness`.
    #[arg(long)]
    name: Option<String>,
    /// Where to write the private key (mode 0600); default `.vaultmesh/guardian.key`, or
    /// `.vaultmesh/witness.key` with `--witness`. An existing file is kept and reused.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Also write the public verifier key (vkey) to this file.
    #[arg(long)]
    vkey_out: Option<PathBuf>,
}

/// Creates or loads the key and prints its vkey on stdout.
pub fn run(args: &KeygenArgs) -> anyhow::Result<()> {
    let role = if args.witness { "witness" } else { "guardian" };
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| format!("vaultmesh-dev/{role}"));
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!(".vaultmesh/{role}.key")));
    let vkey = if args.witness {
        WitnessSigner::generate_to_file(&name, &out)?
            .verifier()
            .to_vkey()
    } else {
        NoteSigner::generate_to_file(&name, &out)?
            .verifier()
            .to_vkey()
    };
    if let Some(path) = &args.vkey_out {
        std::fs::write(path, format!("{vkey}\n"))?;
    }
    println!("{vkey}");
    Ok(())
}
