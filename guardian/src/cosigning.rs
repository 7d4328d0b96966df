//! The log side of federation: the leading guardian asks every configured witness to cosign
//! each scroll's latest checkpoint (C2SP tlog-witness `add-checkpoint`), with the consistency
//! proof from the size that witness last cosigned, and stores the cosignatures it gets. At
//! most one request per scroll per witness per cycle; a 409 teaches the witness's size for the
//! next cycle.

use crate::metrics::{COSIGNATURES_TOTAL, WITNESSED_SIZE, WITNESS_FAILURES};
use crate::Guardian;
use ledger::add_checkpoint::{self, AddCheckpoint};
use ledger::cosignature::{with_cosignatures, WitnessVerifier};
use ledger::note::SignedNote;
use ledger::proofchain::HEAD_ORIGIN_SUFFIX;
use ledger::service::Shutdown;
use ledger::storage::{AnchorStore, CheckpointStore, ScrollRef, TileStore};
use ledger::store::Store;
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

/// A witness this mesh asks for cosignatures: the witness's mesh id (the `remote_mesh` label
/// of its failures), its cosignature vkey, and its guardian's URL.
#[derive(Debug, Clone)]
pub struct WitnessEndpoint {
    /// The witness's mesh id.
    pub mesh: String,
    /// Its cosignature/v1 key.
    pub verifier: WitnessVerifier,
    /// Its guardian's base URL (the submission prefix is `<url>/v1/witness`).
    pub url: String,
}

impl FromStr for WitnessEndpoint {
    type Err = String;

    /// Parses `MESH_ID,WITNESS_VKEY,GUARDIAN_URL`.
    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.trim().split(',').map(str::trim).collect();
        let [mesh, vkey, url] = parts[..] else {
            return Err(format!(
                "witness {s:?}: expected MESH_ID,WITNESS_VKEY,GUARDIAN_URL"
            ));
        };
        if mesh.is_empty() || mesh.chars().any(char::is_whitespace) {
            return Err(format!("witness {s:?}: empty or blank mesh id"));
        }
        let verifier = WitnessVerifier::from_vkey(vkey)
            .map_err(|e| format!("witness {mesh}: witness vkey: {e}"))?;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!("witness {mesh}: URL must be http(s)"));
        }
        Ok(Self {
            mesh: mesh.to_string(),
            verifier,
            url: url.trim_end_matches('/').to_string(),
        })
    }
}

/// Why one request to a witness did not yield a stored cosignature (`reason` label).
#[derive(Debug, thiserror::Error)]
pub enum CosignFailure {
    /// No answer (connection, timeout).
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// The witness's size is not the one asked from (learned for the next cycle).
    #[error("the witness has cosigned size {0}")]
    Conflict(u64),
    /// Any other refusal status.
    #[error("refused with status {0}")]
    Refused(u16),
    /// A 200 without a valid cosignature by the witness's key.
    #[error("no valid cosignature in the answer: {0}")]
    BadCosignature(String),
    /// This mesh's own store failed (proof or storing the cosignature).
    #[error("store: {0}")]
    Store(#[from] ledger::store::StoreError),
}

impl CosignFailure {
    /// The `reason` label.
    pub fn reason(&self) -> &'static str {
        match self {
            CosignFailure::Unreachable(_) => "unreachable",
            CosignFailure::Conflict(_) => "conflict",
            CosignFailure::Refused(_) => "refused",
            CosignFailure::BadCosignature(_) => "bad_cosignature",
            CosignFailure::Store(_) => "store",
        }
    }

    /// Every reason, to put the failure counters at zero for each witness at start.
    pub const REASONS: [&'static str; 5] = [
        "unreachable",
        "conflict",
        "refused",
        "bad_cosignature",
        "store",
    ];
}

/// Collects cosignatures for this mesh's checkpoints.
pub struct Cosigner {
    /// The ledger.
    pub store: Store,
    /// Witnesses asked.
    pub witnesses: Vec<WitnessEndpoint>,
    /// HTTP client (keep-alive, with the witness timeout).
    pub http: reqwest::Client,
    /// What each witness has cosigned per scroll, as known here: (witness, scroll) → view.
    known: Mutex<HashMap<(usize, String), WitnessView>>,
}

