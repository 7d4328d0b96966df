//! One query: validate it, search the corpus, find ledger evidence (with inclusion proofs
//! against each scroll's latest checkpoint), answer, and receipt the answer in `compliance`.
//!
//! A reader's query costs a bounded amount: its fields are capped ([`MAX_QUESTION_CHARS`],
//! [`MAX_FRAMEWORKS`], [`MAX_SCROLLS`]), and it makes at most [`MAX_STORE_QUERIES`] store
//! calls, each index-backed: the scrolls named, the section search, which evidence types are
//! present, the evidence rows, their scrolls' checkpoints, one inclusion proof per evidence
//! row, and the answer's receipt.

use crate::answer::{self, Answer, Material};
use crate::corpus::MAX_EVIDENCE_TYPES_PER_SECTION;
use crate::frameworks::{is_known, FRAMEWORKS};
use crate::metrics::QUERY_REJECTIONS;
use chrono::{DateTime, Utc};
use ledger::hash::{to_hex, Sha3Hasher};
use ledger::receipt::{validate_scroll_name, ReceiptDraft};
use ledger::storage::{ReceiptLog, ScrollRef, Storage};
use ledger::store::{AppendOutcome, NewReceipt, SectionHit, Store, StoreError};
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::collections::HashMap;

/// Longest accepted question, in characters.
pub const MAX_QUESTION_CHARS: usize = 2_000;
/// Most frameworks a query may list (each known framework once).
pub const MAX_FRAMEWORKS: usize = FRAMEWORKS.len();
/// Most scrolls a query may list.
pub const MAX_SCROLLS: usize = 16;
/// Sections ranked per query.
const HITS: u32 = 8;
/// Evidence receipts returned per query.
const EVIDENCE: u32 = 10;
/// Most distinct receipt types one query looks for (every type its sections name).
pub const MAX_EVIDENCE_TYPES: usize = HITS as usize * MAX_EVIDENCE_TYPES_PER_SECTION;
/// Most store calls one query makes: scrolls, search, types present, evidence, checkpoints,
/// one inclusion proof per evidence receipt, the answer's receipt.
pub const MAX_STORE_QUERIES: usize = 6 + EVIDENCE as usize;
/// Scroll the oracle writes its answers to.
pub const ANSWER_SCROLL: &str = "compliance";

/// A validated query.
#[derive(Debug, Clone)]
pub struct Query {
    /// The question.
    pub question: String,
    /// Frameworks to search (empty: all).
    pub frameworks: Vec<String>,
    /// Scrolls to take evidence from (empty: all).
    pub scrolls: Vec<String>,
    /// Evidence submitted at or after.
    pub since: Option<DateTime<Utc>>,
    /// Evidence submitted at or before.
    pub until: Option<DateTime<Utc>>,
}

/// Why a query was refused (400) or failed (503).
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// Bad input (counted in `vaultmesh_oracle_query_rejections_total{field}`).
    #[error("{message}")]
    Invalid {
        /// The field at fault (`body` for the body as a whole).
        field: &'static str,
        /// Explanation, starting with the field's name.
        message: String,
    },
    /// Postgres failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The append gate refused the answer's receipt (the constitution, or an emergency
    /// freeze): the answer is not served unreceipted.
    #[error(transparent)]
    Refused(#[from] ledger::gate::GateError),
}

impl From<QueryError> for ledger::api_error::ApiError {
    fn from(e: QueryError) -> Self {
        match e {
            QueryError::Invalid { message, .. } => {
                ledger::api_error::ApiError::bad("invalid_query", message)
            }
            QueryError::Store(e) => ledger::api_error::ApiError::from(e),
            QueryError::Refused(e) => ledger::api_error::ApiError::from(e),
        }
    }
}

/// A refusal of `field`, counted.
fn invalid(field: &'static str, message: impl Into<String>) -> QueryError {
    QUERY_REJECTIONS.with_label_values(&[field]).inc();
    QueryError::Invalid {
        field,
        message: message.into(),
    }
}

