//! The OpenAPI 3.1 description served at `/v1/openapi.json`, built from one route table.

use serde_json::{json, Map, Value};

/// One operation: method, path template, summary, whether it needs a key, statuses.
struct Op {
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    auth: bool,
    body: Option<&'static str>,
    query: &'static [(&'static str, bool)],
    statuses: &'static [u16],
}

/// The portal's routes (method, path template): the same table the listener uses to answer
/// 404, 405 with `Allow`, and `HEAD`, so the served routes and the document never drift.
pub fn route_table() -> ledger::http_guard::RouteTable {
    ledger::http_guard::RouteTable::new(OPS.iter().map(|op| (op.method, op.path)))
}

const OPS: &[Op] = &[
    Op { method: "post", path: "/v1/scrolls/{scroll}/receipts", summary: "Submit one receipt (writer); 201 once durable, 200 for an idempotent replay", auth: true, body: Some("Submission"), query: &[], statuses: &[200, 201, 400, 401, 403, 404, 409, 411, 413, 503] },
    Op { method: "post", path: "/v1/scrolls/{scroll}/receipts/batch", summary: "Submit up to max_batch receipts, all or nothing (writer); with Idempotency-Key, a replay of the same batch answers 200 with the original receipts", auth: true, body: Some("Batch"), query: &[], statuses: &[200, 201, 400, 401, 403, 404, 409, 411, 413, 503] },
    Op { method: "get", path: "/v1/scrolls", summary: "List scrolls with sizes and latest checkpoint", auth: false, body: None, query: &[], statuses: &[200, 503] },
    Op { method: "post", path: "/v1/scrolls", summary: "Create a scroll (admin)", auth: true, body: Some("NewScroll"), query: &[], statuses: &[201, 400, 401, 403, 409, 411, 413, 503] },
    Op { method: "get", path: "/v1/scrolls/{scroll}/receipts", summary: "Page through a scroll's receipts (reader)", auth: true, body: None, query: &[("from", false), ("limit", false)], statuses: &[200, 400, 401, 403, 404, 500, 503] },
    Op { method: "get", path: "/v1/scrolls/{scroll}/receipts/{seq}", summary: "One receipt by position (reader)", auth: true, body: None, query: &[], statuses: &[200, 400, 401, 403, 404, 500, 503] },
    Op { method: "get", path: "/v1/receipts/{leaf_hash}", summary: "One receipt by leaf hash (reader)", auth: true, body: None, query: &[], statuses: &[200, 400, 401, 403, 404, 500, 503] },
    Op { method: "get", path: "/v1/scrolls/{scroll}/checkpoint", summary: "Latest signed checkpoint: signed note as text/plain, JSON with Accept: application/json", auth: false, body: None, query: &[], statuses: &[200, 400, 404, 503] },
    Op { method: "get", path: "/v1/scrolls/{scroll}/proof/inclusion", summary: "RFC 9162 inclusion proof, up to the latest signed checkpoint", auth: false, body: None, query: &[("seq", true), ("tree_size", false)], statuses: &[200, 400, 404, 500, 503] },
    Op { method: "get", path: "/v1/scrolls/{scroll}/proof/consistency", summary: "RFC 9162 consistency proof, up to the latest signed checkpoint", auth: false, body: None, query: &[("from", true), ("to", false)], statuses: &[200, 400, 404, 500, 503] },
    Op { method: "get", path: "/v1/scrolls/{scroll}/receipts/{seq}/bundle", summary: "Offline proof bundle of one receipt (reader)", auth: true, body: None, query: &[], statuses: &[200, 400, 401, 403, 404, 500, 503] },
    Op { method: "get", path: "/v1/anchors", summary: "ProofChain records in epoch order", auth: false, body: None, query: &[("from", false), ("limit", false)], statuses: &[200, 400, 500, 503] },
    Op { method: "get", path: "/v1/anchors/{epoch}", summary: "One ProofChain record", auth: false, body: None, query: &[], statuses: &[200, 400, 404, 500, 503] },
    Op { method: "get", path: "/v1/keys/guardian", summary: "The guardian's verifier key (signed-note vkey, text/plain)", auth: false, body: None, query: &[], statuses: &[200, 404] },
    Op { method: "get", path: "/v1/health", summary: "Liveness", auth: false, body: None, query: &[], statuses: &[200] },
    Op { method: "get", path: "/v1/ready", summary: "Readiness: 503 when Postgres is unreachable, degraded-but-200 when only Redis is", auth: false, body: None, query: &[], statuses: &[200, 503] },
    Op { method: "get", path: "/v1/status", summary: "Runtime configuration, pool and cache state", auth: false, body: None, query: &[], statuses: &[200] },
    Op { method: "get", path: "/v1/openapi.json", summary: "This document", auth: false, body: None, query: &[], statuses: &[200] },
];

fn status_text(code: u16) -> &'static str {
    match code {
        200 => "OK",
        201 => "Created (durable)",
        400 => "Invalid input (JSON error naming the field)",
        401 => "Missing or invalid API key",
        403 => "Role or scroll not allowed",
        404 => "Not found",
        405 => "Method not allowed",
        409 => "Idempotency-Key reused with another body, or already exists",
        411 => "Content-Length required",
        413 => "Body over the limit",
        500 => "Stored data failed its integrity check (never served as good)",
        503 => "Postgres unavailable",
        _ => "",
    }
}

/// Every (method, path template, status) the document declares.
pub fn declared() -> Vec<(String, String, u16)> {
    OPS.iter()
        .flat_map(|o| {
            o.statuses
                .iter()
                .map(|s| (o.method.to_uppercase(), o.path.to_string(), *s))
        })
        .collect()
}

/// The OpenAPI 3.1 document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for op in OPS {
        let mut params: Vec<Value> = op
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        params.extend(op.query.iter().map(|(name, required)| {
            json!({"name": name, "in": "query", "required": required, "schema": {"type": "integer", "minimum": 0}})
        }));
        if op.path.starts_with("/v1/scrolls/{scroll}/receipts") && op.method == "post" {
            params.push(json!({"name": "Idempotency-Key", "in": "header", "required": false, "schema": {"type": "string", "maxLength": 200}}));
        }
        let mut responses = Map::new();
        for s in op.statuses {
            let content = if *s >= 400 {
                json!({"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}})
            } else {
                json!({"application/json": {}})
            };
            responses.insert(
                s.to_string(),
                json!({"description": status_text(*s), "content": content}),
            );
        }
        let mut operation =
            json!({"summary": op.summary, "parameters": params, "responses": responses});
        if op.auth {
            operation["security"] = json!([{"bearer": []}]);
        }
        if let Some(schema) = op.body {
            operation["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}});
        }
        let entry = paths
            .entry(op.path.to_string())
            .or_insert_with(|| json!({}));
        entry[op.method] = operation;
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "VaultMesh portal", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Append-only receipt ledger with Merkle anchoring. Unknown routes answer 404 and wrong methods 405, as JSON errors."},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}},
                "Submission": {"type": "object", "additionalProperties": false, "required": ["type", "payload"], "properties": {"type": {"type": "string", "minLength": 1, "maxLength": 128}, "payload": {"type": "object", "description": "At most 64 KiB canonical; numbers must be exactly representable as doubles"}}},
                "Batch": {"type": "object", "additionalProperties": false, "required": ["receipts"], "properties": {"receipts": {"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/Submission"}}}},
                "NewScroll": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string", "pattern": "^[a-z][a-z0-9_-]{0,62}$"}}}
            }
        }
    })
}
