//! The OpenAPI 3.1 description served at `/v1/openapi.json`, built from one table of
//! operations that also gives the listener its routes: every parameter with the exact
//! pattern or range the portal enforces, every request body as it is validated, every
//! status each operation can answer and every response body and media type as served.

use crate::options::PortalArgs;
use ledger::jcs::MAX_SAFE_INTEGER;
use ledger::receipt::{MAX_PAYLOAD_BYTES, MAX_TYPE_CHARS};
use serde_json::{json, Map, Value};

/// Who may call an operation.
#[derive(Clone, Copy, PartialEq)]
enum Access {
    Public,
    Reader,
    Writer,
    Admin,
}

/// What a success answer carries.
#[derive(Clone, Copy)]
enum Reply {
    /// `application/json` with this component schema.
    Json(&'static str),
    /// `text/plain` with this component schema.
    Text(&'static str),
    /// `text/plain` by default, `application/json` when the request accepts it.
    TextOrJson(&'static str, &'static str),
    /// `application/octet-stream` with this component schema.
    Binary(&'static str),
    /// No body (304 Not Modified).
    Empty,
}

/// One operation of the portal.
struct Op {
    method: &'static str,
    path: &'static str,
    id: &'static str,
    summary: &'static str,
    access: Access,
    body: Option<&'static str>,
    query: &'static [(&'static str, bool)],
    idempotency_key: bool,
    ok: &'static [(u16, Reply)],
    errors: &'static [u16],
}

const OPS: &[Op] = &[
    Op {
        method: "post",
        path: "/v1/scrolls/{scroll}/receipts",
        id: "submitReceipt",
        summary: "Submit one receipt; 201 once durable, 200 with the original for an idempotent replay",
        access: Access::Writer,
        body: Some("Submission"),
        query: &[],
        idempotency_key: true,
        ok: &[(200, Reply::Json("Receipt")), (201, Reply::Json("Receipt"))],
        errors: &[409, 422],
    },
    Op {
        method: "post",
        path: "/v1/scrolls/{scroll}/receipts/batch",
        id: "submitBatch",
        summary: "Submit 1 to max_batch receipts, all or nothing; with Idempotency-Key a replay of the same batch answers 200 with the original receipts",
        access: Access::Writer,
        body: Some("Batch"),
        query: &[],
        idempotency_key: true,
        ok: &[(200, Reply::Json("BatchResult")), (201, Reply::Json("BatchResult"))],
        errors: &[409, 422],
    },
    Op {
        method: "get",
        path: "/v1/scrolls",
        id: "listScrolls",
        summary: "Every scroll with its size, tree size and latest checkpoint",
        access: Access::Public,
        body: None,
        query: &[],
        idempotency_key: false,
        ok: &[(200, Reply::Json("ScrollList"))],
        errors: &[],
    },
    Op {
        method: "post",
        path: "/v1/scrolls",
        id: "createScroll",
        summary: "Create a scroll",
        access: Access::Admin,
        body: Some("NewScroll"),
        query: &[],
        idempotency_key: false,
        ok: &[(201, Reply::Json("Scroll"))],
        errors: &[409],
    },
    Op {
        method: "get",
        path: "/v1/scrolls/{scroll}/receipts",
        id: "listReceipts",
        summary: "A page of a scroll's receipts in seq order, from `from`",
        access: Access::Reader,
        body: None,
        query: &[("from", false), ("limit", false)],
        idempotency_key: false,
        ok: &[(200, Reply::Json("ReceiptPage"))],
        errors: &[500],
    },
    Op {
        method: "get",
        path: "/v1/scrolls/{scroll}/receipts/{seq}",
        id: "getReceipt",
        summary: "One receipt by position",
        access: Access::Reader,
        body: None,
        query: &[],
        idempotency_key: false,
        ok: &[(200, Reply::Json("Receipt"))],
        errors: &[500],
    },
    Op {
        method: "get",
        path: "/v1/receipts/{leaf_hash}",
        id: "getReceiptByLeafHash",
        summary: "One receipt by leaf hash",
        access: Access::Reader,
        body: None,
        query: &[],
        idempotency_key: false,
        ok: &[(200, Reply::Json("Receipt"))],
        errors: &[500],
    },
    Op {
        method: "get",
        path: "/v1/scrolls/{scroll}/checkpoint",
        id: "getCheckpoint",
        summary: "The latest signed checkpoint, or with `witnessed=K` the latest one holding cosignatures from at least K witnesses (404 `not_witnessed` if none): the signed note with the witnesses' cosignature lines appended as text/plain, or JSON listing them when the request's Accept names application/json",
        access: Access::Public,
        body: None,
        query: &[("witnessed", false)],
        idempotency_key: false,
        ok: &[(200, Reply::TextOrJson("SignedNote", "Checkpoint"))],
        errors: &[],
    },
    Op {
        method: "get",
        path: "/v1/scrolls/{scroll}/proof/inclusion",
        id: "getInclusionProof",
        summary: "RFC 9162 inclusion proof of `seq` in the tree of `tree_size` (default: the latest signed checkpoint); `seq` must be below `tree_size` and `tree_size` at most the latest checkpoint's, else 400",
        access: Access::Public,
        body: None,
        query: &[("seq", true), ("tree_size", false)],
        idempotency_key: false,
        ok: &[(200, Reply::Json("InclusionProof"))],
        errors: &[500],
    },
    Op {
        method: "get",
        path: "/v1/scrolls/{scroll}/proof/consistency",
        id: "getConsistencyProof",
        summary: "RFC 9162 consistency proof from `from` to `to` (default: the latest signed checkpoint); `from` must be at most `to` and `to` at most the latest checkpoint's, else 400",
        access: Access::Public,
        body: None,
        query: &[("from", true), ("to", false)],
        idempotency_key: false,
        ok: &[(200, Reply::Json("ConsistencyProof"))],
        errors: &[500],
    },
    Op {
        method: "get",
        path: "/v1/scrolls/{scroll}/tiles/{level}/{index}",
        id: "getTile",
        summary: "A tile of the scroll's Merkle tree at the latest signed checkpoint (the C2SP tlog-tiles tile contents, height 8, SHA3-256 hashes, at VaultMesh's own URLs; docs/formats.md): its entries' 32-byte hashes concatenated. A full tile (256 entries), or exactly `width` entries when `width` is given, never changes and is served `Cache-Control: public, max-age=31536000, immutable`; a partial tile without `width` gets a short max-age; all with an ETag, and 304 for a matching If-None-Match. 404 `no_tile` for a tile with no entry yet or fewer than `width`; errors are `Cache-Control: no-store`",
        access: Access::Public,
        body: None,
        query: &[("width", false)],
        idempotency_key: false,
        ok: &[(200, Reply::Binary("Tile")), (304, Reply::Empty)],
        errors: &[500],
    },
    Op {
        method: "get",
        path: "/v1/scrolls/{scroll}/receipts/{seq}/bundle",
        id: "getProofBundle",
        summary: "Offline proof bundle of one receipt (404 until a signed checkpoint covers it)",
        access: Access::Reader,
        body: None,
        query: &[],
        idempotency_key: false,
        ok: &[(200, Reply::Json("ProofBundle"))],
        errors: &[500],
    },
    Op {
        method: "get",
        path: "/v1/anchors",
        id: "listAnchors",
        summary: "ProofChain records in epoch order, from epoch `from`",
        access: Access::Public,
        body: None,
        query: &[("from", false), ("limit", false)],
        idempotency_key: false,
        ok: &[(200, Reply::Json("AnchorList"))],
        errors: &[500],
    },
    Op {
        method: "get",
        path: "/v1/anchors/{epoch}",
        id: "getAnchor",
        summary: "One ProofChain record",
        access: Access::Public,
        body: None,
        query: &[],
        idempotency_key: false,
        ok: &[(200, Reply::Json("AnchorRecord"))],
        errors: &[500],
    },
    Op {
        method: "get",
        path: "/v1/anchors/{epoch}/head",
        id: "getAnchorHead",
        summary: "The signed ProofChain head of one epoch (a signed note over `<mesh>/proofchain`, the epoch and the anchor hash) with the cosignature lines of the witnesses that cosigned it appended; 404 `unknown_anchor` for an epoch without a signed head",
        access: Access::Public,
        body: None,
        query: &[],
        idempotency_key: false,
        ok: &[(200, Reply::Text("SignedNote"))],
        errors: &[500],
    },
    Op {
        method: "get",
        path: "/v1/keys/guardian",
        id: "getGuardianKey",
        summary: "The guardian's verifier key (signed-note vkey) as text/plain; 404 when the portal has none configured",
        access: Access::Public,
        body: None,
        query: &[],
        idempotency_key: false,
        ok: &[(200, Reply::Text("VerifierKey"))],
        errors: &[404],
    },
    Op {
        method: "get",
        path: "/v1/health",
        id: "health",
        summary: "Liveness",
        access: Access::Public,
        body: None,
        query: &[],
        idempotency_key: false,
        ok: &[(200, Reply::Json("Health"))],
        errors: &[],
    },
    Op {
        method: "get",
        path: "/v1/ready",
        id: "ready",
        summary: "Readiness: 503 while Postgres is unreachable; 200 with status `degraded` when only Redis is",
        access: Access::Public,
        body: None,
        query: &[],
        idempotency_key: false,
        ok: &[(200, Reply::Json("Ready"))],
        errors: &[],
    },
    Op {
        method: "get",
        path: "/v1/status",
        id: "status",
        summary: "Runtime configuration (secrets redacted), pool and cache state",
        access: Access::Public,
        body: None,
        query: &[],
        idempotency_key: false,
        ok: &[(200, Reply::Json("Status"))],
        errors: &[],
    },
    Op {
        method: "get",
        path: "/v1/openapi.json",
        id: "openapi",
        summary: "This document",
        access: Access::Public,
        body: None,
        query: &[],
        idempotency_key: false,
        ok: &[(200, Reply::Json("OpenApiDocument"))],
        errors: &[],
    },
    Op {
        method: "get",
        path: "/v1/governance/constitution",
        id: "getConstitution",
        summary: "The constitution in force and the `constitution_adopted` receipt that adopted it",
        access: Access::Public,
        body: None,
        query: &[],
        idempotency_key: false,
        ok: &[(200, Reply::Json("ConstitutionInForce"))],
        errors: &[404],
    },
    Op {
        method: "post",
        path: "/v1/governance/constitution",
        id: "adoptConstitution",
        summary: "Adopt a constitution (its version above the one in force), recorded as a `constitution_adopted` receipt; enforced by every service within a second",
        access: Access::Admin,
        body: Some("Adoption"),
        query: &[],
        idempotency_key: false,
        ok: &[(201, Reply::Json("Adopted"))],
        errors: &[409],
    },
    Op {
        method: "get",
        path: "/v1/governance/emergency",
        id: "getEmergency",
        summary: "Whether an emergency freeze is raised, why, by whom and since when",
        access: Access::Public,
        body: None,
        query: &[],
        idempotency_key: false,
        ok: &[(200, Reply::Json("EmergencyState"))],
        errors: &[],
    },
    Op {
        method: "post",
        path: "/v1/governance/emergency",
        id: "raiseEmergency",
        summary: "Raise an emergency freeze: every service refuses client writes with 503 `emergency_active` within a second; reads, proofs, integration and anchoring go on",
        access: Access::Admin,
        body: Some("EmergencyRequest"),
        query: &[],
        idempotency_key: false,
        ok: &[(201, Reply::Json("EmergencyState"))],
        errors: &[409],
    },
    Op {
        method: "delete",
        path: "/v1/governance/emergency",
        id: "liftEmergency",
        summary: "Lift the emergency freeze, recorded as an `emergency_lifted` receipt",
        access: Access::Admin,
        body: None,
        query: &[],
        idempotency_key: false,
        ok: &[(200, Reply::Json("EmergencyState"))],
        errors: &[409],
    },
    Op {
        method: "get",
        path: "/v1/mesh/nodes",
        id: "listMeshNodes",
        summary: "Every registered mesh node (service process) with its health, role, addresses and last heartbeat",
        access: Access::Reader,
        body: None,
        query: &[],
        idempotency_key: false,
        ok: &[(200, Reply::Json("MeshNodes"))],
        errors: &[],
    },
    Op {
        method: "get",
        path: "/v1/mesh/routes",
        id: "listMeshRoutes",
        summary: "Every route (a node's dependency: postgres, redis, sinks, witnesses, remote meshes, the LLM) with its last probed state",
        access: Access::Reader,
        body: None,
        query: &[],
        idempotency_key: false,
        ok: &[(200, Reply::Json("MeshRoutes"))],
        errors: &[],
    },
];

/// The portal's routes (method, path template): the same table the listener uses to answer
/// 404, 405 with `Allow`, and `HEAD`, so the served routes and the document never drift.
pub fn route_table() -> ledger::http_guard::RouteTable {
    ledger::http_guard::RouteTable::new(OPS.iter().map(|op| (op.method, op.path)))
}

/// Statuses any request can get before or around its route: 400 for header bytes outside
/// visible ASCII in a header the API reads, 414/431 from the HTTP parser, 503 over the
/// connection cap or the request deadline (and, where Postgres is read, while it is down).
const EVERY_ROUTE: [u16; 4] = [400, 414, 431, 503];

fn path_params(op: &Op) -> impl Iterator<Item = &'static str> {
    op.path
        .split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
}

