//! The witness role (C2SP tlog-witness `add-checkpoint`): for the remote meshes it is
//! configured with, the guardian verifies a submitted checkpoint's signature and its
//! consistency with the last checkpoint it cosigned for that origin, persists the new state
//! atomically with its history, and only then returns its cosignature. It never cosigns two
//! roots for one size and never goes backwards: the check and the write happen under one
//! transaction lock per origin (`Store::witness_advance`), and triggers refuse any other
//! change.

use crate::discrepancy::{Discrepancies, NewDiscrepancy};
use crate::metrics::{ADD_CHECKPOINT_DURATION, WITNESS_REFUSED};
use ledger::add_checkpoint::{self, AddCheckpoint};
use ledger::checkpoint::Checkpoint;
use ledger::cosignature::WitnessSigner;
use ledger::hash::Sha3Hasher;
use ledger::merkle::proof::verify_consistency;
use ledger::note::{NoteError, NoteVerifier, SignedNote};
use ledger::proofchain::{head_origin, AnchorRecord, GENESIS_PREV};
use ledger::store::{Store, StoreError, WitnessState};
use sha3::Sha3_256;
use std::str::FromStr;
use std::sync::Arc;

/// A remote mesh this guardian witnesses: its mesh id (every origin `<mesh>/…` is its), the
/// key its guardian signs checkpoints with, and its public portal.
#[derive(Debug, Clone)]
pub struct RemoteMesh {
    /// The remote's mesh id.
    pub mesh: String,
    /// The remote guardian's checkpoint vkey.
    pub verifier: NoteVerifier,
    /// The remote's portal base URL.
    pub portal: String,
}

impl FromStr for RemoteMesh {
    type Err = String;

    /// Parses `MESH_ID,GUARDIAN_VKEY,PORTAL_URL`.
    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.trim().split(',').map(str::trim).collect();
        let [mesh, vkey, portal] = parts[..] else {
            return Err(format!(
                "remote mesh {s:?}: expected MESH_ID,GUARDIAN_VKEY,PORTAL_URL"
            ));
        };
        if mesh.is_empty() || mesh.chars().any(char::is_whitespace) {
            return Err(format!("remote mesh {s:?}: empty or blank mesh id"));
        }
        let verifier = NoteVerifier::from_vkey(vkey)
            .map_err(|e| format!("remote mesh {mesh}: guardian vkey: {e}"))?;
        if !(portal.starts_with("http://") || portal.starts_with("https://")) {
            return Err(format!("remote mesh {mesh}: portal URL must be http(s)"));
        }
        Ok(Self {
            mesh: mesh.to_string(),
            verifier,
            portal: portal.trim_end_matches('/').to_string(),
        })
    }
}

/// The remote mesh an origin `<mesh>/<name>` belongs to: the longest mesh id matching, so
/// that configured mesh ids may be prefixes of one another.
pub fn remote_for<'a>(remotes: &'a [RemoteMesh], origin: &str) -> Option<&'a RemoteMesh> {
    remotes
        .iter()
        .filter(|r| {
            origin
                .strip_prefix(r.mesh.as_str())
                .is_some_and(|rest| rest.len() > 1 && rest.starts_with('/'))
        })
        .max_by_key(|r| r.mesh.len())
}

/// Why a submission is refused, each with its C2SP status.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The body, its checkpoint or its note is malformed, or the old size is beyond the
    /// checkpoint (400).
    #[error("{0}")]
    Malformed(String),
    /// The origin belongs to no configured remote mesh (404).
    #[error("unknown log origin {0:?}")]
    UnknownOrigin(String),
    /// No valid signature by the remote's guardian key (403).
    #[error("{0}")]
    Forbidden(String),
    /// The old size is not the size last cosigned (409, with that size).
    #[error("the last cosigned size is {0}")]
    Conflict(u64),
    /// The consistency proof fails, or the roots differ where they must agree (422).
    #[error("{0}")]
    Inconsistent(String),
    /// The database failed (503); nothing was cosigned.
    #[error("witness state unavailable: {0}")]
    Unavailable(#[from] StoreError),
    /// The remote's portal could not be read to check its ProofChain (503).
    #[error("the remote's portal: {0}")]
    RemoteUnavailable(String),
}

