//! The portal's HTTP routes (SPEC §4): receipt submission, reads, proofs, checkpoints,
//! anchors and scroll administration. Every handler returns a response (never a
//! rejection), recorded under its route template.

use crate::auth::{may_read, may_write, must_be_admin, Authenticator};
use crate::error::ApiError;
use crate::ingest::Ingest;
use crate::metrics::INTEGRITY_FAILURES;
use crate::options::PortalArgs;
use bytes::Bytes;
use ledger::context::ServiceContext;
use ledger::hash::{from_hex, to_hex, Sha3Hasher};
use ledger::receipt::{validate_scroll_name, ReceiptDraft};
use ledger::service::BodyError;
use ledger::store::{AppendOutcome, NewReceipt, StoredCheckpoint, StoredReceipt};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::RwLock;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

/// How long the latest checkpoint of a scroll is served from Redis: a new checkpoint shows
/// up within this time (checkpoints are signed about once a second).
const CHECKPOINT_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(1);
/// How long a checkpoint just read is reused from process memory, before Redis is asked.
const CHECKPOINT_MEMO_TTL: std::time::Duration = std::time::Duration::from_millis(250);

/// Longest accepted `Idempotency-Key`.
const MAX_IDEMPOTENCY_KEY: usize = 200;
/// Largest page of a receipt listing.
const MAX_PAGE: u32 = 1000;

/// Shared state of the portal's handlers.
#[derive(Clone)]
pub struct Portal {
    /// Store, cache, registry, config.
    pub ctx: ServiceContext,
    /// Group commit.
    pub ingest: Ingest,
    /// API-key verification.
    pub auth: Authenticator,
    /// Portal options.
    pub opts: PortalArgs,
    /// The guardian's vkey, if configured.
    pub vkey: Option<String>,
    known_scrolls: Arc<RwLock<HashMap<String, i32>>>,
    /// Latest checkpoint per scroll as last read, with when it was read.
    recent_checkpoints: Arc<std::sync::RwLock<HashMap<String, (Instant, StoredCheckpoint)>>>,
}

impl Portal {
    fn recent_checkpoint(&self, scroll: &str) -> Option<StoredCheckpoint> {
        let memo = self
            .recent_checkpoints
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        memo.get(scroll)
            .filter(|(at, _)| at.elapsed() < CHECKPOINT_MEMO_TTL)
            .map(|(_, cp)| cp.clone())
    }

    fn remember_checkpoint(&self, cp: &StoredCheckpoint) {
        self.recent_checkpoints
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(cp.scroll.clone(), (Instant::now(), cp.clone()));
    }

    /// Handler state over a started service context.
    pub fn new(mut ctx: ServiceContext, opts: PortalArgs, vkey: Option<String>) -> Self {
        ctx.store = ctx
            .store
            .clone()
            .with_tile_cache(ctx.cache.clone(), opts.proof_tile_memo);
        let ingest = Ingest::new(
            ctx.store.clone(),
            opts.group_commit_max,
            opts.group_commit_wait(),
            usize::from(opts.group_commit_depth),
        );
        let auth = Authenticator::new(
            ctx.store.clone(),
            std::time::Duration::from_secs(opts.auth_cache_secs),
        );
        Self {
            ctx,
            ingest,
            auth,
            opts,
            vkey,
            known_scrolls: Arc::new(RwLock::new(HashMap::new())),
            recent_checkpoints: Arc::new(std::sync::RwLock::new(HashMap::new())),
        }
    }

    /// Validates a scroll name, checks that the scroll exists and returns its id (scrolls are
    /// never deleted, so a positive answer is remembered).
    async fn existing_scroll(&self, name: &str) -> Result<i32, ApiError> {
        validate_scroll_name(name)?;
        if let Some(id) = self.known_scrolls.read().await.get(name) {
            return Ok(*id);
        }
        let info = self.ctx.store.scroll(name).await?;
        self.known_scrolls
            .write()
            .await
            .insert(name.to_string(), info.id);
        Ok(info.id)
    }
}

