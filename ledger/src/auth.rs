//! Bearer API keys: who is calling, and what their role allows. The one authenticator of
//! every service (portal, guardian, oracle): same checks, same errors, same metric.

use crate::api_error::ApiError;
use crate::metrics::AUTH_REJECTIONS;
use crate::storage::KeyStore;
use crate::store::{ApiKey, Role};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::RwLock;

/// Verified keys by token hash, with when they were verified.
type KeyCache = Arc<RwLock<HashMap<[u8; 32], (ApiKey, Instant)>>>;

/// Verifies bearer tokens against stored key hashes, remembering hits for a short TTL.
#[derive(Clone)]
pub struct Authenticator {
    keys: Arc<dyn KeyStore>,
    ttl: Duration,
    cache: KeyCache,
    limiter: Option<crate::rate_limit::RateLimiter>,
}

impl Authenticator {
    /// An authenticator over `keys` caching verified keys for `ttl` (zero: never cache).
    pub fn new(keys: Arc<dyn KeyStore>, ttl: Duration) -> Self {
        Self {
            keys,
            ttl,
            cache: Arc::new(RwLock::new(HashMap::new())),
            limiter: None,
        }
    }

    /// This authenticator, refusing a key's requests beyond `limiter`'s rate with 429.
    pub fn with_rate_limit(mut self, limiter: Option<crate::rate_limit::RateLimiter>) -> Self {
        self.limiter = limiter;
        self
    }

    /// The key behind an `Authorization` header value, within its rate limit. Rejections are
    /// counted and logged without the token.
    pub async fn authenticate(&self, header: Option<&str>) -> Result<ApiKey, ApiError> {
        let key = self.verify(header).await?;
        if let Some(limiter) = &self.limiter {
            if let Err(wait) = limiter.take(&key.id) {
                crate::http_guard::HTTP_REJECTIONS
                    .with_label_values(&["rate_limited"])
                    .inc();
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                return Err(ApiError::Suspended {
                    status: warp::http::StatusCode::TOO_MANY_REQUESTS,
                    code: "rate_limited",
                    message: format!("key {} is over its request rate; retry in {secs} s", key.id),
                    retry_after_secs: secs.max(1),
                });
            }
        }
        Ok(key)
    }

    async fn verify(&self, header: Option<&str>) -> Result<ApiKey, ApiError> {
        let Some(value) = header else {
            return Err(reject(
                "missing",
                "an Authorization: Bearer <api key> header is required",
            ));
        };
        let Some(token) = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty() && t.len() <= 256)
        else {
            return Err(reject(
                "malformed",
                "the Authorization header must be `Bearer <api key>`",
            ));
        };
        let hash = crate::store::token_hash(token);
        if !self.ttl.is_zero() {
            if let Some((key, at)) = self.cache.read().await.get(&hash) {
                if at.elapsed() < self.ttl {
                    return Ok(key.clone());
                }
            }
        }
        match self.keys.api_key_by_token(token).await {
            Ok(Some(key)) => {
                if !self.ttl.is_zero() {
                    let mut cache = self.cache.write().await;
                    if cache.len() > 10_000 {
                        cache.clear();
                    }
                    cache.insert(hash, (key.clone(), Instant::now()));
                }
                Ok(key)
            }
            Ok(None) => Err(reject("invalid", "unknown or revoked API key")),
            Err(e) => Err(ApiError::from(e)),
        }
    }
}

fn reject(reason: &str, message: &str) -> ApiError {
    AUTH_REJECTIONS.with_label_values(&[reason]).inc();
    tracing::warn!(reason, "request rejected: authentication failed");
    ApiError::Unauthorized(message.to_string())
}

fn forbid(key: &ApiKey, reason: &str, message: String) -> ApiError {
    AUTH_REJECTIONS.with_label_values(&[reason]).inc();
    tracing::warn!(key_id = %key.id, role = %key.role, reason, "request rejected: not allowed");
    ApiError::Forbidden(message)
}

/// The key behind `header` if its role is one of `allowed` (401/403 otherwise).
impl Authenticator {
    /// Authenticates and checks the role in one step.
    pub async fn require(
        &self,
        header: Option<&str>,
        allowed: &[Role],
    ) -> Result<ApiKey, ApiError> {
        let key = self.authenticate(header).await?;
        if allowed.contains(&key.role) {
            return Ok(key);
        }
        let roles: Vec<String> = allowed.iter().map(Role::to_string).collect();
        Err(forbid(
            &key,
            "role",
            format!(
                "key {} needs one of the roles: {}",
                key.id,
                roles.join(", ")
            ),
        ))
    }
}

/// Writers (limited to their scrolls) and admins may write to `scroll`.
pub fn may_write(key: &ApiKey, scroll: &str) -> Result<(), ApiError> {
    match key.role {
        Role::Admin => Ok(()),
        Role::Writer => match &key.scrolls {
            Some(list) if !list.iter().any(|s| s == scroll) => Err(forbid(
                key,
                "scroll",
                format!("key {} may not write to scroll {scroll:?}", key.id),
            )),
            _ => Ok(()),
        },
        Role::Reader => Err(forbid(
            key,
            "role",
            format!("key {} is a reader and cannot write", key.id),
        )),
    }
}

/// Readers and admins may read receipt contents.
pub fn may_read(key: &ApiKey) -> Result<(), ApiError> {
    match key.role {
        Role::Admin | Role::Reader => Ok(()),
        Role::Writer => Err(forbid(
            key,
            "role",
            format!(
                "key {} is a writer; reading receipts needs a reader key",
                key.id
            ),
        )),
    }
}

/// Only admins administer.
pub fn must_be_admin(key: &ApiKey) -> Result<(), ApiError> {
    match key.role {
        Role::Admin => Ok(()),
        _ => Err(forbid(
            key,
            "role",
            format!("key {} is not an admin", key.id),
        )),
    }
}
