//! Sealed cache entries. Redis is untrusted, so every value the cache stores carries an
//! HMAC-SHA256 tag under a per-deployment secret that never enters Redis. The tag covers the
//! full Redis key (prefix included), the entry's expiry and the value: an entry written by
//! anyone without the secret, moved to another key, truncated, or replayed long after it
//! expired is refused.
//!
//! Layout: `version (1) ‖ expires_at (8, ms since the Unix epoch, big-endian) ‖ tag (32) ‖
//! value`, where `tag = HMAC(k, version ‖ len(key) (4, big-endian) ‖ key ‖ expires_at ‖
//! value)` and `k` is derived from the secret file's bytes.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// Entry format version: the first byte of every sealed entry.
const VERSION: u8 = 1;
/// Bytes a seal puts in front of each value (version, expiry, tag).
pub const SEAL_LEN: usize = 1 + 8 + TAG_LEN;
const TAG_LEN: usize = 32;
/// Fewest secret bytes accepted (after hex decoding).
pub const MIN_SECRET_BYTES: usize = 32;
/// How long past its sealed expiry an authentic entry may still be read (Redis expires it a
/// little after the writer's clock says, and clocks differ): within it the entry is a plain
/// miss, beyond it a replay and rejected.
const EXPIRY_GRACE_MS: u64 = 5_000;
/// Domain separation between the secret file and the key the tags are made with.
const KEY_LABEL: &[u8] = b"vaultmesh cache entry v1";

/// Why the cache secret could not be had.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The secret file could not be read.
    #[error("cache secret file {path}: {source}")]
    Read {
        /// File path.
        path: String,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The secret holds too few bytes.
    #[error(
        "cache secret{where_}: {found} bytes; at least {MIN_SECRET_BYTES} random bytes are needed \
         (64 hex digits, or raw bytes)"
    )]
    TooShort {
        /// ` file <path>` when the secret came from a file.
        where_: String,
        /// Bytes found (after hex decoding).
        found: usize,
    },
    /// The operating system gave no randomness for a per-process secret.
    #[error("cache secret: no randomness: {0}")]
    Random(String),
}

/// Why a stored entry was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Shorter than a seal, or of an unknown version.
    Malformed,
    /// The tag does not match: another secret, another key, or changed bytes.
    BadTag,
    /// Authentic, but long past its expiry: replayed.
    Replayed,
}

impl Rejection {
    /// Short name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::Malformed => "malformed",
            Rejection::BadTag => "bad_tag",
            Rejection::Replayed => "replayed",
        }
    }
}

/// What opening an entry found.
#[derive(Debug, PartialEq, Eq)]
pub enum Opened {
    /// Authentic and fresh: the value.
    Value(Vec<u8>),
    /// Authentic but just expired (a miss, not an attack).
    Expired,
    /// Not a valid entry for this key under this secret.
    Rejected(Rejection),
}

/// The per-deployment secret entries are sealed with, kept as a keyed HMAC state (the
/// secret bytes themselves are not kept). Never printed, serialised or written to Redis.
#[derive(Clone)]
pub struct CacheSecret {
    mac: HmacSha256,
}

impl std::fmt::Debug for CacheSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CacheSecret(..)")
    }
}

/// Milliseconds since the Unix epoch (0 before it).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl CacheSecret {
    /// A secret from at least [`MIN_SECRET_BYTES`] bytes.
    pub fn from_bytes(secret: &[u8]) -> Result<Self, SecretError> {
        Self::checked(secret, String::new())
    }

    fn checked(secret: &[u8], where_: String) -> Result<Self, SecretError> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(SecretError::TooShort {
                where_,
                found: secret.len(),
            });
        }
        let mut derive = keyed(secret);
        derive.update(KEY_LABEL);
        Ok(Self {
            mac: keyed(&derive.finalize().into_bytes()),
        })
    }

    /// The secret in `path`: hex when the file, without surrounding whitespace, is only hex
    /// digits (an even number of them), raw bytes otherwise; at least 32 bytes either way.
    pub fn from_file(path: &Path) -> Result<Self, SecretError> {
        let raw = std::fs::read(path).map_err(|source| SecretError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let trimmed = raw.trim_ascii();
        let hex_text = !trimmed.is_empty()
            && trimmed.len().is_multiple_of(2)
            && trimmed.iter().all(u8::is_ascii_hexdigit);
        let bytes = match hex_text {
            true => hex::decode(trimmed).unwrap_or_default(),
            false => raw,
        };
        Self::checked(&bytes, format!(" file {}", path.display()))
    }

    /// A fresh random secret, for a process that shares its cache with nobody.
    pub fn random() -> Result<Self, SecretError> {
        let mut bytes = [0u8; MIN_SECRET_BYTES];
        getrandom::getrandom(&mut bytes).map_err(|e| SecretError::Random(e.to_string()))?;
        Self::from_bytes(&bytes)
    }

    /// A short public name of this secret (a tag, not the secret), so operators can see
    /// whether two replicas share one.
    pub fn fingerprint(&self) -> String {
        let mut m = self.mac.clone();
        m.update(b"fingerprint");
        hex::encode(&m.finalize().into_bytes()[..4])
    }

    /// The tag of an entry whose Redis key is the concatenation of `key_parts`.
    fn tag(&self, version: u8, key_parts: &[&str], expires_at: &[u8; 8], value: &[u8]) -> [u8; 32] {
        let key_len: usize = key_parts.iter().map(|p| p.len()).sum();
        let mut m = self.mac.clone();
        m.update(&[version]);
        m.update(&u32::try_from(key_len).unwrap_or(u32::MAX).to_be_bytes());
        for part in key_parts {
            m.update(part.as_bytes());
        }
        m.update(expires_at);
        m.update(value);
        m.finalize().into_bytes().into()
    }

    /// `value` sealed for `redis_key` (the full key, prefix included), expiring `ttl` from now.
    pub fn seal(&self, redis_key: &str, value: &[u8], ttl: Duration) -> Vec<u8> {
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        self.seal_until(redis_key, value, now_ms().saturating_add(ttl_ms))
    }

    /// `value` sealed for `redis_key`, expiring at `expires_at_ms`.
    pub fn seal_until(&self, redis_key: &str, value: &[u8], expires_at_ms: u64) -> Vec<u8> {
        let expires_at = expires_at_ms.to_be_bytes();
        let tag = self.tag(VERSION, &[redis_key], &expires_at, value);
        let mut entry = Vec::with_capacity(SEAL_LEN + value.len());
        entry.push(VERSION);
        entry.extend_from_slice(&expires_at);
        entry.extend_from_slice(&tag);
        entry.extend_from_slice(value);
        entry
    }

    /// Checks `entry`, read from `redis_key`, at time `now_ms`; an authentic, fresh entry
    /// gives its value (moved out in place, no copy of the buffer).
    pub fn open(&self, redis_key: &str, entry: Vec<u8>, now_ms: u64) -> Opened {
        self.open_parts(&[redis_key], entry, now_ms)
    }

    /// [`CacheSecret::open`] for the Redis key made of `key_parts` (e.g. prefix and key),
    /// without joining them.
    pub fn open_parts(&self, key_parts: &[&str], mut entry: Vec<u8>, now_ms: u64) -> Opened {
        let Some((head, value)) = entry.split_at_checked(SEAL_LEN) else {
            return Opened::Rejected(Rejection::Malformed);
        };
        if head[0] != VERSION {
            return Opened::Rejected(Rejection::Malformed);
        }
        let mut expires_at = [0u8; 8];
        expires_at.copy_from_slice(&head[1..9]);
        let want = self.tag(head[0], key_parts, &expires_at, value);
        if !bool::from(want.ct_eq(&head[9..SEAL_LEN])) {
            return Opened::Rejected(Rejection::BadTag);
        }
        let expires_at = u64::from_be_bytes(expires_at);
        if now_ms > expires_at.saturating_add(EXPIRY_GRACE_MS) {
            return Opened::Rejected(Rejection::Replayed);
        }
        if now_ms > expires_at {
            return Opened::Expired;
        }
        entry.drain(..SEAL_LEN);
        Opened::Value(entry)
    }
}

