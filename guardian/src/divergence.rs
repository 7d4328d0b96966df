//! Divergence detection: recompute every scroll's roots from the stored receipt bytes
//! (streaming, in bounded memory), re-check stored leaf hashes and positions, compare with
//! every signed checkpoint (signature included) and every anchored root at their sizes,
//! verify the ProofChain records and links, and compare the journal file with the database.

use crate::error::GuardianError;
use ledger::checkpoint::Checkpoint;
use ledger::hash::{from_hex, to_hex, Hash, Sha3Hasher};
use ledger::merkle::CompactTree;
use ledger::note::NoteVerifier;
use ledger::proofchain::{verify_chain, AnchorRecord};
use ledger::storage::AnchorStore;
use ledger::store::{ScrollInfo, Store};
use serde::Serialize;
use sha3::Sha3_256;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Anchor records read per query.
const ANCHOR_PAGE: u32 = 1_000;

/// One disagreement between stored history and what was signed or anchored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// Scroll concerned, if one.
    pub scroll: Option<String>,
    /// Tree size (or epoch, for ProofChain findings) concerned.
    pub size: Option<u64>,
    /// What differs.
    pub detail: String,
}

fn finding(scroll: Option<&str>, size: Option<u64>, detail: String) -> Finding {
    Finding {
        scroll: scroll.map(str::to_string),
        size,
        detail,
    }
}

/// The position a leaf names (the payload is skipped, not built).
#[derive(serde::Deserialize)]
struct Position<'a> {
    #[serde(borrow)]
    scroll: std::borrow::Cow<'a, str>,
    seq: u64,
}

/// Where a root was promised: a signed checkpoint or an anchored epoch.
#[derive(Debug, Clone)]
struct Promise {
    what: String,
    root: Hash,
}

/// Runs verification passes.
pub struct Auditor {
    /// The ledger.
    pub store: Store,
    /// The guardian's own verifier key: checkpoint signatures must verify with it.
    pub verifier: NoteVerifier,
    /// Mesh id (checkpoint origins).
    pub mesh: String,
    /// The journal file, if that sink is configured.
    pub journal: Option<PathBuf>,
}

impl Auditor {
    /// One full pass; returns every finding (empty when history is intact).
    pub async fn pass(&self) -> Result<Vec<Finding>, GuardianError> {
        let mut findings = Vec::new();
        let records = self.records().await?;
        for r in &records {
            if let Err(e) = r.verify() {
                findings.push(finding(
                    None,
                    Some(r.epoch),
                    format!("ProofChain record: {e}"),
                ));
            }
        }
        if let Err(e) = verify_chain(&records) {
            findings.push(finding(None, None, format!("ProofChain: {e}")));
        }
        let newest_signed = records
            .iter()
            .rev()
            .find(|r| r.signature.is_some())
            .map(|r| r.epoch);
        for r in &records {
            let unsigned_before_signed = newest_signed.is_some_and(|n| r.epoch < n);
            let result = match &r.signature {
                Some(_) => r.verify_head(&self.verifier).map_err(|e| e.to_string()),
                None if unsigned_before_signed => {
                    Err("its signed head is missing, though later epochs have theirs".into())
                }
                None => Ok(()),
            };
            if let Err(e) = result {
                findings.push(finding(
                    None,
                    Some(r.epoch),
                    format!("ProofChain head of epoch {}: {e}", r.epoch),
                ));
            }
        }
        for scroll in self.store.list_scrolls().await? {
            let mut promises: BTreeMap<u64, Vec<Promise>> = BTreeMap::new();
            for r in &records {
                if let Some(a) = r.scroll(&scroll.name) {
                    match from_hex(&a.root) {
                        Ok(root) => promises.entry(a.tree_size).or_default().push(Promise {
                            what: format!("epoch {} anchor", r.epoch),
                            root,
                        }),
                        Err(_) => findings.push(finding(
                            Some(&scroll.name),
                            Some(a.tree_size),
                            format!("epoch {} anchors a malformed root", r.epoch),
                        )),
                    }
                }
            }
            self.checkpoint_promises(&scroll, &mut promises, &mut findings)
                .await?;
            self.recompute(&scroll, &promises, &mut findings).await?;
        }
        self.journal(&records, &mut findings).await?;
        Ok(findings)
    }