/// Runs a handler and records `vaultmesh_http_*` under `method` and the route `template`.
async fn observe<Fut>(method: &'static str, template: &'static str, fut: Fut) -> Response
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

fn with<T: Clone + Send + Sync + 'static>(
    v: T,
) -> impl Filter<Extract = (T,), Error = std::convert::Infallible> + Clone {
    warp::any().map(move || v.clone())
}

fn auth_header() -> impl Filter<Extract = (Option<String>,), Error = Rejection> + Clone {
    warp::header::optional::<String>("authorization")
}

/// The request body, limited to `limit` bytes before it is read (see
/// [`ledger::service::limited_body`]), with failures as API errors.
fn limited_body(
    limit: u64,
) -> impl Filter<Extract = (Result<Bytes, ApiError>,), Error = std::convert::Infallible> + Clone {
    ledger::service::limited_body(limit)
        .map(|r: Result<Bytes, BodyError>| r.map_err(ApiError::from))
}

fn json_reply(status: StatusCode, body: &Value) -> Response {
    warp::reply::with_status(warp::reply::json(body), status).into_response()
}

/// All portal routes.
pub fn routes(p: Portal) -> BoxedFilter<(Response,)> {
    let submit = warp::path!("v1" / "scrolls" / String / "receipts")
        .and(warp::post())
        .and(with(p.clone()))
        .and(auth_header())
        .and(warp::header::optional::<String>("idempotency-key"))
        .and(limited_body(p.opts.max_receipt_body))
        .then(
            |scroll: String,
             p: Portal,
             auth: Option<String>,
             key: Option<String>,
             body: Result<Bytes, ApiError>| {
                observe(
                    "POST",
                    "/v1/scrolls/{scroll}/receipts",
                    submit_one(p, scroll, auth, key, body),
                )
            },
        )
        .boxed();
    let batch = warp::path!("v1" / "scrolls" / String / "receipts" / "batch")
        .and(warp::post())
        .and(with(p.clone()))
        .and(auth_header())
        .and(warp::header::optional::<String>("idempotency-key"))
        .and(limited_body(p.opts.max_batch_body))
        .then(
            |scroll: String,
             p: Portal,
             auth: Option<String>,
             idem: Option<String>,
             body: Result<Bytes, ApiError>| {
                observe(
                    "POST",
                    "/v1/scrolls/{scroll}/receipts/batch",
                    submit_batch(p, scroll, auth, idem, body),
                )
            },
        )
        .boxed();
    let list_scrolls = warp::path!("v1" / "scrolls")
        .and(warp::get())
        .and(with(p.clone()))
        .then(|p: Portal| observe("GET", "/v1/scrolls", list_scrolls(p)))
        .boxed();
    let create_scroll = warp::path!("v1" / "scrolls")
        .and(warp::post())
        .and(with(p.clone()))
        .and(auth_header())
        .and(limited_body(4096))
        .then(
            |p: Portal, auth: Option<String>, body: Result<Bytes, ApiError>| {
                observe("POST", "/v1/scrolls", create_scroll(p, auth, body))
            },
        )
        .boxed();
    let list_receipts = warp::path!("v1" / "scrolls" / String / "receipts")
        .and(warp::get())
        .and(with(p.clone()))
        .and(auth_header())
        .and(warp::query::<HashMap<String, String>>())
        .then(
            |scroll: String, p: Portal, auth: Option<String>, q: HashMap<String, String>| {
                observe(
                    "GET",
                    "/v1/scrolls/{scroll}/receipts",
                    list_receipts(p, scroll, auth, q),
                )
            },
        )
        .boxed();
    let get_receipt = warp::path!("v1" / "scrolls" / String / "receipts" / String)
        .and(warp::get())
        .and(with(p.clone()))
        .and(auth_header())
        .then(
            |scroll: String, seq: String, p: Portal, auth: Option<String>| {
                observe(
                    "GET",
                    "/v1/scrolls/{scroll}/receipts/{seq}",
                    get_receipt(p, scroll, seq, auth),
                )
            },
        )
        .boxed();
    let by_hash = warp::path!("v1" / "receipts" / String)
        .and(warp::get())
        .and(with(p.clone()))
        .and(auth_header())
        .then(|hash: String, p: Portal, auth: Option<String>| {
            observe(
                "GET",
                "/v1/receipts/{leaf_hash}",
                receipt_by_hash(p, hash, auth),
            )
        })
        .boxed();
    let checkpoint = warp::path!("v1" / "scrolls" / String / "checkpoint")
        .and(warp::get())
        .and(with(p.clone()))
        .and(warp::header::optional::<String>("accept"))
        .then(|scroll: String, p: Portal, accept: Option<String>| {
            observe(
                "GET",
                "/v1/scrolls/{scroll}/checkpoint",
                checkpoint(p, scroll, accept),
            )
        })
        .boxed();
    let inclusion = warp::path!("v1" / "scrolls" / String / "proof" / "inclusion")
        .and(warp::get())
        .and(with(p.clone()))
        .and(warp::query::<HashMap<String, String>>())
        .then(|scroll: String, p: Portal, q: HashMap<String, String>| {
            observe(
                "GET",
                "/v1/scrolls/{scroll}/proof/inclusion",
                inclusion(p, scroll, q),
            )
        })
        .boxed();
    let consistency = warp::path!("v1" / "scrolls" / String / "proof" / "consistency")
        .and(warp::get())
        .and(with(p.clone()))
        .and(warp::query::<HashMap<String, String>>())
        .then(|scroll: String, p: Portal, q: HashMap<String, String>| {
            observe(
                "GET",
                "/v1/scrolls/{scroll}/proof/consistency",
                consistency(p, scroll, q),
            )
        })
        .boxed();
    let bundle = warp::path!("v1" / "scrolls" / String / "receipts" / String / "bundle")
        .and(warp::get())
        .and(with(p.clone()))
        .and(auth_header())
        .then(
            |scroll: String, seq: String, p: Portal, auth: Option<String>| {
                observe(
                    "GET",
                    "/v1/scrolls/{scroll}/receipts/{seq}/bundle",
                    bundle(p, scroll, seq, auth),
                )
            },
        )
        .boxed();
    let anchors = warp::path!("v1" / "anchors")
        .and(warp::get())
        .and(with(p.clone()))
        .and(warp::query::<HashMap<String, String>>())
        .then(|p: Portal, q: HashMap<String, String>| observe("GET", "/v1/anchors", anchors(p, q)))
        .boxed();
    let anchor = warp::path!("v1" / "anchors" / String)
        .and(warp::get())
        .and(with(p.clone()))
        .then(|epoch: String, p: Portal| observe("GET", "/v1/anchors/{epoch}", anchor(p, epoch)))
        .boxed();
    let openapi = warp::path!("v1" / "openapi.json")
        .and(warp::get())
        .then(|| {
            observe("GET", "/v1/openapi.json", async {
                Ok(json_reply(StatusCode::OK, &crate::openapi::document()))
            })
        })
        .boxed();
    let vkey = warp::path!("v1" / "keys" / "guardian")
        .and(warp::get())
        .and(with(p))
        .then(|p: Portal| observe("GET", "/v1/keys/guardian", guardian_key(p)))
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
        .or(anchors)
        .unify()
        .or(anchor)
        .unify()
        .or(vkey)
        .unify()
        .or(openapi)
        .unify()
        .boxed()
}

fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad(
            "malformed_json",
            format!("request body is not valid JSON: {e}"),
        )
    })
}

/// `{"type", "payload"}` → a validated draft and the hash of its canonical request form.
fn parse_submission(v: Value, at: &str) -> Result<(ReceiptDraft, [u8; 32]), ApiError> {
    let Value::Object(mut m) = v else {
        return Err(ApiError::bad(
            "invalid_body",
            format!("{at}: must be a JSON object with `type` and `payload`"),
        ));
    };
    if let Some(extra) = m.keys().find(|k| *k != "type" && *k != "payload") {
        return Err(ApiError::bad(
            "unknown_field",
            format!("{at}.{extra}: unknown field (allowed: type, payload)"),
        ));
    }
    let kind = match m.remove("type") {
        Some(Value::String(s)) => s,
        Some(_) => {
            return Err(ApiError::bad(
                "invalid_type",
                format!("{at}.type: must be a string"),
            ))
        }
        None => {
            return Err(ApiError::bad(
                "invalid_type",
                format!("{at}.type: is required"),
            ))
        }
    };
    let payload = m
        .remove("payload")
        .ok_or_else(|| ApiError::bad("invalid_payload", format!("{at}.payload: is required")))?;
    let draft = ReceiptDraft::new(&kind, payload)?;
    let mut request = kind.into_bytes();
    request.push(0);
    request.extend_from_slice(draft.canonical_payload());
    Ok((draft, Sha3Hasher::plain(&request)))
}

