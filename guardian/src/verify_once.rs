//! `--verify-once`: one read-only verification pass over a database (and journal file),
//! reported as JSON, with no listener, migrations or writes.

use crate::divergence::{Auditor, Finding};
use crate::error::GuardianError;
use crate::GuardianArgs;
use ledger::config::CommonConfig;
use ledger::context::StartError;
use ledger::note::NoteVerifier;
use ledger::storage::AnchorStore;

/// What `--verify-once` found.
#[derive(Debug, serde::Serialize)]
pub struct VerifyReport {
    /// True when there is no finding.
    pub intact: bool,
    /// Scrolls checked.
    pub scrolls: usize,
    /// Anchored epochs checked (ProofChain records).
    pub epochs: u64,
    /// Whether a journal file was compared with the stored records.
    pub journal: Option<std::path::PathBuf>,
    /// Every disagreement found.
    pub findings: Vec<Finding>,
}

/// One verification pass over the database named by `config` (and the journal file, unless
/// its path is empty), with the verifier of the configured signing key; no migrations, no
/// listener, no writes. Signatures are checked with `--vkey-file` when given, else with the
/// signing key's public half.
pub async fn verify_once(
    config: &CommonConfig,
    opts: &GuardianArgs,
) -> Result<VerifyReport, StartError> {
    let verifier = match &opts.vkey_file {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|text| NoteVerifier::from_vkey(text.trim()).map_err(|e| e.to_string()))
            .map_err(|e| std::io::Error::other(format!("vkey {}: {e}", path.display())))?,
        None => crate::load_signer(opts)?.verifier(),
    };
    let store = ledger::store::Store::connect(
        &config.database_url,
        &ledger::store::PoolOptions {
            max_size: 2,
            ..Default::default()
        },
    )?;
    let journal = (!opts.journal_path.as_os_str().is_empty()).then(|| opts.journal_path.clone());
    let auditor = Auditor {
        store: store.clone(),
        verifier,
        mesh: config.mesh_id.clone(),
        journal: journal.clone(),
    };
    let checked = async {
        let findings = auditor.pass().await?;
        let scrolls = store.list_scrolls().await?.len();
        let epochs = store.latest_anchor().await?.map_or(0, |a| a.record.epoch);
        Ok::<_, GuardianError>((findings, scrolls, epochs))
    };
    let (findings, scrolls, epochs) = checked
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(VerifyReport {
        intact: findings.is_empty(),
        scrolls,
        epochs,
        journal,
        findings,
    })
}
