//! ProofChain anchor records: one per epoch, each hash-linked to the one before, each with
//! a signed head (a signed note by the guardian's key over mesh, epoch and `anchor_hash`).

use crate::hash::{from_hex, subtree_root, to_hex, Hash, Sha3Hasher};
use crate::jcs;
use crate::note::{NoteSigner, NoteVerifier};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `prev_anchor_hash` of the first record: 64 zeros.
pub const GENESIS_PREV: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Largest epoch or tree size a record may carry: 2^53 − 1, the largest integer every JSON
/// reader represents exactly (RFC 8785 numbers are IEEE-754 doubles).
pub const MAX_EXACT_INTEGER: u64 = (1 << 53) - 1;

/// Suffix of a head note's origin line, `<mesh_id>/proofchain`.
pub const HEAD_ORIGIN_SUFFIX: &str = "proofchain";

/// Why an anchor record or chain does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnchorError {
    /// A hash field is not 64 lowercase hex digits.
    #[error("epoch {epoch}: field {field} is not a lowercase hex hash")]
    BadHash {
        /// Epoch of the record.
        epoch: u64,
        /// Field name.
        field: &'static str,
    },
    /// `scrolls` is not sorted by name or has duplicates.
    #[error("epoch {0}: scrolls are not strictly sorted by name")]
    Unsorted(u64),
    /// Recomputed `epoch_root` differs.
    #[error("epoch {0}: epoch_root does not match its scrolls")]
    EpochRootMismatch(u64),
    /// Recomputed `anchor_hash` differs.
    #[error("epoch {0}: anchor_hash does not match the record")]
    AnchorHashMismatch(u64),
    /// `prev_anchor_hash` does not equal the previous record's `anchor_hash`.
    #[error("epoch {0}: prev_anchor_hash does not link to the previous record")]
    BrokenLink(u64),
    /// Epochs are not consecutive from 1.
    #[error("epoch {found}: expected epoch {expected}")]
    EpochGap {
        /// Epoch found.
        found: u64,
        /// Epoch expected.
        expected: u64,
    },
    /// The record could not be canonicalised.
    #[error("epoch {0}: record has no canonical form")]
    NotCanonical(u64),
    /// The epoch or a tree size is beyond 2^53 − 1.
    #[error("epoch {epoch}: {field} {value} is beyond 2^53-1")]
    OutOfRange {
        /// Epoch of the record.
        epoch: u64,
        /// Field name.
        field: &'static str,
        /// The value found.
        value: u64,
    },
    /// The record carries no signed head.
    #[error("epoch {0}: no signed head (an unsigned record is not evidence)")]
    MissingHead(u64),
    /// The signed head does not verify or does not name this record.
    #[error("epoch {epoch}: signed head rejected: {reason}")]
    BadHead {
        /// Epoch of the record.
        epoch: u64,
        /// Why.
        reason: String,
    },
}

/// One scroll's state in an epoch: its latest checkpoint size and root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnchoredScroll {
    /// Scroll name.
    pub scroll: String,
    /// Checkpointed tree size (refused above 2^53 − 1 when parsed).
    #[serde(deserialize_with = "deserialize_tree_size")]
    pub tree_size: u64,
    /// Checkpointed root, lowercase hex.
    pub root: String,
}

/// A ProofChain record (SPEC §3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnchorRecord {
    /// Epoch number, 1 for the first record (refused above 2^53 − 1 when parsed).
    #[serde(deserialize_with = "deserialize_epoch")]
    pub epoch: u64,
    /// Mesh id.
    pub mesh: String,
    /// When the record was built, RFC 3339 UTC with microseconds.
    pub anchored_at: String,
    /// Every scroll's latest checkpoint, sorted by name.
    pub scrolls: Vec<AnchoredScroll>,
    /// Merkle root over the JCS bytes of each `scrolls` entry.
    pub epoch_root: String,
    /// `anchor_hash` of the previous record, or 64 zeros.
    pub prev_anchor_hash: String,
    /// SHA3-256 of the JCS form of the record without `anchor_hash`, `sinks` and
    /// `signature`.
    pub anchor_hash: String,
    /// What each external sink returned (not covered by `anchor_hash`).
    #[serde(default)]
    pub sinks: Vec<Value>,
    /// The signed head: a signed note over `<mesh>/proofchain`, the epoch and the base64
    /// `anchor_hash` (not covered by `anchor_hash`; `None` only before it is signed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

