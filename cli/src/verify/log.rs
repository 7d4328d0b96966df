//! `vaultmesh verify log URL --vkey KEY`: follows a live log. Each scroll's signed checkpoint
//! must verify and be consistent with the last one seen (kept in a state file), and a scroll
//! seen before must still be listed; the ProofChain must verify from genesis, every record
//! with a head signed by the guardian's key, keep the records seen before, and every anchored
//! root must be consistent with the current checkpoint (an anchor beyond it is deferred once,
//! in the state file, and fails if still beyond on the next run); with `--tsa-cert`, every
//! RFC 3161 token must verify over its record; sampled receipts must be proven included.
//! With `--tiles`, no proof endpoint is asked: every inclusion and consistency proof is
//! computed here from the scroll's public tiles, and each checkpoint's root is recomputed
//! from them.

use ledger::checkpoint::Checkpoint;
use ledger::cosignature::WitnessPolicy;
use ledger::hash::{from_hex, to_hex, Hash, Sha3Hasher};
use ledger::merkle::tiles::{tile_width, tiles_for, TILE_WIDTH};
use ledger::merkle::{
    consistency_ranges, inclusion_ranges, verify_consistency, verify_inclusion, ConsistencyProof,
    InclusionProof, TileError, TileSet,
};
use ledger::note::NoteVerifier;
use ledger::proofchain::{verify_chain, AnchorRecord};
use ledger::receipt::leaf_hash;
use ledger::timestamp::{self, Certificate};
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
    /// The timestamp authority's certificate (PEM): every successful `rfc3161` sink result
    /// of every epoch must then be a valid token by it over that record.
    #[arg(long)]
    tsa_cert: Option<PathBuf>,
    /// Compute every proof from the scroll's tiles (`/v1/scrolls/{scroll}/tiles/…`, which
    /// HTTP caches can serve) instead of asking the portal's proof endpoints, and recompute
    /// each checkpoint's root from them.
    #[arg(long)]
    tiles: bool,
    /// With a witness policy, each scroll's checkpoint verified is the latest one holding
    /// cosignatures from K of the witnesses (`?witnessed=K`), and the policy is checked.
    #[command(flatten)]
    witnesses: super::WitnessArgs,
}

