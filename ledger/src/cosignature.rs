//! C2SP tlog-cosignature v1 (Ed25519): a witness's timestamped statement that a checkpoint is
//! the largest tree it has seen consistent for that origin, as one more signature line on the
//! checkpoint's note; and the K-of-N witness policy a verifier enforces with them.

use crate::note::{NamedKey, NamedVerifier, NoteError, SignedNote, SIG_PREFIX};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, Verifier};
use std::collections::BTreeSet;
use std::path::Path;

/// Signature type of cosignature/v1 keys in key ids and vkeys.
pub const ALG_COSIGNATURE_V1: u8 = 0x04;

/// Bytes of a cosignature after its key id: 8-byte time and 64-byte signature.
const TIMESTAMPED_SIGNATURE_LEN: usize = 8 + 64;

/// Why a cosignature or a witness policy is not satisfied.
#[derive(Debug, thiserror::Error)]
pub enum CosignatureError {
    /// The key, note or line is malformed.
    #[error(transparent)]
    Note(#[from] NoteError),
    /// A line by a configured witness (name and key id match) does not verify.
    #[error("cosignature by witness {0} does not verify")]
    Invalid(String),
    /// The time is zero or beyond 2^63-1.
    #[error("cosignature by witness {0} has an invalid time")]
    BadTime(String),
    /// Fewer configured witnesses cosigned than the policy requires.
    #[error("{found} of the required {required} witness cosignatures (from: {names})")]
    BelowThreshold {
        /// Valid cosignatures by distinct configured witnesses.
        found: usize,
        /// The policy's K.
        required: usize,
        /// The witnesses that did cosign.
        names: String,
    },
    /// A policy names one witness key twice.
    #[error("a witness is named twice in the policy")]
    DuplicateWitness,
    /// A policy asks for more witnesses than it names, or for none.
    #[error("a witness threshold of {threshold} with {witnesses} witnesses")]
    BadPolicy {
        /// K.
        threshold: usize,
        /// N.
        witnesses: usize,
    },
}

/// The message a cosignature signs: `cosignature/v1`, `time <t>`, then the checkpoint body.
pub fn signed_message(body: &str, time: u64) -> Vec<u8> {
    format!("cosignature/v1\ntime {time}\n{body}").into_bytes()
}

/// A witness's cosigning key (Ed25519, signature type 0x04).
pub struct WitnessSigner(NamedKey);

impl WitnessSigner {
    /// A key from its 32-byte seed.
    pub fn from_seed(name: &str, seed: [u8; 32]) -> Result<Self, NoteError> {
        NamedKey::from_seed(name, seed, ALG_COSIGNATURE_V1).map(Self)
    }

    /// Parses `PRIVATE+KEY+<name>+<hex id>+<base64(0x04‖seed)>`.
    pub fn from_skey(skey: &str) -> Result<Self, NoteError> {
        NamedKey::from_skey(skey, ALG_COSIGNATURE_V1).map(Self)
    }

    /// Loads a witness key file.
    pub fn load(path: &Path) -> Result<Self, NoteError> {
        NamedKey::load(path, ALG_COSIGNATURE_V1).map(Self)
    }

    /// Generates a witness key into `path` (mode 0600) unless the file exists.
    pub fn generate_to_file(name: &str, path: &Path) -> Result<Self, NoteError> {
        NamedKey::generate_to_file(name, path, ALG_COSIGNATURE_V1).map(Self)
    }

    /// The private key encoding.
    pub fn to_skey(&self) -> String {
        self.0.to_skey()
    }

    /// The matching verifier.
    pub fn verifier(&self) -> WitnessVerifier {
        WitnessVerifier(self.0.verifier())
    }

    /// The witness's name.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// The cosignature line (ending in a newline) over checkpoint `body` at UNIX `time`.
    pub fn cosign(&self, body: &str, time: u64) -> Result<String, CosignatureError> {
        if time == 0 || time > i64::MAX as u64 {
            return Err(CosignatureError::BadTime(self.0.name.clone()));
        }
        let sig = self.0.key.sign(&signed_message(body, time));
        let mut blob = Vec::with_capacity(4 + TIMESTAMPED_SIGNATURE_LEN);
        blob.extend_from_slice(&self.0.id);
        blob.extend_from_slice(&time.to_be_bytes());
        blob.extend_from_slice(&sig.to_bytes());
        Ok(format!(
            "{SIG_PREFIX}{} {}\n",
            self.0.name,
            B64.encode(blob)
        ))
    }
}

/// A witness's public key (vkey with signature type 0x04).
#[derive(Clone, Debug)]
pub struct WitnessVerifier(NamedVerifier);

impl WitnessVerifier {
    /// Parses a witness vkey `<name>+<hex id>+<base64(0x04‖public key)>`.
    pub fn from_vkey(vkey: &str) -> Result<Self, NoteError> {
        NamedVerifier::from_vkey(vkey, ALG_COSIGNATURE_V1).map(Self)
    }