fn deserialize_tree_size<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    jcs::deserialize_safe_u64(d, "tree_size")
}

fn deserialize_epoch<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    jcs::deserialize_safe_u64(d, "epoch")
}

/// Merkle root (SHA3-256, RFC 6962 shape) over the canonical JSON of each scroll entry.
pub fn epoch_root(scrolls: &[AnchoredScroll]) -> Result<Hash, serde_json::Error> {
    let mut leaves = Vec::with_capacity(scrolls.len());
    for s in scrolls {
        let v = serde_json::to_value(s)?;
        let bytes = jcs::to_vec(&v).map_err(serde::ser::Error::custom)?;
        leaves.push(Sha3Hasher::leaf(&bytes));
    }
    Ok(subtree_root::<sha3::Sha3_256>(&leaves))
}

impl AnchorRecord {
    /// Builds the record for `epoch`, computing `epoch_root` and `anchor_hash`.
    pub fn build(
        epoch: u64,
        mesh: &str,
        anchored_at: &str,
        mut scrolls: Vec<AnchoredScroll>,
        prev_anchor_hash: &str,
    ) -> Result<Self, AnchorError> {
        scrolls.sort_by(|a, b| jcs::utf16_cmp(&a.scroll, &b.scroll));
        let root = epoch_root(&scrolls).map_err(|_| AnchorError::NotCanonical(epoch))?;
        let mut rec = Self {
            epoch,
            mesh: mesh.to_string(),
            anchored_at: anchored_at.to_string(),
            scrolls,
            epoch_root: to_hex(&root),
            prev_anchor_hash: prev_anchor_hash.to_string(),
            anchor_hash: String::new(),
            sinks: Vec::new(),
            signature: None,
        };
        rec.anchor_hash = to_hex(&rec.compute_anchor_hash()?);
        Ok(rec)
    }

    /// The record as stored and journaled: its JCS text without `sinks` and `signature`
    /// (sink answers and the signed head are kept beside it, not in it).
    pub fn stored_text(&self) -> Result<String, AnchorError> {
        let v = self.value_without(&["sinks", "signature"])?;
        jcs::to_string(&v).map_err(|_| AnchorError::NotCanonical(self.epoch))
    }

    /// The bytes `anchor_hash` covers: JCS of the record without `anchor_hash`, `sinks` and
    /// `signature`.
    pub fn hashed_bytes(&self) -> Result<Vec<u8>, AnchorError> {
        let v = self.value_without(&["anchor_hash", "sinks", "signature"])?;
        jcs::to_vec(&v).map_err(|_| AnchorError::NotCanonical(self.epoch))
    }

    fn value_without(&self, fields: &[&str]) -> Result<Value, AnchorError> {
        let mut v =
            serde_json::to_value(self).map_err(|_| AnchorError::NotCanonical(self.epoch))?;
        if let Value::Object(m) = &mut v {
            for f in fields {
                m.remove(*f);
            }
        }
        Ok(v)
    }

    /// The text the head note signs: `<mesh>/proofchain`, the epoch in decimal and the
    /// base64 of the 32 `anchor_hash` bytes, each followed by a newline.
    pub fn head_body(&self) -> Result<String, AnchorError> {
        let hash = from_hex(&self.anchor_hash).map_err(|_| AnchorError::BadHash {
            epoch: self.epoch,
            field: "anchor_hash",
        })?;
        Ok(format!(
            "{}\n{}\n{}\n",
            head_origin(&self.mesh),
            self.epoch,
            B64.encode(hash)
        ))
    }