fn receipt_json(stored: &StoredReceipt) -> Value {
    let mut v = stored.receipt.to_value();
    if let Value::Object(m) = &mut v {
        m.insert("leaf_hash".into(), Value::String(to_hex(&stored.leaf_hash)));
    }
    v
}

async fn submit_one(
    p: Portal,
    scroll: String,
    auth: Option<String>,
    idempotency_key: Option<String>,
    body: Result<Bytes, ApiError>,
) -> Result<Response, ApiError> {
    let body = body?;
    let key = p.auth.authenticate(auth.as_deref()).await?;
    validate_scroll_name(&scroll)?;
    may_write(&key, &scroll)?;
    p.existing_scroll(&scroll).await?;
    validate_idempotency_key(idempotency_key.as_deref())?;
    let (draft, request_hash) = parse_submission(parse_json(&body)?, "body")?;
    let remembered = match &idempotency_key {
        Some(k) => remembered_submission(&p, &scroll, k, &request_hash).await?,
        None => None,
    };
    if let Some(original) = remembered {
        return Ok(json_reply(StatusCode::OK, &receipt_json(&original)));
    }
    let item = NewReceipt {
        draft,
        submitter: key.id.clone(),
        idempotency_key: idempotency_key.clone(),
        request_hash: Some(request_hash),
    };
    let (status, stored) = match p.ingest.submit(&scroll, item).await? {
        AppendOutcome::Created(r) => (StatusCode::CREATED, r),
        AppendOutcome::Replayed(r) => (StatusCode::OK, r),
        AppendOutcome::Conflict(k) => {
            return Err(ApiError::from(
                ledger::store::StoreError::IdempotencyConflict(k),
            ))
        }
    };
    if let Some(k) = &idempotency_key {
        let mut entry = request_hash.to_vec();
        entry.extend_from_slice(&stored.receipt.seq.to_be_bytes());
        p.ctx
            .cache
            .put(&idempotency_cache_key(&scroll, k), &entry)
            .await;
        remember_receipt(&p, &stored).await;
    }
    Ok(json_reply(status, &receipt_json(&stored)))
}

fn idempotency_cache_key(scroll: &str, key: &str) -> String {
    format!(
        "idem:{scroll}:{}",
        to_hex(&Sha3Hasher::plain(key.as_bytes()))
    )
}

/// Idempotency fast path: a key already used on this scroll (remembered in Redis as the
/// request hash and position it was written with, which never change) answers a replay with
/// the original receipt, or a different body with 409, without joining the group commit.
/// A miss (or Redis down) falls through to the check inside the append transaction.
async fn remembered_submission(
    p: &Portal,
    scroll: &str,
    key: &str,
    request_hash: &ledger::hash::Hash,
) -> Result<Option<StoredReceipt>, ApiError> {
    let Some(entry) = p.ctx.cache.get(&idempotency_cache_key(scroll, key)).await else {
        return Ok(None);
    };
    let (Some(hash), Some(seq)) = (
        entry.get(..32),
        entry
            .get(32..40)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_be_bytes),
    ) else {
        return Ok(None);
    };
    if hash != &request_hash[..] {
        return Err(ApiError::from(
            ledger::store::StoreError::IdempotencyConflict(key.to_string()),
        ));
    }
    // Anything odd about the original (such as a failed integrity check) is left to the
    // authoritative path, which reports it.
    Ok(cached_receipt(p, scroll, seq).await.ok())
}