    /// The vkey encoding.
    pub fn to_vkey(&self) -> String {
        self.0.to_vkey()
    }

    /// The witness's name.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// The time of this witness's newest valid cosignature in `note`, `None` if it has no
    /// line there; a line with its name and key id that fails is an error.
    pub fn verify(&self, note: &SignedNote<'_>) -> Result<Option<u64>, CosignatureError> {
        let k = &self.0;
        let mut newest = None;
        for blob in note.signatures_by(&k.name, k.id) {
            if blob.len() != TIMESTAMPED_SIGNATURE_LEN {
                return Err(CosignatureError::Invalid(k.name.clone()));
            }
            let mut t = [0u8; 8];
            t.copy_from_slice(&blob[..8]);
            let time = u64::from_be_bytes(t);
            if time == 0 || time > i64::MAX as u64 {
                return Err(CosignatureError::BadTime(k.name.clone()));
            }
            let sig = Signature::from_slice(&blob[8..])
                .map_err(|_| CosignatureError::Invalid(k.name.clone()))?;
            k.key
                .verify(&signed_message(note.body, time), &sig)
                .map_err(|_| CosignatureError::Invalid(k.name.clone()))?;
            newest = newest.max(Some(time));
        }
        Ok(newest)
    }
}

/// A K-of-N witness policy: a checkpoint counts as witnessed when at least `threshold` of
/// `witnesses` (distinct keys) cosigned it.
#[derive(Clone, Debug)]
pub struct WitnessPolicy {
    witnesses: Vec<WitnessVerifier>,
    threshold: usize,
}

impl WitnessPolicy {
    /// A policy of `threshold` of `witnesses`; K must be between 1 and N, and no witness may
    /// be named twice (it would count once but inflate N).
    pub fn new(
        witnesses: Vec<WitnessVerifier>,
        threshold: usize,
    ) -> Result<Self, CosignatureError> {
        let distinct: BTreeSet<String> = witnesses.iter().map(WitnessVerifier::to_vkey).collect();
        if distinct.len() != witnesses.len() {
            return Err(CosignatureError::DuplicateWitness);
        }
        if threshold == 0 || threshold > witnesses.len() {
            return Err(CosignatureError::BadPolicy {
                threshold,
                witnesses: witnesses.len(),
            });
        }
        Ok(Self {
            witnesses,
            threshold,
        })
    }

    /// K: how many witnesses must have cosigned.
    pub fn threshold(&self) -> usize {
        self.threshold
    }