    /// Signs this record's head with the guardian's key and returns the signed note (the
    /// caller stores it as `signature`).
    pub fn sign_head(&self, signer: &NoteSigner) -> Result<String, AnchorError> {
        signer
            .sign(&self.head_body()?)
            .map_err(|e| AnchorError::BadHead {
                epoch: self.epoch,
                reason: e.to_string(),
            })
    }

    /// Checks that `signature` is a head note signed by `verifier` naming exactly this
    /// record's mesh, epoch and `anchor_hash` (the record's own hashes are checked by
    /// [`AnchorRecord::verify`]).
    pub fn verify_head(&self, verifier: &NoteVerifier) -> Result<(), AnchorError> {
        let epoch = self.epoch;
        let note = self
            .signature
            .as_deref()
            .ok_or(AnchorError::MissingHead(epoch))?;
        let bad = |reason: String| AnchorError::BadHead { epoch, reason };
        let body = verifier.verify(note).map_err(|e| bad(e.to_string()))?;
        if body != self.head_body()? {
            return Err(bad(format!(
                "it signs {:?}, not this record's mesh, epoch and anchor_hash",
                body.trim_end()
            )));
        }
        Ok(())
    }

    /// Everything about this record alone: [`AnchorRecord::verify`] and
    /// [`AnchorRecord::verify_head`].
    pub fn verify_signed(&self, verifier: &NoteVerifier) -> Result<(), AnchorError> {
        self.verify()?;
        self.verify_head(verifier)
    }

    fn compute_anchor_hash(&self) -> Result<Hash, AnchorError> {
        Ok(Sha3Hasher::plain(&self.hashed_bytes()?))
    }

    /// Checks ranges, sorting, `epoch_root` and `anchor_hash` of this record alone (not
    /// its signed head: see [`AnchorRecord::verify_signed`]).
    pub fn verify(&self) -> Result<(), AnchorError> {
        let e = self.epoch;
        let range = |field: &'static str, value: u64| {
            if value > MAX_EXACT_INTEGER {
                Err(AnchorError::OutOfRange {
                    epoch: e,
                    field,
                    value,
                })
            } else {
                Ok(())
            }
        };
        range("epoch", e)?;
        for s in &self.scrolls {
            range("tree_size", s.tree_size)?;
        }
        for (field, value) in [
            ("epoch_root", &self.epoch_root),
            ("prev_anchor_hash", &self.prev_anchor_hash),
            ("anchor_hash", &self.anchor_hash),
        ] {
            if value.len() != 64
                || value
                    .bytes()
                    .any(|b| !matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            {
                return Err(AnchorError::BadHash { epoch: e, field });
            }
        }
        for s in &self.scrolls {
            if from_hex(&s.root).is_err() || s.root.bytes().any(|b| b.is_ascii_uppercase()) {
                return Err(AnchorError::BadHash {
                    epoch: e,
                    field: "scrolls.root",
                });
            }
        }
        if self
            .scrolls
            .windows(2)
            .any(|w| jcs::utf16_cmp(&w[0].scroll, &w[1].scroll) != std::cmp::Ordering::Less)
        {
            return Err(AnchorError::Unsorted(e));
        }
        let root = epoch_root(&self.scrolls).map_err(|_| AnchorError::NotCanonical(e))?;
        if to_hex(&root) != self.epoch_root {
            return Err(AnchorError::EpochRootMismatch(e));
        }
        if to_hex(&self.compute_anchor_hash()?) != self.anchor_hash {
            return Err(AnchorError::AnchorHashMismatch(e));
        }
        Ok(())
    }

    /// The entry for `scroll`, if this epoch covers it.
    pub fn scroll(&self, scroll: &str) -> Option<&AnchoredScroll> {
        self.scrolls.iter().find(|s| s.scroll == scroll)
    }
}

/// The first line of every head note of `mesh`: `<mesh>/proofchain`.
pub fn head_origin(mesh: &str) -> String {
    format!("{mesh}/{HEAD_ORIGIN_SUFFIX}")
}