impl Refusal {
    /// Label of `vaultmesh_federation_witness_refused_total{reason}`.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Malformed(_) => "malformed",
            Refusal::UnknownOrigin(_) => "unknown_origin",
            Refusal::Forbidden(_) => "bad_signature",
            Refusal::Conflict(_) => "old_size_mismatch",
            Refusal::Inconsistent(_) => "inconsistent",
            Refusal::Unavailable(_) => "unavailable",
            Refusal::RemoteUnavailable(_) => "remote_unavailable",
        }
    }
}

/// Every refusal reason, to put its counter at zero for each remote at start.
pub const REFUSAL_REASONS: [&str; 7] = [
    "malformed",
    "unknown_origin",
    "bad_signature",
    "old_size_mismatch",
    "inconsistent",
    "unavailable",
    "remote_unavailable",
];

/// Most ProofChain epochs one request may ask the witness to follow.
pub const MAX_CHAIN_STEP: u64 = 100_000;

/// The witness: its key, the remote meshes it serves, and the store its state lives in.
pub struct Witness {
    /// Where state and history are kept.
    pub store: Store,
    /// The cosigning key.
    pub signer: WitnessSigner,
    /// The remote meshes served.
    pub remotes: Vec<RemoteMesh>,
    /// Where a validly signed second root for a cosigned size is raised as a fork.
    pub discrepancies: Arc<Discrepancies>,
    /// Reads remote portals (the ProofChain records between two cosigned heads).
    pub http: reqwest::Client,
}

impl Witness {
    /// The remote mesh an origin belongs to (see [`remote_for`]).
    pub fn remote_for(&self, origin: &str) -> Option<&RemoteMesh> {
        remote_for(&self.remotes, origin)
    }

    /// Handles one `add-checkpoint` body: the cosignature line on success.
    pub async fn add_checkpoint(&self, body: &[u8]) -> Result<String, Refusal> {
        let started = std::time::Instant::now();
        let (remote, outcome) = self.decide(body).await;
        let label = remote.unwrap_or("unknown");
        match &outcome {
            Ok(_) => ADD_CHECKPOINT_DURATION
                .with_label_values(&[label])
                .observe(started.elapsed().as_secs_f64()),
            Err(refusal) => {
                WITNESS_REFUSED
                    .with_label_values(&[label, refusal.reason()])
                    .inc();
                tracing::info!(remote = label, reason = refusal.reason(), error = %refusal,
                    "add-checkpoint refused");
            }
        }
        outcome
    }

    async fn decide(&self, body: &[u8]) -> (Option<&str>, Result<String, Refusal>) {
        let text = match std::str::from_utf8(body) {
            Ok(t) => t,
            Err(_) => {
                return (
                    None,
                    Err(Refusal::Malformed("the body is not UTF-8".into())),
                )
            }
        };
        let request = match AddCheckpoint::parse(text) {
            Ok(r) => r,
            Err(e) => return (None, Err(Refusal::Malformed(e.to_string()))),
        };
        let cp = match SignedNote::parse(request.checkpoint)
            .map_err(|e| e.to_string())
            .and_then(|note| Checkpoint::parse_body(note.body).map_err(|e| e.to_string()))
        {
            Ok(cp) => cp,
            Err(e) => return (None, Err(Refusal::Malformed(format!("checkpoint: {e}")))),
        };
        let Some(remote) = self.remote_for(&cp.origin) else {
            return (None, Err(Refusal::UnknownOrigin(cp.origin)));
        };
        let outcome = self.check_and_cosign(remote, &request, cp).await;
        (Some(remote.mesh.as_str()), outcome)
    }

