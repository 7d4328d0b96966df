//! Key routes: the guardian's public verifier key.

use crate::state::Portal;
use ledger::api_error::ApiError;
use std::sync::Arc;
use warp::reply::Response;
use warp::Reply;

/// `GET /v1/keys/guardian`: the guardian's verifier key (signed-note vkey), as text.
pub async fn guardian_key(p: Arc<Portal>) -> Result<Response, ApiError> {
    match &p.vkey {
        Some(v) => Ok(warp::reply::with_header(
            format!("{v}\n"),
            "content-type",
            "text/plain; charset=utf-8",
        )
        .into_response()),
        None => Err(ApiError::not_found(
            "no_vkey",
            "no guardian verifier key is configured",
        )),
    }
}
