//! `vaultmesh verify fork FILE --vkey KEY`: proves offline that a mesh signed two trees of one
//! size. FILE is a `federation_discrepancy` receipt (or its payload, or a discrepancy as
//! `GET /v1/federation/discrepancies` lists it) of type `fork`; its evidence holds the note
//! the witness cosigned and the conflicting one. Both must verify under the remote guardian's
//! key, name one origin and one size, and differ in root.

use ledger::checkpoint::Checkpoint;
use ledger::hash::to_hex;
use serde_json::Value;

/// Options of `verify fork`.
#[derive(clap::Args)]
pub struct Args {
    /// The discrepancy (JSON): a receipt from the `federation` scroll, its payload, or an
    /// entry of `/v1/federation/discrepancies`.
    file: std::path::PathBuf,
    /// The forking mesh's guardian verifier key: a file holding it, or the vkey text.
    #[arg(long)]
    vkey: String,
}

/// The evidence object of a discrepancy in any of the accepted shapes.
fn evidence(v: &Value) -> Option<&Value> {
    [&v["evidence"], &v["payload"]["evidence"]]
        .into_iter()
        .find(|e| e.is_object())
}

/// Checks the fork and prints the verdict.
pub fn run(a: &Args) -> anyhow::Result<bool> {
    let verifier = super::load_vkey(&a.vkey)?;
    let text = std::fs::read_to_string(&a.file)
        .map_err(|e| anyhow::anyhow!("{}: {e}", a.file.display()))?;
    let fail = |why: String| {
        println!("FAIL {}: {why}", a.file.display());
        Ok(false)
    };
    let v: Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => return fail(format!("not JSON: {e}")),
    };
    let Some(e) = evidence(&v) else {
        return fail("no evidence object".into());
    };
    let notes = (
        e["cosigned"].as_str(),
        e["conflicting"].as_str().or(e["served"].as_str()),
    );
    let (Some(first), Some(second)) = notes else {
        return fail("the evidence lacks the cosigned and the conflicting notes".into());
    };
    let first = match Checkpoint::verify(first, &verifier, None) {
        Ok(cp) => cp,
        Err(e) => return fail(format!("the cosigned note does not verify: {e}")),
    };
    let second = match Checkpoint::verify(second, &verifier, None) {
        Ok(cp) => cp,
        Err(e) => return fail(format!("the conflicting note does not verify: {e}")),
    };
    if first.origin != second.origin {
        return fail(format!(
            "the notes name two origins ({} and {})",
            first.origin, second.origin
        ));
    }
    if first.size != second.size {
        return fail(format!(
            "the notes are of sizes {} and {}: a fork between two sizes needs a consistency \
             proof, which this evidence does not carry",
            first.size, second.size
        ));
    }
    if first.root == second.root {
        return fail("the two notes are of the same tree".into());
    }
    println!(
        "OK fork proven: {} signed two trees of size {} for {}: roots {} and {}",
        verifier.name(),
        first.size,
        first.origin,
        to_hex(&first.root),
        to_hex(&second.root)
    );
    Ok(true)
}
