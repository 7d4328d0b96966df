//! Role checks for the guardian's and oracle's key-protected calls: the bearer token of an
//! `Authorization` header must belong to an unrevoked key with one of the allowed roles.
//! Rejections are JSON 401/403 and logged with the key id, never the token.

use crate::service::json_error;
use crate::store::{ApiKey, Role, Store};
use warp::http::StatusCode;
use warp::reply::Response;

/// The caller's key if its role is in `allowed`, or the JSON rejection to send.
pub async fn require_role(
    store: &Store,
    authorization: Option<&str>,
    allowed: &[Role],
) -> Result<ApiKey, Response> {
    let token = authorization
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let Some(token) = token else {
        return Err(json_error(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "an API key is required (Authorization: Bearer …)",
        ));
    };
    match store.api_key_by_token(token).await {
        Ok(Some(k)) if allowed.contains(&k.role) => Ok(k),
        Ok(Some(k)) => {
            tracing::warn!(key_id = %k.id, role = %k.role, "request rejected: role not allowed");
            let roles: Vec<String> = allowed.iter().map(Role::to_string).collect();
            Err(json_error(
                StatusCode::FORBIDDEN,
                "forbidden",
                &format!("this call needs one of the roles: {}", roles.join(", ")),
            ))
        }
        Ok(None) => {
            tracing::warn!("request rejected: unknown or revoked API key");
            Err(json_error(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "unknown or revoked API key",
            ))
        }
        Err(e) => Err(json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "database_unavailable",
            &e.to_string(),
        )),
    }
}