    /// The names of the configured witnesses that validly cosigned `note`, if at least K did.
    /// A failing line by a configured witness fails the whole check.
    pub fn check(&self, note: &str) -> Result<Vec<String>, CosignatureError> {
        let note = SignedNote::parse(note)?;
        let mut keys = BTreeSet::new();
        let mut names = Vec::new();
        for w in &self.witnesses {
            if w.verify(&note)?.is_some() && keys.insert(w.to_vkey()) {
                names.push(w.name().to_string());
            }
        }
        if names.len() < self.threshold {
            return Err(CosignatureError::BelowThreshold {
                found: names.len(),
                required: self.threshold,
                names: names.join(", "),
            });
        }
        Ok(names)
    }
}

/// `note` with `lines` (cosignature lines, each ending in a newline) appended to its
/// signature block.
pub fn with_cosignatures(note: &str, lines: &[String]) -> String {
    let mut out = String::with_capacity(note.len() + lines.iter().map(String::len).sum::<usize>());
    out.push_str(note);
    for l in lines {
        out.push_str(l);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::Checkpoint;
    use crate::note::NoteSigner;

    const BODY: &str =
        "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";

    fn witness(name: &str, seed: u8) -> WitnessSigner {
        WitnessSigner::from_seed(name, [seed; 32]).unwrap_or_else(|e| panic!("{e}"))
    }

    fn seed_0_to_31() -> [u8; 32] {
        let mut s = [0u8; 32];
        for (i, b) in s.iter_mut().enumerate() {
            *b = i as u8;
        }
        s
    }

    #[test]
    fn known_answer_matches_the_independent_python_implementation() {
        let w = WitnessSigner::from_seed("witness.example/w1", seed_0_to_31())
            .unwrap_or_else(|e| panic!("{e}"));
        let line = w.cosign(BODY, 1_679_315_147).unwrap_or_default();
        assert_eq!(w.verifier().to_vkey(), KNOWN_VKEY);
        assert_eq!(line, KNOWN_LINE);
    }

    /// Computed by ops/verify (Python, written from the C2SP text) for seed 0..31.
    const KNOWN_VKEY: &str =
        "witness.example/w1+e75f6532+BAOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4";
    const KNOWN_LINE: &str = "\u{2014} witness.example/w1 519lMgAAAABkGFDLBuRDazBLVac2NE+Y+IjbjQOcXLfF9CSDZVUIoS83rE1nFZsVE8YiWV6Ngr7lV8H6bdoBQGP/l73euDMQ9k+bBQ==\n";

    #[test]
    fn policies_count_distinct_valid_witnesses() {
        let log = NoteSigner::from_seed("mesh/guardian", [1; 32]).unwrap_or_else(|e| panic!("{e}"));
        let cp = Checkpoint {
            origin: "mesh/drills".into(),
            size: 5,
            root: [9; 32],
        };
        let note = cp.sign(&log).unwrap_or_default();
        let (a, b, c) = (witness("w/a", 2), witness("w/b", 3), witness("w/c", 4));
        let lines = vec![
            a.cosign(&cp.body(), 100).unwrap_or_default(),
            b.cosign(&cp.body(), 101).unwrap_or_default(),
            b.cosign(&cp.body(), 102).unwrap_or_default(),
        ];
        let cosigned = with_cosignatures(&note, &lines);
        assert!(
            log.verifier().verify(&cosigned).is_ok(),
            "a cosigned note is still the log's"
        );
        let all = vec![a.verifier(), b.verifier(), c.verifier()];
        let two = WitnessPolicy::new(all.clone(), 2).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            two.check(&cosigned).ok(),
            Some(vec!["w/a".into(), "w/b".into()])
        );
        let three = WitnessPolicy::new(all.clone(), 3).unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            three.check(&cosigned),
            Err(CosignatureError::BelowThreshold {
                found: 2,
                required: 3,
                ..
            })
        ));
        assert!(WitnessPolicy::new(all.clone(), 4).is_err());
        assert!(matches!(
            WitnessPolicy::new(vec![a.verifier(), a.verifier()], 1),
            Err(CosignatureError::DuplicateWitness)
        ));
        assert!(WitnessPolicy::new(all.clone(), 0).is_err());
        // A changed time, another body, or a line cut short: the note fails.
        let line = &lines[0];
        let blob = B64
            .decode(line.trim_end().rsplit(' ').next().unwrap_or(""))
            .unwrap_or_default();
        let mut later = blob.clone();
        later[11] ^= 1;
        let forged = format!("{SIG_PREFIX}w/a {}\n", B64.encode(&later));
        assert!(two
            .check(&with_cosignatures(&note, &[forged, lines[1].clone()]))
            .is_err());
        let short = format!("{SIG_PREFIX}w/a {}\n", B64.encode(&blob[..70]));
        assert!(two
            .check(&with_cosignatures(&note, &[short, lines[1].clone()]))
            .is_err());
        let other = a.cosign(
            "mesh/drills\n6\nCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=\n",
            100,
        );
        let other = other.unwrap_or_default();
        assert!(two
            .check(&with_cosignatures(&note, &[other, lines[1].clone()]))
            .is_err());
        // An unknown witness, or a known name with another key id, is ignored.
        let stranger = witness("w/a", 5)
            .cosign(&cp.body(), 100)
            .unwrap_or_default();
        let only_b = with_cosignatures(&note, &[stranger, lines[1].clone()]);
        assert!(matches!(
            two.check(&only_b),
            Err(CosignatureError::BelowThreshold { found: 1, .. })
        ));
        // A note-key signature is not a cosignature, and keys of the two types do not mix.
        let plain = log.sign(&cp.body()).unwrap_or_default();
        assert!(matches!(
            two.check(&plain),
            Err(CosignatureError::BelowThreshold { found: 0, .. })
        ));
        assert!(WitnessVerifier::from_vkey(&log.verifier().to_vkey()).is_err());
        assert!(crate::note::NoteVerifier::from_vkey(&a.verifier().to_vkey()).is_err());
        assert!(a.cosign(&cp.body(), 0).is_err());
    }
}