/// Header values are visible ASCII, so no client key can contain this separator between a
/// batch's key and an item's index.
const BATCH_ITEM_SEPARATOR: char = '\u{1f}';

fn validate_idempotency_key(key: Option<&str>) -> Result<(), ApiError> {
    match key {
        Some(k)
            if k.is_empty()
                || k.len() > MAX_IDEMPOTENCY_KEY
                || k.contains(BATCH_ITEM_SEPARATOR) =>
        {
            Err(ApiError::bad(
                "invalid_idempotency_key",
                format!("Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} visible characters"),
            ))
        }
        _ => Ok(()),
    }
}

async fn submit_batch(
    p: Portal,
    scroll: String,
    auth: Option<String>,
    idempotency_key: Option<String>,
    body: Result<Bytes, ApiError>,
) -> Result<Response, ApiError> {
    let body = body?;
    let key = p.auth.authenticate(auth.as_deref()).await?;
    validate_scroll_name(&scroll)?;
    may_write(&key, &scroll)?;
    p.existing_scroll(&scroll).await?;
    validate_idempotency_key(idempotency_key.as_deref())?;
    let v = parse_json(&body)?;
    let Value::Object(mut m) = v else {
        return Err(ApiError::bad(
            "invalid_body",
            "body: must be an object with a `receipts` array",
        ));
    };
    if let Some(extra) = m.keys().find(|k| *k != "receipts") {
        return Err(ApiError::bad(
            "unknown_field",
            format!("body.{extra}: unknown field (allowed: receipts)"),
        ));
    }
    let Some(Value::Array(list)) = m.remove("receipts") else {
        return Err(ApiError::bad(
            "invalid_body",
            "body.receipts: must be an array",
        ));
    };
    if list.is_empty() || list.len() > p.opts.max_batch {
        return Err(ApiError::bad(
            "batch_size",
            format!(
                "body.receipts: must hold 1 to {} receipts, got {}",
                p.opts.max_batch,
                list.len()
            ),
        ));
    }
    let mut items = Vec::with_capacity(list.len());
    let mut request = Vec::with_capacity(list.len() * 32);
    for (i, v) in list.into_iter().enumerate() {
        let (draft, item_hash) = parse_submission(v, &format!("body.receipts[{i}]"))?;
        request.extend_from_slice(&item_hash);
        items.push(NewReceipt {
            draft,
            submitter: key.id.clone(),
            idempotency_key: None,
            request_hash: None,
        });
    }
    let outcomes = match idempotency_key {
        None => p.ingest.submit_batch(&scroll, items).await?,
        Some(k) => {
            // Each item is keyed by the batch key and its index, and remembers the hash of
            // the whole batch, so a replay matches only the identical batch.
            let batch_hash = Sha3Hasher::plain(&request);
            for (i, item) in items.iter_mut().enumerate() {
                item.idempotency_key = Some(format!("{k}{BATCH_ITEM_SEPARATOR}{i}"));
                item.request_hash = Some(batch_hash);
            }
            p.ingest.submit_keyed_batch(&scroll, items).await?
        }
    };
    let replayed = outcomes
        .iter()
        .all(|o| matches!(o, AppendOutcome::Replayed(_)));
    let receipts: Vec<Value> = outcomes
        .iter()
        .filter_map(|o| match o {
            AppendOutcome::Created(r) | AppendOutcome::Replayed(r) => Some(receipt_json(r)),
            AppendOutcome::Conflict(_) => None,
        })
        .collect();
    let status = if replayed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok(json_reply(status, &json!({ "receipts": receipts })))
}

