//! The guardian's own HTTP routes: its state, and an on-demand epoch for admins.

use crate::error::GuardianError;
use crate::findings::AckError;
use crate::Guardian;
use ledger::api_error::ApiError;
use ledger::auth::Authenticator;
use ledger::body::{pending_body, PendingBody};
use ledger::metrics::observed;
use ledger::storage::AnchorStore;
use ledger::store::{ApiKey, Role};
use serde_json::json;
use std::sync::Arc;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

/// The guardian's routes, for 404/405/HEAD answers before any handler runs.
pub fn table() -> ledger::http_guard::RouteTable {
    ledger::http_guard::RouteTable::new([
        ("GET", "/v1/guardian/state"),
        ("POST", "/v1/guardian/anchor"),
        ("POST", "/v1/guardian/verify"),
        ("GET", "/v1/guardian/divergence"),
        ("POST", "/v1/guardian/divergence/ack"),
        ("POST", "/v1/witness/add-checkpoint"),
        ("GET", "/v1/federation/discrepancies"),
        ("POST", "/v1/federation/discrepancies/ack"),
        ("GET", "/v1/psi"),
        ("POST", "/v1/psi/transmutations"),
        ("POST", "/v1/psi/transmutations/{id}/complete"),
        ("POST", "/v1/psi/transmutations/{id}/abandon"),
    ])
    .with(ledger::mesh::api::ROUTES)
    .with([ledger::mesh::api::REMOVE_ROUTE])
    .with(ledger::governance::routes::ROUTES)
}

/// `GET /v1/guardian/state`, and with an admin key `POST /v1/guardian/anchor` (an epoch
/// now), `POST /v1/guardian/verify` (a verification pass now), `GET /v1/guardian/divergence`
/// (the findings known, with their ids) and `POST /v1/guardian/divergence/ack` (acknowledge
/// the findings named by id).
pub fn routes(
    g: Arc<Guardian>,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone + Send + Sync + 'static {
    let with = move || {
        let g = g.clone();
        warp::any().map(move || g.clone())
    };
    let state = warp::path!("v1" / "guardian" / "state")
        .and(warp::get())
        .and(with())
        .then(|g: Arc<Guardian>| {
            observed("GET", "/v1/guardian/state", async move { state(&g).await })
        });
    let anchor = warp::path!("v1" / "guardian" / "anchor")
        .and(warp::post())
        .and(with())
        .and(warp::header::optional::<String>("authorization"))
        .then(|g: Arc<Guardian>, auth: Option<String>| {
            observed("POST", "/v1/guardian/anchor", async move {
                anchor(&g, auth).await
            })
        });
    let verify = warp::path!("v1" / "guardian" / "verify")
        .and(warp::post())
        .and(with())
        .and(warp::header::optional::<String>("authorization"))
        .then(|g: Arc<Guardian>, auth: Option<String>| {
            observed("POST", "/v1/guardian/verify", async move {
                verify(&g, auth).await
            })
        });
    let findings = warp::path!("v1" / "guardian" / "divergence")
        .and(warp::get())
        .and(with())
        .and(warp::header::optional::<String>("authorization"))
        .then(|g: Arc<Guardian>, auth: Option<String>| {
            observed("GET", "/v1/guardian/divergence", async move {
                findings(&g, auth).await
            })
        });
    let ack = warp::path!("v1" / "guardian" / "divergence" / "ack")
        .and(warp::post())
        .and(with())
        .and(warp::header::optional::<String>("authorization"))
        .and(pending_body())
        .then(
            |g: Arc<Guardian>, auth: Option<String>, body: PendingBody| {
                observed("POST", "/v1/guardian/divergence/ack", async move {
                    acknowledge(&g, auth, body)
                        .await
                        .unwrap_or_else(|e| e.response())
                })
            },
        );
    let add_checkpoint = warp::path!("v1" / "witness" / "add-checkpoint")
        .and(warp::post())
        .and(with())
        .and(pending_body())
        .then(|g: Arc<Guardian>, body: PendingBody| {
            observed("POST", "/v1/witness/add-checkpoint", async move {
                add_checkpoint(&g, body)
                    .await
                    .unwrap_or_else(|e| e.response())
            })
        });
    let discrepancies = warp::path!("v1" / "federation" / "discrepancies")
        .and(warp::get())
        .and(with())
        .and(warp::header::optional::<String>("authorization"))
        .then(|g: Arc<Guardian>, auth: Option<String>| {
            observed("GET", "/v1/federation/discrepancies", async move {
                discrepancies(&g, auth).await
            })
        });
    let discrepancy_ack = warp::path!("v1" / "federation" / "discrepancies" / "ack")
        .and(warp::post())
        .and(with())
        .and(warp::header::optional::<String>("authorization"))
        .and(pending_body())
        .then(
            |g: Arc<Guardian>, auth: Option<String>, body: PendingBody| {
                observed("POST", "/v1/federation/discrepancies/ack", async move {
                    acknowledge_discrepancies(&g, auth, body)
                        .await
                        .unwrap_or_else(|e| e.response())
                })
            },
        );
    let governance = governance_routes(with());
    let psi = psi_routes(with());
    state
        .or(psi)
        .unify()
        .or(add_checkpoint)
        .unify()
        .or(discrepancies)
        .unify()
        .or(discrepancy_ack)
        .unify()
        .or(governance)
        .unify()
        .or(anchor)
        .unify()
        .or(verify)
        .unify()
        .or(findings)
        .unify()
        .or(ack)
        .unify()
}