/// What a previous run verified.
#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    /// Per scroll: the last verified checkpoint.
    scrolls: BTreeMap<String, Seen>,
    /// Every verified epoch's anchor hash.
    epochs: BTreeMap<u64, String>,
    /// Epochs (and their anchor hash) that anchored a root beyond the checkpoint read: a
    /// later run that still cannot check them fails.
    #[serde(default)]
    deferred: BTreeMap<u64, String>,
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
    /// that was read); recorded as deferred in the state, so the next run checks them or
    /// fails.
    deferred: std::collections::BTreeSet<u64>,
    /// With `--tiles`: the tiles fetched so far, per scroll.
    tiles: Option<BTreeMap<String, TileSet>>,
    /// With `--witness`: the policy every checkpoint must meet.
    policy: Option<WitnessPolicy>,
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

    /// The body at `path`, refused once it passes `limit` bytes (a hostile server cannot make
    /// the verifier read without end).
    async fn get_bytes(&self, path: &str, limit: usize) -> Result<Vec<u8>, String> {
        let mut resp = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .map_err(|e| format!("GET {path}: {e}"))?;
        let status = resp.status().as_u16();
        let mut bytes = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| format!("GET {path}: {e}"))? {
            bytes.extend_from_slice(&chunk);
            if bytes.len() > limit {
                return Err(format!("GET {path}: body over {limit} bytes"));
            }
        }
        if status != 200 {
            return Err(format!(
                "GET {path}: HTTP {status}: {}",
                String::from_utf8_lossy(&bytes).trim()
            ));
        }
        Ok(bytes)
    }

    /// With `--tiles`, `compute` over the scroll's tiles, fetching those `ranges` read
    /// first, each as wide as the checkpoint of `size` makes it (a partial tile asked with
    /// its exact `width`, so a cache can keep it, and a stale cache cannot answer it);
    /// `None` without `--tiles`.
    async fn compute_from_tiles<T>(
        &mut self,
        scroll: &str,
        size: u64,
        ranges: &[(u64, u64)],
        compute: impl Fn(&TileSet) -> Result<T, TileError>,
    ) -> Option<Result<T, String>> {
        let tiles = self.tiles.as_mut()?.entry(scroll.to_string()).or_default();
        let missing = tiles_for(ranges, tiles);
        for tile in missing {
            let width = tile_width(tile, size);
            let mut path = format!("/v1/scrolls/{scroll}/tiles/{}/{}", tile.level, tile.index);
            if width < TILE_WIDTH {
                path.push_str(&format!("?width={width}"));
            }
            let fetched = match self.get_bytes(&path, TILE_WIDTH as usize * 32).await {
                Ok(b) if b.len() as u64 == width * 32 => b,
                Ok(b) => {
                    return Some(Err(format!(
                        "{scroll}: tile {}/{}: {width} entries asked, {} bytes served",
                        tile.level,
                        tile.index,
                        b.len()
                    )))
                }
                Err(e) => return Some(Err(e)),
            };
            let tiles = self.tiles.as_mut()?.entry(scroll.to_string()).or_default();
            if let Err(e) = tiles.insert(tile, &fetched) {
                return Some(Err(format!("{scroll}: {e}")));
            }
        }
        let tiles = self.tiles.as_ref()?.get(scroll)?;
        Some(compute(tiles).map_err(|e| format!("{scroll}: from tiles: {e}")))
    }

    /// A proof for the tree of `size`: computed from tiles with `--tiles`, else fetched from
    /// the portal's `endpoint`. Either way the caller verifies it against a signed root.
    async fn proof<T: serde::de::DeserializeOwned>(
        &mut self,
        scroll: &str,
        size: u64,
        ranges: &[(u64, u64)],
        compute: impl Fn(&TileSet) -> Result<T, TileError>,
        endpoint: String,
    ) -> Result<T, String> {
        if let Some(p) = self.compute_from_tiles(scroll, size, ranges, compute).await {
            return p;
        }
        serde_json::from_value(self.get_json(&endpoint, None).await?)
            .map_err(|e| format!("{endpoint}: proof malformed: {e}"))
    }

    /// Verifies that the tree at `from` with `old` grew into the tree at `to` with `new`.
    /// From size 0 no proof is fetched (every tree extends the empty tree, and consistency
    /// proofs from size 0 are refused); the root at size 0 must be the empty root.
    async fn consistent(
        &mut self,
        scroll: &str,
        from: u64,
        old: &Hash,
        to: u64,
        new: &Hash,
    ) -> Result<(), String> {
        if from == 0 {
            let empty = Sha3Hasher::empty_root();
            return if *old == empty && (to > 0 || *new == empty) {
                Ok(())
            } else {
                Err(format!("{scroll}: a root at size 0 is not the empty root"))
            };
        }
        if from == to {
            return if old == new {
                Ok(())
            } else {
                Err(format!("{scroll}: two different roots at size {to}"))
            };
        }
        let proof: ConsistencyProof = self
            .proof(
                scroll,
                to,
                &consistency_ranges(from, to),
                |t| t.consistency(from, to),
                format!("/v1/scrolls/{scroll}/proof/consistency?from={from}&to={to}"),
            )
            .await?;
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
    let tsa = a
        .tsa_cert
        .as_deref()
        .map(super::load_tsa_cert)
        .transpose()?;
    let mut run = Run {
        http: reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()?,
        base: a.url.trim_end_matches('/').to_string(),
        failures: Vec::new(),
        checked: 0,
        deferred: std::collections::BTreeSet::new(),
        tiles: a.tiles.then(BTreeMap::new),
        policy: a.witnesses.policy()?,
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
            for gone in state.scrolls.keys().filter(|s| !names.contains(s)) {
                run.fail(format!(
                    "{gone}: verified before and no longer listed by the log"
                ));
            }
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
    chain(
        &mut run,
        &Chain {
            records: &records,
            verifier: &verifier,
            mesh: &mesh,
            tsa: tsa.as_ref(),
        },
        &state,
        &current,
    )
    .await;
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
    for r in &records {
        if run.deferred.contains(&r.epoch) {
            state.deferred.insert(r.epoch, r.anchor_hash.clone());
        } else {
            state.deferred.remove(&r.epoch);
            state.epochs.insert(r.epoch, r.anchor_hash.clone());
        }
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
    let path = match &run.policy {
        Some(p) => format!("/v1/scrolls/{name}/checkpoint?witnessed={}", p.threshold()),
        None => format!("/v1/scrolls/{name}/checkpoint"),
    };
    let (status, note) = run.get(&path, None).await?;
    if status == 404 && seen.is_none() {
        let witnessed = if run.policy.is_some() {
            " witnessed"
        } else {
            ""
        };
        println!("NOTE {name}: no{witnessed} signed checkpoint yet");
        return Ok(None);
    }
    if status != 200 {
        return Err(format!("{name}: checkpoint: HTTP {status}"));
    }
    let origin = Checkpoint::origin_for(mesh, name);
    let cp = Checkpoint::verify(&note, verifier, Some(&origin))
        .map_err(|e| format!("{name}: checkpoint does not verify: {e}"))?;
    run.checked += 1;
    if let Some(policy) = &run.policy {
        let names = policy
            .check(&note)
            .map_err(|e| format!("{name}: checkpoint {}: witness policy: {e}", cp.size))?;
        run.checked += 1;
        println!(
            "OK {name}: checkpoint {} cosigned by {}",
            cp.size,
            names.join(", ")
        );
    }
    if let Some(root) = run
        .compute_from_tiles(name, cp.size, &[(0, cp.size)], |t| t.root(cp.size))
        .await
    {
        if root? != cp.root {
            return Err(format!(
                "{name}: the tiles' root at size {} is not the checkpoint's",
                cp.size
            ));
        }
        run.checked += 1;
        println!(
            "OK {name}: tiles reproduce the root of checkpoint {}",
            cp.size
        );
    }
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
    for _ in 0..samples.min(size) {
        let seq = random_below(size);
        if let Err(e) = sample_one(run, name, seq, size, root, token).await {
            run.fail(e);
        }
    }
}

/// A random position below `n` (from the standard library's per-process random hash keys;
/// an auditor's samples must not be predictable by the log).
fn random_below(n: u64) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(n);
    h.finish() % n.max(1)
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
    let proof: InclusionProof = run
        .proof(
            name,
            size,
            &inclusion_ranges(seq, size),
            |t| t.inclusion(seq, size),
            format!("/v1/scrolls/{name}/proof/inclusion?seq={seq}&tree_size={size}"),
        )
        .await?;
    verify_inclusion::<Sha3_256>(&recomputed, seq, size, &proof.path, root)
        .map_err(|e| format!("{name}/{seq}: not included in checkpoint {size}: {e}"))?;
    run.checked += 1;
    println!("OK {name}/{seq}: included in checkpoint {size}");
    Ok(())
}

/// What the ProofChain is checked with.
struct Chain<'a> {
    records: &'a [AnchorRecord],
    verifier: &'a NoteVerifier,
    mesh: &'a str,
    tsa: Option<&'a Certificate>,
}