/// Every status `op` can answer, ascending.
fn statuses(op: &Op) -> Vec<u16> {
    let mut out: Vec<u16> = op.ok.iter().map(|(s, _)| *s).collect();
    out.extend(EVERY_ROUTE);
    out.extend(op.errors);
    if op.access != Access::Public {
        out.extend([401, 403, 429]);
    }
    if op.body.is_some() {
        out.extend([408, 411, 413, 415]);
    }
    if path_params(op).next().is_some() {
        out.push(404);
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Every (method, path template, status) the document declares.
pub fn declared() -> Vec<(String, String, u16)> {
    OPS.iter()
        .flat_map(|o| {
            statuses(o)
                .into_iter()
                .map(|s| (o.method.to_uppercase(), o.path.to_string(), s))
        })
        .collect()
}

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn error_description(status: u16) -> &'static str {
    match status {
        400 => "Invalid input; the code names the rule (`invalid_constitution` naming the rule at fault, `invalid_reason`, `malformed_json` for JSON that is not I-JSON, e.g. a duplicate member name; `unknown_field`, `invalid_body`, `invalid_type`, `invalid_payload`, `invalid_number`, `batch_size`, `invalid_scroll_name`, `invalid_seq`, `invalid_hash`, `invalid_epoch`, `invalid_tile`, `invalid_query`, `beyond_checkpoint`, `beyond_tree`, `invalid_idempotency_key`; `invalid_header` for bytes outside visible ASCII in Authorization, Idempotency-Key, Content-Type, Accept or If-None-Match; `bad_request` for a request the HTTP parser refused) and the message names the field",
        401 => "Missing, malformed, unknown or revoked API key (`unauthorized`)",
        403 => "The key's role or scroll list does not allow this, or the scroll or receipt type belongs to a service (`forbidden`)",
        404 => "No such scroll, receipt, checkpoint, bundle, anchor, verifier key or constitution (`unknown_scroll`, `unknown_receipt`, `no_checkpoint`, `no_bundle`, `unknown_anchor`, `no_vkey`, `no_constitution`, `no_tile`, `not_witnessed`), or an empty path segment (`not_found`)",
        408 => "The body did not arrive within the body read timeout (`request_timeout`)",
        409 => "The Idempotency-Key was used with another body (`idempotency_conflict`), the scroll exists (`scroll_exists`), a constitution's version is not above the one in force (`stale_version`), an emergency is already raised (`emergency_active`) or none is (`no_emergency`)",
        422 => "The constitution in force refuses the receipt (`constitutional_violation`); `rule` and `field` name the rule broken and the field at fault, and a batch is refused whole",
        411 => "No Content-Length (`length_required`)",
        413 => "Content-Length over the route's limit, refused before the body is read (`payload_too_large`)",
        414 => "Request target too long (`uri_too_long`)",
        415 => "Content-Type is not application/json (`unsupported_media_type`)",
        429 => "The API key is over its request rate (`rate_limited`); Retry-After says when to try again",
        431 => "Too many or too large request headers (`header_fields_too_large`)",
        500 => "A stored row failed its integrity check and is not served (`integrity_error`)",
        503 => "An emergency freeze refuses writes (`emergency_active`, with Retry-After), Postgres unavailable (`database_unavailable`, no SQL or connection detail), the request deadline passed (`request_deadline`) or the connection cap was reached (`too_many_connections`, with Retry-After, then the connection is closed)",
        _ => "Error",
    }
}

fn success_description(status: u16) -> &'static str {
    match status {
        201 => "Created; for receipts, sent only once the transaction storing them has committed",
        304 => "Not modified: the If-None-Match named the current ETag (no body)",
        _ => "OK",
    }
}

