//! Parsing what a request carries besides its body's fields: JSON bodies, numeric query
//! parameters and path segments, each refused with a 400 that names it.

use ledger::api_error::ApiError;
use serde_json::Value;
use std::collections::HashMap;

/// Largest page of a listing.
pub const MAX_PAGE: u32 = 1000;

/// The body as JSON, or 400 `malformed_json`.
pub fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad(
            "malformed_json",
            format!("request body is not valid JSON: {e}"),
        )
    })
}
/// Query parameter `name` as a non-negative integer, if present.
pub fn number(q: &HashMap<String, String>, name: &str) -> Result<Option<u64>, ApiError> {
    match q.get(name) {
        None => Ok(None),
        Some(s) => s.parse::<u64>().map(Some).map_err(|_| {
            ApiError::bad(
                "invalid_query",
                format!("{name}: must be a non-negative integer"),
            )
        }),
    }
}
/// A `{seq}` path segment as a non-negative integer.
pub fn seq_param(s: &str) -> Result<u64, ApiError> {
    s.parse::<u64>()
        .map_err(|_| ApiError::bad("invalid_seq", "seq: must be a non-negative integer"))
}
