//! The governance API, served by the portal and the guardian alike (SPEC §13):
//! `GET|POST /v1/governance/constitution`, `GET|POST|DELETE /v1/governance/emergency`.
//! Reading is public (clients need to know the rules and whether writes are frozen);
//! changing takes an admin key, and every change is a receipt naming that key.

use super::constitution::Constitution;
use super::emergency::validate_reason;
use super::{adoption_payload, Governance, GovernanceError};
use crate::api_error::ApiError;
use crate::auth::Authenticator;
use crate::body::PendingBody;
use crate::hash::to_hex;
use crate::store::{Role, StoredReceipt};
use serde_json::{json, Value};
use std::time::Duration;
use warp::http::StatusCode;
use warp::reply::Response;

/// Largest body of an adoption (the document plus JSON framing).
pub const MAX_ADOPTION_BODY: u64 = 64 * 1024;

/// Largest body of an emergency request.
pub const MAX_EMERGENCY_BODY: u64 = 8 * 1024;

/// Every governance route, as `(method, path)`, for the services' route tables.
pub const ROUTES: [(&str, &str); 5] = [
    ("GET", "/v1/governance/constitution"),
    ("POST", "/v1/governance/constitution"),
    ("GET", "/v1/governance/emergency"),
    ("POST", "/v1/governance/emergency"),
    ("DELETE", "/v1/governance/emergency"),
];

fn reply(status: StatusCode, body: &Value) -> Response {
    warp::reply::with_status(warp::reply::json(body), status).into_response()
}

use warp::Reply;

fn receipt_ref(r: &StoredReceipt) -> Value {
    json!({
        "scroll": r.receipt.scroll,
        "seq": r.receipt.seq,
        "leaf_hash": to_hex(&r.leaf_hash),
        "submitted_at": r.receipt.submitted_at,
        "submitter": r.receipt.submitter,
    })
}

impl From<GovernanceError> for ApiError {
    fn from(e: GovernanceError) -> Self {
        match e {
            GovernanceError::Gate(g) => g.into(),
            GovernanceError::Store(s) => s.into(),
            GovernanceError::Receipt(r) => r.into(),
            GovernanceError::NotWritten => ApiError::Unavailable(e.to_string()),
        }
    }
}

/// An admin's JSON object body.
async fn admin_body(
    auth: &Authenticator,
    header: Option<&str>,
    body: PendingBody,
    limit: u64,
    deadline: Duration,
) -> Result<(crate::store::ApiKey, serde_json::Map<String, Value>), ApiError> {
    let key = auth.require(header, &[Role::Admin]).await?;
    let bytes = body.json(limit, deadline).await?;
    let v = crate::strict_json::parse(&bytes).map_err(|e| {
        ApiError::bad(
            "malformed_json",
            format!("request body is not valid I-JSON: {e}"),
        )
    })?;
    let Value::Object(m) = v else {
        return Err(ApiError::bad("invalid_body", "body: must be a JSON object"));
    };
    Ok((key, m))
}

/// `GET /v1/governance/constitution`: the constitution in force and the receipt that
/// adopted it (404 `no_constitution` before the first adoption).
pub fn constitution(gov: &Governance) -> Result<Response, ApiError> {
    let state = gov.current();
    let Some(a) = &state.constitution else {
        return Err(ApiError::not_found(
            "no_constitution",
            "no constitution has been adopted",
        ));
    };
    Ok(reply(
        StatusCode::OK,
        &json!({
            "version": a.constitution.version(),
            "constitution": a.constitution.document(),
            "adopted_by": a.receipt.receipt.payload.get("adopted_by"),
            "receipt": receipt_ref(&a.receipt),
        }),
    ))
}

