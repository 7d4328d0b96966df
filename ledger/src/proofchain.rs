//! ProofChain anchor records: one per epoch, each hash-linked to the one before.

use crate::hash::{from_hex, subtree_root, to_hex, Hash, Sha3Hasher};
use crate::jcs;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `prev_anchor_hash` of the first record: 64 zeros.
pub const GENESIS_PREV: &str = "0000000000000000000000000000000000000000000000000000000000000000";

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
}

/// One scroll's state in an epoch: its latest checkpoint size and root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnchoredScroll {
    /// Scroll name.
    pub scroll: String,
    /// Checkpointed tree size.
    pub tree_size: u64,
    /// Checkpointed root, lowercase hex.
    pub root: String,
}

/// A ProofChain record (SPEC §3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnchorRecord {
    /// Epoch number, 1 for the first record.
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
    /// SHA3-256 of the JCS form of the record without `anchor_hash` and `sinks`.
    pub anchor_hash: String,
    /// What each external sink returned (not covered by `anchor_hash`).
    #[serde(default)]
    pub sinks: Vec<Value>,
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
        };
        rec.anchor_hash = to_hex(&rec.compute_anchor_hash()?);
        Ok(rec)
    }

    /// The record as stored and journaled: its JCS text without `sinks` (sink answers are
    /// kept beside it, not in it).
    pub fn stored_text(&self) -> Result<String, AnchorError> {
        let mut v =
            serde_json::to_value(self).map_err(|_| AnchorError::NotCanonical(self.epoch))?;
        if let Value::Object(m) = &mut v {
            m.remove("sinks");
        }
        jcs::to_string(&v).map_err(|_| AnchorError::NotCanonical(self.epoch))
    }

    /// The bytes `anchor_hash` covers: JCS of the record without `anchor_hash` and `sinks`.
    pub fn hashed_bytes(&self) -> Result<Vec<u8>, AnchorError> {
        let mut v =
            serde_json::to_value(self).map_err(|_| AnchorError::NotCanonical(self.epoch))?;
        if let Value::Object(m) = &mut v {
            m.remove("anchor_hash");
            m.remove("sinks");
        }
        jcs::to_vec(&v).map_err(|_| AnchorError::NotCanonical(self.epoch))
    }

    fn compute_anchor_hash(&self) -> Result<Hash, AnchorError> {
        Ok(Sha3Hasher::plain(&self.hashed_bytes()?))
    }

    /// Checks sorting, `epoch_root` and `anchor_hash` of this record alone.
    pub fn verify(&self) -> Result<(), AnchorError> {
        let e = self.epoch;
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

/// Verifies a chain from genesis: each record valid, epochs 1, 2, …, links intact.
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
        assert_eq!(verify_chain(&t), Ok(()), "sinks are outside anchor_hash");
    }
}
