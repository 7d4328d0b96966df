//! The oracle's HTTP routes: `POST /v1/oracle/query` (reader or admin key),
//! `GET /v1/oracle/corpus` (public), `POST /v1/oracle/corpus` (admin key).

use crate::corpus::{self, DocumentMeta};
use crate::metrics::{QUERY_DURATION, QUERY_REJECTIONS};
use crate::query::Query;
use crate::Oracle;
use ledger::api_error::ApiError;
use ledger::body::{pending_body, PendingBody};
use ledger::metrics::observed;
use ledger::store::Role;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Instant;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

/// Largest query body.
const MAX_QUERY_BODY: u64 = 64 * 1024;
/// How long a request body may take to arrive once the caller is authenticated.
const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Largest corpus upload body (the text plus JSON framing).
const MAX_CORPUS_BODY: u64 = corpus::MAX_DOCUMENT_BYTES as u64 + 64 * 1024;

/// The oracle's routes, for 404/405/HEAD answers before any handler runs.
pub fn table() -> ledger::http_guard::RouteTable {
    ledger::http_guard::RouteTable::new([
        ("POST", "/v1/oracle/query"),
        ("GET", "/v1/oracle/corpus"),
        ("POST", "/v1/oracle/corpus"),
    ])
}

/// All oracle routes.
pub fn routes(
    o: Arc<Oracle>,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone + Send + Sync + 'static {
    let with = move || {
        let o = o.clone();
        warp::any().map(move || o.clone())
    };
    let auth = || warp::header::optional::<String>("authorization");
    let query = warp::path!("v1" / "oracle" / "query")
        .and(warp::post())
        .and(with())
        .and(auth())
        .and(pending_body())
        .then(|o: Arc<Oracle>, a: Option<String>, body: PendingBody| {
            observed("POST", "/v1/oracle/query", async move {
                query_route(&o, a, body).await
            })
        });
    let list = warp::path!("v1" / "oracle" / "corpus")
        .and(warp::get())
        .and(with())
        .then(|o: Arc<Oracle>| {
            observed(
                "GET",
                "/v1/oracle/corpus",
                async move { list_route(&o).await },
            )
        });
    let upload = warp::path!("v1" / "oracle" / "corpus")
        .and(warp::post())
        .and(with())
        .and(auth())
        .and(pending_body())
        .then(|o: Arc<Oracle>, a: Option<String>, body: PendingBody| {
            observed("POST", "/v1/oracle/corpus", async move {
                upload_route(&o, a, body).await
            })
        });
    query.or(list).unify().or(upload).unify()
}

fn parse_body(body: &[u8]) -> Result<Value, ApiError> {
    ledger::strict_json::parse(body)
        .map_err(|e| ApiError::bad("malformed_json", format!("body: not valid I-JSON: {e}")))
}

/// The response for a handler's result.
fn reply(result: Result<Response, ApiError>) -> Response {
    result.unwrap_or_else(|e| e.response())
}

async fn query_route(o: &Oracle, auth: Option<String>, body: PendingBody) -> Response {
    if let Err(e) = o
        .auth
        .require(auth.as_deref(), &[Role::Reader, Role::Admin])
        .await
    {
        return e.response();
    }
    let started = Instant::now();
    reply(
        async {
            let refused = |e: ApiError| {
                QUERY_REJECTIONS.with_label_values(&["body"]).inc();
                e
            };
            let body = body
                .json(MAX_QUERY_BODY, BODY_READ_TIMEOUT)
                .await
                .map_err(|e| refused(e.into()))?;
            let q = Query::from_json(parse_body(&body).map_err(refused)?)?;
            let answered = o.answer(&q).await;
            QUERY_DURATION.observe(started.elapsed().as_secs_f64());
            Ok(warp::reply::json(&answered?).into_response())
        }
        .await,
    )
}

async fn list_route(o: &Oracle) -> Response {
    reply(
        o.ctx
            .store
            .documents()
            .await
            .map(|docs| warp::reply::json(&json!({ "documents": docs })).into_response())
            .map_err(ApiError::from),
    )
}

/// The upload's text and the metadata given beside it.
fn upload_fields(body: &[u8]) -> Result<(String, DocumentMeta), ApiError> {
    let bad = |m: String| ApiError::bad("invalid_document", m);
    let Value::Object(m) = parse_body(body)? else {
        return Err(bad("body: must be a JSON object".into()));
    };
    if let Some(extra) = m
        .keys()
        .find(|k| !["id", "title", "framework", "text"].contains(&k.as_str()))
    {
        return Err(bad(format!(
            "{extra}: unknown field (allowed: id, title, framework, text)"
        )));
    }
    let field = |name: &str| match m.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(bad(format!("{name}: must be a string"))),
    };
    let text = field("text")?.ok_or_else(|| bad("text: is required".into()))?;
    Ok((
        text,
        DocumentMeta {
            id: field("id")?,
            title: field("title")?,
            framework: field("framework")?,
            default_id: None,
        },
    ))
}

async fn upload_route(o: &Oracle, auth: Option<String>, body: PendingBody) -> Response {
    if let Err(e) = o.auth.require(auth.as_deref(), &[Role::Admin]).await {
        return e.response();
    }
    reply(
        async {
            let body = body.json(MAX_CORPUS_BODY, BODY_READ_TIMEOUT).await?;
            let (text, meta) = upload_fields(&body)?;
            let doc = corpus::parse(&text, &meta)
                .map_err(|e| ApiError::bad("invalid_document", e.to_string()))?;
            o.ctx.store.put_document(&doc).await?;
            o.refresh_document_count().await;
            tracing::info!(id = %doc.id, framework = %doc.framework, sections = doc.sections.len(), "corpus document loaded");
            Ok(warp::reply::with_status(
                warp::reply::json(&json!({
                    "id": doc.id, "title": doc.title, "framework": doc.framework,
                    "sections": doc.sections.len(),
                })),
                StatusCode::CREATED,
            )
            .into_response())
        }
        .await,
    )
}
