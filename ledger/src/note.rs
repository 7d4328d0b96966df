//! C2SP signed-note with Ed25519 keys: signing keys, verifier keys (vkeys), sign and verify.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};
use std::path::Path;

/// Signature-type byte for Ed25519 in signed-note key ids and encodings.
const ALG_ED25519: u8 = 0x01;
/// Signature line prefix: an em dash and a space.
const SIG_PREFIX: &str = "\u{2014} ";

/// Why a key, note or signature is rejected.
#[derive(Debug, thiserror::Error)]
pub enum NoteError {
    /// The key name is empty or contains `+` or whitespace.
    #[error("invalid key name {0:?}")]
    BadKeyName(String),
    /// A vkey or skey string is malformed.
    #[error("malformed key encoding: {0}")]
    BadKey(&'static str),
    /// The note text is malformed.
    #[error("malformed note: {0}")]
    BadNote(&'static str),
    /// No signature line from the expected key (name and key id) was found.
    #[error("no signature by key {0}")]
    NoSignature(String),
    /// A signature by the expected key does not verify.
    #[error("signature by key {0} does not verify")]
    BadSignature(String),
    /// Reading or writing a key file failed.
    #[error("key file {path}: {source}")]
    Io {
        /// Key file path.
        path: String,
        /// Underlying error.
        source: std::io::Error,
    },
}

/// 4-byte key id: SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)[..4].
pub fn key_id(name: &str, public: &[u8; 32]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', ALG_ED25519]);
    h.update(public);
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

fn check_name(name: &str) -> Result<(), NoteError> {
    if name.is_empty() || name.contains('+') || name.chars().any(char::is_whitespace) {
        return Err(NoteError::BadKeyName(name.to_string()));
    }
    Ok(())
}

/// A named Ed25519 signing key.
pub struct NoteSigner {
    name: String,
    key: SigningKey,
    id: [u8; 4],
}

impl NoteSigner {
    /// A fresh random key with this name.
    pub fn generate(name: &str) -> Result<Self, NoteError> {
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed).map_err(|_| NoteError::BadKey("no randomness"))?;
        Self::from_seed(name, seed)
    }

    /// A key from its 32-byte seed.
    pub fn from_seed(name: &str, seed: [u8; 32]) -> Result<Self, NoteError> {
        check_name(name)?;
        let key = SigningKey::from_bytes(&seed);
        let id = key_id(name, key.verifying_key().as_bytes());
        Ok(Self {
            name: name.to_string(),
            key,
            id,
        })
    }

    /// Parses `PRIVATE+KEY+<name>+<hex id>+<base64(0x01‖seed)>`.
    pub fn from_skey(skey: &str) -> Result<Self, NoteError> {
        let rest = skey
            .trim()
            .strip_prefix("PRIVATE+KEY+")
            .ok_or(NoteError::BadKey("missing PRIVATE+KEY+ prefix"))?;
        let (name, id, data) = split_key(rest)?;
        let bytes = B64
            .decode(data)
            .map_err(|_| NoteError::BadKey("bad base64"))?;
        if bytes.len() != 33 || bytes[0] != ALG_ED25519 {
            return Err(NoteError::BadKey("not an Ed25519 key"));
        }
        let mut seed = [0u8; 32];
        seed.copy_from_slice(&bytes[1..]);
        let signer = Self::from_seed(name, seed)?;
        if signer.id != id {
            return Err(NoteError::BadKey("key id does not match key"));
        }
        Ok(signer)
    }

    /// Signed-note private key encoding.
    pub fn to_skey(&self) -> String {
        let mut data = vec![ALG_ED25519];
        data.extend_from_slice(self.key.as_bytes());
        format!(
            "PRIVATE+KEY+{}+{}+{}",
            self.name,
            hex::encode(self.id),
            B64.encode(data)
        )
    }

    /// The matching verifier.
    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier {
            name: self.name.clone(),
            key: self.key.verifying_key(),
            id: self.id,
        }
    }

    /// Key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Signs `body` (which must end in a newline) and returns the complete signed note.
    pub fn sign(&self, body: &str) -> Result<String, NoteError> {
        check_body(body)?;
        let sig = self.key.sign(body.as_bytes());
        let mut blob = self.id.to_vec();
        blob.extend_from_slice(&sig.to_bytes());
        Ok(format!(
            "{body}\n{SIG_PREFIX}{} {}\n",
            self.name,
            B64.encode(blob)
        ))
    }

    /// Loads a signing key file (skey form).
    pub fn load(path: &Path) -> Result<Self, NoteError> {
        let text = std::fs::read_to_string(path).map_err(|source| NoteError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_skey(&text)
    }

    /// Generates a key and writes it to `path` (mode 0600), unless the file exists.
    pub fn generate_to_file(name: &str, path: &Path) -> Result<Self, NoteError> {
        let io = |source| NoteError::Io {
            path: path.display().to_string(),
            source,
        };
        if path.exists() {
            return Self::load(path);
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let signer = Self::generate(name)?;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(path).map_err(io)?;
        std::io::Write::write_all(&mut f, format!("{}\n", signer.to_skey()).as_bytes())
            .map_err(io)?;
        f.sync_all().map_err(io)?;
        Ok(signer)
    }
}

fn split_key(s: &str) -> Result<(&str, [u8; 4], &str), NoteError> {
    let mut parts = s.splitn(3, '+');
    let (Some(name), Some(id_hex), Some(data)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(NoteError::BadKey("expected name+id+key"));
    };
    check_name(name)?;
    let mut id = [0u8; 4];
    if id_hex.len() != 8 {
        return Err(NoteError::BadKey("key id must be 8 hex digits"));
    }
    hex::decode_to_slice(id_hex, &mut id).map_err(|_| NoteError::BadKey("bad key id hex"))?;
    Ok((name, id, data))
}

/// A named Ed25519 verifier key.
#[derive(Clone, Debug)]
pub struct NoteVerifier {
    name: String,
    key: VerifyingKey,
    id: [u8; 4],
}

impl NoteVerifier {
    /// Parses a vkey `<name>+<hex id>+<base64(0x01‖public key)>`.
    pub fn from_vkey(vkey: &str) -> Result<Self, NoteError> {
        let (name, id, data) = split_key(vkey.trim())?;
        let bytes = B64
            .decode(data)
            .map_err(|_| NoteError::BadKey("bad base64"))?;
        if bytes.len() != 33 || bytes[0] != ALG_ED25519 {
            return Err(NoteError::BadKey("not an Ed25519 key"));
        }
        let mut public = [0u8; 32];
        public.copy_from_slice(&bytes[1..]);
        if key_id(name, &public) != id {
            return Err(NoteError::BadKey("key id does not match key"));
        }
        let key = VerifyingKey::from_bytes(&public).map_err(|_| NoteError::BadKey("bad point"))?;
        Ok(Self {
            name: name.to_string(),
            key,
            id,
        })
    }

    /// Signed-note vkey encoding.
    pub fn to_vkey(&self) -> String {
        let mut data = vec![ALG_ED25519];
        data.extend_from_slice(self.key.as_bytes());
        format!(
            "{}+{}+{}",
            self.name,
            hex::encode(self.id),
            B64.encode(data)
        )
    }

    /// Key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Verifies a signed note and returns its body. Signature lines by other keys are
    /// allowed (and ignored), but every line must be well-formed.
    pub fn verify<'a>(&self, note: &'a str) -> Result<&'a str, NoteError> {
        let split = note
            .rfind("\n\n")
            .ok_or(NoteError::BadNote("no blank line before signatures"))?;
        let body = &note[..split + 1];
        check_body(body)?;
        let sigs = &note[split + 2..];
        if sigs.is_empty() || !sigs.ends_with('\n') {
            return Err(NoteError::BadNote(
                "signature block must end with a newline",
            ));
        }
        let mut verified = false;
        for line in sigs[..sigs.len() - 1].split('\n') {
            let rest = line.strip_prefix(SIG_PREFIX).ok_or(NoteError::BadNote(
                "signature line must start with an em dash",
            ))?;
            let (name, b64) = rest.split_once(' ').ok_or(NoteError::BadNote(
                "signature line needs name and signature",
            ))?;
            let blob = B64
                .decode(b64)
                .map_err(|_| NoteError::BadNote("signature is not base64"))?;
            if blob.len() < 5 {
                return Err(NoteError::BadNote("signature too short"));
            }
            if name != self.name || blob[..4] != self.id {
                continue;
            }
            let sig = Signature::from_slice(&blob[4..])
                .map_err(|_| NoteError::BadSignature(self.name.clone()))?;
            self.key
                .verify(body.as_bytes(), &sig)
                .map_err(|_| NoteError::BadSignature(self.name.clone()))?;
            verified = true;
        }
        if verified {
            Ok(body)
        } else {
            Err(NoteError::NoSignature(self.name.clone()))
        }
    }
}

fn check_body(body: &str) -> Result<(), NoteError> {
    if body.is_empty() || !body.ends_with('\n') {
        return Err(NoteError::BadNote("body must end with a newline"));
    }
    if body.contains("\n\n") || body.starts_with('\n') {
        return Err(NoteError::BadNote("body must not contain blank lines"));
    }
    if body.chars().any(|c| c.is_control() && c != '\n') {
        return Err(NoteError::BadNote("body contains control characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer(name: &str) -> NoteSigner {
        NoteSigner::from_seed(name, [7u8; 32]).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn keys_round_trip() {
        let s = signer("example.com/log");
        let again = NoteSigner::from_skey(&s.to_skey()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(again.to_skey(), s.to_skey());
        let v = NoteVerifier::from_vkey(&s.verifier().to_vkey()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(v.to_vkey(), s.verifier().to_vkey());
        assert!(NoteSigner::from_seed("bad+name", [0; 32]).is_err());
        assert!(NoteSigner::from_seed("bad name", [0; 32]).is_err());
        let vk = s.verifier().to_vkey();
        let parts: Vec<&str> = vk.splitn(3, '+').collect();
        assert!(NoteVerifier::from_vkey(&format!("{}+00000000+{}", parts[0], parts[2])).is_err());
        assert!(NoteVerifier::from_vkey(&format!("other+{}+{}", parts[1], parts[2])).is_err());
        assert!(NoteVerifier::from_vkey(&format!("{}+{}", parts[0], parts[1])).is_err());
    }

    #[test]
    fn key_files_are_private_and_never_overwritten() {
        let dir = std::env::temp_dir().join(format!("vm-keyfile-{}", std::process::id()));
        let path = dir.join("sub/guardian.key");
        let _ = std::fs::remove_dir_all(&dir);
        let first =
            NoteSigner::generate_to_file("m/guardian", &path).unwrap_or_else(|e| panic!("{e}"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path)
                .map(|m| m.permissions().mode())
                .unwrap_or(0);
            assert_eq!(mode & 0o777, 0o600);
        }
        let again =
            NoteSigner::generate_to_file("m/guardian", &path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            again.to_skey(),
            first.to_skey(),
            "an existing key is reused"
        );
        let loaded = NoteSigner::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(loaded.verifier().to_vkey(), first.verifier().to_vkey());
        std::fs::write(&path, "PRIVATE+KEY+m/guardian+00000000+AQ==\n").unwrap_or_default();
        assert!(
            NoteSigner::load(&path).is_err(),
            "a corrupt key file is an error"
        );
        assert!(NoteSigner::load(&dir.join("missing")).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn sign_and_verify_and_reject_tampering() {
        let s = signer("example.com/log");
        let note = s.sign("hello\nworld\n").unwrap_or_default();
        let v = s.verifier();
        assert_eq!(v.verify(&note).ok(), Some("hello\nworld\n"));
        assert!(v.verify(&note.replace("world", "World")).is_err());
        let other =
            NoteSigner::from_seed("example.com/log", [8u8; 32]).unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            other.verifier().verify(&note),
            Err(NoteError::NoSignature(_))
        ));
        let renamed = NoteSigner::from_seed("other", [7u8; 32]).unwrap_or_else(|e| panic!("{e}"));
        assert!(renamed.verifier().verify(&note).is_err());
        assert!(v.verify(&note.replace("hello\n", "hello\n\n")).is_err());
        assert!(v.verify(&format!("{note}\n")).is_err());
        assert!(v.verify(&note[..note.len() - 1]).is_err());
        assert!(v.verify(&format!("{note}garbage\n")).is_err());
        assert!(s.sign("no newline").is_err());
    }
}
