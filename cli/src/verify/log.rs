//! `vaultmesh verify log URL --vkey KEY`: follows a live log. Each scroll's signed checkpoint
//! must verify and be consistent with the last one seen (kept in a state file); the ProofChain
//! must verify from genesis, keep the records seen before, and every anchored root must be
//! consistent with the current checkpoint; sampled receipts must be proven included.

use ledger::checkpoint::Checkpoint;
use ledger::hash::{from_hex, to_hex, Hash};
use ledger::merkle::{verify_consistency, verify_inclusion, ConsistencyProof, InclusionProof};
use ledger::note::NoteVerifier;
use ledger::proofchain::{verify_chain, AnchorRecord};
use ledger::receipt::leaf_hash;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha3::Sha3_256;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Options of `verify log`.
#[derive(clap::Args)]
pub struct Args {
    /// Portal base URL, e.g. `https://ledger.example.org`.
    url: String,
    /// The guardian's verifier key: a file holding it, or the vkey text.
    #[arg(long, env = "VAULTMESH_GUARDIAN_VKEY")]
    vkey: String,
    /// Where what was verified is remembered between runs (created if absent; written only
    /// when everything verified).
    #[arg(long, default_value = "vaultmesh-verify-state.json")]
    state: PathBuf,
    /// Mesh id of the checkpoint origins (default: the vkey name without `/guardian`).
    #[arg(long)]
    mesh: Option<String>,
    /// Receipts sampled per scroll and proven included (needs a reader key).
    #[arg(long, default_value_t = 3)]
    samples: u64,
    /// Reader API key, for sampling receipts.
    #[arg(long, env = "VAULTMESH_READER_KEY")]
    token: Option<String>,
}

/// What a previous run verified.
#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    /// Per scroll: the last verified checkpoint.
    scrolls: BTreeMap<String, Seen>,
    /// Every verified epoch's anchor hash.
    epochs: BTreeMap<u64, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Seen {
    tree_size: u64,
    root: String,
}

struct Run {
    http: reqwest::Client,
    base: String,
    failures: Vec<String>,
    checked: u64,
    /// Epochs whose anchored roots could not be checked yet (anchored after the checkpoint
    /// that was read); left out of the state so the next run checks them.
    deferred: std::collections::BTreeSet<u64>,
}

impl Run {
    fn fail(&mut self, what: String) {
        println!("FAIL {what}");
        self.failures.push(what);
    }

    async fn get(&self, path: &str, token: Option<&str>) -> Result<(u16, String), String> {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.map_err(|e| format!("GET {path}: {e}"))?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(|e| format!("GET {path}: {e}"))?;
        Ok((status, text))
    }

    async fn get_json(&self, path: &str, token: Option<&str>) -> Result<Value, String> {
        let (status, text) = self.get(path, token).await?;
        if status != 200 {
            return Err(format!("GET {path}: HTTP {status}: {}", text.trim()));
        }
        serde_json::from_str(&text).map_err(|e| format!("GET {path}: not JSON: {e}"))
    }

    /// Verifies that the tree at `from` with `old` grew into the tree at `to` with `new`.
    async fn consistent(
        &self,
        scroll: &str,
        from: u64,
        old: &Hash,
        to: u64,
        new: &Hash,
    ) -> Result<(), String> {
        if from == to {
            return if old == new {
                Ok(())
            } else {
                Err(format!("{scroll}: two different roots at size {to}"))
            };
        }
        let proof: ConsistencyProof = serde_json::from_value(
            self.get_json(
                &format!("/v1/scrolls/{scroll}/proof/consistency?from={from}&to={to}"),
                None,
            )
            .await?,
        )
        .map_err(|e| format!("{scroll}: consistency proof {from}→{to} malformed: {e}"))?;
        verify_consistency::<Sha3_256>(from, to, &proof.path, old, new)
            .map_err(|e| format!("{scroll}: size {from} is not consistent with size {to}: {e}"))
    }
}