fn keyed(key: &[u8]) -> HmacSha256 {
    match <HmacSha256 as Mac>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(b: u8) -> CacheSecret {
        CacheSecret::from_bytes(&[b; 32]).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn sealed_entries_open_only_for_their_key_and_secret() {
        let s = secret(1);
        let now = now_ms();
        let e = s.seal_until("vm:a:receipt:x:0", b"value", now + 1000);
        assert_eq!(e.len(), SEAL_LEN + 5);
        assert_eq!(
            s.open_parts(&["vm:a:", "receipt:x:0"], e.clone(), now),
            Opened::Value(b"value".to_vec())
        );
        assert_eq!(
            s.open("vm:a:receipt:x:0", e.clone(), now),
            Opened::Value(b"value".to_vec())
        );
        assert_eq!(
            s.open("vm:a:receipt:x:1", e.clone(), now),
            Opened::Rejected(Rejection::BadTag)
        );
        assert_eq!(
            secret(2).open("vm:a:receipt:x:0", e.clone(), now),
            Opened::Rejected(Rejection::BadTag)
        );
        let mut flipped = e.clone();
        if let Some(last) = flipped.last_mut() {
            *last ^= 1;
        }
        assert_eq!(
            s.open("vm:a:receipt:x:0", flipped, now),
            Opened::Rejected(Rejection::BadTag)
        );
        assert_eq!(
            s.open("vm:a:receipt:x:0", e[..e.len() - 1].to_vec(), now),
            Opened::Rejected(Rejection::BadTag)
        );
        assert_eq!(
            s.open("vm:a:receipt:x:0", e[..SEAL_LEN - 1].to_vec(), now),
            Opened::Rejected(Rejection::Malformed)
        );
        let mut version = e.clone();
        version[0] = 2;
        assert_eq!(
            s.open("vm:a:receipt:x:0", version, now),
            Opened::Rejected(Rejection::Malformed)
        );
        assert_eq!(
            s.open("vm:a:receipt:x:0", e.clone(), now + 1001),
            Opened::Expired
        );
        assert_eq!(
            s.open("vm:a:receipt:x:0", e, now + 1000 + EXPIRY_GRACE_MS + 1),
            Opened::Rejected(Rejection::Replayed)
        );
    }

    /// The key's length is authenticated, so bytes cannot move between key and value.
    #[test]
    fn key_and_value_boundary_is_fixed() {
        let s = secret(3);
        let e = s.seal_until("vm:ab", b"cX", u64::MAX / 2);
        let mut moved = e[..SEAL_LEN].to_vec();
        moved.push(b'X');
        assert_eq!(
            s.open("vm:abc", moved, 0),
            Opened::Rejected(Rejection::BadTag)
        );
    }

    #[test]
    fn short_secrets_are_refused_and_fingerprints_differ() {
        assert!(matches!(
            CacheSecret::from_bytes(&[0; 31]),
            Err(SecretError::TooShort { found: 31, .. })
        ));
        assert_ne!(secret(1).fingerprint(), secret(2).fingerprint());
        assert_eq!(secret(1).fingerprint(), secret(1).fingerprint());
        assert_eq!(format!("{:?}", secret(1)), "CacheSecret(..)");
    }
}
