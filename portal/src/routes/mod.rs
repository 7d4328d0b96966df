//! The portal's HTTP routes (SPEC §4), one module per area: receipts (submission and
//! reads), scrolls, proofs and checkpoints, anchors, keys. Every handler returns a response
//! (never a rejection), recorded under its route template.

pub mod anchors;
pub mod keys;
pub mod proofs;
pub mod receipts;
pub mod scrolls;

use crate::metrics::INTEGRITY_FAILURES;
use crate::state::Portal;
use ledger::api_error::ApiError;
use ledger::body::{pending_body, PendingBody};
use serde_json::Value;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

/// All portal routes (the state is shared by reference, so reaching a route costs no copy).
pub fn routes(p: Portal) -> BoxedFilter<(Response,)> {
    let p = Arc::new(p);
    let submit = warp::path!("v1" / "scrolls" / String / "receipts")
        .and(warp::post())
        .and(with(p.clone()))
        .and(auth_header())
        .and(warp::header::optional::<String>("idempotency-key"))
        .and(pending_body())
        .then(
            |scroll: String,
             p: Arc<Portal>,
             auth: Option<String>,
             key: Option<String>,
             body: PendingBody| {
                observe(
                    "POST",
                    "/v1/scrolls/{scroll}/receipts",
                    receipts::submit_one(p, scroll, auth, key, body),
                )
            },
        )
        .boxed();
    let batch = warp::path!("v1" / "scrolls" / String / "receipts" / "batch")
        .and(warp::post())
        .and(with(p.clone()))
        .and(auth_header())
        .and(warp::header::optional::<String>("idempotency-key"))
        .and(pending_body())
        .then(
            |scroll: String,
             p: Arc<Portal>,
             auth: Option<String>,
             idem: Option<String>,
             body: PendingBody| {
                observe(
                    "POST",
                    "/v1/scrolls/{scroll}/receipts/batch",
                    receipts::submit_batch(p, scroll, auth, idem, body),
                )
            },
        )
        .boxed();
    let list_scrolls = warp::path!("v1" / "scrolls")
        .and(warp::get())
        .and(with(p.clone()))
        .then(|p: Arc<Portal>| observe("GET", "/v1/scrolls", scrolls::list(p)))
        .boxed();
    let create_scroll = warp::path!("v1" / "scrolls")
        .and(warp::post())
        .and(with(p.clone()))
        .and(auth_header())
        .and(pending_body())
        .then(|p: Arc<Portal>, auth: Option<String>, body: PendingBody| {
            observe("POST", "/v1/scrolls", scrolls::create(p, auth, body))
        })
        .boxed();
    let list_receipts = warp::path!("v1" / "scrolls" / String / "receipts")
        .and(warp::get())
        .and(with(p.clone()))
        .and(auth_header())
        .and(crate::params::query())
        .then(
            |scroll: String,
             p: Arc<Portal>,
             auth: Option<String>,
             q: Result<HashMap<String, String>, ApiError>| {
                observe(
                    "GET",
                    "/v1/scrolls/{scroll}/receipts",
                    receipts::list(p, scroll, auth, q),
                )
            },
        )
        .boxed();
    let get_receipt = warp::path!("v1" / "scrolls" / String / "receipts" / String)
        .and(warp::get())
        .and(with(p.clone()))
        .and(auth_header())
        .then(
            |scroll: String, seq: String, p: Arc<Portal>, auth: Option<String>| {
                observe(
                    "GET",
                    "/v1/scrolls/{scroll}/receipts/{seq}",
                    receipts::get(p, scroll, seq, auth),
                )
            },
        )
        .boxed();
    let by_hash = warp::path!("v1" / "receipts" / String)
        .and(warp::get())
        .and(with(p.clone()))
        .and(auth_header())
        .then(|hash: String, p: Arc<Portal>, auth: Option<String>| {
            observe(
                "GET",
                "/v1/receipts/{leaf_hash}",
                receipts::by_hash(p, hash, auth),
            )
        })
        .boxed();
    let checkpoint = warp::path!("v1" / "scrolls" / String / "checkpoint")
        .and(warp::get())
        .and(with(p.clone()))
        .and(warp::header::optional::<String>("accept"))
        .and(crate::params::query())
        .then(
            |scroll: String,
             p: Arc<Portal>,
             accept: Option<String>,
             q: Result<HashMap<String, String>, ApiError>| {
                observe(
                    "GET",
                    "/v1/scrolls/{scroll}/checkpoint",
                    proofs::checkpoint(p, scroll, accept, q),
                )
            },
        )
        .boxed();
    let inclusion = warp::path!("v1" / "scrolls" / String / "proof" / "inclusion")
        .and(warp::get())
        .and(with(p.clone()))
        .and(crate::params::query())
        .then(
            |scroll: String, p: Arc<Portal>, q: Result<HashMap<String, String>, ApiError>| {
                observe(
                    "GET",
                    "/v1/scrolls/{scroll}/proof/inclusion",
                    proofs::inclusion(p, scroll, q),
                )
            },
        )
        .boxed();
    let consistency = warp::path!("v1" / "scrolls" / String / "proof" / "consistency")
        .and(warp::get())
        .and(with(p.clone()))
        .and(crate::params::query())
        .then(
            |scroll: String, p: Arc<Portal>, q: Result<HashMap<String, String>, ApiError>| {
                observe(
                    "GET",
                    "/v1/scrolls/{scroll}/proof/consistency",
                    proofs::consistency(p, scroll, q),
                )
            },
        )
        .boxed();
    let tile = warp::path!("v1" / "scrolls" / String / "tiles" / String / String)
        .and(warp::get())
        .and(with(p.clone()))
        .and(crate::params::query())
        .and(warp::header::optional::<String>("if-none-match"))
        .then(
            |scroll: String,
             level: String,
             index: String,
             p: Arc<Portal>,
             q: Result<HashMap<String, String>, ApiError>,
             inm: Option<String>| async move {
                let mut r = observe(
                    "GET",
                    "/v1/scrolls/{scroll}/tiles/{level}/{index}",
                    proofs::tile(
                        p,
                        proofs::TileRequest {
                            scroll,
                            level,
                            index,
                        },
                        q,
                        inm,
                    ),
                )
                .await;
                // An error may be right now and wrong at the next checkpoint: never cached.
                if r.status().is_client_error() || r.status().is_server_error() {
                    r.headers_mut().insert(
                        "cache-control",
                        warp::http::HeaderValue::from_static("no-store"),
                    );
                }
                r
            },
        )
        .boxed();
    let bundle = warp::path!("v1" / "scrolls" / String / "receipts" / String / "bundle")
        .and(warp::get())
        .and(with(p.clone()))
        .and(auth_header())
        .then(
            |scroll: String, seq: String, p: Arc<Portal>, auth: Option<String>| {
                observe(
                    "GET",
                    "/v1/scrolls/{scroll}/receipts/{seq}/bundle",
                    proofs::bundle(p, scroll, seq, auth),
                )
            },
        )
        .boxed();
    let anchors = warp::path!("v1" / "anchors")
        .and(warp::get())
        .and(with(p.clone()))
        .and(crate::params::query())
        .then(
            |p: Arc<Portal>, q: Result<HashMap<String, String>, ApiError>| {
                observe("GET", "/v1/anchors", anchors::list(p, q))
            },
        )
        .boxed();
    let anchor = warp::path!("v1" / "anchors" / String)
        .and(warp::get())
        .and(with(p.clone()))
        .then(|epoch: String, p: Arc<Portal>| {
            observe("GET", "/v1/anchors/{epoch}", anchors::get(p, epoch))
        })
        .boxed();
    let anchor_head = warp::path!("v1" / "anchors" / String / "head")
        .and(warp::get())
        .and(with(p.clone()))
        .then(|epoch: String, p: Arc<Portal>| {
            observe("GET", "/v1/anchors/{epoch}/head", anchors::head(p, epoch))
        })
        .boxed();
    let openapi = warp::path!("v1" / "openapi.json")
        .and(warp::get())
        .and(with(p.clone()))
        .then(|p: Arc<Portal>| {
            observe("GET", "/v1/openapi.json", async move {
                Ok(json_reply(
                    StatusCode::OK,
                    &crate::openapi::document_for(&p.opts),
                ))
            })
        })
        .boxed();
    let governance = governance_routes(p.clone());
    let mesh = mesh_routes(p.clone());
    let vkey = warp::path!("v1" / "keys" / "guardian")
        .and(warp::get())
        .and(with(p))
        .then(|p: Arc<Portal>| observe("GET", "/v1/keys/guardian", keys::guardian_key(p)))
        .boxed();

    submit
        .or(batch)
        .unify()
        .or(list_scrolls)
        .unify()
        .or(create_scroll)
        .unify()
        .or(list_receipts)
        .unify()
        .or(bundle)
        .unify()
        .or(get_receipt)
        .unify()
        .or(by_hash)
        .unify()
        .or(checkpoint)
        .unify()
        .or(inclusion)
        .unify()
        .or(consistency)
        .unify()
        .or(tile)
        .unify()
        .or(anchors)
        .unify()
        .or(anchor)
        .unify()
        .or(anchor_head)
        .unify()
        .or(vkey)
        .unify()
        .or(openapi)
        .unify()
        .or(governance)
        .unify()
        .or(mesh)
        .unify()
        .boxed()
}