fn response(status: u16, reply: Option<Reply>) -> Value {
    let Some(reply) = reply else {
        let mut r = json!({
            "description": error_description(status),
            "content": {"application/json": {"schema": schema_ref("Error")}},
        });
        if status == 429 {
            r["headers"] = json!({"Retry-After": {"$ref": "#/components/headers/RetryAfter"}});
        }
        if status == 503 {
            r["headers"] = json!({"Retry-After": {
                "description": "Seconds to wait; sent with `too_many_connections` and `emergency_active`",
                "required": false,
                "schema": {"type": "integer", "minimum": 1},
            }});
        }
        return r;
    };
    let content = match reply {
        Reply::Json(s) => json!({"application/json": {"schema": schema_ref(s)}}),
        Reply::Text(s) => json!({"text/plain": {"schema": schema_ref(s)}}),
        Reply::TextOrJson(text, js) => json!({
            "text/plain": {"schema": schema_ref(text)},
            "application/json": {"schema": schema_ref(js)},
        }),
        Reply::Binary(s) => json!({"application/octet-stream": {"schema": schema_ref(s)}}),
        Reply::Empty => return json!({"description": success_description(status)}),
    };
    let mut r = json!({"description": success_description(status), "content": content});
    if matches!(reply, Reply::Binary(_)) {
        r["headers"] = json!({
            "ETag": {"description": "Strong validator: the SHA3-256 of the body, hex, quoted", "required": true, "schema": {"type": "string"}},
            "Cache-Control": {"description": "`public, max-age=31536000, immutable` for a full tile, `public, max-age=N` for a partial one", "required": true, "schema": {"type": "string"}},
        });
    }
    r
}

