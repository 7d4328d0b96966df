//! `vaultmesh verify`: what an auditor runs. `bundle` checks one proof bundle fully offline;
//! `log` follows a live log — checkpoints consistent with the last ones seen, the ProofChain
//! from genesis with every head signed, and sampled receipts proven included. With
//! `--tsa-cert`, RFC 3161 tokens are checked too. Exit status 0 only if everything verifies;
//! otherwise each failure is printed as `FAIL …` and the status is 1.

mod bundle;
mod fork;
mod log;

use clap::Subcommand;
use ledger::cosignature::{WitnessPolicy, WitnessVerifier};
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
    /// Prove offline that a mesh signed two trees of one size, from a `fork` discrepancy's
    /// evidence (two notes validly signed by its guardian).
    Fork(fork::Args),
}

/// Runs a verification; `Ok(false)` means something did not verify (already reported).
pub async fn run(cmd: VerifyCommand) -> anyhow::Result<bool> {
    match cmd {
        VerifyCommand::Bundle(a) => bundle::run(&a),
        VerifyCommand::Log(a) => log::run(&a).await,
        VerifyCommand::Fork(a) => fork::run(&a),
    }
}

/// A verifier key given as a file holding it, or as the vkey text itself.
pub fn load_vkey(arg: &str) -> anyhow::Result<NoteVerifier> {
    NoteVerifier::from_vkey(&vkey_text("--vkey", arg)?)
        .map_err(|e| anyhow::anyhow!("--vkey: not a signed-note verifier key: {e}"))
}

/// The text of a key argument: the file it names, or the vkey itself.
fn vkey_text(flag: &str, arg: &str) -> anyhow::Result<String> {
    match std::fs::read_to_string(arg) {
        Ok(t) => Ok(t.trim().to_string()),
        Err(_) if arg.contains('+') => Ok(arg.trim().to_string()),
        Err(e) => anyhow::bail!("{flag} {arg}: not a readable file ({e}) nor a vkey"),
    }
}

/// A witness policy for `verify bundle` and `verify log`: the checkpoint must carry valid
/// cosignatures (C2SP cosignature/v1) from at least K of the witnesses named.
#[derive(clap::Args)]
pub struct WitnessArgs {
    /// A witness's cosignature vkey (algorithm byte 0x04), as a file or the text; repeat
    /// for every witness of the policy.
    #[arg(long = "witness", value_name = "VKEY")]
    witnesses: Vec<String>,
    /// How many of the `--witness` keys must have cosigned (default: all of them).
    #[arg(long, value_name = "K", requires = "witnesses")]
    witness_threshold: Option<usize>,
}

impl WitnessArgs {
    /// The policy asked for, if any.
    pub fn policy(&self) -> anyhow::Result<Option<WitnessPolicy>> {
        if self.witnesses.is_empty() {
            return Ok(None);
        }
        let keys = self
            .witnesses
            .iter()
            .map(|w| {
                WitnessVerifier::from_vkey(&vkey_text("--witness", w)?)
                    .map_err(|e| anyhow::anyhow!("--witness {w}: not a witness vkey: {e}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let k = self.witness_threshold.unwrap_or(keys.len());
        Ok(Some(WitnessPolicy::new(keys, k).map_err(|e| {
            anyhow::anyhow!("--witness-threshold: {e}")
        })?))
    }
}

/// The trusted timestamp authority's certificate (PEM file), for `--tsa-cert`.
pub fn load_tsa_cert(path: &Path) -> anyhow::Result<Certificate> {
    let pem = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("--tsa-cert {}: {e}", path.display()))?;
    ledger::timestamp::load_certificate(&pem)
        .map_err(|e| anyhow::anyhow!("--tsa-cert {}: {e}", path.display()))
}
