//! The optional LLM answerer: an OpenAI-compatible chat-completions endpoint gets the
//! question, the ranked passages and the evidence summary, and must return a
//! `vm_oracle_answer_v1` object. Its answer is used only if it validates — the same question,
//! citations only of passages it was given, each excerpt found verbatim in its passage, known
//! frameworks, a confidence in [0, 1] — otherwise the extractive answer is given and
//! `vaultmesh_oracle_llm_errors_total{reason}` counts why. The response body is read up to
//! [`MAX_RESPONSE_BYTES`]; a larger one is a failure of its own (`response_too_large`).

use crate::answer::{Answer, Citation};
use crate::metrics::LLM_ERRORS;
use crate::query::{Gathered, Query};
use serde_json::{json, Value};
use std::time::Duration;

/// Longest accepted answer text, in characters.
const MAX_ANSWER_CHARS: usize = 8_000;

/// Largest LLM response body read, in bytes; a larger one is not read further and counts as
/// a failed answer (`response_too_large`).
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// A configured chat-completions endpoint.
pub struct Llm {
    url: String,
    model: String,
    key: Option<String>,
    http: reqwest::Client,
}

/// Why an LLM answer was not used (the metric's `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LlmFailure {
    /// No answer within the timeout.
    Timeout,
    /// Could not connect or read.
    Transport,
    /// A non-2xx status.
    HttpStatus,
    /// A response body over [`MAX_RESPONSE_BYTES`] (declared or sent).
    TooLarge,
    /// Not a chat-completions response, or its content is not JSON.
    Malformed,
    /// JSON that is not a valid answer to this question.
    Schema,
}

impl LlmFailure {
    /// Every failure, for counters initialised at zero.
    pub const ALL: [LlmFailure; 6] = [
        LlmFailure::Timeout,
        LlmFailure::Transport,
        LlmFailure::HttpStatus,
        LlmFailure::TooLarge,
        LlmFailure::Malformed,
        LlmFailure::Schema,
    ];

    /// The `reason` label.
    pub fn reason(self) -> &'static str {
        match self {
            LlmFailure::Timeout => "timeout",
            LlmFailure::Transport => "transport",
            LlmFailure::HttpStatus => "http_status",
            LlmFailure::TooLarge => "response_too_large",
            LlmFailure::Malformed => "malformed_response",
            LlmFailure::Schema => "invalid_answer",
        }
    }
}

impl Llm {
    /// A client for `url` with `model`, an optional bearer `key` and a `timeout`.
    pub fn new(
        url: &str,
        model: &str,
        key: Option<&str>,
        timeout: Duration,
    ) -> Result<Self, reqwest::Error> {
        Ok(Self {
            url: url.to_string(),
            model: model.to_string(),
            key: key.map(str::to_string),
            http: reqwest::Client::builder().timeout(timeout).build()?,
        })
    }

    /// Whether the endpoint answers at all (any status below 500 to a GET): the oracle's
    /// `llm` route probe, which never sends a question.
    pub async fn probe(&self) -> Result<(), String> {
        match self.http.get(&self.url).send().await {
            Ok(r) if r.status().is_server_error() => Err(format!("HTTP {}", r.status())),
            Ok(_) => Ok(()),
            Err(e) if e.is_timeout() => Err("timeout".into()),
            Err(e) => Err(format!("unreachable: {e}")),
        }
    }

    /// The LLM's answer if it validates; otherwise counts the failure and returns it.
    pub async fn answer(
        &self,
        q: &Query,
        g: &Gathered,
        extractive: &Answer,
    ) -> Result<Answer, LlmFailure> {
        let result = self.ask(q, g, extractive).await;
        if let Err(f) = result {
            LLM_ERRORS.with_label_values(&[f.reason()]).inc();
            tracing::warn!(
                reason = f.reason(),
                "LLM answer not used; answering extractively"
            );
        }
        result
    }

