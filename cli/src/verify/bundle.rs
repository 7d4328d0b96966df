//! `vaultmesh verify bundle FILE --vkey KEY [--tsa-cert PEM] [--witness W… --witness-threshold
//! K]`: fully offline.

use ledger::bundle::ProofBundle;
use ledger::timestamp;

/// Options of `verify bundle`.
#[derive(clap::Args)]
pub struct Args {
    /// The bundle (JSON, as served by `/v1/scrolls/{scroll}/receipts/{seq}/bundle`).
    file: std::path::PathBuf,
    /// The guardian's verifier key: a file holding it, or the vkey text.
    #[arg(long, env = "VAULTMESH_GUARDIAN_VKEY")]
    vkey: String,
    /// The timestamp authority's certificate (PEM): every successful `rfc3161` sink result
    /// of the bundle's anchor must then be a valid token by it over that record.
    #[arg(long)]
    tsa_cert: Option<std::path::PathBuf>,
    #[command(flatten)]
    witnesses: super::WitnessArgs,
}

/// Verifies the bundle and prints the verdict.
pub fn run(a: &Args) -> anyhow::Result<bool> {
    let verifier = super::load_vkey(&a.vkey)?;
    let policy = a.witnesses.policy()?;
    let tsa = a
        .tsa_cert
        .as_deref()
        .map(super::load_tsa_cert)
        .transpose()?;
    let text = std::fs::read_to_string(&a.file)
        .map_err(|e| anyhow::anyhow!("{}: {e}", a.file.display()))?;
    let bundle: ProofBundle = match serde_json::from_str(&text) {
        Ok(b) => b,
        Err(e) => {
            println!("FAIL {}: not a proof bundle: {e}", a.file.display());
            return Ok(false);
        }
    };
    let verdict = match bundle.verify(&verifier) {
        Ok(v) => v,
        Err(e) => {
            println!("FAIL {}: {e}", a.file.display());
            return Ok(false);
        }
    };
    if let Some(policy) = &policy {
        match policy.check(&bundle.checkpoint) {
            Ok(names) => println!("OK checkpoint cosigned by {}", names.join(", ")),
            Err(e) => {
                println!("FAIL {}: witness policy: {e}", a.file.display());
                return Ok(false);
            }
        }
    }
    if let (Some(cert), Some(anchor)) = (&tsa, &bundle.anchor) {
        match timestamp::verify_record_tokens(anchor, cert) {
            Ok(tokens) if tokens.is_empty() => {
                println!("NOTE epoch {}: no RFC 3161 token", anchor.epoch);
            }
            Ok(tokens) => {
                for t in tokens {
                    println!(
                        "OK epoch {}: RFC 3161 token of {}",
                        anchor.epoch, t.gen_time
                    );
                }
            }
            Err(e) => {
                println!("FAIL {}: {e}", a.file.display());
                return Ok(false);
            }
        }
    }
    println!("OK {}", serde_json::to_string(&verdict)?);
    Ok(true)
}