/// Verifies a chain from genesis as evidence: [`verify_chain`], and every record carries a
/// head signed by `verifier` (a self-consistent but unsigned record proves nothing).
pub fn verify_signed_chain(
    records: &[AnchorRecord],
    verifier: &NoteVerifier,
) -> Result<(), AnchorError> {
    verify_chain(records)?;
    records.iter().try_for_each(|r| r.verify_head(verifier))
}

/// Verifies a chain from genesis: each record valid, epochs 1, 2, …, links intact. Heads are
/// not checked here: see [`verify_signed_chain`].
pub fn verify_chain(records: &[AnchorRecord]) -> Result<(), AnchorError> {
    let mut prev = GENESIS_PREV.to_string();
    for (i, rec) in records.iter().enumerate() {
        let expected = i as u64 + 1;
        if rec.epoch != expected {
            return Err(AnchorError::EpochGap {
                found: rec.epoch,
                expected,
            });
        }
        rec.verify()?;
        if rec.prev_anchor_hash != prev {
            return Err(AnchorError::BrokenLink(rec.epoch));
        }
        prev = rec.anchor_hash.clone();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, size: u64) -> AnchoredScroll {
        AnchoredScroll {
            scroll: name.into(),
            tree_size: size,
            root: to_hex(&Sha3Hasher::leaf(name.as_bytes())),
        }
    }

    fn chain() -> Vec<AnchorRecord> {
        let mut out: Vec<AnchorRecord> = Vec::new();
        for epoch in 1..=3u64 {
            let prev = out
                .last()
                .map(|r| r.anchor_hash.clone())
                .unwrap_or(GENESIS_PREV.into());
            let rec = AnchorRecord::build(
                epoch,
                "m",
                "2026-11-23T00:00:00.000000Z",
                vec![entry("drills", epoch), entry("compliance", epoch * 2)],
                &prev,
            )
            .unwrap_or_else(|e| panic!("{e}"));
            out.push(rec);
        }
        out
    }

    #[test]
    fn built_chain_verifies_and_is_sorted() {
        let c = chain();
        assert_eq!(c[0].scrolls[0].scroll, "compliance");
        assert_eq!(verify_chain(&c), Ok(()));
    }

    #[test]
    fn tampering_is_detected() {
        let c = chain();
        let mut t = c.clone();
        t[1].scrolls[0].tree_size += 1;
        assert_eq!(verify_chain(&t), Err(AnchorError::EpochRootMismatch(2)));
        let mut t = c.clone();
        t[1].anchored_at = "2026-11-24T00:00:00.000000Z".into();
        assert_eq!(verify_chain(&t), Err(AnchorError::AnchorHashMismatch(2)));
        let mut t = c.clone();
        t[2] = AnchorRecord::build(
            3,
            "m",
            &t[2].anchored_at,
            t[2].scrolls.clone(),
            GENESIS_PREV,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(verify_chain(&t), Err(AnchorError::BrokenLink(3)));
        let mut t = c.clone();
        t.remove(1);
        assert!(matches!(
            verify_chain(&t),
            Err(AnchorError::EpochGap { .. })
        ));
        let mut t = c.clone();
        t[0].scrolls.swap(0, 1);
        assert_eq!(verify_chain(&t), Err(AnchorError::Unsorted(1)));
        let mut t = c;
        t[0].sinks.push(serde_json::json!({"sink": "journal"}));
        t[0].signature = Some("anything\n".into());
        assert_eq!(
            verify_chain(&t),
            Ok(()),
            "sinks and signature are outside anchor_hash"
        );
        assert!(!t[0].stored_text().unwrap_or_default().contains("signature"));
    }

    fn key(seed: u8) -> NoteSigner {
        NoteSigner::from_seed("m/guardian", [seed; 32]).unwrap_or_else(|e| panic!("{e}"))
    }

    fn signed_chain(signer: &NoteSigner) -> Vec<AnchorRecord> {
        let mut c = chain();
        for r in &mut c {
            r.signature = Some(r.sign_head(signer).unwrap_or_else(|e| panic!("{e}")));
        }
        c
    }

    #[test]
    fn heads_sign_mesh_epoch_and_anchor_hash() {
        let signer = key(1);
        let c = signed_chain(&signer);
        let note = c[1].signature.clone().unwrap_or_default();
        let b64 = B64.encode(from_hex(&c[1].anchor_hash).unwrap_or_default());
        assert!(note.starts_with(&format!("m/proofchain\n2\n{b64}\n\n\u{2014} m/guardian ")));
        assert_eq!(verify_signed_chain(&c, &signer.verifier()), Ok(()));
        let round: AnchorRecord =
            serde_json::from_str(&serde_json::to_string(&c[1]).unwrap_or_default())
                .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(round, c[1]);
    }

    #[test]
    fn missing_forged_and_misplaced_heads_are_rejected() {
        let signer = key(1);
        let v = signer.verifier();
        let c = signed_chain(&signer);

        let mut t = c.clone();
        t[2].signature = None;
        assert_eq!(
            verify_signed_chain(&t, &v),
            Err(AnchorError::MissingHead(3))
        );

        let mut t = c.clone();
        t[0].signature = Some(t[0].sign_head(&key(2)).unwrap_or_default());
        assert!(matches!(
            verify_signed_chain(&t, &v),
            Err(AnchorError::BadHead { epoch: 1, .. })
        ));

        let mut t = c.clone();
        t[1].signature = t[0].signature.clone();
        assert!(matches!(
            verify_signed_chain(&t, &v),
            Err(AnchorError::BadHead { epoch: 2, .. })
        ));

        let mut redated = c[2].clone();
        redated.anchored_at = "2027-01-01T00:00:00.000000Z".into();
        redated.anchor_hash = to_hex(&redated.compute_anchor_hash().unwrap_or_default());
        assert_eq!(redated.verify(), Ok(()), "self-consistent");
        assert!(matches!(
            redated.verify_signed(&v),
            Err(AnchorError::BadHead { epoch: 3, .. })
        ));

        let mut other_mesh = c[0].clone();
        other_mesh.mesh = "n".into();
        other_mesh.anchor_hash = to_hex(&other_mesh.compute_anchor_hash().unwrap_or_default());
        assert!(other_mesh.verify_head(&v).is_err());
    }

    #[test]
    fn integers_beyond_2_pow_53_are_refused() {
        let mut c = chain();
        c[0].scrolls[0].tree_size = MAX_EXACT_INTEGER + 2;
        assert!(matches!(
            c[0].verify(),
            Err(AnchorError::OutOfRange {
                field: "tree_size",
                ..
            })
        ));
        c[0].scrolls[0].tree_size = MAX_EXACT_INTEGER;
        assert!(!matches!(
            c[0].verify(),
            Err(AnchorError::OutOfRange { .. })
        ));
    }

    #[test]
    fn parsing_refuses_epoch_or_tree_size_beyond_2_pow_53_minus_1() {
        let rec = chain().remove(0);
        let text = serde_json::to_string(&rec).unwrap_or_default();
        let parse = |t: &str| serde_json::from_str::<AnchorRecord>(t).map_err(|e| e.to_string());
        assert_eq!(parse(&text), Ok(rec.clone()));
        let size = format!("\"tree_size\":{}", rec.scrolls[0].tree_size);
        let epoch = format!("\"epoch\":{}", rec.epoch);
        for (field, from, bad) in [
            ("tree_size", &size, "9007199254740993"),
            ("tree_size", &size, "9007199254740992"),
            ("epoch", &epoch, "9007199254740993"),
        ] {
            let t = text.replacen(from.as_str(), &format!("\"{field}\":{bad}"), 1);
            let err = parse(&t).err().unwrap_or_default();
            assert!(
                err.contains(field) && err.contains(bad),
                "{field}={bad}: {err:?}"
            );
        }
        let t = text.replacen(&size, "\"tree_size\":9007199254740991", 1);
        assert!(parse(&t).is_ok());
    }
}