/// An array of at most `max` distinct strings (checked before its items are looked at).
fn string_list(
    m: &Map<String, Value>,
    field: &'static str,
    max: usize,
) -> Result<Vec<String>, QueryError> {
    let items = match m.get(field) {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => {
            return Err(invalid(
                field,
                format!("{field}: must be an array of strings"),
            ))
        }
    };
    if items.len() > max {
        return Err(invalid(
            field,
            format!("{field}: at most {max} entries, got {}", items.len()),
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for (i, v) in items.iter().enumerate() {
        let Some(s) = v.as_str() else {
            return Err(invalid(field, format!("{field}[{i}]: must be a string")));
        };
        if out.iter().any(|seen| seen == s) {
            return Err(invalid(
                field,
                format!("{field}[{i}]: {s:?} is listed twice"),
            ));
        }
        out.push(s.to_string());
    }
    Ok(out)
}

fn time(m: &Map<String, Value>, field: &'static str) -> Result<Option<DateTime<Utc>>, QueryError> {
    match m.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => DateTime::parse_from_rfc3339(s)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|_| invalid(field, format!("{field}: must be an RFC 3339 time"))),
        Some(_) => Err(invalid(
            field,
            format!("{field}: must be an RFC 3339 time string"),
        )),
    }
}

impl Query {
    /// Validates a request body.
    pub fn from_json(v: Value) -> Result<Self, QueryError> {
        let Value::Object(m) = v else {
            return Err(invalid("body", "body: must be a JSON object"));
        };
        if let Some(extra) = m.keys().find(|k| {
            !["question", "frameworks", "scrolls", "since", "until"].contains(&k.as_str())
        }) {
            return Err(invalid(
                "body",
                format!(
                    "{extra}: unknown field (allowed: question, frameworks, scrolls, since, until)"
                ),
            ));
        }
        let question = match m.get("question") {
            Some(Value::String(q)) => q.trim().to_string(),
            Some(_) => return Err(invalid("question", "question: must be a string")),
            None => return Err(invalid("question", "question: is required")),
        };
        let chars = question.chars().count();
        if chars == 0 || chars > MAX_QUESTION_CHARS {
            return Err(invalid(
                "question",
                format!("question: must be 1 to {MAX_QUESTION_CHARS} characters, got {chars}"),
            ));
        }
        if let Some(c) = question
            .chars()
            .find(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
        {
            return Err(invalid(
                "question",
                format!(
                    "question: control character U+{:04X} is not allowed",
                    u32::from(c)
                ),
            ));
        }
        let frameworks = string_list(&m, "frameworks", MAX_FRAMEWORKS)?;
        if let Some(bad) = frameworks.iter().find(|f| !is_known(f)) {
            return Err(invalid(
                "frameworks",
                format!(
                    "frameworks: unknown framework {bad:?} (known: {})",
                    FRAMEWORKS.join(", ")
                ),
            ));
        }
        let scrolls = string_list(&m, "scrolls", MAX_SCROLLS)?;
        if let Some(bad) = scrolls.iter().find(|s| validate_scroll_name(s).is_err()) {
            return Err(invalid(
                "scrolls",
                format!("scrolls: invalid scroll name {bad:?}"),
            ));
        }
        let (since, until) = (time(&m, "since")?, time(&m, "until")?);
        if let (Some(s), Some(u)) = (since, until) {
            if s > u {
                return Err(invalid("since", "since: must not be after until"));
            }
        }
        Ok(Self {
            question,
            frameworks,
            scrolls,
            since,
            until,
        })
    }
}

/// One evidence receipt with its proof.
#[derive(Debug, Clone, Serialize)]
pub struct Evidence {
    /// Scroll.
    pub scroll: String,
    /// Position.
    pub seq: u64,
    /// Leaf hash, hex.
    pub leaf_hash: String,
    /// Receipt type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Submission time.
    pub submitted_at: String,
    /// Inclusion proof against the scroll's latest signed checkpoint (`null` until the
    /// guardian has signed a checkpoint covering it).
    pub proof: Option<Value>,
}

/// The full response: the answer, its evidence, and the receipt that records it.
#[derive(Debug, Clone, Serialize)]
pub struct Response {
    /// `vm_oracle_answer_v1` fields.
    #[serde(flatten)]
    pub answer: Answer,
    /// Ledger receipts supporting it.
    pub evidence: Vec<Evidence>,
    /// Who composed the text: `extractive` or `llm`.
    pub answered_by: String,
    /// The `oracle_answer` receipt: scroll, seq, leaf_hash.
    pub receipt: Value,
}

/// What a query gathered before the answer is composed.
pub struct Gathered {
    /// Ranked sections.
    pub hits: Vec<SectionHit>,
    /// Indexes into `hits` of requirement sections, with whether evidence exists.
    pub requirements: Vec<(usize, bool)>,
    /// Evidence with proofs.
    pub evidence: Vec<Evidence>,
}

/// Searches the corpus and the ledger for `q`, in at most [`MAX_STORE_QUERIES`] - 1 store
/// calls (the answer's receipt is the last).
pub async fn gather(store: &Store, reads: &dyn Storage, q: &Query) -> Result<Gathered, QueryError> {
    if !q.scrolls.is_empty() {
        let found = store.scrolls_named(&q.scrolls).await?;
        if let Some(s) = q
            .scrolls
            .iter()
            .find(|s| !found.iter().any(|f| &f.name == *s))
        {
            return Err(invalid("scrolls", format!("scrolls: unknown scroll {s:?}")));
        }
    }
    let hits = store
        .search_sections(&q.question, &q.frameworks, HITS)
        .await?;
    let mut types: Vec<String> = Vec::new();
    for t in hits.iter().flat_map(|h| &h.evidence_types) {
        if types.len() < MAX_EVIDENCE_TYPES && !types.contains(t) {
            types.push(t.clone());
        }
    }
    let present = store
        .evidence_types_present(&types, &q.scrolls, q.since, q.until)
        .await?;
    let requirements = hits
        .iter()
        .enumerate()
        .filter(|(_, h)| !h.evidence_types.is_empty())
        .map(|(i, h)| (i, h.evidence_types.iter().any(|t| present.contains(t))))
        .collect();
    let rows = store
        .evidence(&types, &q.scrolls, q.since, q.until, EVIDENCE)
        .await?;
    let mut names: Vec<String> = rows.iter().map(|r| r.scroll.clone()).collect();
    names.sort();
    names.dedup();
    let checkpoints: HashMap<String, ledger::store::StoredCheckpoint> = reads
        .latest_checkpoints_of(&names)
        .await?
        .into_iter()
        .map(|c| (c.scroll.clone(), c))
        .collect();
    // The inclusion proofs, asked per scroll (so that a read replica's coverage is checked
    // once for each).
    let mut proven: HashMap<(String, u64), Value> = HashMap::new();
    for name in &names {
        let Some(cp) = checkpoints.get(name) else {
            continue;
        };
        let Some(scroll_id) = rows.iter().find(|r| &r.scroll == name).map(|r| r.scroll_id) else {
            continue;
        };
        let seqs: Vec<u64> = rows
            .iter()
            .filter(|r| &r.scroll == name && r.seq < cp.tree_size)
            .map(|r| r.seq)
            .collect();
        if seqs.is_empty() {
            continue;
        }
        let scroll = ScrollRef {
            name,
            id: scroll_id,
        };
        for p in reads.inclusion_proofs(scroll, cp.tree_size, &seqs).await? {
            let proof = json!({
                "tree_size": cp.tree_size,
                "root": to_hex(&cp.root),
                "path": p.path.iter().map(to_hex).collect::<Vec<_>>(),
            });
            proven.insert((name.clone(), p.leaf_index), proof);
        }
    }
    let mut evidence = Vec::with_capacity(rows.len());
    for r in rows {
        let proof = proven.remove(&(r.scroll.clone(), r.seq));
        evidence.push(Evidence {
            scroll: r.scroll,
            seq: r.seq,
            leaf_hash: to_hex(&r.leaf_hash),
            kind: r.kind,
            submitted_at: ledger::receipt::format_timestamp(r.submitted_at),
            proof,
        });
    }
    Ok(Gathered {
        hits,
        requirements,
        evidence,
    })
}

/// The extractive answer over what was gathered.
pub fn extractive_answer(q: &Query, g: &Gathered) -> Answer {
    let requirements: Vec<(&SectionHit, bool)> = g
        .requirements
        .iter()
        .map(|(i, found)| (&g.hits[*i], *found))
        .collect();
    answer::extractive(&Material {
        question: &q.question,
        frameworks: &q.frameworks,
        hits: &g.hits,
        requirements: &requirements,
        evidence_count: g.evidence.len(),
    })
}

/// SHA3-256 of the answer's RFC 8785 form: what the receipt commits to.
pub fn answer_sha3(answer: &Answer) -> Result<String, QueryError> {
    let v = serde_json::to_value(answer).map_err(|e| internal(e.to_string()))?;
    let bytes = ledger::jcs::to_vec(&v).map_err(|e| internal(e.to_string()))?;
    Ok(to_hex(&Sha3Hasher::plain(&bytes)))
}

/// Writes the `oracle_answer` receipt for an answer; returns `{scroll, seq, leaf_hash}`.
pub async fn receipt(
    store: &dyn ReceiptLog,
    gate: &ledger::gate::AppendGate,
    q: &Query,
    answer: &Answer,
    answered_by: &str,
    evidence: &[Evidence],
) -> Result<Value, QueryError> {
    let payload = json!({
        "question": answer.question,
        "answer_sha3": answer_sha3(answer)?,
        "answered_by": answered_by,
        "frameworks": q.frameworks,
        "citations": answer.citations.iter().map(|c| c.document_id.clone()).collect::<Vec<_>>(),
        "insufficient_context": answer.insufficient_context,
        "confidence_pct": (answer.confidence * 100.0).round() as i64,
        "evidence": evidence.iter().map(|e| json!({"scroll": e.scroll, "seq": e.seq, "leaf_hash": e.leaf_hash})).collect::<Vec<_>>(),
    });
    let draft = ReceiptDraft::new("oracle_answer", payload).map_err(|e| internal(e.to_string()))?;
    let item = NewReceipt {
        draft,
        submitter: "oracle".into(),
        idempotency_key: None,
        request_hash: None,
    };
    let admitted = gate.admit(
        &ledger::gate::Writer::Service(ledger::gate::Service::Oracle),
        ANSWER_SCROLL,
        vec![item],
    )?;
    let out = store.append_receipts(admitted, true).await?;
    match out.into_iter().next() {
        Some(AppendOutcome::Created(r)) => Ok(json!({
            "scroll": r.receipt.scroll, "seq": r.receipt.seq, "leaf_hash": to_hex(&r.leaf_hash),
        })),
        _ => Err(QueryError::Store(StoreError::Integrity(
            "the answer receipt was not written".into(),
        ))),
    }
}

/// A failure of the oracle's own making (an answer it cannot receipt): never the reader's
/// fault, so not a 400.
fn internal(message: String) -> QueryError {
    QueryError::Store(StoreError::Integrity(format!("answer receipt: {message}")))
}