    async fn ask(
        &self,
        q: &Query,
        g: &Gathered,
        extractive: &Answer,
    ) -> Result<Answer, LlmFailure> {
        let passages: Vec<Value> = g
            .hits
            .iter()
            .map(|h| json!({"document_id": h.document_id, "framework": h.framework, "heading": h.heading, "text": h.body}))
            .collect();
        let context = json!({
            "question": q.question,
            "frameworks": q.frameworks,
            "passages": passages,
            "evidence_receipts": g.evidence.iter().map(|e| json!({"scroll": e.scroll, "seq": e.seq, "type": e.kind, "submitted_at": e.submitted_at})).collect::<Vec<_>>(),
            "gaps": extractive.gaps,
        });
        let system = "You answer compliance questions using only the passages and ledger evidence given. \
            Reply with one JSON object with exactly these fields: question (the question, verbatim), \
            answer_text (string), citations (array of {document_id, framework, excerpt} quoting only the \
            given passages), compliance_flags ({gdpr_relevant, ai_act_relevant, nis2_relevant} booleans), \
            gaps (array of strings), insufficient_context (boolean), confidence (number from 0 to 1).";
        let body = json!({
            "model": self.model,
            "temperature": 0,
            "response_format": {"type": "json_object"},
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": context.to_string()},
            ],
        });
        let mut req = self.http.post(&self.url).json(&body);
        if let Some(k) = &self.key {
            req = req.bearer_auth(k);
        }
        let resp = req.send().await.map_err(|e| {
            if e.is_timeout() {
                LlmFailure::Timeout
            } else {
                LlmFailure::Transport
            }
        })?;
        if !resp.status().is_success() {
            return Err(LlmFailure::HttpStatus);
        }
        let body = read_capped(resp).await?;
        let v: Value = serde_json::from_slice(&body).map_err(|_| LlmFailure::Malformed)?;
        let content = v["choices"][0]["message"]["content"]
            .as_str()
            .ok_or(LlmFailure::Malformed)?;
        let answer: Value = serde_json::from_str(content).map_err(|_| LlmFailure::Malformed)?;
        let answer: Answer = serde_json::from_value(answer).map_err(|_| LlmFailure::Schema)?;
        validate(&answer, q, g)?;
        Ok(answer)
    }
}

/// The response body, if it is at most [`MAX_RESPONSE_BYTES`]: refused unread when its
/// declared length is larger, and no longer read once more has arrived.
async fn read_capped(mut resp: reqwest::Response) -> Result<Vec<u8>, LlmFailure> {
    if resp
        .content_length()
        .is_some_and(|n| n > MAX_RESPONSE_BYTES as u64)
    {
        return Err(LlmFailure::TooLarge);
    }
    let mut body = Vec::new();
    loop {
        let chunk = resp.chunk().await.map_err(|e| {
            if e.is_timeout() {
                LlmFailure::Timeout
            } else {
                LlmFailure::Transport
            }
        })?;
        let Some(chunk) = chunk else {
            return Ok(body);
        };
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(LlmFailure::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
}

/// An LLM answer must answer this question, cite only given passages (with their true
/// framework) by excerpts found in them, and keep its numbers and sizes in range.
fn validate(a: &Answer, q: &Query, g: &Gathered) -> Result<(), LlmFailure> {
    let text_ok =
        !a.answer_text.trim().is_empty() && a.answer_text.chars().count() <= MAX_ANSWER_CHARS;
    let confidence_ok = (0.0..=1.0).contains(&a.confidence);
    let citations_ok = a.citations.iter().all(|c| quotes_its_passage(c, g));
    let honest = !a.citations.is_empty() || a.insufficient_context;
    if a.question == q.question && text_ok && confidence_ok && citations_ok && honest {
        Ok(())
    } else {
        Err(LlmFailure::Schema)
    }
}

/// Whether the citation's excerpt appears verbatim in a passage of the cited document and
/// framework that the model was given; only surrounding whitespace is trimmed and runs of
/// whitespace count as one space, on both sides.
fn quotes_its_passage(c: &Citation, g: &Gathered) -> bool {
    let excerpt = squash_whitespace(&c.excerpt);
    !excerpt.is_empty()
        && g.hits.iter().any(|h| {
            h.document_id == c.document_id
                && h.framework == c.framework
                && squash_whitespace(&h.body).contains(&excerpt)
        })
}

/// `text` trimmed, with every run of whitespace replaced by one space.
fn squash_whitespace(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger::store::SectionHit;

    fn gathered(body: &str) -> Gathered {
        Gathered {
            hits: vec![SectionHit {
                document_id: "doc".into(),
                framework: "gdpr".into(),
                heading: "h".into(),
                body: body.into(),
                evidence_types: Vec::new(),
                rank: 0.5,
            }],
            requirements: Vec::new(),
            evidence: Vec::new(),
        }
    }

    fn cite(document_id: &str, framework: &str, excerpt: &str) -> Citation {
        Citation {
            document_id: document_id.into(),
            framework: framework.into(),
            excerpt: excerpt.into(),
        }
    }

    #[test]
    fn excerpts_must_be_verbatim_up_to_whitespace_runs() {
        let g = gathered("Keep the logs for a\nperiod that fits,  and at least six months.");
        for ok in [
            "at least six months",
            "  a period that fits, and at least\tsix months.\n",
            "Keep the logs for a\n\n period",
        ] {
            assert!(quotes_its_passage(&cite("doc", "gdpr", ok), &g), "{ok:?}");
        }
        for bad in [
            "at least 6 months",
            "At least six months",
            "at least six months unless",
            "atleast six months",
            "period that fits; and",
            " \n ",
            "",
        ] {
            assert!(
                !quotes_its_passage(&cite("doc", "gdpr", bad), &g),
                "{bad:?}"
            );
        }
        assert!(!quotes_its_passage(&cite("other", "gdpr", "at least"), &g));
        assert!(!quotes_its_passage(&cite("doc", "nis2", "at least"), &g));
    }
}
