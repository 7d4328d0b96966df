//! Watching remote meshes' own portals (SPEC §13): for every origin this witness has cosigned,
//! the leading guardian periodically reads the checkpoint the remote's portal shows its
//! clients, and a consistency proof from the cosigned size, and raises what contradicts the
//! cosigned state: a checkpoint that fails the remote's key (`bad_signature`), a second root
//! for the cosigned size (`fork`), a newer tree whose own proof shows a different past
//! (`split_view`), a proof that is wrong in itself (`bad_proof`), or a smaller checkpoint
//! served past a grace period (`rollback`). What cannot be fetched is a failure, not a
//! discrepancy.

use crate::discrepancy::{Discrepancies, NewDiscrepancy};
use crate::metrics::WITNESS_FAILURES;
use crate::witness::RemoteMesh;
use ledger::checkpoint::Checkpoint;
use ledger::hash::{from_hex, Hash};
use ledger::merkle::proof::{consistency_roots, verify_consistency};
use ledger::store::{Store, WitnessState};
use serde_json::{json, Value};
use sha3::Sha3_256;
use std::sync::Arc;
use std::time::Duration;

/// Failure reasons of fetching from a remote portal (`reason` label).
pub const FAILURE_REASONS: [&str; 3] = ["portal_unreachable", "portal_refused", "witness_store"];

/// Reads remote portals and raises what contradicts the cosigned state.
pub struct RemoteWatch {
    /// The ledger (the witness's state).
    pub store: Store,
    /// The remote meshes witnessed.
    pub remotes: Vec<RemoteMesh>,
    /// Where discrepancies go.
    pub discrepancies: Arc<Discrepancies>,
    /// How long after a cosignature the remote's portal may still serve a smaller
    /// checkpoint (its caches, its replicas) before that is a rollback.
    pub grace: Duration,
    http: reqwest::Client,
}