async fn list_scrolls(p: Portal) -> Result<Response, ApiError> {
    let scrolls = p.ctx.store.list_scrolls().await?;
    let latest: HashMap<String, ledger::store::StoredCheckpoint> = p
        .ctx
        .store
        .latest_checkpoints()
        .await?
        .into_iter()
        .map(|c| (c.scroll.clone(), c))
        .collect();
    let out: Vec<Value> = scrolls
        .iter()
        .map(|s| {
            let cp = latest.get(&s.name).map(|c| json!({"tree_size": c.tree_size, "root": to_hex(&c.root)}));
            json!({"name": s.name, "size": s.size, "tree_size": s.tree_size, "created_at": s.created_at, "latest_checkpoint": cp})
        })
        .collect();
    Ok(json_reply(StatusCode::OK, &json!({ "scrolls": out })))
}

async fn create_scroll(
    p: Portal,
    auth: Option<String>,
    body: Result<Bytes, ApiError>,
) -> Result<Response, ApiError> {
    let body = body?;
    let key = p.auth.authenticate(auth.as_deref()).await?;
    must_be_admin(&key)?;
    let v = parse_json(&body)?;
    let name = match v.get("name") {
        Some(Value::String(s)) => s.clone(),
        _ => return Err(ApiError::bad("invalid_body", "body.name: must be a string")),
    };
    validate_scroll_name(&name)?;
    let s = p.ctx.store.create_scroll(&name).await?;
    tracing::info!(scroll = %name, key_id = %key.id, "scroll created");
    Ok(json_reply(
        StatusCode::CREATED,
        &json!({"name": s.name, "size": s.size, "tree_size": s.tree_size, "created_at": s.created_at}),
    ))
}