/// One witness's state for one scroll as this mesh knows it.
#[derive(Debug, Clone, Copy)]
struct WitnessView {
    /// The size the witness last cosigned (what the next request says as `old`).
    size: u64,
    /// The largest size whose cosignature by it is stored here.
    stored: Option<u64>,
}

impl Cosigner {
    /// A cosigner for `witnesses`, each request bounded by `timeout`.
    pub fn new(
        store: Store,
        witnesses: Vec<WitnessEndpoint>,
        timeout: Duration,
    ) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()?;
        Ok(Self {
            store,
            witnesses,
            http,
            known: Mutex::new(HashMap::new()),
        })
    }

    /// One cycle: each witness is asked, concurrently with the others, about every scroll
    /// whose latest checkpoint it has not cosigned, and about the newest signed ProofChain
    /// head.
    pub async fn cycle(&self) -> Result<(), ledger::store::StoreError> {
        if self.witnesses.is_empty() {
            return Ok(());
        }
        let ids: HashMap<String, i32> = self
            .store
            .list_scrolls()
            .await?
            .into_iter()
            .map(|s| (s.name, s.id))
            .collect();
        let mut subjects: Vec<Subject> = self
            .store
            .latest_checkpoints()
            .await?
            .into_iter()
            .filter_map(|cp| {
                Some(Subject {
                    scroll_id: Some(*ids.get(&cp.scroll)?),
                    name: cp.scroll,
                    size: cp.tree_size,
                    note: cp.note,
                })
            })
            .collect();
        if let Some(head) = self.store.latest_anchor().await? {
            if let Some(note) = head.record.signature {
                subjects.push(Subject {
                    name: HEAD_ORIGIN_SUFFIX.to_string(),
                    scroll_id: None,
                    size: head.record.epoch,
                    note,
                });
            }
        }
        let per_witness = (0..self.witnesses.len()).map(|w| self.witness_cycle(w, &subjects));
        futures_util::future::join_all(per_witness).await;
        Ok(())
    }

    /// What the store holds for `subject`: the largest size (epoch) `vkey` cosigned.
    async fn stored(&self, subject: &Subject, vkey: &str) -> Result<Option<u64>, CosignFailure> {
        Ok(match subject.scroll_id {
            Some(id) => self.store.cosigned_size(id, vkey).await?,
            None => self.store.cosigned_head_epoch(vkey).await?,
        })
    }

    async fn witness_cycle(&self, w: usize, subjects: &[Subject]) {
        let witness = &self.witnesses[w];
        let vkey = witness.verifier.to_vkey();
        for subject in subjects {
            let key = (w, subject.name.clone());
            let known = self.known.lock().await.get(&key).copied();
            let state = match known {
                Some(state) => state,
                None => match self.stored(subject, &vkey).await {
                    Ok(size) => WitnessView {
                        size: size.unwrap_or(0),
                        stored: size,
                    },
                    Err(e) => {
                        self.failed(witness, &subject.name, &e);
                        continue;
                    }
                },
            };
            if state.stored == Some(subject.size) {
                self.known.lock().await.insert(key, state);
                continue;
            }
            let outcome = self.request(witness, state.size, subject).await;
            let unreachable = matches!(outcome, Err(CosignFailure::Unreachable(_)));
            let next = match outcome {
                Ok(stored) => {
                    if stored {
                        COSIGNATURES_TOTAL.with_label_values(&[&witness.mesh]).inc();
                    }
                    WITNESSED_SIZE
                        .with_label_values(&[&subject.name, &witness.mesh])
                        .set(subject.size as f64);
                    WitnessView {
                        size: subject.size,
                        stored: Some(subject.size),
                    }
                }
                Err(CosignFailure::Conflict(size)) if size <= subject.size => {
                    tracing::info!(witness = %witness.mesh, subject = %subject.name, size,
                        "the witness's last cosigned size learned from a 409");
                    WitnessView { size, ..state }
                }
                Err(e) => {
                    self.failed(witness, &subject.name, &e);
                    state
                }
            };
            self.known.lock().await.insert(key, next);
            if unreachable {
                // One timeout per witness per cycle: its other subjects wait for the next.
                break;
            }
        }
    }

    fn failed(&self, witness: &WitnessEndpoint, subject: &str, e: &CosignFailure) {
        WITNESS_FAILURES
            .with_label_values(&[&witness.mesh, e.reason()])
            .inc();
        tracing::warn!(witness = %witness.mesh, subject, error = %e, "no cosignature this cycle");
    }

    /// One `add-checkpoint` request for `subject` from `old` (a consistency proof for a
    /// scroll; none for the ProofChain head, whose witnesses follow its hash links on this
    /// mesh's portal); stores the cosignature (true if it was new here).
    async fn request(
        &self,
        witness: &WitnessEndpoint,
        old: u64,
        subject: &Subject,
    ) -> Result<bool, CosignFailure> {
        let proof = match subject.scroll_id {
            Some(id) if old != 0 && old < subject.size => {
                let scroll = ScrollRef {
                    name: &subject.name,
                    id,
                };
                self.store
                    .consistency_proof(scroll, old, subject.size)
                    .await?
                    .path
            }
            _ => Vec::new(),
        };
        let old = old.min(subject.size);
        let body = AddCheckpoint::encode(old, &proof, &subject.note);
        let url = format!("{}{}", witness.url, add_checkpoint::PATH);
        let answer = self
            .http
            .post(&url)
            .body(body)
            .send()
            .await
            .map_err(|e| CosignFailure::Unreachable(e.to_string()))?;
        let status = answer.status().as_u16();
        let text = answer
            .text()
            .await
            .map_err(|e| CosignFailure::Unreachable(e.to_string()))?;
        match status {
            200 => {}
            409 => {
                return Err(add_checkpoint::parse_size_body(&text)
                    .map(CosignFailure::Conflict)
                    .unwrap_or(CosignFailure::Refused(409)))
            }
            other => return Err(CosignFailure::Refused(other)),
        }
        let line = valid_line(&subject.note, &text, &witness.verifier)?;
        let vkey = witness.verifier.to_vkey();
        Ok(match subject.scroll_id {
            Some(id) => {
                self.store
                    .insert_cosignature(id, subject.size, &vkey, &line)
                    .await?
            }
            None => {
                self.store
                    .insert_head_cosignature(subject.size, &vkey, &line)
                    .await?
            }
        })
    }
}