    async fn records(&self) -> Result<Vec<AnchorRecord>, GuardianError> {
        let mut out = Vec::new();
        loop {
            let page = self
                .store
                .anchors(out.len() as u64 + 1, ANCHOR_PAGE)
                .await?;
            let n = page.len();
            out.extend(page.into_iter().map(|a| a.record));
            if n < ANCHOR_PAGE as usize {
                return Ok(out);
            }
        }
    }

    /// Adds each checkpoint's root as a promise, after checking its signature and that the
    /// signed size and root are the stored ones.
    async fn checkpoint_promises(
        &self,
        scroll: &ScrollInfo,
        promises: &mut BTreeMap<u64, Vec<Promise>>,
        findings: &mut Vec<Finding>,
    ) -> Result<(), GuardianError> {
        let origin = Checkpoint::origin_for(&self.mesh, &scroll.name);
        for cp in self.store.checkpoints_of(scroll.id).await? {
            match Checkpoint::verify(&cp.note, &self.verifier, Some(&origin)) {
                Ok(signed) if signed.size == cp.tree_size && signed.root == cp.root => {}
                Ok(signed) => findings.push(finding(
                    Some(&scroll.name),
                    Some(cp.tree_size),
                    format!(
                        "checkpoint row says size {} root {}, its signed note says size {} root {}",
                        cp.tree_size,
                        to_hex(&cp.root),
                        signed.size,
                        to_hex(&signed.root)
                    ),
                )),
                Err(e) => findings.push(finding(
                    Some(&scroll.name),
                    Some(cp.tree_size),
                    format!("checkpoint signature does not verify: {e}"),
                )),
            }
            promises.entry(cp.tree_size).or_default().push(Promise {
                what: format!("checkpoint at {}", cp.tree_size),
                root: cp.root,
            });
        }
        Ok(())
    }