fn number(q: &HashMap<String, String>, name: &str) -> Result<Option<u64>, ApiError> {
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

fn seq_param(s: &str) -> Result<u64, ApiError> {
    s.parse::<u64>()
        .map_err(|_| ApiError::bad("invalid_seq", "seq: must be a non-negative integer"))
}

async fn list_receipts(
    p: Portal,
    scroll: String,
    auth: Option<String>,
    q: HashMap<String, String>,
) -> Result<Response, ApiError> {
    let key = p.auth.authenticate(auth.as_deref()).await?;
    may_read(&key)?;
    p.existing_scroll(&scroll).await?;
    let from = number(&q, "from")?.unwrap_or(0);
    let limit = number(&q, "limit")?.unwrap_or(100);
    if limit == 0 || limit > u64::from(MAX_PAGE) {
        return Err(ApiError::bad(
            "invalid_query",
            format!("limit: must be 1 to {MAX_PAGE}"),
        ));
    }
    let rows = p
        .ctx
        .store
        .list_receipts(&scroll, from, limit as u32)
        .await?;
    let next = rows.last().map(|r| r.receipt.seq + 1);
    let receipts: Vec<Value> = rows.iter().map(receipt_json).collect();
    Ok(json_reply(
        StatusCode::OK,
        &json!({"receipts": receipts, "next": next}),
    ))
}

async fn get_receipt(
    p: Portal,
    scroll: String,
    seq: String,
    auth: Option<String>,
) -> Result<Response, ApiError> {
    let key = p.auth.authenticate(auth.as_deref()).await?;
    may_read(&key)?;
    p.existing_scroll(&scroll).await?;
    let seq = seq_param(&seq)?;
    let r = cached_receipt(&p, &scroll, seq).await?;
    Ok(json_reply(StatusCode::OK, &receipt_json(&r)))
}

/// A receipt from the cache or the store, or 404. The cache holds the leaf hash read from
/// Postgres followed by the leaf; a hit is served only if the leaf still hashes to it and
/// names this position (a corrupt entry falls through to Postgres).
async fn cached_receipt(p: &Portal, scroll: &str, seq: u64) -> Result<StoredReceipt, ApiError> {
    let cache_key = format!("receipt:{scroll}:{seq}");
    if let Some(entry) = p.ctx.cache.get(&cache_key).await {
        if entry.len() > 32 {
            let (stored_hash, leaf) = entry.split_at(32);
            let leaf_hash = ledger::receipt::leaf_hash(leaf);
            if leaf_hash[..] == *stored_hash {
                if let Ok(receipt) = ledger::receipt::Receipt::from_leaf(leaf) {
                    if receipt.scroll == scroll && receipt.seq == seq {
                        return Ok(StoredReceipt {
                            receipt,
                            leaf: leaf.to_vec(),
                            leaf_hash,
                        });
                    }
                }
            }
        }
    }
    let r = p.ctx.store.receipt(scroll, seq).await?.ok_or_else(|| {
        ApiError::not_found(
            "unknown_receipt",
            format!("scroll {scroll:?} has no receipt {seq}"),
        )
    })?;
    remember_receipt(p, &r).await;
    Ok(r)
}

/// Caches a stored receipt as its leaf hash followed by its leaf bytes.
async fn remember_receipt(p: &Portal, r: &StoredReceipt) {
    let mut entry = r.leaf_hash.to_vec();
    entry.extend_from_slice(&r.leaf);
    p.ctx
        .cache
        .put(
            &format!("receipt:{}:{}", r.receipt.scroll, r.receipt.seq),
            &entry,
        )
        .await;
}

async fn receipt_by_hash(
    p: Portal,
    hash: String,
    auth: Option<String>,
) -> Result<Response, ApiError> {
    let key = p.auth.authenticate(auth.as_deref()).await?;
    may_read(&key)?;
    let h = from_hex(&hash)
        .map_err(|_| ApiError::bad("invalid_hash", "leaf_hash: must be 64 hex digits"))?;
    let r =
        p.ctx.store.receipt_by_leaf_hash(&h).await?.ok_or_else(|| {
            ApiError::not_found("unknown_receipt", "no receipt has this leaf hash")
        })?;
    Ok(json_reply(StatusCode::OK, &receipt_json(&r)))
}

/// The scroll's id and latest signed checkpoint.
async fn latest_checkpoint(p: &Portal, scroll: &str) -> Result<(i32, StoredCheckpoint), ApiError> {
    let id = p.existing_scroll(scroll).await?;
    if let Some(cp) = p.recent_checkpoint(scroll) {
        return Ok((id, cp));
    }
    let cache_key = format!("checkpoint:{scroll}");
    if let Some(cp) = p
        .ctx
        .cache
        .get(&cache_key)
        .await
        .and_then(|b| serde_json::from_slice::<StoredCheckpoint>(&b).ok())
    {
        p.remember_checkpoint(&cp);
        return Ok((id, cp));
    }
    let cp = p
        .ctx
        .store
        .latest_checkpoint(scroll)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(
                "no_checkpoint",
                format!("scroll {scroll:?} has no signed checkpoint yet"),
            )
        })?;
    if let Ok(bytes) = serde_json::to_vec(&cp) {
        p.ctx
            .cache
            .put_ttl(&cache_key, &bytes, CHECKPOINT_CACHE_TTL)
            .await;
    }
    p.remember_checkpoint(&cp);
    Ok((id, cp))
}

async fn checkpoint(
    p: Portal,
    scroll: String,
    accept: Option<String>,
) -> Result<Response, ApiError> {
    let (_, cp) = latest_checkpoint(&p, &scroll).await?;
    if accept.is_some_and(|a| a.contains("application/json")) {
        return Ok(json_reply(
            StatusCode::OK,
            &json!({"scroll": cp.scroll, "tree_size": cp.tree_size, "root": to_hex(&cp.root), "note": cp.note, "created_at": cp.created_at}),
        ));
    }
    Ok(
        warp::reply::with_header(cp.note, "content-type", "text/plain; charset=utf-8")
            .into_response(),
    )
}