/// Something this mesh signed that witnesses cosign: a scroll's latest checkpoint, or the
/// newest ProofChain head (its "size" the epoch).
struct Subject {
    /// The scroll's name, or `proofchain`.
    name: String,
    /// The scroll's id; `None` for the ProofChain head.
    scroll_id: Option<i32>,
    /// Tree size, or epoch.
    size: u64,
    /// The signed note.
    note: String,
}

/// The line of `answer` (signature lines) that is a valid cosignature of `note` by `witness`.
fn valid_line(
    note: &str,
    answer: &str,
    witness: &WitnessVerifier,
) -> Result<String, CosignFailure> {
    let bad = |why: String| CosignFailure::BadCosignature(why);
    for line in answer.split_inclusive('\n') {
        let candidate = with_cosignatures(note, &[line.to_string()]);
        let parsed = SignedNote::parse(&candidate).map_err(|e| bad(e.to_string()))?;
        match witness.verify(&parsed) {
            Ok(Some(_)) => return Ok(line.to_string()),
            Ok(None) => {}
            Err(e) => return Err(bad(e.to_string())),
        }
    }
    Err(bad(format!("no line by {}", witness.name())))
}

/// The cosigning loop: one cycle per integration interval while this guardian leads.
pub async fn run(g: Arc<Guardian>, shutdown: Shutdown) {
    let Some(cosigner) = g.cosigner.as_ref() else {
        return;
    };
    crate::leader::while_leading(
        &g.leadership,
        g.opts.integrate_interval(),
        shutdown,
        || async move {
            if let Err(e) = cosigner.cycle().await {
                tracing::warn!(error = %e, "cosigning cycle failed; retried next interval");
            }
        },
    )
    .await;
}
