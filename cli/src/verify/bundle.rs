//! `vaultmesh verify bundle FILE --vkey KEY`: fully offline.

use ledger::bundle::ProofBundle;

/// Options of `verify bundle`.
#[derive(clap::Args)]
pub struct Args {
    /// The bundle (JSON, as served by `/v1/scrolls/{scroll}/receipts/{seq}/bundle`).
    file: std::path::PathBuf,
    /// The guardian's verifier key: a file holding it, or the vkey text.
    #[arg(long, env = "VAULTMESH_GUARDIAN_VKEY")]
    vkey: String,
}

/// Verifies the bundle and prints the verdict.
pub fn run(a: &Args) -> anyhow::Result<bool> {
    let verifier = super::load_vkey(&a.vkey)?;
    let text = std::fs::read_to_string(&a.file)
        .map_err(|e| anyhow::anyhow!("{}: {e}", a.file.display()))?;
    let bundle: ProofBundle = match serde_json::from_str(&text) {
        Ok(b) => b,
        Err(e) => {
            println!("FAIL {}: not a proof bundle: {e}", a.file.display());
            return Ok(false);
        }
    };
    match bundle.verify(&verifier) {
        Ok(v) => {
            println!("OK {}", serde_json::to_string(&v)?);
            Ok(true)
        }
        Err(e) => {
            println!("FAIL {}: {e}", a.file.display());
            Ok(false)
        }
    }
}
