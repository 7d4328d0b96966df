//! C2SP tlog-checkpoints: `<origin>\n<size>\n<base64 root>\n`, signed as a signed note.

use crate::hash::Hash;
use crate::note::{NoteError, NoteSigner, NoteVerifier};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

/// Why a checkpoint is rejected.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The signed-note layer failed (signature, key, framing).
    #[error(transparent)]
    Note(#[from] NoteError),
    /// The body is not exactly origin, size and root lines.
    #[error("malformed checkpoint body: {0}")]
    BadBody(&'static str),
    /// The origin is not the one expected.
    #[error("checkpoint origin {found:?}, expected {expected:?}")]
    WrongOrigin {
        /// Origin found in the checkpoint.
        found: String,
        /// Origin the caller expected.
        expected: String,
    },
}

/// An unsigned checkpoint body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// `<mesh_id>/<scroll>`.
    pub origin: String,
    /// Number of leaves.
    pub size: u64,
    /// Root hash of the first `size` leaves.
    pub root: Hash,
}

impl Checkpoint {
    /// The origin line for a scroll of a mesh.
    pub fn origin_for(mesh_id: &str, scroll: &str) -> String {
        format!("{mesh_id}/{scroll}")
    }

    /// The checkpoint body text (three lines).
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        )
    }

    /// Signs the body, returning the signed note text.
    pub fn sign(&self, signer: &NoteSigner) -> Result<String, CheckpointError> {
        Ok(signer.sign(&self.body())?)
    }

    /// Parses a body; rejects extension lines, which VaultMesh never writes.
    pub fn parse_body(body: &str) -> Result<Self, CheckpointError> {
        let lines: Vec<&str> = body
            .strip_suffix('\n')
            .ok_or(CheckpointError::BadBody("missing final newline"))?
            .split('\n')
            .collect();
        let [origin, size, root_b64] = lines[..] else {
            return Err(CheckpointError::BadBody("expected exactly 3 lines"));
        };
        if origin.is_empty() {
            return Err(CheckpointError::BadBody("empty origin"));
        }
        if size.is_empty()
            || !size.bytes().all(|b| b.is_ascii_digit())
            || (size.len() > 1 && size.starts_with('0'))
        {
            return Err(CheckpointError::BadBody("size is not a canonical decimal"));
        }
        let size: u64 = size
            .parse()
            .map_err(|_| CheckpointError::BadBody("size out of range"))?;
        let root_bytes = B64
            .decode(root_b64)
            .map_err(|_| CheckpointError::BadBody("root is not base64"))?;
        let root: Hash = root_bytes
            .try_into()
            .map_err(|_| CheckpointError::BadBody("root is not 32 bytes"))?;
        if B64.encode(root) != root_b64 {
            return Err(CheckpointError::BadBody("root base64 is not canonical"));
        }
        Ok(Self {
            origin: origin.to_string(),
            size,
            root,
        })
    }

    /// Verifies a signed checkpoint with `verifier` and, if given, checks its origin.
    pub fn verify(
        note: &str,
        verifier: &NoteVerifier,
        expected_origin: Option<&str>,
    ) -> Result<Self, CheckpointError> {
        let body = verifier.verify(note)?;
        let cp = Self::parse_body(body)?;
        if let Some(expected) = expected_origin {
            if cp.origin != expected {
                return Err(CheckpointError::WrongOrigin {
                    found: cp.origin,
                    expected: expected.to_string(),
                });
            }
        }
        Ok(cp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::Sha3Hasher;

    fn signer() -> NoteSigner {
        NoteSigner::from_seed("vaultmesh-dev/guardian", [3u8; 32]).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn sign_parse_verify() {
        let cp = Checkpoint {
            origin: Checkpoint::origin_for("vaultmesh-dev", "drills"),
            size: 42,
            root: Sha3Hasher::empty_root(),
        };
        let note = cp.sign(&signer()).unwrap_or_default();
        assert!(note.starts_with("vaultmesh-dev/drills\n42\n"));
        let v = signer().verifier();
        let back = Checkpoint::verify(&note, &v, Some("vaultmesh-dev/drills"));
        assert_eq!(back.ok(), Some(cp.clone()));
        assert!(matches!(
            Checkpoint::verify(&note, &v, Some("vaultmesh-dev/other")),
            Err(CheckpointError::WrongOrigin { .. })
        ));
        assert!(Checkpoint::verify(&note.replace("\n42\n", "\n43\n"), &v, None).is_err());
    }

    #[test]
    fn bodies_are_strict() {
        let root = B64.encode([0u8; 32]);
        assert!(Checkpoint::parse_body(&format!("o\n1\n{root}\n")).is_ok());
        for bad in [
            format!("o\n1\n{root}"),
            format!("o\n1\n{root}\next\n"),
            "o\n1\n".to_string(),
            format!("\n1\n{root}\n"),
            format!("o\n01\n{root}\n"),
            format!("o\n-1\n{root}\n"),
            format!("o\n1\n{}\n", B64.encode([0u8; 31])),
            "o\n1\nnot base64!\n".to_string(),
        ] {
            assert!(Checkpoint::parse_body(&bad).is_err(), "{bad:?}");
        }
    }
}