fn path_param(name: &str) -> Value {
    let (schema, description, example) = match name {
        "scroll" => (schema_ref("ScrollName"), "Scroll name", json!("drills")),
        "seq" => (
            schema_ref("Position"),
            "Receipt position: a canonical decimal integer (no sign, no leading zero: `+1` and `01` are 400)",
            json!(0),
        ),
        "leaf_hash" => (
            schema_ref("Hash"),
            "Leaf hash, 64 lowercase hex digits (uppercase is 400)",
            json!("0000000000000000000000000000000000000000000000000000000000000000"),
        ),
        "level" => (
            json!({"type": "integer", "minimum": 0, "maximum": ledger::merkle::tiles::MAX_TILE_LEVEL}),
            "Tile level (entries are subtrees of height 8·level): a canonical decimal integer",
            json!(0),
        ),
        "index" => (
            json!({"type": "integer", "minimum": 0, "maximum": u64::MAX}),
            "Tile index within its level: a canonical decimal integer",
            json!(0),
        ),
        "epoch" => (
            json!({"type": "integer", "minimum": 1, "maximum": u64::MAX}),
            "ProofChain epoch, from 1: a canonical decimal integer",
            json!(1),
        ),
        _ => (json!({"type": "string"}), "", json!("")),
    };
    json!({"name": name, "in": "path", "required": true, "description": description,
           "schema": schema, "example": example})
}

fn query_param(name: &str, required: bool, path: &str) -> Value {
    let (schema, description) = match (name, path) {
        ("limit", _) => (
            json!({"type": "integer", "minimum": 1, "maximum": crate::params::MAX_PAGE, "default": 100}),
            "Page size, 1 to 1000",
        ),
        ("from", "/v1/anchors") => (
            json!({"type": "integer", "minimum": 0, "maximum": u64::MAX, "default": 1}),
            "First epoch",
        ),
        ("from", "/v1/scrolls/{scroll}/receipts") => (
            json!({"type": "integer", "minimum": 0, "maximum": u64::MAX, "default": 0}),
            "First seq",
        ),
        ("from", _) => (schema_ref("Position"), "Older tree size"),
        ("to", _) => (
            schema_ref("Position"),
            "Newer tree size (default: the latest signed checkpoint's)",
        ),
        ("seq", _) => (schema_ref("Position"), "Leaf index"),
        ("width", _) => (
            json!({"type": "integer", "minimum": 1, "maximum": ledger::merkle::tiles::TILE_WIDTH}),
            "Entries wanted: exactly this prefix of the tile, cacheable forever (default: all the tile has at the latest checkpoint)",
        ),
        ("tree_size", _) => (
            schema_ref("Position"),
            "Tree size (default: the latest signed checkpoint's)",
        ),
        ("witnessed", _) => (
            json!({"type": "integer", "minimum": 0, "maximum": u64::MAX, "default": 0}),
            "Least number of witness cosignatures the checkpoint must hold (0: any checkpoint)",
        ),
        _ => (json!({"type": "string"}), ""),
    };
    json!({"name": name, "in": "query", "required": required,
           "description": format!("{description}; a canonical decimal integer (no sign, no leading zero: `+1` and `01` are 400)"),
           "schema": schema})
}

