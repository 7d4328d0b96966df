//! API keys: only a SHA3-256 hash of each bearer token is stored.

use super::{Store, StoreError};
use crate::hash::Sha3Hasher;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::fmt;
use std::str::FromStr;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Submit receipts to its scrolls (or all, if unrestricted).
    Writer,
    /// Read receipt contents.
    Reader,
    /// Everything, including key and scroll administration.
    Admin,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Writer => "writer",
            Role::Reader => "reader",
            Role::Admin => "admin",
        })
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "writer" => Ok(Role::Writer),
            "reader" => Ok(Role::Reader),
            "admin" => Ok(Role::Admin),
            other => Err(format!("unknown role {other:?} (writer, reader or admin)")),
        }
    }
}

/// A stored key (never the secret).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApiKey {
    /// Public key id, recorded as `submitter`.
    pub id: String,
    /// Role.
    pub role: Role,
    /// Scrolls a writer is limited to; `None` means all.
    pub scrolls: Option<Vec<String>>,
    /// Free-text label.
    pub label: String,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Revocation time, if revoked.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A newly created key: the only time the secret token exists.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    /// The stored key.
    pub key: ApiKey,
    /// Bearer token to hand to the client.
    pub token: String,
}

/// Hash under which a token is stored and looked up.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha3Hasher::plain(token.as_bytes())
}

fn random_hex(bytes: usize) -> Result<String, StoreError> {
    let mut buf = vec![0u8; bytes];
    getrandom::getrandom(&mut buf)
        .map_err(|e| StoreError::Config(format!("no randomness: {e}")))?;
    Ok(hex::encode(buf))
}

impl Store {
    /// Creates a key with a fresh random token.
    pub(crate) async fn create_api_key(
        &self,
        role: Role,
        scrolls: Option<Vec<String>>,
        label: &str,
    ) -> Result<NewApiKey, StoreError> {
        let id = format!("key_{}", random_hex(6)?);
        let token = format!("vm_{}", random_hex(32)?);
        let hash = token_hash(&token);
        let client = self.pool().get().await?;
        let row = client
            .query_one(
                "INSERT INTO api_keys (id, key_hash, role, scrolls, label) VALUES ($1, $2, $3, $4, $5) \
                 RETURNING created_at",
                &[&id, &&hash[..], &role.to_string(), &scrolls, &label],
            )
            .await?;
        Ok(NewApiKey {
            key: ApiKey {
                id,
                role,
                scrolls,
                label: label.to_string(),
                created_at: row.get(0),
                revoked_at: None,
            },
            token,
        })
    }

    /// The unrevoked key whose token is `token`, if any.
    pub(crate) async fn api_key_by_token(&self, token: &str) -> Result<Option<ApiKey>, StoreError> {
        let hash = token_hash(token);
        let client = self.pool().get().await?;
        let row = client
            .query_opt(
                "SELECT id, role, scrolls, label, created_at, revoked_at, key_hash FROM api_keys \
                 WHERE key_hash = $1 AND revoked_at IS NULL",
                &[&&hash[..]],
            )
            .await?;
        let Some(row) = row else { return Ok(None) };
        let stored: Vec<u8> = row.get(6);
        if !bool::from(subtle::ConstantTimeEq::ct_eq(&stored[..], &hash[..])) {
            return Ok(None);
        }
        key_row(&row).map(Some)
    }

    /// All keys, newest first.
    pub(crate) async fn list_api_keys(&self) -> Result<Vec<ApiKey>, StoreError> {
        let client = self.pool().get().await?;
        let rows = client
            .query(
                "SELECT id, role, scrolls, label, created_at, revoked_at FROM api_keys \
                 ORDER BY created_at DESC, id",
                &[],
            )
            .await?;
        rows.iter().map(key_row).collect()
    }

    /// Revokes a key; returns false if no unrevoked key has this id.
    pub(crate) async fn revoke_api_key(&self, id: &str) -> Result<bool, StoreError> {
        let client = self.pool().get().await?;
        let n = client
            .execute(
                "UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL",
                &[&id],
            )
            .await?;
        Ok(n == 1)
    }
}

fn key_row(row: &tokio_postgres::Row) -> Result<ApiKey, StoreError> {
    let role: String = row.get(1);
    Ok(ApiKey {
        id: row.get(0),
        role: role.parse().map_err(StoreError::Integrity)?,
        scrolls: row.get(2),
        label: row.get(3),
        created_at: row.get(4),
        revoked_at: row.get(5),
    })
}