    async fn check_and_cosign(
        &self,
        remote: &RemoteMesh,
        request: &AddCheckpoint<'_>,
        cp: Checkpoint,
    ) -> Result<String, Refusal> {
        match remote.verifier.verify(request.checkpoint) {
            Ok(_) => {}
            Err(e @ (NoteError::NoSignature(_) | NoteError::BadSignature(_))) => {
                return Err(Refusal::Forbidden(format!(
                    "checkpoint of {}: {e}",
                    remote.mesh
                )))
            }
            Err(e) => return Err(Refusal::Malformed(format!("checkpoint: {e}"))),
        }
        self.check_fork(remote, request.checkpoint, &cp).await?;
        if request.old > cp.size {
            return Err(Refusal::Malformed(format!(
                "old size {} is beyond the checkpoint's size {}",
                request.old, cp.size
            )));
        }
        if cp.size == 0 && cp.root != Sha3Hasher::empty_root() {
            return Err(Refusal::Inconsistent(
                "a checkpoint of size 0 must have the empty tree's root".into(),
            ));
        }
        let chain_start = if cp.origin == head_origin(&remote.mesh) {
            // The records are read only for a request whose old size is the one cosigned
            // (checked again under the lock): a replayed head cannot make the witness read.
            let cosigned = self.store.witness_state(&cp.origin).await?;
            let size = cosigned.map_or(0, |s| s.tree_size);
            if request.old != size {
                return Err(Refusal::Conflict(size));
            }
            Some(self.chain_start(remote, request, &cp).await?)
        } else {
            None
        };
        let body = cp.body();
        let outcome = self
            .store
            .witness_advance(&cp.origin, |current| {
                let (size, root) =
                    current.map_or((0, Sha3Hasher::empty_root()), |s| (s.tree_size, s.root));
                if request.old != size {
                    return Err(Refusal::Conflict(size));
                }
                match chain_start {
                    Some(start) if request.old > 0 && start != root => {
                        return Err(Refusal::Inconsistent(format!(
                            "the ProofChain the remote's portal serves does not continue the \
                             head cosigned at epoch {size}"
                        )))
                    }
                    Some(_) => {}
                    None => consistent(request.old, &request.proof, &root, &cp)?,
                }
                if let Some(same) = current.filter(|s| s.tree_size == cp.size) {
                    // The checkpoint cosigned last, again: its cosignature is answered as it
                    // is, so repeating a public checkpoint costs the witness no new row.
                    return Ok(same.clone());
                }
                let time = u64::try_from(chrono::Utc::now().timestamp())
                    .unwrap_or(1)
                    .max(1);
                let line = self
                    .signer
                    .cosign(&body, time)
                    .map_err(|e| Refusal::Malformed(e.to_string()))?;
                Ok(WitnessState {
                    origin: cp.origin.clone(),
                    tree_size: cp.size,
                    root: cp.root,
                    note: request.checkpoint.to_string(),
                    cosignature: line,
                })
            })
            .await?;
        outcome.map(|state| state.cosignature)
    }
}

impl Witness {
    /// For a ProofChain head (`<mesh>/proofchain`, the epoch as its size, the anchor hash as
    /// its root): the anchor hash at the request's old epoch from which the records the
    /// remote's own portal serves link, hash by hash, up to the submitted head. The request
    /// carries no proof lines: the records are the proof, and only the remote serves them.
    async fn chain_start(
        &self,
        remote: &RemoteMesh,
        request: &AddCheckpoint<'_>,
        cp: &Checkpoint,
    ) -> Result<ledger::hash::Hash, Refusal> {
        if !request.proof.is_empty() {
            return Err(Refusal::Inconsistent(
                "a ProofChain head takes no proof lines (its records are read from the \
                 remote's portal)"
                    .into(),
            ));
        }
        let old = request.old;
        if old >= cp.size {
            return Ok(cp.root);
        }
        if cp.size - old > MAX_CHAIN_STEP {
            return Err(Refusal::Inconsistent(format!(
                "more than {MAX_CHAIN_STEP} epochs since the head cosigned"
            )));
        }
        let mut records: Vec<AnchorRecord> = Vec::new();
        while (records.len() as u64) < cp.size - old {
            let from = old + 1 + records.len() as u64;
            let limit = (cp.size + 1 - from).min(1000);
            let url = format!("{}/v1/anchors?from={from}&limit={limit}", remote.portal);
            let page = self.anchors_page(remote, &url).await?;
            if page.is_empty() {
                break;
            }
            records.extend(page);
        }
        if records.len() as u64 != cp.size - old {
            return Err(Refusal::Inconsistent(format!(
                "the remote's portal serves {} of the epochs {}..={}",
                records.len(),
                old + 1,
                cp.size
            )));
        }
        let start = if old == 0 {
            GENESIS_PREV.to_string()
        } else {
            records[0].prev_anchor_hash.clone()
        };
        let mut prev = start.clone();
        for (i, r) in records.iter().enumerate() {
            let broken = r.epoch != old + 1 + i as u64
                || r.mesh != remote.mesh
                || r.prev_anchor_hash != prev
                || r.verify().is_err();
            if broken {
                return Err(Refusal::Inconsistent(format!(
                    "epoch {} as the remote's portal serves it does not link",
                    r.epoch
                )));
            }
            prev = r.anchor_hash.clone();
        }
        if prev != ledger::hash::to_hex(&cp.root) {
            return Err(Refusal::Inconsistent(format!(
                "the records the remote's portal serves end at another anchor hash than head {}",
                cp.size
            )));
        }
        if old == 0 {
            return Ok(Sha3Hasher::empty_root());
        }
        ledger::hash::from_hex(&start).map_err(|_| {
            Refusal::Inconsistent(format!("epoch {}: malformed prev_anchor_hash", old + 1))
        })
    }