/// `GET /v1/mesh/nodes` and `GET /v1/mesh/routes` (handlers in `ledger::mesh::api`).
fn mesh_routes(p: Arc<Portal>) -> BoxedFilter<(Response,)> {
    let nodes = warp::path!("v1" / "mesh" / "nodes")
        .and(warp::get())
        .and(with(p.clone()))
        .and(warp::header::optional::<String>("authorization"))
        .then(|p: Arc<Portal>, auth: Option<String>| {
            observe("GET", "/v1/mesh/nodes", async move {
                let v = ledger::mesh::api::nodes(&p.ctx.store, &p.auth, auth.as_deref()).await?;
                Ok(json_reply(StatusCode::OK, &v))
            })
        })
        .boxed();
    let routes = warp::path!("v1" / "mesh" / "routes")
        .and(warp::get())
        .and(with(p))
        .and(warp::header::optional::<String>("authorization"))
        .then(|p: Arc<Portal>, auth: Option<String>| {
            observe("GET", "/v1/mesh/routes", async move {
                let v = ledger::mesh::api::routes(&p.ctx.store, &p.auth, auth.as_deref()).await?;
                Ok(json_reply(StatusCode::OK, &v))
            })
        })
        .boxed();
    nodes.or(routes).unify().boxed()
}