/// Runs the verification; prints `OK`/`FAIL` lines and a summary.
pub async fn run(a: &Args) -> anyhow::Result<bool> {
    let verifier = super::load_vkey(&a.vkey)?;
    let mesh = match &a.mesh {
        Some(m) => m.clone(),
        None => verifier
            .name()
            .strip_suffix("/guardian")
            .map(str::to_string)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "--mesh is needed: the key name {:?} does not end in /guardian",
                    verifier.name()
                )
            })?,
    };
    let mut state: State = match std::fs::read_to_string(&a.state) {
        Ok(t) => serde_json::from_str(&t)
            .map_err(|e| anyhow::anyhow!("state file {}: {e}", a.state.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
        Err(e) => anyhow::bail!("state file {}: {e}", a.state.display()),
    };
    let mut run = Run {
        http: reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()?,
        base: a.url.trim_end_matches('/').to_string(),
        failures: Vec::new(),
        checked: 0,
        deferred: std::collections::BTreeSet::new(),
    };
    // Anchors first: every anchored size is then at most the checkpoint read after it.
    let records = match fetch_records(&run).await {
        Ok(r) => r,
        Err(e) => {
            run.fail(e);
            Vec::new()
        }
    };
    let mut current: BTreeMap<String, (u64, Hash)> = BTreeMap::new();
    match run.get_json("/v1/scrolls", None).await {
        Ok(v) => {
            let names: Vec<String> = v["scrolls"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s["name"].as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            for name in names {
                match checkpoint(&mut run, &verifier, &mesh, &name, state.scrolls.get(&name)).await
                {
                    Ok(Some(cp)) => {
                        if let Some(t) = &a.token {
                            sample(&mut run, &name, cp.size, &cp.root, a.samples, t).await;
                        }
                        current.insert(name, (cp.size, cp.root));
                    }
                    Ok(None) => {}
                    Err(e) => run.fail(e),
                }
            }
        }
        Err(e) => run.fail(e),
    }
    chain(&mut run, &records, &state, &current).await;
    if a.token.is_none() {
        println!("NOTE receipts not sampled (no --token / VAULTMESH_READER_KEY)");
    }
    if !run.failures.is_empty() {
        println!(
            "FAILED: {} problem(s); state file left unchanged",
            run.failures.len()
        );
        return Ok(false);
    }
    for (name, (size, root)) in &current {
        state.scrolls.insert(
            name.clone(),
            Seen {
                tree_size: *size,
                root: to_hex(root),
            },
        );
    }
    for r in records.iter().filter(|r| !run.deferred.contains(&r.epoch)) {
        state.epochs.insert(r.epoch, r.anchor_hash.clone());
    }
    let tmp = a.state.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&state)?)?;
    std::fs::rename(&tmp, &a.state)?;
    println!(
        "VERIFIED {} scroll(s), {} epoch(s), {} check(s); state saved to {}",
        current.len(),
        records.len(),
        run.checked,
        a.state.display()
    );
    Ok(true)
}

async fn fetch_records(run: &Run) -> Result<Vec<AnchorRecord>, String> {
    let mut out: Vec<AnchorRecord> = Vec::new();
    loop {
        let from = out.len() + 1;
        let v = run
            .get_json(&format!("/v1/anchors?from={from}&limit=1000"), None)
            .await?;
        let page: Vec<AnchorRecord> = serde_json::from_value(v["anchors"].clone())
            .map_err(|e| format!("anchors from {from}: malformed: {e}"))?;
        let n = page.len();
        out.extend(page);
        if n < 1000 {
            return Ok(out);
        }
    }
}

/// Verifies a scroll's latest checkpoint and its consistency with the last one seen.
async fn checkpoint(
    run: &mut Run,
    verifier: &NoteVerifier,
    mesh: &str,
    name: &str,
    seen: Option<&Seen>,
) -> Result<Option<Checkpoint>, String> {
    let (status, note) = run
        .get(&format!("/v1/scrolls/{name}/checkpoint"), None)
        .await?;
    if status == 404 && seen.is_none() {
        println!("NOTE {name}: no signed checkpoint yet");
        return Ok(None);
    }
    if status != 200 {
        return Err(format!("{name}: checkpoint: HTTP {status}"));
    }
    let origin = Checkpoint::origin_for(mesh, name);
    let cp = Checkpoint::verify(&note, verifier, Some(&origin))
        .map_err(|e| format!("{name}: checkpoint does not verify: {e}"))?;
    run.checked += 1;
    if let Some(seen) = seen {
        let old =
            from_hex(&seen.root).map_err(|_| format!("{name}: state file root is not hex"))?;
        if cp.size < seen.tree_size {
            return Err(format!(
                "{name}: checkpoint went backwards from {} to {}",
                seen.tree_size, cp.size
            ));
        }
        run.consistent(name, seen.tree_size, &old, cp.size, &cp.root)
            .await?;
        run.checked += 1;
        println!(
            "OK {name}: checkpoint {} consistent with {} seen before",
            cp.size, seen.tree_size
        );
    } else {
        println!("OK {name}: checkpoint {} (first seen)", cp.size);
    }
    Ok(Some(cp))
}