    /// One page of `GET /v1/anchors` from the remote's portal.
    async fn anchors_page(
        &self,
        remote: &RemoteMesh,
        url: &str,
    ) -> Result<Vec<AnchorRecord>, Refusal> {
        let unreachable = |reason: &str, e: String| {
            crate::metrics::WITNESS_FAILURES
                .with_label_values(&[&remote.mesh, reason])
                .inc();
            Refusal::RemoteUnavailable(e)
        };
        let answer = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| unreachable("portal_unreachable", e.to_string()))?;
        if !answer.status().is_success() {
            let why = format!("{url}: {}", answer.status());
            return Err(unreachable("portal_refused", why));
        }
        let body: serde_json::Value = answer
            .json()
            .await
            .map_err(|e| unreachable("portal_unreachable", e.to_string()))?;
        serde_json::from_value(body["anchors"].clone()).map_err(|e| {
            Refusal::Inconsistent(format!("the remote's portal serves malformed anchors: {e}"))
        })
    }

    /// A checkpoint validly signed by the remote at a size this witness cosigned with another
    /// root is a fork: the remote signed two trees of one size, and both notes prove it. It is
    /// raised whatever the request's old size (the submitter may be anyone; the signatures
    /// are the remote's). The request is still answered by the C2SP rules.
    async fn check_fork(
        &self,
        remote: &RemoteMesh,
        note: &str,
        cp: &Checkpoint,
    ) -> Result<(), Refusal> {
        let Some((root, cosigned)) = self.store.witness_cosigned_at(&cp.origin, cp.size).await?
        else {
            return Ok(());
        };
        if root != cp.root {
            self.discrepancies
                .raise(NewDiscrepancy {
                    remote_mesh: remote.mesh.clone(),
                    kind: "fork",
                    origin: cp.origin.clone(),
                    tree_size: cp.size,
                    evidence: serde_json::json!({
                        "detected_by": "add-checkpoint",
                        "cosigned": cosigned,
                        "conflicting": note,
                    }),
                })
                .await;
        }
        Ok(())
    }
}

/// C2SP's consistency rules from the last cosigned `(old, old_root)` to `cp`.
fn consistent(
    old: u64,
    proof: &[ledger::hash::Hash],
    old_root: &ledger::hash::Hash,
    cp: &Checkpoint,
) -> Result<(), Refusal> {
    if old == 0 {
        return if proof.is_empty() {
            Ok(())
        } else {
            Err(Refusal::Inconsistent(
                "a proof from size 0 must be empty".into(),
            ))
        };
    }
    if old == cp.size && cp.root != *old_root {
        return Err(Refusal::Inconsistent(format!(
            "size {old} was cosigned with another root"
        )));
    }
    verify_consistency::<Sha3_256>(old, cp.size, proof, old_root, &cp.root).map_err(|e| {
        Refusal::Inconsistent(format!("consistency proof from {old} to {}: {e}", cp.size))
    })
}

/// The 409 body and media type for a conflict.
pub fn conflict_body(size: u64) -> (String, &'static str) {
    (
        add_checkpoint::size_body(size),
        add_checkpoint::SIZE_CONTENT_TYPE,
    )
}