async fn state(g: &Guardian) -> Response {
    let (leader, term) = {
        let l = g.leadership.lock().await;
        (l.is_leader(), l.term())
    };
    let latest = g.ctx.store.latest_anchor().await.ok().flatten();
    warp::reply::json(&json!({
        "leader": leader,
        "lease_term": (term > 0).then_some(term),
        "latest_epoch": latest.as_ref().map(|a| a.record.epoch),
        "latest_anchor_hash": latest.as_ref().map(|a| a.record.anchor_hash.clone()),
        "divergence": crate::metrics::PROOFCHAIN_DIVERGENCE.get() > 0.0,
    }))
    .into_response()
}

/// The governance API, as the portal serves it (handlers in `ledger::governance::routes`),
/// so an admin can raise or lift an emergency through either service.
fn governance_routes(
    with: impl Filter<Extract = (Arc<Guardian>,), Error = std::convert::Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone + Send + Sync + 'static {
    use ledger::governance::routes as gov;
    const BODY_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);
    let get_constitution = warp::path!("v1" / "governance" / "constitution")
        .and(warp::get())
        .and(with.clone())
        .then(|g: Arc<Guardian>| {
            observed("GET", "/v1/governance/constitution", async move {
                gov::constitution(&g.ctx.governance).unwrap_or_else(|e| e.response())
            })
        });
    let adopt = warp::path!("v1" / "governance" / "constitution")
        .and(warp::post())
        .and(with.clone())
        .and(warp::header::optional::<String>("authorization"))
        .and(pending_body())
        .then(
            move |g: Arc<Guardian>, auth: Option<String>, body: PendingBody| {
                observed("POST", "/v1/governance/constitution", async move {
                    gov::adopt(
                        &g.ctx.governance,
                        &authenticator(&g),
                        auth.as_deref(),
                        body,
                        BODY_DEADLINE,
                    )
                    .await
                    .unwrap_or_else(|e| e.response())
                })
            },
        );
    let get_emergency = warp::path!("v1" / "governance" / "emergency")
        .and(warp::get())
        .and(with.clone())
        .then(|g: Arc<Guardian>| {
            observed("GET", "/v1/governance/emergency", async move {
                gov::emergency(&g.ctx.governance).unwrap_or_else(|e| e.response())
            })
        });
    let raise = warp::path!("v1" / "governance" / "emergency")
        .and(warp::post())
        .and(with.clone())
        .and(warp::header::optional::<String>("authorization"))
        .and(pending_body())
        .then(
            move |g: Arc<Guardian>, auth: Option<String>, body: PendingBody| {
                observed("POST", "/v1/governance/emergency", async move {
                    gov::raise(
                        &g.ctx.governance,
                        &authenticator(&g),
                        auth.as_deref(),
                        body,
                        BODY_DEADLINE,
                    )
                    .await
                    .unwrap_or_else(|e| e.response())
                })
            },
        );
    let lift = warp::path!("v1" / "governance" / "emergency")
        .and(warp::delete())
        .and(with)
        .and(warp::header::optional::<String>("authorization"))
        .then(move |g: Arc<Guardian>, auth: Option<String>| {
            observed("DELETE", "/v1/governance/emergency", async move {
                gov::lift(&g.ctx.governance, &authenticator(&g), auth.as_deref())
                    .await
                    .unwrap_or_else(|e| e.response())
            })
        });
    get_constitution
        .or(adopt)
        .unify()
        .or(get_emergency)
        .unify()
        .or(raise)
        .unify()
        .or(lift)
        .unify()
}

