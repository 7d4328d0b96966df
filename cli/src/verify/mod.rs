//! `vaultmesh verify`: what an auditor runs. `bundle` checks one proof bundle fully offline;
//! `log` follows a live log — checkpoints consistent with the last ones seen, the ProofChain
//! from genesis with every head signed, and sampled receipts proven included. With
//! `--tsa-cert`, RFC 3161 tokens are checked too. Exit status 0 only if everything verifies;
//! otherwise each failure is printed as `FAIL …` and the status is 1.

mod bundle;
mod log;

use clap::Subcommand;
use ledger::note::NoteVerifier;
use ledger::timestamp::Certificate;
use std::path::Path;

/// Verification commands.
#[derive(Subcommand)]
pub enum VerifyCommand {
    /// Verify a proof bundle offline: receipt, leaf hash, inclusion proof, signed checkpoint
    /// and the anchor record that covers it, with its signed head.
    Bundle(bundle::Args),
    /// Verify a running log over HTTP(S), remembering what was verified in a state file.
    Log(log::Args),
}

/// Runs a verification; `Ok(false)` means something did not verify (already reported).
pub async fn run(cmd: VerifyCommand) -> anyhow::Result<bool> {
    match cmd {
        VerifyCommand::Bundle(a) => bundle::run(&a),
        VerifyCommand::Log(a) => log::run(&a).await,
    }
}

/// A verifier key given as a file holding it, or as the vkey text itself.
pub fn load_vkey(arg: &str) -> anyhow::Result<NoteVerifier> {
    let text = match std::fs::read_to_string(arg) {
        Ok(t) => t,
        Err(_) if arg.contains('+') => arg.to_string(),
        Err(e) => anyhow::bail!("--vkey {arg}: not a readable file ({e}) nor a vkey"),
    };
    NoteVerifier::from_vkey(text.trim())
        .map_err(|e| anyhow::anyhow!("--vkey: not a signed-note verifier key: {e}"))
}

/// The trusted timestamp authority's certificate (PEM file), for `--tsa-cert`.
pub fn load_tsa_cert(path: &Path) -> anyhow::Result<Certificate> {
    let pem = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("--tsa-cert {}: {e}", path.display()))?;
    ledger::timestamp::load_certificate(&pem)
        .map_err(|e| anyhow::anyhow!("--tsa-cert {}: {e}", path.display()))
}