/// `POST /v1/governance/constitution {"constitution": {...}}` (admin): validates, refuses a
/// version not above the one in force (409 `stale_version`), and adopts it as a receipt.
pub async fn adopt(
    gov: &Governance,
    auth: &Authenticator,
    header: Option<&str>,
    body: PendingBody,
    deadline: Duration,
) -> Result<Response, ApiError> {
    let (key, mut m) = admin_body(auth, header, body, MAX_ADOPTION_BODY, deadline).await?;
    if let Some(extra) = m.keys().find(|k| *k != "constitution") {
        return Err(ApiError::bad(
            "unknown_field",
            format!("body.{extra}: unknown field (allowed: constitution)"),
        ));
    }
    let doc = m
        .remove("constitution")
        .ok_or_else(|| ApiError::bad("invalid_body", "body.constitution: is required"))?;
    let c = Constitution::parse(doc)
        .map_err(|e| ApiError::bad("invalid_constitution", format!("constitution.{e}")))?;
    let _change = gov.lock_changes().await?;
    gov.refresh().await?;
    if let Some(current) = &gov.current().constitution {
        if c.version() <= current.constitution.version() {
            return Err(ApiError::Conflict {
                code: "stale_version",
                message: format!(
                    "version {} is not above the version in force, {}",
                    c.version(),
                    current.constitution.version()
                ),
            });
        }
    }
    let payload = adoption_payload(&c, &key.id)
        .map_err(|e| ApiError::bad("invalid_constitution", e.to_string()))?;
    let stored = gov.append("constitution_adopted", payload).await?;
    tracing::warn!(version = c.version(), key_id = %key.id, seq = stored.receipt.seq, "constitution adopted");
    Ok(reply(
        StatusCode::CREATED,
        &json!({"version": c.version(), "receipt": receipt_ref(&stored)}),
    ))
}

/// `GET /v1/governance/emergency`: whether writes are frozen, why, since when, by whom.
pub fn emergency(gov: &Governance) -> Result<Response, ApiError> {
    let state = gov.current();
    Ok(reply(
        StatusCode::OK,
        &match &state.emergency {
            Some(e) => e.to_json(),
            None => json!({"active": false}),
        },
    ))
}

/// `POST /v1/governance/emergency {"reason"}` (admin): freezes writes on every service
/// (409 `emergency_active` if one is raised already).
pub async fn raise(
    gov: &Governance,
    auth: &Authenticator,
    header: Option<&str>,
    body: PendingBody,
    deadline: Duration,
) -> Result<Response, ApiError> {
    let (key, m) = admin_body(auth, header, body, MAX_EMERGENCY_BODY, deadline).await?;
    if let Some(extra) = m.keys().find(|k| *k != "reason") {
        return Err(ApiError::bad(
            "unknown_field",
            format!("body.{extra}: unknown field (allowed: reason)"),
        ));
    }
    let reason = match m.get("reason") {
        Some(Value::String(s)) => s.clone(),
        _ => {
            return Err(ApiError::bad(
                "invalid_reason",
                "body.reason: a string is required",
            ))
        }
    };
    validate_reason(&reason).map_err(|e| ApiError::bad("invalid_reason", format!("body.{e}")))?;
    let _change = gov.lock_changes().await?;
    gov.refresh().await?;
    if let Some(e) = &gov.current().emergency {
        return Err(ApiError::Conflict {
            code: "emergency_active",
            message: format!(
                "an emergency is already raised (since {}): {}",
                e.since, e.reason
            ),
        });
    }
    let stored = gov
        .append(
            "emergency_raised",
            json!({"reason": reason, "raised_by": key.id, "service": gov.service().name()}),
        )
        .await?;
    tracing::warn!(key_id = %key.id, reason = %reason, "EMERGENCY RAISED: writes frozen");
    Ok(reply(
        StatusCode::CREATED,
        &json!({"active": true, "reason": reason, "raised_by": key.id, "receipt": receipt_ref(&stored)}),
    ))
}

/// `DELETE /v1/governance/emergency` (admin): lifts the freeze (409 `no_emergency` if none
/// is raised).
pub async fn lift(
    gov: &Governance,
    auth: &Authenticator,
    header: Option<&str>,
) -> Result<Response, ApiError> {
    let key = auth.require(header, &[Role::Admin]).await?;
    let _change = gov.lock_changes().await?;
    gov.refresh().await?;
    let Some(raised) = gov.current().emergency.clone() else {
        return Err(ApiError::Conflict {
            code: "no_emergency",
            message: "no emergency is raised".into(),
        });
    };
    let stored = gov
        .append(
            "emergency_lifted",
            json!({
                "lifted_by": key.id,
                "raised_seq": raised.seq,
                "reason": raised.reason,
                "service": gov.service().name(),
            }),
        )
        .await?;
    tracing::warn!(key_id = %key.id, "emergency lifted: writes accepted again");
    Ok(reply(
        StatusCode::OK,
        &json!({"active": false, "lifted_by": key.id, "receipt": receipt_ref(&stored)}),
    ))
}
