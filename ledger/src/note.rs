//! C2SP signed-note with Ed25519 keys: signing keys, verifier keys (vkeys), sign and verify.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};
use std::path::Path;

/// Signature-type byte for Ed25519 in signed-note key ids and encodings.
pub(crate) const ALG_ED25519: u8 = 0x01;
/// Signature line prefix: an em dash and a space.
pub const SIG_PREFIX: &str = "\u{2014} ";

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

/// 4-byte key id of a checkpoint key: SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)[..4].
pub fn key_id(name: &str, public: &[u8; 32]) -> [u8; 4] {
    key_id_for(ALG_ED25519, name, public)
}

/// 4-byte key id of a key of signature type `alg`: SHA-256(name ‖ 0x0A ‖ alg ‖ public key)[..4].
pub(crate) fn key_id_for(alg: u8, name: &str, public: &[u8; 32]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', alg]);
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

/// A named Ed25519 signing key of one signature type (`alg`), with its key id: the part the
/// checkpoint key ([`NoteSigner`], 0x01) and the witness key (cosignature/v1, 0x04) share.
pub(crate) struct NamedKey {
    pub(crate) name: String,
    pub(crate) key: SigningKey,
    pub(crate) id: [u8; 4],
    alg: u8,
}

impl NamedKey {
    pub(crate) fn generate(name: &str, alg: u8) -> Result<Self, NoteError> {
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed).map_err(|_| NoteError::BadKey("no randomness"))?;
        Self::from_seed(name, seed, alg)
    }

    pub(crate) fn from_seed(name: &str, seed: [u8; 32], alg: u8) -> Result<Self, NoteError> {
        check_name(name)?;
        let key = SigningKey::from_bytes(&seed);
        let id = key_id_for(alg, name, key.verifying_key().as_bytes());
        Ok(Self {
            name: name.to_string(),
            key,
            id,
            alg,
        })
    }

    /// Parses `PRIVATE+KEY+<name>+<hex id>+<base64(alg‖seed)>`.
    pub(crate) fn from_skey(skey: &str, alg: u8) -> Result<Self, NoteError> {
        let rest = skey
            .trim()
            .strip_prefix("PRIVATE+KEY+")
            .ok_or(NoteError::BadKey("missing PRIVATE+KEY+ prefix"))?;
        let (name, id, data) = split_key(rest)?;
        let seed = key_material(data, alg)?;
        let signer = Self::from_seed(name, seed, alg)?;
        if signer.id != id {
            return Err(NoteError::BadKey("key id does not match key"));
        }
        Ok(signer)
    }

    pub(crate) fn to_skey(&self) -> String {
        let mut data = vec![self.alg];
        data.extend_from_slice(self.key.as_bytes());
        format!(
            "PRIVATE+KEY+{}+{}+{}",
            self.name,
            hex::encode(self.id),
            B64.encode(data)
        )
    }

    pub(crate) fn verifier(&self) -> NamedVerifier {
        NamedVerifier {
            name: self.name.clone(),
            key: self.key.verifying_key(),
            id: self.id,
            alg: self.alg,
        }
    }

    /// Loads a key file (skey form).
    pub(crate) fn load(path: &Path, alg: u8) -> Result<Self, NoteError> {
        let text = std::fs::read_to_string(path).map_err(|source| NoteError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_skey(&text, alg)
    }

    /// Generates a key and writes it to `path` (mode 0600), unless the file exists.
    pub(crate) fn generate_to_file(name: &str, path: &Path, alg: u8) -> Result<Self, NoteError> {
        let io = |source| NoteError::Io {
            path: path.display().to_string(),
            source,
        };
        if path.exists() {
            return Self::load(path, alg);
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let signer = Self::generate(name, alg)?;
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

/// The 32 key bytes of `base64(alg‖key)`, refusing any other signature type.
fn key_material(data: &str, alg: u8) -> Result<[u8; 32], NoteError> {
    let bytes = B64
        .decode(data)
        .map_err(|_| NoteError::BadKey("bad base64"))?;
    if bytes.len() != 33 {
        return Err(NoteError::BadKey("not an Ed25519 key"));
    }
    if bytes[0] != alg {
        return Err(NoteError::BadKey(if alg == ALG_ED25519 {
            "not an Ed25519 note key (signature type 0x01)"
        } else {
            "not an Ed25519 cosignature key (signature type 0x04)"
        }));
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(&bytes[1..]);
    Ok(out)
}

/// The verifying half of a [`NamedKey`].
#[derive(Clone, Debug)]
pub(crate) struct NamedVerifier {
    pub(crate) name: String,
    pub(crate) key: VerifyingKey,
    pub(crate) id: [u8; 4],
    alg: u8,
}

impl NamedVerifier {
    /// Parses a vkey `<name>+<hex id>+<base64(alg‖public key)>`.
    pub(crate) fn from_vkey(vkey: &str, alg: u8) -> Result<Self, NoteError> {
        let (name, id, data) = split_key(vkey.trim())?;
        let public = key_material(data, alg)?;
        if key_id_for(alg, name, &public) != id {
            return Err(NoteError::BadKey("key id does not match key"));
        }
        let key = VerifyingKey::from_bytes(&public).map_err(|_| NoteError::BadKey("bad point"))?;
        Ok(Self {
            name: name.to_string(),
            key,
            id,
            alg,
        })
    }

    pub(crate) fn to_vkey(&self) -> String {
        let mut data = vec![self.alg];
        data.extend_from_slice(self.key.as_bytes());
        format!(
            "{}+{}+{}",
            self.name,
            hex::encode(self.id),
            B64.encode(data)
        )
    }
}

/// A named Ed25519 signing key for notes (checkpoints, ProofChain heads).
pub struct NoteSigner(NamedKey);

impl NoteSigner {
    /// A fresh random key with this name.
    pub fn generate(name: &str) -> Result<Self, NoteError> {
        NamedKey::generate(name, ALG_ED25519).map(Self)
    }

    /// A key from its 32-byte seed.
    pub fn from_seed(name: &str, seed: [u8; 32]) -> Result<Self, NoteError> {
        NamedKey::from_seed(name, seed, ALG_ED25519).map(Self)
    }

    /// Parses `PRIVATE+KEY+<name>+<hex id>+<base64(0x01‖seed)>`.
    pub fn from_skey(skey: &str) -> Result<Self, NoteError> {
        NamedKey::from_skey(skey, ALG_ED25519).map(Self)
    }

    /// Signed-note private key encoding.
    pub fn to_skey(&self) -> String {
        self.0.to_skey()
    }

    /// The matching verifier.
    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier(self.0.verifier())
    }

    /// Key name.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// Signs `body` (which must end in a newline) and returns the complete signed note.
    pub fn sign(&self, body: &str) -> Result<String, NoteError> {
        check_body(body)?;
        let sig = self.0.key.sign(body.as_bytes());
        let mut blob = self.0.id.to_vec();
        blob.extend_from_slice(&sig.to_bytes());
        Ok(format!(
            "{body}\n{SIG_PREFIX}{} {}\n",
            self.0.name,
            B64.encode(blob)
        ))
    }

    /// Loads a signing key file (skey form).
    pub fn load(path: &Path) -> Result<Self, NoteError> {
        NamedKey::load(path, ALG_ED25519).map(Self)
    }

    /// Generates a key and writes it to `path` (mode 0600), unless the file exists.
    pub fn generate_to_file(name: &str, path: &Path) -> Result<Self, NoteError> {
        NamedKey::generate_to_file(name, path, ALG_ED25519).map(Self)
    }
}

pub(crate) fn split_key(s: &str) -> Result<(&str, [u8; 4], &str), NoteError> {
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

/// A named Ed25519 verifier key for notes (checkpoints, ProofChain heads).
#[derive(Clone, Debug)]
pub struct NoteVerifier(NamedVerifier);

impl NoteVerifier {
    /// Parses a vkey `<name>+<hex id>+<base64(0x01‖public key)>`.
    pub fn from_vkey(vkey: &str) -> Result<Self, NoteError> {
        NamedVerifier::from_vkey(vkey, ALG_ED25519).map(Self)
    }

    /// Signed-note vkey encoding.
    pub fn to_vkey(&self) -> String {
        self.0.to_vkey()
    }

    /// Key name.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// Verifies a signed note and returns its body. Signature lines by other keys are
    /// allowed (and ignored), but every line must be well-formed.
    pub fn verify<'a>(&self, note: &'a str) -> Result<&'a str, NoteError> {
        let note = SignedNote::parse(note)?;
        let k = &self.0;
        let mut verified = false;
        for sig in note.signatures_by(&k.name, k.id) {
            let sig =
                Signature::from_slice(sig).map_err(|_| NoteError::BadSignature(k.name.clone()))?;
            k.key
                .verify(note.body.as_bytes(), &sig)
                .map_err(|_| NoteError::BadSignature(k.name.clone()))?;
            verified = true;
        }
        if verified {
            Ok(note.body)
        } else {
            Err(NoteError::NoSignature(k.name.clone()))
        }
    }
}

/// A signed note split into its body and its signature lines, each well-formed (an em
/// dash, a key name, base64 of a key id and at least one byte more).
pub struct SignedNote<'a> {
    /// The text signed: every line up to the blank line, with its final newline.
    pub body: &'a str,
    /// Each signature line's key name and decoded bytes (key id first), in order.
    pub signatures: Vec<(&'a str, Vec<u8>)>,
}

impl<'a> SignedNote<'a> {
    /// Splits `note` at its last blank line and decodes every signature line.
    pub fn parse(note: &'a str) -> Result<Self, NoteError> {
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
        let mut signatures = Vec::new();
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
            signatures.push((name, blob));
        }
        Ok(Self { body, signatures })
    }

    /// The bytes after the key id of every line by the key named `name` with key id `id`.
    pub fn signatures_by<'s>(
        &'s self,
        name: &'s str,
        id: [u8; 4],
    ) -> impl Iterator<Item = &'s [u8]> + 's {
        self.signatures
            .iter()
            .filter(move |(n, blob)| *n == name && blob[..4] == id)
            .map(|(_, blob)| &blob[4..])
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