/// What one check of one origin found.
enum Seen {
    Fine,
    Failed(&'static str, String),
    Discrepancy(&'static str, u64, Value),
}

impl RemoteWatch {
    /// A watcher whose requests each time out after `timeout`.
    pub fn new(
        store: Store,
        remotes: Vec<RemoteMesh>,
        discrepancies: Arc<Discrepancies>,
        grace: Duration,
        timeout: Duration,
    ) -> Result<Self, reqwest::Error> {
        Ok(Self {
            store,
            remotes,
            discrepancies,
            grace,
            http: reqwest::Client::builder()
                .timeout(timeout)
                .connect_timeout(timeout)
                .build()?,
        })
    }

    /// One pass over every origin of every remote mesh this witness has cosigned.
    pub async fn cycle(&self) -> Result<(), ledger::store::StoreError> {
        for remote in &self.remotes {
            let states = self.store.witness_states_of(&remote.mesh).await?;
            // Mesh ids may be prefixes of one another: each origin is its longest match's.
            let mine = states.into_iter().filter(|s| {
                crate::witness::remote_for(&self.remotes, &s.origin)
                    .is_some_and(|r| r.mesh == remote.mesh)
            });
            for state in mine {
                match self.check(remote, &state).await {
                    Seen::Fine => {}
                    Seen::Failed(reason, why) => {
                        WITNESS_FAILURES
                            .with_label_values(&[&remote.mesh, reason])
                            .inc();
                        tracing::warn!(remote = %remote.mesh, origin = %state.origin, reason,
                            error = %why, "could not check the remote's portal");
                    }
                    Seen::Discrepancy(kind, size, evidence) => {
                        self.discrepancies
                            .raise(NewDiscrepancy {
                                remote_mesh: remote.mesh.clone(),
                                kind,
                                origin: state.origin.clone(),
                                tree_size: size,
                                evidence,
                            })
                            .await;
                    }
                }
            }
        }
        Ok(())
    }

    async fn get(&self, url: &str) -> Result<String, Seen> {
        let answer = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| Seen::Failed("portal_unreachable", e.to_string()))?;
        let status = answer.status();
        let text = answer
            .text()
            .await
            .map_err(|e| Seen::Failed("portal_unreachable", e.to_string()))?;
        if !status.is_success() {
            return Err(Seen::Failed("portal_refused", format!("{url}: {status}")));
        }
        Ok(text)
    }

    async fn check(&self, remote: &RemoteMesh, state: &WitnessState) -> Seen {
        let Some(scroll) = state.origin.strip_prefix(&format!("{}/", remote.mesh)) else {
            return Seen::Fine;
        };
        if scroll == ledger::proofchain::HEAD_ORIGIN_SUFFIX {
            // Heads are checked when submitted, against the records the portal serves.
            return Seen::Fine;
        }
        let url = format!("{}/v1/scrolls/{scroll}/checkpoint", remote.portal);
        let served = match self.get(&url).await {
            Ok(t) => t,
            Err(seen) => return seen,
        };
        let evidence = |extra: Value| {
            let mut e = json!({
                "detected_by": "portal",
                "served_from": url,
                "served": served,
                "cosigned": state.note,
            });
            if let (Value::Object(e), Value::Object(x)) = (&mut e, extra) {
                e.extend(x);
            }
            e
        };
        let cp = match Checkpoint::verify(&served, &remote.verifier, Some(&state.origin)) {
            Ok(cp) => cp,
            Err(e) => {
                return Seen::Discrepancy(
                    "bad_signature",
                    state.tree_size,
                    evidence(json!({"error": e.to_string()})),
                )
            }
        };
        if cp.size < state.tree_size {
            return self.smaller(state, &cp, evidence(json!({}))).await;
        }
        if cp.size == state.tree_size {
            return if cp.root == state.root {
                Seen::Fine
            } else {
                Seen::Discrepancy("fork", cp.size, evidence(json!({})))
            };
        }
        if state.tree_size == 0 {
            return Seen::Fine;
        }
        let proof_url = format!(
            "{}/v1/scrolls/{scroll}/proof/consistency?from={}&to={}",
            remote.portal, state.tree_size, cp.size
        );
        let body = match self.get(&proof_url).await {
            Ok(b) => b,
            Err(seen) => return seen,
        };
        let proof_evidence = || evidence(json!({"proof_from": proof_url, "proof": body}));
        let Some(path) = proof_path(&body) else {
            return Seen::Discrepancy("bad_proof", cp.size, proof_evidence());
        };
        let (from, to) = (state.tree_size, cp.size);
        if verify_consistency::<Sha3_256>(from, to, &path, &state.root, &cp.root).is_ok() {
            return Seen::Fine;
        }
        match consistency_roots::<Sha3_256>(from, to, &path, &state.root) {
            // The path leads to the served root, but from another tree at the cosigned size.
            Ok((_, new_root)) if new_root == cp.root => {
                Seen::Discrepancy("split_view", cp.size, proof_evidence())
            }
            _ => Seen::Discrepancy("bad_proof", cp.size, proof_evidence()),
        }
    }

    /// A validly signed checkpoint smaller than the one cosigned: a fork at once if this
    /// witness cosigned that size with another root; a rollback if it is smaller than a
    /// checkpoint cosigned longer ago than the grace period (so a portal whose cache lags a
    /// fresh cosignature is not one, and the rule holds across restarts and leaders).
    async fn smaller(&self, state: &WitnessState, cp: &Checkpoint, evidence: Value) -> Seen {
        match self.store.witness_cosigned_at(&state.origin, cp.size).await {
            Ok(Some((root, note))) if root != cp.root => {
                let mut evidence = evidence;
                evidence["cosigned"] = Value::String(note);
                return Seen::Discrepancy("fork", cp.size, evidence);
            }
            Ok(_) => {}
            Err(e) => return Seen::Failed("witness_store", e.to_string()),
        }
        match self
            .store
            .witness_cosigned_before(&state.origin, self.grace)
            .await
        {
            Ok(Some((size, note))) if cp.size < size => {
                let mut evidence = evidence;
                evidence["cosigned"] = Value::String(note);
                Seen::Discrepancy("rollback", size, evidence)
            }
            Ok(_) => Seen::Fine,
            Err(e) => Seen::Failed("witness_store", e.to_string()),
        }
    }
}

/// The hashes of a consistency proof as the portal serves it (`{"path": ["<hex>", …]}`).
fn proof_path(body: &str) -> Option<Vec<Hash>> {
    let v: Value = serde_json::from_str(body).ok()?;
    v["path"]
        .as_array()?
        .iter()
        .map(|h| from_hex(h.as_str()?).ok())
        .collect()
}

/// The watching loop: one pass per `interval` while this guardian leads.
pub async fn run(g: Arc<crate::Guardian>, shutdown: ledger::service::Shutdown) {
    let Some(watch) = g.remote_watch.as_ref() else {
        return;
    };
    crate::leader::while_leading(
        &g.leadership,
        g.opts.remote_poll_interval(),
        shutdown,
        || async move {
            if let Err(e) = watch.cycle().await {
                tracing::warn!(error = %e, "remote portal checks failed; retried next interval");
            }
        },
    )
    .await;
}