/// Proves `samples` random receipts of the scroll included in its checkpoint.
async fn sample(run: &mut Run, name: &str, size: u64, root: &Hash, samples: u64, token: &str) {
    let mut rng = ledger::testing::Rng(chrono::Utc::now().timestamp_micros().unsigned_abs() | 1);
    for _ in 0..samples.min(size) {
        let seq = rng.below(size);
        if let Err(e) = sample_one(run, name, seq, size, root, token).await {
            run.fail(e);
        }
    }
}

async fn sample_one(
    run: &mut Run,
    name: &str,
    seq: u64,
    size: u64,
    root: &Hash,
    token: &str,
) -> Result<(), String> {
    let mut receipt = run
        .get_json(&format!("/v1/scrolls/{name}/receipts/{seq}"), Some(token))
        .await?;
    let served_hash = receipt
        .as_object_mut()
        .and_then(|m| m.remove("leaf_hash"))
        .and_then(|v| v.as_str().map(str::to_string))
        .ok_or_else(|| format!("{name}/{seq}: no leaf_hash served"))?;
    let leaf = ledger::jcs::to_vec(&receipt).map_err(|e| format!("{name}/{seq}: {e}"))?;
    let recomputed = leaf_hash(&leaf);
    if to_hex(&recomputed) != served_hash {
        return Err(format!(
            "{name}/{seq}: served leaf_hash does not match the receipt"
        ));
    }
    let proof: InclusionProof = serde_json::from_value(
        run.get_json(
            &format!("/v1/scrolls/{name}/proof/inclusion?seq={seq}&tree_size={size}"),
            None,
        )
        .await?,
    )
    .map_err(|e| format!("{name}/{seq}: inclusion proof malformed: {e}"))?;
    verify_inclusion::<Sha3_256>(&recomputed, seq, size, &proof.path, root)
        .map_err(|e| format!("{name}/{seq}: not included in checkpoint {size}: {e}"))?;
    run.checked += 1;
    println!("OK {name}/{seq}: included in checkpoint {size}");
    Ok(())
}

/// The ProofChain: records and links from genesis, no record seen before changed, and
/// every anchored root of a new epoch consistent with the scroll's current checkpoint.
async fn chain(
    run: &mut Run,
    records: &[AnchorRecord],
    state: &State,
    current: &BTreeMap<String, (u64, Hash)>,
) {
    for r in records {
        if let Err(e) = r.verify() {
            run.fail(format!("ProofChain: {e}"));
        }
        if let Some(seen) = state.epochs.get(&r.epoch) {
            if *seen != r.anchor_hash {
                run.fail(format!(
                    "ProofChain: epoch {} changed since it was verified",
                    r.epoch
                ));
            }
        }
    }
    if let Err(e) = verify_chain(records) {
        run.fail(format!("ProofChain: {e}"));
    }
    if let Some((last, _)) = state.epochs.last_key_value() {
        if records.len() < usize::try_from(*last).unwrap_or(usize::MAX) {
            run.fail(format!(
                "ProofChain: epoch {last} was verified before and is gone"
            ));
        }
    }
    for r in records
        .iter()
        .filter(|r| !state.epochs.contains_key(&r.epoch))
    {
        for s in &r.scrolls {
            let Some((size, root)) = current.get(&s.scroll) else {
                run.fail(format!(
                    "epoch {}: anchors {} which has no checkpoint now",
                    r.epoch, s.scroll
                ));
                continue;
            };
            let Ok(anchored) = from_hex(&s.root) else {
                run.fail(format!("epoch {}: {} root is not hex", r.epoch, s.scroll));
                continue;
            };
            if s.tree_size > *size {
                println!(
                    "NOTE epoch {}: {} anchored at {}, beyond the checkpoint read ({size}); checked next run",
                    r.epoch, s.scroll, s.tree_size
                );
                run.deferred.insert(r.epoch);
                continue;
            }
            match run
                .consistent(&s.scroll, s.tree_size, &anchored, *size, root)
                .await
            {
                Ok(()) => run.checked += 1,
                Err(e) => run.fail(format!("epoch {}: {e}", r.epoch)),
            }
        }
    }
    if !records.is_empty() {
        println!("OK ProofChain: {} epoch(s) from genesis", records.len());
    }
}