/// The governance API (shared with the guardian; handlers in `ledger::governance::routes`).
fn governance_routes(p: Arc<Portal>) -> BoxedFilter<(Response,)> {
    use ledger::governance::routes as gov;
    let get_constitution = warp::path!("v1" / "governance" / "constitution")
        .and(warp::get())
        .and(with(p.clone()))
        .then(|p: Arc<Portal>| {
            observe("GET", "/v1/governance/constitution", async move {
                gov::constitution(&p.ctx.governance)
            })
        });
    let adopt = warp::path!("v1" / "governance" / "constitution")
        .and(warp::post())
        .and(with(p.clone()))
        .and(auth_header())
        .and(pending_body())
        .then(|p: Arc<Portal>, auth: Option<String>, body: PendingBody| {
            observe("POST", "/v1/governance/constitution", async move {
                let deadline = p.opts.body_read_timeout();
                gov::adopt(&p.ctx.governance, &p.auth, auth.as_deref(), body, deadline).await
            })
        });
    let get_emergency = warp::path!("v1" / "governance" / "emergency")
        .and(warp::get())
        .and(with(p.clone()))
        .then(|p: Arc<Portal>| {
            observe("GET", "/v1/governance/emergency", async move {
                gov::emergency(&p.ctx.governance)
            })
        });
    let raise = warp::path!("v1" / "governance" / "emergency")
        .and(warp::post())
        .and(with(p.clone()))
        .and(auth_header())
        .and(pending_body())
        .then(|p: Arc<Portal>, auth: Option<String>, body: PendingBody| {
            observe("POST", "/v1/governance/emergency", async move {
                let deadline = p.opts.body_read_timeout();
                gov::raise(&p.ctx.governance, &p.auth, auth.as_deref(), body, deadline).await
            })
        });
    let lift = warp::path!("v1" / "governance" / "emergency")
        .and(warp::delete())
        .and(with(p))
        .and(auth_header())
        .then(|p: Arc<Portal>, auth: Option<String>| {
            observe("DELETE", "/v1/governance/emergency", async move {
                gov::lift(&p.ctx.governance, &p.auth, auth.as_deref()).await
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
        .boxed()
}

/// Runs a handler and records `vaultmesh_http_*` under `method` and the route `template`.
pub(crate) async fn observe<Fut>(method: &'static str, template: &'static str, fut: Fut) -> Response
where
    Fut: Future<Output = Result<Response, ApiError>>,
{
    let start = Instant::now();
    let response = match fut.await {
        Ok(r) => r,
        Err(e) => {
            if let ApiError::Integrity(detail) = &e {
                INTEGRITY_FAILURES.inc();
                tracing::error!(path = template, detail = %detail, "integrity check failed: stored receipt not served");
            }
            e.response()
        }
    };
    ledger::metrics::record_http(method, template, response.status().as_u16(), start);
    response
}

/// A filter handing each request a clone of `v` (for the shared state, an `Arc`).
pub(crate) fn with<T: Clone + Send + Sync + 'static>(
    v: T,
) -> impl Filter<Extract = (T,), Error = std::convert::Infallible> + Clone {
    warp::any().map(move || v.clone())
}

/// The `Authorization` header, if any.
pub(crate) fn auth_header() -> impl Filter<Extract = (Option<String>,), Error = Rejection> + Clone {
    warp::header::optional::<String>("authorization")
}

/// A JSON body with `status`.
pub(crate) fn json_reply(status: StatusCode, body: &Value) -> Response {
    warp::reply::with_status(warp::reply::json(body), status).into_response()
}