fn operation(op: &Op) -> Value {
    let mut params: Vec<Value> = path_params(op).map(path_param).collect();
    params.extend(op.query.iter().map(|(n, r)| query_param(n, *r, op.path)));
    if op.ok.iter().any(|(s, _)| *s == 304) {
        params.push(json!({
            "name": "If-None-Match", "in": "header", "required": false,
            "description": "ETags (or `*`) already held: a match is answered 304 without a body",
            "schema": {"type": "string"},
        }));
    }
    if op.idempotency_key {
        params.push(json!({
            "name": "Idempotency-Key", "in": "header", "required": false,
            "description": "1 to 255 printable ASCII characters (no leading or trailing space, which HTTP would strip); scoped to (scroll, API key)",
            "schema": schema_ref("IdempotencyKey"),
        }));
    }
    let mut responses = Map::new();
    for s in statuses(op) {
        let reply = op.ok.iter().find(|(ok, _)| *ok == s).map(|(_, r)| *r);
        responses.insert(s.to_string(), response(s, reply));
    }
    let role = match op.access {
        Access::Public => "",
        Access::Reader => " Key role: reader or admin.",
        Access::Writer => " Key role: writer (of this scroll) or admin.",
        Access::Admin => " Key role: admin.",
    };
    let mut o = json!({
        "operationId": op.id,
        "summary": op.summary,
        "description": format!("{}.{role}", op.summary),
        "parameters": params,
        "responses": responses,
    });
    if op.access != Access::Public {
        o["security"] = json!([{"bearer": []}]);
    }
    if let Some(schema) = op.body {
        o["requestBody"] = json!({
            "required": true,
            "description": "Exactly this JSON object (I-JSON: a duplicate member name anywhere is 400; unknown fields are 400), sent as application/json with a Content-Length; read only after the key is accepted",
            "content": {"application/json": {"schema": schema_ref(schema)}},
        });
    }
    o
}

const DESCRIPTION: &str = "Append-only receipt ledger with Merkle anchoring. \
HTTP/1.1 only. Every error is JSON `{\"error\": {\"code\", \"message\"}}`, including the HTTP \
parser's own 400/414/431. An unknown path is 404; a known path with another method is 405 with \
an `Allow` header listing the methods served (see components.responses.MethodNotAllowed); HEAD \
is answered wherever GET is. Integers in paths and queries are canonical decimals (no sign, no \
leading zero). JSON bodies need `Content-Type: application/json` (415 otherwise) and are I-JSON \
(duplicate member names are 400). Each API key has a token bucket (429 with Retry-After).";