/// `GET /v1/psi` (reader or admin), `POST /v1/psi/transmutations` and
/// `POST /v1/psi/transmutations/{id}/complete|abandon` (admin), and the mesh listings
/// `GET /v1/mesh/nodes|routes` (reader or admin).
fn psi_routes(
    with: impl Filter<Extract = (Arc<Guardian>,), Error = std::convert::Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone + Send + Sync + 'static {
    let report = warp::path!("v1" / "psi")
        .and(warp::get())
        .and(with.clone())
        .and(warp::header::optional::<String>("authorization"))
        .then(|g: Arc<Guardian>, auth: Option<String>| {
            observed("GET", "/v1/psi", async move {
                psi_report(&g, auth).await.unwrap_or_else(|e| e.response())
            })
        });
    let open = warp::path!("v1" / "psi" / "transmutations")
        .and(warp::post())
        .and(with.clone())
        .and(warp::header::optional::<String>("authorization"))
        .and(pending_body())
        .then(
            |g: Arc<Guardian>, auth: Option<String>, body: PendingBody| {
                observed("POST", "/v1/psi/transmutations", async move {
                    open_transmutation(&g, auth, body)
                        .await
                        .unwrap_or_else(|e| e.response())
                })
            },
        );
    let close = warp::path!("v1" / "psi" / "transmutations" / String / String)
        .and(warp::post())
        .and(with.clone())
        .and(warp::header::optional::<String>("authorization"))
        .and(pending_body())
        .then(
            |id: String,
             action: String,
             g: Arc<Guardian>,
             auth: Option<String>,
             body: PendingBody| {
                let route = if action == "complete" {
                    "/v1/psi/transmutations/{id}/complete"
                } else {
                    "/v1/psi/transmutations/{id}/abandon"
                };
                observed("POST", route, async move {
                    close_transmutation(&g, auth, &id, &action, body)
                        .await
                        .unwrap_or_else(|e| e.response())
                })
            },
        );
    let nodes = warp::path!("v1" / "mesh" / "nodes")
        .and(warp::get())
        .and(with.clone())
        .and(warp::header::optional::<String>("authorization"))
        .then(|g: Arc<Guardian>, auth: Option<String>| {
            observed("GET", "/v1/mesh/nodes", async move {
                listing(
                    ledger::mesh::api::nodes(&g.ctx.store, &authenticator(&g), auth.as_deref())
                        .await,
                )
            })
        });
    let remove = warp::path!("v1" / "mesh" / "nodes" / String)
        .and(warp::delete())
        .and(with.clone())
        .and(warp::header::optional::<String>("authorization"))
        .then(|node_id: String, g: Arc<Guardian>, auth: Option<String>| {
            observed("DELETE", "/v1/mesh/nodes/{node_id}", async move {
                remove_node(&g, auth, &node_id)
                    .await
                    .unwrap_or_else(|e| e.response())
            })
        });
    let routes = warp::path!("v1" / "mesh" / "routes")
        .and(warp::get())
        .and(with)
        .and(warp::header::optional::<String>("authorization"))
        .then(|g: Arc<Guardian>, auth: Option<String>| {
            observed("GET", "/v1/mesh/routes", async move {
                listing(
                    ledger::mesh::api::routes(&g.ctx.store, &authenticator(&g), auth.as_deref())
                        .await,
                )
            })
        });
    report
        .or(open)
        .unify()
        .or(close)
        .unify()
        .or(nodes)
        .unify()
        .or(routes)
        .unify()
        .or(remove)
        .unify()
}

/// `DELETE /v1/mesh/nodes/{node_id}` (admin): retires a stopped node's series for good.
async fn remove_node(
    g: &Guardian,
    auth: Option<String>,
    node_id: &str,
) -> Result<Response, ApiError> {
    use crate::mesh_watch::RemoveError;
    let key = match require_admin(g, auth).await {
        Ok(k) => k,
        Err(r) => return Ok(r),
    };
    match crate::mesh_watch::remove(&g.ctx.store, &g.ctx.gate(), node_id, &key.id).await {
        Ok(n) => Ok(
            warp::reply::json(&json!({"removed": n.node_id, "removed_by": key.id})).into_response(),
        ),
        Err(e @ RemoveError::Unknown(_)) => Err(ApiError::not_found("unknown_node", e.to_string())),
        Err(e @ RemoveError::Alive(_)) => Err(ApiError::Conflict {
            code: "node_alive",
            message: e.to_string(),
        }),
        Err(RemoveError::Ledger(GuardianError::Gate(refusal))) => Err(ApiError::from(refusal)),
        Err(RemoveError::Ledger(e)) => Err(ApiError::Unavailable(format!("removing a node: {e}"))),
    }
}