    /// Streams the scroll's receipts, checking positions, leaf bytes and stored hashes, and
    /// compares the recomputed root with every promise at its size.
    async fn recompute(
        &self,
        scroll: &ScrollInfo,
        promises: &BTreeMap<u64, Vec<Promise>>,
        findings: &mut Vec<Finding>,
    ) -> Result<(), GuardianError> {
        let name = scroll.name.as_str();
        let mut tree = CompactTree::<Sha3_256>::default();
        let mut pending = promises.iter().peekable();
        let mut found = Vec::new();
        let check = |tree: &CompactTree<Sha3_256>, at: &[Promise], found: &mut Vec<Finding>| {
            let root = tree.root();
            for p in at {
                if p.root != root {
                    found.push(finding(
                        Some(name),
                        Some(tree.size()),
                        format!(
                            "recomputed root {} differs from the {} ({})",
                            to_hex(&root),
                            p.what,
                            to_hex(&p.root)
                        ),
                    ));
                }
            }
        };
        while let Some((_, at)) = pending.next_if(|(s, _)| **s == 0) {
            check(&tree, at, &mut found);
        }
        self.store
            .scan_receipts(scroll.id, |row| {
                let expected = tree.size();
                if row.seq != expected {
                    found.push(finding(
                        Some(name),
                        Some(expected),
                        format!(
                            "receipt {} found where {expected} was expected (a receipt is missing)",
                            row.seq
                        ),
                    ));
                    return false;
                }
                let recomputed = Sha3Hasher::leaf(&row.leaf);
                if row.leaf_hash != recomputed {
                    found.push(finding(
                        Some(name),
                        Some(expected),
                        format!("receipt {expected}: stored leaf hash does not match its bytes"),
                    ));
                }
                match serde_json::from_slice::<Position>(&row.leaf) {
                    Ok(p) if p.scroll == name && p.seq == expected => {}
                    Ok(p) => found.push(finding(
                        Some(name),
                        Some(expected),
                        format!(
                            "receipt {expected}: its bytes name position {}/{}",
                            p.scroll, p.seq
                        ),
                    )),
                    Err(e) => found.push(finding(
                        Some(name),
                        Some(expected),
                        format!("receipt {expected}: bytes are not a receipt: {e}"),
                    )),
                }
                tree.push(recomputed);
                while let Some((_, at)) = pending.next_if(|(s, _)| **s == tree.size()) {
                    check(&tree, at, &mut found);
                }
                true
            })
            .await?;
        findings.append(&mut found);
        for (size, at) in pending {
            if *size > tree.size() {
                for p in at {
                    findings.push(finding(
                        Some(name),
                        Some(*size),
                        format!(
                            "the {} covers {size} receipts but only {} are stored in sequence",
                            p.what,
                            tree.size()
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The journal must hold, as line `epoch`, exactly the stored text of every epoch it
    /// accepted; every other line must be the stored text of the epoch it stands for (a
    /// line beyond the newest epoch, or a partial last line, is a finding too). The file is
    /// read under a shared lock, so never while the sink is writing it.
    async fn journal(
        &self,
        records: &[AnchorRecord],
        findings: &mut Vec<Finding>,
    ) -> Result<(), GuardianError> {
        let Some(path) = &self.journal else {
            return Ok(());
        };
        let accepted = self.store.epochs_accepted_by_sink("journal").await?;
        let shown = path.display().to_string();
        let read = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || read_journal(&path)).await
        };
        let text = match read {
            Ok(Ok(Some(t))) => t,
            Ok(Ok(None)) if accepted.is_empty() => return Ok(()),
            Ok(Ok(None)) => String::new(),
            Ok(Err(e)) => {
                findings.push(finding(
                    None,
                    None,
                    format!("journal {shown}: cannot be read: {e}"),
                ));
                return Ok(());
            }
            Err(e) => {
                findings.push(finding(
                    None,
                    None,
                    format!("journal {shown}: cannot be read: {e}"),
                ));
                return Ok(());
            }
        };
        let (whole, partial) = match text.rfind('\n') {
            Some(i) => (&text[..=i], &text[i + 1..]),
            None => ("", text.as_str()),
        };
        if !partial.is_empty() {
            findings.push(finding(
                None,
                None,
                format!("journal {shown} does not end with a complete line"),
            ));
        }
        let lines: Vec<&str> = whole.lines().collect();
        let by_epoch: BTreeMap<u64, &AnchorRecord> = records.iter().map(|r| (r.epoch, r)).collect();
        for epoch in &accepted {
            if lines.len() < usize::try_from(*epoch).unwrap_or(usize::MAX) {
                findings.push(finding(
                    None,
                    Some(*epoch),
                    format!("journal {shown} has no line for epoch {epoch}"),
                ));
            }
        }
        for (i, line) in lines.iter().enumerate() {
            let epoch = i as u64 + 1;
            let mut stored = by_epoch.get(&epoch).and_then(|r| r.stored_text().ok());
            if stored.is_none() {
                // An epoch stored and journaled since `records` was read (the sink writes a
                // line only after its epoch is committed): read it again now.
                stored = self
                    .store
                    .anchor(epoch)
                    .await?
                    .and_then(|a| a.record.stored_text().ok());
            }
            match stored {
                Some(s) if *line == s => {}
                Some(_) => findings.push(finding(
                    None,
                    Some(epoch),
                    format!("journal line for epoch {epoch} differs from the stored record"),
                )),
                None => findings.push(finding(
                    None,
                    Some(epoch),
                    format!("journal line {epoch} stands for no stored epoch"),
                )),
            }
        }
        Ok(())
    }
}

/// The journal's text under a shared lock; `None` if there is no journal file.
fn read_journal(path: &std::path::Path) -> Result<Option<String>, crate::sinks::SinkError> {
    use crate::sinks::journal::{lock, LockKind};
    use std::io::Read;
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    lock(&file, LockKind::Shared, path)?;
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    Ok(Some(text))
}
