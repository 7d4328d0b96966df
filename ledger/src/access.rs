//! Role checks for the guardian's and oracle's key-protected calls, as a JSON response ready
//! to send: the shared [`crate::auth::Authenticator`] with no key cache, so a revocation takes
//! effect at once on these rarely called routes.

use crate::auth::Authenticator;
use crate::store::{ApiKey, Role, Store};
use warp::reply::Response;

/// The caller's key if its role is in `allowed`, or the JSON rejection to send.
pub async fn require_role(
    store: &Store,
    authorization: Option<&str>,
    allowed: &[Role],
) -> Result<ApiKey, Response> {
    Authenticator::new(store.clone(), std::time::Duration::ZERO)
        .require(authorization, allowed)
        .await
        .map_err(|e| e.response())
}