async fn psi_report(g: &Guardian, auth: Option<String>) -> Result<Response, ApiError> {
    authenticator(g)
        .require(auth.as_deref(), &[Role::Reader, Role::Admin])
        .await?;
    g.psi_report()
        .await
        .map(|v| warp::reply::json(&v).into_response())
        .map_err(|e| ApiError::Unavailable(format!("reading psi: {e}")))
}

/// The body that opens a transmutation.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct OpenTransmutation {
    description: String,
}

/// The optional body that closes one.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CloseTransmutation {
    #[serde(default)]
    note: Option<String>,
}

fn transmutation_error(e: crate::psi::TransmutationError) -> ApiError {
    use crate::psi::TransmutationError as T;
    match e {
        e @ T::Invalid(_) => ApiError::bad("invalid_body", e.to_string()),
        e @ T::Conflict(_) => ApiError::Conflict {
            code: "transmutation_conflict",
            message: e.to_string(),
        },
        e @ T::Unknown(_) => ApiError::not_found("unknown_transmutation", e.to_string()),
        e @ T::NotLeader => ApiError::Conflict {
            code: "not_leader",
            message: e.to_string(),
        },
        T::Ledger(GuardianError::Gate(refusal)) => ApiError::from(refusal),
        T::Ledger(GuardianError::NotLeader) => ApiError::Conflict {
            code: "not_leader",
            message: "this guardian is on standby; ask the leader".into(),
        },
        T::Ledger(e) => ApiError::Unavailable(format!("transmutation: {e}")),
    }
}

async fn open_transmutation(
    g: &Guardian,
    auth: Option<String>,
    body: PendingBody,
) -> Result<Response, ApiError> {
    let key = match require_admin(g, auth).await {
        Ok(k) => k,
        Err(r) => return Ok(r),
    };
    let request: OpenTransmutation = ack_body(body, r#"{"description": "<text>"}"#).await?;
    let t = g
        .open_transmutation(&request.description, &key.id)
        .await
        .map_err(transmutation_error)?;
    Ok(warp::reply::with_status(warp::reply::json(&t), StatusCode::CREATED).into_response())
}

async fn close_transmutation(
    g: &Guardian,
    auth: Option<String>,
    id: &str,
    action: &str,
    body: PendingBody,
) -> Result<Response, ApiError> {
    let outcome = match action {
        "complete" => "completed",
        "abandon" => "abandoned",
        _ => {
            return Err(ApiError::not_found(
                "not_found",
                "POST /v1/psi/transmutations/{id}/complete or /abandon",
            ))
        }
    };
    let key = match require_admin(g, auth).await {
        Ok(k) => k,
        Err(r) => return Ok(r),
    };
    let id: i64 = id
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| ApiError::bad("invalid_id", "transmutation id: a positive integer"))?;
    let bytes: Vec<u8> = if body.is_absent() {
        Vec::new()
    } else {
        body.bytes(ACK_BODY_LIMIT, std::time::Duration::from_secs(10))
            .await?
            .to_vec()
    };
    let request: CloseTransmutation = if bytes.is_empty() {
        CloseTransmutation::default()
    } else {
        json_value(&bytes, r#"{"note": "<text>"} or no body"#)?
    };
    let t = g
        .close_transmutation(id, outcome, &key.id, request.note.as_deref())
        .await
        .map_err(transmutation_error)?;
    Ok(warp::reply::json(&t).into_response())
}

/// The shared authenticator, with no key cache so a revocation takes effect at once on the
/// guardian's rarely called routes.
fn authenticator(g: &Guardian) -> Authenticator {
    Authenticator::new(
        std::sync::Arc::new(g.ctx.store.clone()),
        std::time::Duration::ZERO,
    )
}

/// A mesh listing (`ledger::mesh::api`) as the response.
fn listing(result: Result<serde_json::Value, ApiError>) -> Response {
    match result {
        Ok(v) => warp::reply::json(&v).into_response(),
        Err(e) => e.response(),
    }
}

/// Passes only an admin key, returning it.
async fn require_admin(g: &Guardian, auth: Option<String>) -> Result<ApiKey, Response> {
    authenticator(g)
        .require(auth.as_deref(), &[Role::Admin])
        .await
        .map_err(|e| e.response())
}

/// A guardian failure as an API error (details are logged, not returned).
fn unavailable(what: &str, e: &GuardianError) -> Response {
    ApiError::Unavailable(format!("{what}: {e}")).response()
}

async fn verify(g: &Guardian, auth: Option<String>) -> Response {
    if let Err(r) = require_admin(g, auth).await {
        return r;
    }
    match g.verify_now().await {
        Ok(findings) => warp::reply::json(&json!({
            "intact": findings.is_empty(),
            "findings": findings,
        }))
        .into_response(),
        Err(e) => unavailable("verification pass", &e),
    }
}

/// Largest acknowledgement body accepted.
const ACK_BODY_LIMIT: u64 = 256 * 1024;

/// An acknowledgement's JSON body (I-JSON, at most [`ACK_BODY_LIMIT`]) as `T`; 400 naming
/// the `expected` shape otherwise.
async fn ack_body<T: serde::de::DeserializeOwned>(
    body: PendingBody,
    expected: &str,
) -> Result<T, ApiError> {
    let body = body
        .json(ACK_BODY_LIMIT, std::time::Duration::from_secs(10))
        .await?;
    json_value(&body, expected)
}

/// `body` as I-JSON of type `T`; 400 naming the `expected` shape otherwise.
fn json_value<T: serde::de::DeserializeOwned>(body: &[u8], expected: &str) -> Result<T, ApiError> {
    let value = ledger::strict_json::parse(body)
        .map_err(|e| ApiError::bad("malformed_json", format!("body: not valid I-JSON: {e}")))?;
    serde_json::from_value(value)
        .map_err(|e| ApiError::bad("invalid_body", format!("expected {expected}: {e}")))
}

/// The body of an acknowledgement: the finding ids, explicitly.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AckRequest {
    findings: Vec<String>,
}