fn schemas(opts: &PortalArgs) -> Value {
    let hash = json!({"type": "string", "pattern": "^[0-9a-f]{64}$"});
    let safe = json!({"type": "integer", "minimum": 0, "maximum": MAX_SAFE_INTEGER});
    let hashes = json!({"type": "array", "items": schema_ref("Hash")});
    let stamp = json!({"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{6}Z$"});
    let scroll = json!({
        "type": "object", "additionalProperties": false,
        "required": ["name", "size", "tree_size", "created_at"],
        "properties": {"name": schema_ref("ScrollName"), "size": safe, "tree_size": safe,
                       "created_at": {"type": "string", "format": "date-time"}},
    });
    let mut summary = scroll.clone();
    summary["required"] = json!([
        "name",
        "size",
        "tree_size",
        "created_at",
        "latest_checkpoint"
    ]);
    summary["properties"]["latest_checkpoint"] = json!({"oneOf": [
        {"type": "null"},
        {"type": "object", "additionalProperties": false, "required": ["tree_size", "root"],
         "properties": {"tree_size": safe, "root": schema_ref("Hash")}},
    ]});
    let mut groups = vec![json!({
        "Error": {"type": "object", "additionalProperties": false, "required": ["error"], "properties": {
            "error": {"type": "object", "additionalProperties": false, "required": ["code", "message"],
                      "properties": {"code": {"type": "string", "pattern": "^[a-z_]+$"}, "message": {"type": "string"},
                                     "rule": {"type": "string", "description": "With `constitutional_violation`: the rule broken"},
                                     "field": {"type": "string", "description": "With `constitutional_violation`: the field at fault"}}}}},
        "ScrollName": {"type": "string", "pattern": "^[a-z][a-z0-9_-]{0,62}$"},
        "Position": {"type": "integer", "minimum": 0, "maximum": u64::MAX},
        "Hash": hash,
        "IdempotencyKey": {"type": "string", "minLength": 1, "maxLength": ledger::gate::MAX_IDEMPOTENCY_KEY,
                           "pattern": "^[!-~]([ -~]*[!-~])?$"},
        "ReceiptType": {"type": "string", "minLength": 1, "maxLength": MAX_TYPE_CHARS,
                        "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f]*$",
                        "description": "1 to 128 characters, no C0, DEL or C1 control characters; reserved types (SPEC §5) are 403"},
        "JsonValue": {"anyOf": [
            {"type": "null"}, {"type": "boolean"}, {"type": "string"},
            {"type": "number", "minimum": -(MAX_SAFE_INTEGER as i64), "maximum": MAX_SAFE_INTEGER},
            {"type": "array", "items": schema_ref("JsonValue")},
            {"type": "object", "additionalProperties": schema_ref("JsonValue")},
        ], "description": "Numbers within ±(2^53 − 1) whose written decimal value an IEEE-754 double keeps exactly (else 400 `invalid_number`)"},
        "Payload": {"type": "object", "additionalProperties": schema_ref("JsonValue"),
                    "description": format!("At most {MAX_PAYLOAD_BYTES} bytes in canonical (RFC 8785) form, else 400 `payload_too_large`")},
        "Submission": {"type": "object", "additionalProperties": false, "required": ["type", "payload"],
                       "properties": {"type": schema_ref("ReceiptType"), "payload": schema_ref("Payload")}},
        "Batch": {"type": "object", "additionalProperties": false, "required": ["receipts"], "properties": {
            "receipts": {"type": "array", "minItems": 1, "maxItems": opts.max_batch, "items": schema_ref("Submission")}}},
        "NewScroll": {"type": "object", "additionalProperties": false, "required": ["name"],
                      "properties": {"name": schema_ref("ScrollName")}},
    })];
    groups.push(json!({
        "Receipt": {"type": "object", "additionalProperties": false,
                    "required": ["scroll", "seq", "type", "payload", "submitted_at", "submitter", "leaf_hash"],
                    "properties": {"scroll": schema_ref("ScrollName"), "seq": safe, "type": {"type": "string"},
                                   "payload": {"type": "object"}, "submitted_at": stamp, "submitter": {"type": "string"},
                                   "leaf_hash": schema_ref("Hash")}},
        "BatchResult": {"type": "object", "additionalProperties": false, "required": ["receipts"], "properties": {
            "receipts": {"type": "array", "minItems": 1, "items": schema_ref("Receipt")}}},
        "ReceiptPage": {"type": "object", "additionalProperties": false, "required": ["receipts", "next"], "properties": {
            "receipts": {"type": "array", "items": schema_ref("Receipt")},
            "next": {"oneOf": [{"type": "null"}, safe], "description": "seq after the last receipt of the page; null for an empty page"}}},
        "Scroll": scroll,
        "ScrollList": {"type": "object", "additionalProperties": false, "required": ["scrolls"], "properties": {
            "scrolls": {"type": "array", "items": summary}}},
    }));
    groups.push(json!({
        "SignedNote": {"type": "string", "description": "C2SP signed note: origin, size, base64 root, blank line, signature lines"},
        "VerifierKey": {"type": "string", "pattern": "^[^\\n]+\\n$", "description": "C2SP signed-note verifier key and a newline"},
        "Checkpoint": {"type": "object", "additionalProperties": false,
                       "required": ["scroll", "tree_size", "root", "note", "created_at"],
                       "properties": {"scroll": schema_ref("ScrollName"), "tree_size": safe, "root": schema_ref("Hash"),
                                      "note": schema_ref("SignedNote"), "created_at": {"type": "string", "format": "date-time"},
                                      "cosignatures": {"type": "array", "description": "C2SP cosignature/v1 lines of witnesses, with the witness's vkey",
                                                       "items": {"type": "object", "additionalProperties": false, "required": ["witness", "line"],
                                                                 "properties": {"witness": {"type": "string"}, "line": {"type": "string"}}}}}},
        "InclusionProof": {"type": "object", "additionalProperties": false, "required": ["leaf_index", "tree_size", "path"],
                           "properties": {"leaf_index": safe, "tree_size": safe, "path": hashes}},
        "Tile": {"type": "string", "contentMediaType": "application/octet-stream",
                 "description": "1 to 256 hashes of 32 bytes, concatenated: the roots of the full subtrees of height 8·level numbered 256·index onwards"},
        "ConsistencyProof": {"type": "object", "additionalProperties": false, "required": ["from_size", "to_size", "path"],
                             "properties": {"from_size": safe, "to_size": safe, "path": hashes}},
    }));
    groups.push(json!({
        "AnchorRecord": {"type": "object", "additionalProperties": false,
                         "required": ["epoch", "mesh", "anchored_at", "scrolls", "epoch_root", "prev_anchor_hash", "anchor_hash", "sinks"],
                         "properties": {
                             "epoch": {"type": "integer", "minimum": 1, "maximum": MAX_SAFE_INTEGER},
                             "mesh": {"type": "string"}, "anchored_at": stamp,
                             "scrolls": {"type": "array", "items": {"type": "object", "additionalProperties": false,
                                 "required": ["scroll", "tree_size", "root"],
                                 "properties": {"scroll": schema_ref("ScrollName"), "tree_size": safe, "root": schema_ref("Hash")}}},
                             "epoch_root": schema_ref("Hash"), "prev_anchor_hash": schema_ref("Hash"), "anchor_hash": schema_ref("Hash"),
                             "sinks": {"type": "array", "items": {"type": "object"}},
                             "signature": {"type": "string", "description": "Signed ProofChain head (signed note)"}}},
        "AnchorList": {"type": "object", "additionalProperties": false, "required": ["anchors"], "properties": {
            "anchors": {"type": "array", "items": schema_ref("AnchorRecord")}}},
        "ProofBundle": {"type": "object", "additionalProperties": false,
                        "required": ["format", "leaf", "leaf_hash", "receipt", "inclusion", "checkpoint", "vkey", "anchor"],
                        "properties": {
                            "format": {"type": "string"}, "leaf": {"type": "string"}, "leaf_hash": schema_ref("Hash"),
                            "receipt": {"type": "object"}, "inclusion": schema_ref("InclusionProof"),
                            "checkpoint": schema_ref("SignedNote"), "vkey": {"type": "string"},
                            "anchor": {"oneOf": [{"type": "null"}, schema_ref("AnchorRecord")]}}},
    }));
    groups.push(json!({
        "Health": {"type": "object", "additionalProperties": false, "required": ["status", "service", "version"],
                   "properties": {"status": {"const": "ok"}, "service": {"const": crate::SERVICE}, "version": {"type": "string"}}},
        "Ready": {"type": "object", "additionalProperties": false, "required": ["status", "checks"], "properties": {
            "status": {"enum": ["ready", "degraded", "unavailable"]},
            "checks": {"type": "object", "additionalProperties": false, "required": ["postgres", "redis"], "properties": {
                "postgres": {"enum": ["up", "down"]}, "redis": {"enum": ["up", "degraded", "disabled"]}}}}},
        "Status": {"type": "object", "additionalProperties": false,
                   "required": ["service", "version", "mesh_id", "db_role", "api_addr", "metrics_addr", "pool", "cache", "config"],
                   "properties": {
                       "service": {"const": crate::SERVICE}, "version": {"type": "string"}, "mesh_id": {"type": "string"},
                       "db_role": {"type": ["string", "null"]}, "api_addr": {"type": "string"}, "metrics_addr": {"type": "string"},
                       "pool": {"type": "object", "additionalProperties": false, "required": ["max", "open", "idle", "waiting"],
                                "properties": {"max": {"type": "integer", "minimum": 0}, "open": {"type": "integer", "minimum": 0},
                                               "idle": {"type": "integer", "minimum": 0}, "waiting": {"type": "integer", "minimum": 0}}},
                       "cache": {"type": "string"},
                       "config": {"type": "object", "description": "The resolved configuration, every secret redacted"}}},
        "OpenApiDocument": {"type": "object", "required": ["openapi", "info", "paths"]},
    }));
    let receipt_ref = json!({"type": "object", "additionalProperties": false,
        "required": ["scroll", "seq", "leaf_hash", "submitted_at", "submitter"],
        "properties": {"scroll": schema_ref("ScrollName"), "seq": safe, "leaf_hash": schema_ref("Hash"),
                       "submitted_at": stamp, "submitter": {"type": "string"}}});
    groups.push(json!({
        "Constitution": {"type": "object", "additionalProperties": false, "required": ["version", "scrolls"],
            "description": "Per-scroll rules (docs/governance.md): `types` (names or `prefix*`), `max_payload_bytes`, `payload` (type pattern → JSON Schema, draft 2020-12, no `$ref`), `writers` (type pattern → roles, key_ids, services); `*` applies to scrolls not named",
            "properties": {"version": {"type": "integer", "minimum": 1, "maximum": MAX_SAFE_INTEGER},
                           "description": {"type": "string"},
                           "scrolls": {"type": "object"}}},
        "Adoption": {"type": "object", "additionalProperties": false, "required": ["constitution"],
                     "properties": {"constitution": schema_ref("Constitution")}},
        "Adopted": {"type": "object", "additionalProperties": false, "required": ["version", "receipt"],
                    "properties": {"version": safe, "receipt": receipt_ref}},
        "ConstitutionInForce": {"type": "object", "additionalProperties": false,
                                "required": ["version", "constitution", "adopted_by", "receipt"],
                                "properties": {"version": safe, "constitution": schema_ref("Constitution"),
                                               "adopted_by": {"type": ["string", "null"]}, "receipt": receipt_ref}},
        "EmergencyRequest": {"type": "object", "additionalProperties": false, "required": ["reason"],
                             "properties": {"reason": {"type": "string", "minLength": 1, "maxLength": ledger::governance::emergency::MAX_REASON_CHARS,
                                                       "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$"}}},
        "EmergencyState": {"type": "object", "additionalProperties": false, "required": ["active"],
                           "properties": {"active": {"type": "boolean"}, "reason": {"type": "string"},
                                          "raised_by": {"type": "string"}, "lifted_by": {"type": "string"},
                                          "since": {"type": "string"}, "receipt": {"type": "object"}}},
        "MeshNodes": {"type": "object", "additionalProperties": false, "required": ["healthy", "nodes"],
                      "properties": {"healthy": safe, "nodes": {"type": "array", "items": {
                          "type": "object", "required": ["node_id", "service", "healthy", "status", "last_seen"],
                          "properties": {"node_id": {"type": "string"}, "service": {"type": "string"},
                                         "healthy": {"type": "boolean"},
                                         "status": {"enum": ["healthy", "unhealthy", "departed", "left", "removed"]},
                                         "last_seen": {"type": "string"}}}}}},
        "MeshRoutes": {"type": "object", "additionalProperties": false, "required": ["unhealthy", "routes"],
                       "properties": {"unhealthy": safe, "routes": {"type": "array", "items": {
                           "type": "object", "required": ["route_id", "node_id", "target", "healthy"],
                           "properties": {"route_id": {"type": "string"}, "node_id": {"type": "string"},
                                          "target": {"type": "string"}, "healthy": {"type": "boolean"}}}}}},
    }));
    let mut all = Map::new();
    for g in groups {
        if let Value::Object(m) = g {
            all.extend(m);
        }
    }
    Value::Object(all)
}