async fn inclusion(
    p: Portal,
    scroll: String,
    q: HashMap<String, String>,
) -> Result<Response, ApiError> {
    let seq =
        number(&q, "seq")?.ok_or_else(|| ApiError::bad("invalid_query", "seq: is required"))?;
    let (scroll_id, cp) = latest_checkpoint(&p, &scroll).await?;
    let size = number(&q, "tree_size")?.unwrap_or(cp.tree_size);
    if size > cp.tree_size {
        return Err(ApiError::bad(
            "beyond_checkpoint",
            format!(
                "tree_size {size} is beyond the latest signed checkpoint ({})",
                cp.tree_size
            ),
        ));
    }
    if seq >= size {
        return Err(ApiError::bad(
            "invalid_query",
            format!("seq {seq} is not below tree_size {size}"),
        ));
    }
    let proof = p.ctx.store.inclusion_proof(scroll_id, seq, size).await?;
    Ok(json_reply(
        StatusCode::OK,
        &serde_json::to_value(&proof).unwrap_or(Value::Null),
    ))
}

async fn consistency(
    p: Portal,
    scroll: String,
    q: HashMap<String, String>,
) -> Result<Response, ApiError> {
    let from =
        number(&q, "from")?.ok_or_else(|| ApiError::bad("invalid_query", "from: is required"))?;
    let (scroll_id, cp) = latest_checkpoint(&p, &scroll).await?;
    let to = number(&q, "to")?.unwrap_or(cp.tree_size);
    if to > cp.tree_size {
        return Err(ApiError::bad(
            "beyond_checkpoint",
            format!(
                "to {to} is beyond the latest signed checkpoint ({})",
                cp.tree_size
            ),
        ));
    }
    if from > to {
        return Err(ApiError::bad(
            "invalid_query",
            format!("from {from} is greater than to {to}"),
        ));
    }
    let proof = p.ctx.store.consistency_proof(scroll_id, from, to).await?;
    Ok(json_reply(
        StatusCode::OK,
        &serde_json::to_value(&proof).unwrap_or(Value::Null),
    ))
}

async fn bundle(
    p: Portal,
    scroll: String,
    seq: String,
    auth: Option<String>,
) -> Result<Response, ApiError> {
    let key = p.auth.authenticate(auth.as_deref()).await?;
    may_read(&key)?;
    p.existing_scroll(&scroll).await?;
    let seq = seq_param(&seq)?;
    let vkey = p.vkey.clone().unwrap_or_default();
    let b = p
        .ctx
        .store
        .proof_bundle(&scroll, seq, &vkey)
        .await?
        .ok_or_else(|| ApiError::not_found("no_bundle", format!("receipt {seq} of {scroll:?} does not exist or is not in a signed checkpoint yet")))?;
    Ok(json_reply(
        StatusCode::OK,
        &serde_json::to_value(&b).unwrap_or(Value::Null),
    ))
}

fn anchor_json(a: &ledger::store::StoredAnchor) -> Value {
    serde_json::to_value(&a.record).unwrap_or(Value::Null)
}

async fn anchors(p: Portal, q: HashMap<String, String>) -> Result<Response, ApiError> {
    let from = number(&q, "from")?.unwrap_or(1);
    let limit = number(&q, "limit")?.unwrap_or(100);
    if limit == 0 || limit > u64::from(MAX_PAGE) {
        return Err(ApiError::bad(
            "invalid_query",
            format!("limit: must be 1 to {MAX_PAGE}"),
        ));
    }
    let list = p.ctx.store.anchors(from, limit as u32).await?;
    let out: Vec<Value> = list.iter().map(anchor_json).collect();
    Ok(json_reply(StatusCode::OK, &json!({"anchors": out})))
}

async fn anchor(p: Portal, epoch: String) -> Result<Response, ApiError> {
    let epoch: u64 = epoch
        .parse()
        .map_err(|_| ApiError::bad("invalid_epoch", "epoch: must be a positive integer"))?;
    let a = p.ctx.store.anchor(epoch).await?.ok_or_else(|| {
        ApiError::not_found("unknown_anchor", format!("no anchor for epoch {epoch}"))
    })?;
    Ok(json_reply(StatusCode::OK, &anchor_json(&a)))
}

async fn guardian_key(p: Portal) -> Result<Response, ApiError> {
    match p.vkey {
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