async fn findings(g: &Guardian, auth: Option<String>) -> Response {
    if let Err(r) = require_admin(g, auth).await {
        return r;
    }
    match g.divergence_findings().await {
        Ok(all) => {
            let open = all.iter().filter(|f| !f.acknowledged).count();
            warp::reply::json(&json!({"open": open, "findings": all})).into_response()
        }
        Err(e) => unavailable("reading findings", &e),
    }
}

async fn acknowledge(
    g: &Guardian,
    auth: Option<String>,
    body: PendingBody,
) -> Result<Response, ApiError> {
    let key = match require_admin(g, auth).await {
        Ok(k) => k,
        Err(r) => return Ok(r),
    };
    let request: AckRequest = ack_body(body, r#"{"findings": ["<id>", …]}"#).await?;
    match g.acknowledge_divergence(&request.findings, &key.id).await {
        Ok(ids) => Ok(warp::reply::json(&json!({"acknowledged": ids})).into_response()),
        Err(e @ (AckError::Empty | AckError::TooMany)) => {
            Err(ApiError::bad("invalid_body", e.to_string()))
        }
        Err(e @ AckError::Unknown(_)) => Err(ApiError::not_found("unknown_finding", e.to_string())),
        Err(e @ AckError::AlreadyAcknowledged(_)) => {
            Err(ApiError::bad("already_acknowledged", e.to_string()))
        }
        // The constitution or an emergency refused the acknowledgement receipt: say so.
        Err(AckError::Ledger(GuardianError::Gate(refusal))) => Err(ApiError::from(refusal)),
        Err(e) => Err(ApiError::Unavailable(format!("acknowledging: {e}"))),
    }
}

/// `POST /v1/witness/add-checkpoint` (C2SP tlog-witness): 200 with the cosignature line, 409
/// with the last cosigned size as `text/x.tlog.size`, 404 unknown origin, 403 bad signature,
/// 400 malformed, 422 inconsistent. A guardian without a witness key answers 404.
async fn add_checkpoint(g: &Guardian, body: PendingBody) -> Result<Response, ApiError> {
    use crate::witness::Refusal;
    let Some(witness) = g.witness.as_ref() else {
        return Err(ApiError::not_found(
            "not_a_witness",
            "this guardian has no witness key and witnesses no remote mesh",
        ));
    };
    let body = body
        .bytes(
            ledger::add_checkpoint::MAX_BODY_BYTES,
            std::time::Duration::from_secs(10),
        )
        .await?;
    let text = |status: StatusCode, body: String, media: &'static str| {
        let mut r = warp::reply::with_status(body, status).into_response();
        r.headers_mut().insert(
            warp::http::header::CONTENT_TYPE,
            warp::http::HeaderValue::from_static(media),
        );
        r
    };
    match witness.add_checkpoint(&body).await {
        Ok(line) => Ok(text(StatusCode::OK, line, "text/plain; charset=utf-8")),
        Err(Refusal::Conflict(size)) => {
            let (body, media) = crate::witness::conflict_body(size);
            Ok(text(StatusCode::CONFLICT, body, media))
        }
        Err(e @ Refusal::Malformed(_)) => Err(ApiError::bad("malformed_request", e.to_string())),
        Err(e @ Refusal::UnknownOrigin(_)) => {
            Err(ApiError::not_found("unknown_log", e.to_string()))
        }
        Err(e @ Refusal::Forbidden(_)) => Err(ApiError::Forbidden(e.to_string())),
        Err(e @ Refusal::Inconsistent(_)) => Err(ApiError::Unprocessable {
            code: "inconsistent_checkpoint",
            message: e.to_string(),
        }),
        Err(e @ Refusal::Unavailable(_)) => Err(ApiError::Unavailable(e.to_string())),
        Err(e @ Refusal::RemoteUnavailable(_)) => Err(ApiError::Suspended {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "remote_unavailable",
            message: e.to_string(),
            retry_after_secs: 5,
        }),
    }
}