/// The OpenAPI 3.1 document for a portal with the default options.
pub fn document() -> Value {
    document_for(&PortalArgs::default())
}

/// The OpenAPI 3.1 document for a portal running with `opts` (the batch limit is theirs).
pub fn document_for(opts: &PortalArgs) -> Value {
    let mut paths = Map::new();
    for op in OPS {
        let entry = paths
            .entry(op.path.to_string())
            .or_insert_with(|| json!({}));
        entry[op.method] = operation(op);
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "VaultMesh portal", "version": env!("CARGO_PKG_VERSION"), "description": DESCRIPTION},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                "description": "An API key from `vaultmesh keys create`: `Authorization: Bearer <key>`"}},
            "headers": {"RetryAfter": {"description": "Seconds to wait before retrying", "required": true,
                                       "schema": {"type": "integer", "minimum": 1}}},
            "responses": {"MethodNotAllowed": {
                "description": "A known path with a method it does not serve (`method_not_allowed`); answered by the listener for every path",
                "headers": {"Allow": {"description": "The methods this path serves (HEAD wherever GET)", "required": true,
                                      "schema": {"type": "string"}}},
                "content": {"application/json": {"schema": schema_ref("Error")}},
            }},
            "schemas": schemas(opts),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    if k == "$ref" {
                        out.push(x.as_str().unwrap_or_default().to_string());
                    }
                    refs(x, out);
                }
            }
            Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
            _ => {}
        }
    }

    fn resolve<'a>(doc: &'a Value, pointer: &str) -> Option<&'a Value> {
        doc.pointer(pointer.strip_prefix('#')?)
    }

    #[test]
    fn the_document_is_openapi_3_1_in_structure() {
        let doc = document();
        assert_eq!(doc["openapi"], "3.1.0");
        assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
        let mut all = Vec::new();
        refs(&doc, &mut all);
        assert!(!all.is_empty());
        for r in &all {
            assert!(resolve(&doc, r).is_some(), "dangling $ref {r}");
        }
        let paths = doc["paths"]
            .as_object()
            .unwrap_or_else(|| panic!("no paths"));
        let mut ids = BTreeSet::new();
        for (path, item) in paths {
            assert!(path.starts_with('/'), "{path}");
            let templated: BTreeSet<&str> = path
                .split('/')
                .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
                .collect();
            let item = item.as_object().unwrap_or_else(|| panic!("{path}"));
            for (method, op) in item {
                assert!(
                    ["get", "put", "post", "delete", "options", "head", "patch", "trace"]
                        .contains(&method.as_str()),
                    "{path}: {method}"
                );
                assert!(
                    ids.insert(op["operationId"].to_string()),
                    "duplicate operationId"
                );
                let params = op["parameters"].as_array().cloned().unwrap_or_default();
                let mut seen = BTreeSet::new();
                let mut in_path = BTreeSet::new();
                for p in &params {
                    let (name, place) = (p["name"].as_str(), p["in"].as_str());
                    assert!(
                        matches!(place, Some("path" | "query" | "header" | "cookie")),
                        "{path} {method}: {p}"
                    );
                    assert!(seen.insert((name, place)), "{path} {method}: duplicate {p}");
                    assert!(p["schema"].is_object(), "{p}");
                    if place == Some("path") {
                        assert_eq!(p["required"], true, "{p}");
                        in_path.insert(name.unwrap_or_default());
                    }
                }
                assert_eq!(in_path, templated, "{path} {method}: path parameters");
                let responses = op["responses"]
                    .as_object()
                    .unwrap_or_else(|| panic!("{path}"));
                assert!(!responses.is_empty());
                for (status, r) in responses {
                    let code: u16 = status.parse().unwrap_or(0);
                    assert!((100..600).contains(&code), "{path} {method}: {status}");
                    assert!(r["description"].is_string(), "{path} {method} {status}");
                    for (media, m) in r["content"].as_object().cloned().unwrap_or_default() {
                        assert!(media.contains('/'), "{media}");
                        assert!(m["schema"].is_object(), "{path} {method} {status} {media}");
                    }
                }
                if let Some(sec) = op.get("security") {
                    for req in sec.as_array().cloned().unwrap_or_default() {
                        for scheme in req.as_object().cloned().unwrap_or_default().keys() {
                            let declared = &doc["components"]["securitySchemes"][scheme];
                            assert!(declared.is_object(), "undeclared scheme {scheme}");
                        }
                    }
                }
                if let Some(body) = op.get("requestBody") {
                    let media: Vec<&String> = body["content"]
                        .as_object()
                        .map(|m| m.keys().collect())
                        .unwrap_or_default();
                    assert_eq!(media, ["application/json"], "{path} {method}");
                }
            }
        }
    }

    #[test]
    fn every_route_in_the_table_is_documented_with_its_statuses() {
        let doc = document();
        let declared = declared();
        for op in OPS {
            let o = &doc["paths"][op.path][op.method];
            assert!(o.is_object(), "{} {} missing", op.method, op.path);
            let listed: Vec<u16> = o["responses"]
                .as_object()
                .map(|m| m.keys().filter_map(|k| k.parse().ok()).collect())
                .unwrap_or_default();
            assert_eq!(listed, statuses(op), "{} {}", op.method, op.path);
            for s in &listed {
                assert!(declared.contains(&(op.method.to_uppercase(), op.path.to_string(), *s)));
            }
            assert_eq!(
                o["security"].is_array(),
                op.access != Access::Public,
                "{}",
                op.path
            );
            for s in [400, 414, 431, 503] {
                assert!(listed.contains(&s), "{} {} lacks {s}", op.method, op.path);
            }
        }
        let count: usize = doc["paths"]
            .as_object()
            .map(|m| {
                m.values()
                    .map(|i| i.as_object().map_or(0, |o| o.len()))
                    .sum()
            })
            .unwrap_or(0);
        assert_eq!(
            count,
            OPS.len(),
            "the document has exactly the table's operations"
        );
        assert_eq!(
            doc["paths"]["/v1/scrolls/{scroll}/checkpoint"]["get"]["responses"]["200"]["content"]
                .as_object()
                .map(|m| m.keys().cloned().collect::<Vec<_>>()),
            Some(vec![
                "application/json".to_string(),
                "text/plain".to_string()
            ])
        );
        assert!(
            doc["paths"]["/v1/keys/guardian"]["get"]["responses"]["200"]["content"]["text/plain"]
                .is_object()
        );
        let r429 = &doc["paths"]["/v1/scrolls"]["post"]["responses"]["429"];
        assert_eq!(
            r429["headers"]["Retry-After"]["$ref"],
            "#/components/headers/RetryAfter"
        );
    }

    #[test]
    fn the_batch_limit_is_the_running_portals() {
        let opts = PortalArgs {
            max_batch: 7,
            ..PortalArgs::default()
        };
        let doc = document_for(&opts);
        assert_eq!(
            doc["components"]["schemas"]["Batch"]["properties"]["receipts"]["maxItems"],
            7
        );
    }

    #[test]
    fn patterns_match_the_servers_rules() {
        let doc = document();
        let s = &doc["components"]["schemas"];
        assert_eq!(s["ScrollName"]["pattern"], "^[a-z][a-z0-9_-]{0,62}$");
        assert_eq!(s["Hash"]["pattern"], "^[0-9a-f]{64}$");
        assert_eq!(s["IdempotencyKey"]["maxLength"], 255);
        assert_eq!(s["ReceiptType"]["maxLength"], 128);
        assert_eq!(s["Position"]["maximum"], u64::MAX);
    }
}
