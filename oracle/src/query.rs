//! One query: validate it, search the corpus, find ledger evidence (with inclusion proofs
//! against each scroll's latest checkpoint), answer, and receipt the answer in `compliance`.

use crate::answer::{self, Answer, Material};
use crate::frameworks::{is_known, FRAMEWORKS};
use chrono::{DateTime, Utc};
use ledger::hash::{to_hex, Sha3Hasher};
use ledger::receipt::{validate_scroll_name, ReceiptDraft};
use ledger::store::{AppendOutcome, NewReceipt, SectionHit, Store, StoreError};
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::collections::{BTreeSet, HashMap};

/// Longest accepted question, in characters.
pub const MAX_QUESTION_CHARS: usize = 2_000;
/// Sections ranked per query.
const HITS: u32 = 8;
/// Evidence receipts returned per query.
const EVIDENCE: u32 = 10;
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
    /// Bad input; the message names the field.
    #[error("{0}")]
    Invalid(String),
    /// Postgres failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<QueryError> for ledger::api_error::ApiError {
    fn from(e: QueryError) -> Self {
        match e {
            QueryError::Invalid(m) => ledger::api_error::ApiError::bad("invalid_query", m),
            QueryError::Store(e) => ledger::api_error::ApiError::from(e),
        }
    }
}

fn invalid(msg: impl Into<String>) -> QueryError {
    QueryError::Invalid(msg.into())
}

fn string_list(m: &Map<String, Value>, field: &str) -> Result<Vec<String>, QueryError> {
    match m.get(field) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| invalid(format!("{field}[{i}]: must be a string")))
            })
            .collect(),
        Some(_) => Err(invalid(format!("{field}: must be an array of strings"))),
    }
}

fn time(m: &Map<String, Value>, field: &str) -> Result<Option<DateTime<Utc>>, QueryError> {
    match m.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => DateTime::parse_from_rfc3339(s)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|_| invalid(format!("{field}: must be an RFC 3339 time"))),
        Some(_) => Err(invalid(format!("{field}: must be an RFC 3339 time string"))),
    }
}

impl Query {
    /// Validates a request body.
    pub fn from_json(v: Value) -> Result<Self, QueryError> {
        let Value::Object(m) = v else {
            return Err(invalid("body: must be a JSON object"));
        };
        if let Some(extra) = m.keys().find(|k| {
            !["question", "frameworks", "scrolls", "since", "until"].contains(&k.as_str())
        }) {
            return Err(invalid(format!(
                "{extra}: unknown field (allowed: question, frameworks, scrolls, since, until)"
            )));
        }
        let question = match m.get("question") {
            Some(Value::String(q)) => q.trim().to_string(),
            Some(_) => return Err(invalid("question: must be a string")),
            None => return Err(invalid("question: is required")),
        };
        let chars = question.chars().count();
        if chars == 0 || chars > MAX_QUESTION_CHARS {
            return Err(invalid(format!(
                "question: must be 1 to {MAX_QUESTION_CHARS} characters"
            )));
        }
        let frameworks = string_list(&m, "frameworks")?;
        if let Some(bad) = frameworks.iter().find(|f| !is_known(f)) {
            return Err(invalid(format!(
                "frameworks: unknown framework {bad:?} (known: {})",
                FRAMEWORKS.join(", ")
            )));
        }
        let scrolls = string_list(&m, "scrolls")?;
        if let Some(bad) = scrolls.iter().find(|s| validate_scroll_name(s).is_err()) {
            return Err(invalid(format!("scrolls: invalid scroll name {bad:?}")));
        }
        let (since, until) = (time(&m, "since")?, time(&m, "until")?);
        if let (Some(s), Some(u)) = (since, until) {
            if s > u {
                return Err(invalid("since: must not be after until"));
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

/// Searches the corpus and the ledger for `q`.
pub async fn gather(store: &Store, q: &Query) -> Result<Gathered, QueryError> {
    for s in &q.scrolls {
        if let Err(StoreError::UnknownScroll(_)) = store.scroll(s).await {
            return Err(invalid(format!("scrolls: unknown scroll {s:?}")));
        }
    }
    let hits = store
        .search_sections(&q.question, &q.frameworks, HITS)
        .await?;
    let mut requirements = Vec::new();
    let mut types = BTreeSet::new();
    for (i, h) in hits.iter().enumerate() {
        if h.evidence_types.is_empty() {
            continue;
        }
        let found = store
            .has_evidence(&h.evidence_types, &q.scrolls, q.since, q.until)
            .await?;
        requirements.push((i, found));
        types.extend(h.evidence_types.iter().cloned());
    }
    let types: Vec<String> = types.into_iter().collect();
    let rows = store
        .evidence(&types, &q.scrolls, q.since, q.until, EVIDENCE)
        .await?;
    let mut checkpoints = HashMap::new();
    let mut evidence = Vec::with_capacity(rows.len());
    for r in rows {
        if !checkpoints.contains_key(&r.scroll) {
            let cp = store.latest_checkpoint(&r.scroll).await?;
            checkpoints.insert(r.scroll.clone(), cp);
        }
        let proof = match checkpoints.get(&r.scroll).and_then(Option::as_ref) {
            Some(cp) if r.seq < cp.tree_size => {
                let p = store
                    .inclusion_proof(r.scroll_id, r.seq, cp.tree_size)
                    .await?;
                Some(json!({
                    "tree_size": cp.tree_size,
                    "root": to_hex(&cp.root),
                    "path": p.path.iter().map(to_hex).collect::<Vec<_>>(),
                }))
            }
            _ => None,
        };
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
    let v = serde_json::to_value(answer).map_err(|e| invalid(e.to_string()))?;
    let bytes = ledger::jcs::to_vec(&v).map_err(|e| invalid(e.to_string()))?;
    Ok(to_hex(&Sha3Hasher::plain(&bytes)))
}

/// Writes the `oracle_answer` receipt for an answer; returns `{scroll, seq, leaf_hash}`.
pub async fn receipt(
    store: &Store,
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
    let draft = ReceiptDraft::new("oracle_answer", payload).map_err(|e| invalid(e.to_string()))?;
    let item = NewReceipt {
        draft,
        submitter: "oracle".into(),
        idempotency_key: None,
        request_hash: None,
    };
    let admitted = ledger::gate::AppendGate::new()
        .admit(
            &ledger::gate::Writer::Service(ledger::gate::Service::Oracle),
            ANSWER_SCROLL,
            vec![item],
        )
        .map_err(|e| invalid(e.to_string()))?;
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