/// `GET /v1/federation/discrepancies` (admin): every discrepancy with its evidence.
async fn discrepancies(g: &Guardian, auth: Option<String>) -> Response {
    if let Err(r) = require_admin(g, auth).await {
        return r;
    }
    match g.discrepancies.list().await {
        Ok(all) => {
            let open = all.iter().filter(|d| d.acknowledged_at.is_none()).count();
            warp::reply::json(&json!({"open": open, "discrepancies": all})).into_response()
        }
        Err(e) => unavailable("reading discrepancies", &e),
    }
}

/// The body of a discrepancy acknowledgement: the ids, explicitly.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DiscrepancyAck {
    discrepancies: Vec<i64>,
}

/// `POST /v1/federation/discrepancies/ack` (admin): acknowledges exactly the ids named.
async fn acknowledge_discrepancies(
    g: &Guardian,
    auth: Option<String>,
    body: PendingBody,
) -> Result<Response, ApiError> {
    use crate::discrepancy::AckError as DAck;
    let key = match require_admin(g, auth).await {
        Ok(k) => k,
        Err(r) => return Ok(r),
    };
    let request: DiscrepancyAck = ack_body(body, r#"{"discrepancies": [<id>, …]}"#).await?;
    match g
        .discrepancies
        .acknowledge(&request.discrepancies, &key.id)
        .await
    {
        Ok(ids) => Ok(warp::reply::json(&json!({"acknowledged": ids})).into_response()),
        Err(e @ DAck::Count) => Err(ApiError::bad("invalid_body", e.to_string())),
        Err(e @ DAck::NotOpen(_)) => Err(ApiError::not_found("unknown_discrepancy", e.to_string())),
        Err(DAck::Ledger(GuardianError::Gate(refusal))) => Err(ApiError::from(refusal)),
        Err(e) => Err(ApiError::Unavailable(format!("acknowledging: {e}"))),
    }
}

async fn anchor(g: &Guardian, auth: Option<String>) -> Response {
    if let Err(r) = require_admin(g, auth).await {
        return r;
    }
    match g.anchor_now().await {
        Ok(outcome) => {
            let status = if outcome.failures.is_empty() {
                StatusCode::OK
            } else {
                StatusCode::BAD_GATEWAY
            };
            let failures: Vec<_> = outcome
                .failures
                .iter()
                .map(|(e, s, r)| json!({"epoch": e, "sink": s, "reason": r}))
                .collect();
            warp::reply::with_status(
                warp::reply::json(&json!({"record": outcome.record, "failures": failures})),
                status,
            )
            .into_response()
        }
        Err(GuardianError::NotLeader) => ApiError::Conflict {
            code: "not_leader",
            message: "this guardian is on standby; ask the leader".into(),
        }
        .response(),
        Err(e) => unavailable("epoch", &e),
    }
}