/// The ProofChain: records, signed heads and links from genesis, no record seen before
/// changed or gone, RFC 3161 tokens (with `--tsa-cert`), and every anchored root of a new
/// epoch consistent with the scroll's current checkpoint — or deferred once if beyond it.
async fn chain(
    run: &mut Run,
    c: &Chain<'_>,
    state: &State,
    current: &BTreeMap<String, (u64, Hash)>,
) {
    let failures_before = run.failures.len();
    let mut valid = std::collections::BTreeSet::new();
    for r in c.records {
        match r.verify_signed(c.verifier) {
            Ok(()) if r.mesh != c.mesh => run.fail(format!(
                "ProofChain: epoch {} is of mesh {:?}, not {:?}",
                r.epoch, r.mesh, c.mesh
            )),
            Ok(()) => {
                valid.insert(r.epoch);
            }
            Err(e) => run.fail(format!("ProofChain: {e}")),
        }
        if let Some(seen) = state.epochs.get(&r.epoch) {
            if *seen != r.anchor_hash {
                run.fail(format!(
                    "ProofChain: epoch {} changed since it was verified",
                    r.epoch
                ));
            }
        }
        if let Some(deferred) = state.deferred.get(&r.epoch) {
            if *deferred != r.anchor_hash {
                run.fail(format!(
                    "ProofChain: epoch {} changed since a previous run deferred it",
                    r.epoch
                ));
            }
        }
        if let Some(cert) = c.tsa {
            match timestamp::verify_record_tokens(r, cert) {
                Ok(tokens) if tokens.is_empty() => {
                    println!("NOTE epoch {}: no RFC 3161 token", r.epoch);
                }
                Ok(tokens) => {
                    run.checked += tokens.len() as u64;
                    for t in tokens {
                        println!("OK epoch {}: RFC 3161 token of {}", r.epoch, t.gen_time);
                    }
                }
                Err(e) => run.fail(format!("ProofChain: {e}")),
            }
        }
    }
    if let Err(e) = verify_chain(c.records) {
        run.fail(format!("ProofChain: {e}"));
    }
    if let Some(last) = state.epochs.keys().chain(state.deferred.keys()).max() {
        if c.records.len() < usize::try_from(*last).unwrap_or(usize::MAX) {
            run.fail(format!(
                "ProofChain: epoch {last} was seen before and is gone"
            ));
        }
    }
    for r in c
        .records
        .iter()
        .filter(|r| valid.contains(&r.epoch) && !state.epochs.contains_key(&r.epoch))
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
                if state.deferred.contains_key(&r.epoch) {
                    run.fail(format!(
                        "epoch {}: {} anchored at {}, still beyond the checkpoint ({size}) \
                         after being deferred by a previous run",
                        r.epoch, s.scroll, s.tree_size
                    ));
                } else {
                    println!(
                        "NOTE epoch {}: {} anchored at {}, beyond the checkpoint read ({size}); \
                         deferred to the next run, which fails if it still is",
                        r.epoch, s.scroll, s.tree_size
                    );
                    run.deferred.insert(r.epoch);
                }
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
    if !c.records.is_empty() && run.failures.len() == failures_before {
        println!(
            "OK ProofChain: {} epoch(s) from genesis, every head signed",
            c.records.len()
        );
    }
}
