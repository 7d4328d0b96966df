//! The LLM answerer against a local HTTP server speaking the chat-completions wire format:
//! a valid answer is used (also when its excerpt differs from the passage only in whitespace);
//! malformed JSON, a schema-invalid answer, an invented citation, an excerpt that is not in the
//! cited passage, a 500 and a timeout each fall back to the extractive answer and count their
//! reason.
//! (One test per binary: the oracle's metrics are process-wide.)

use ledger::storage::KeyStore;
use ledger::store::Role;
use ledger::testing::{http, request, service_config, TestDb};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use warp::Filter;

#[derive(Clone, Copy, Debug)]
enum Mode {
    Valid,
    NotJson,
    BadSchema,
    InventedCitation,
    MisquotedExcerpt,
    ReflowedExcerpt,
    ServerError,
    Slow,
}

const QUESTION: &str = "How long must AI system logs be kept?";
/// In the cited passage, with a line break where this has a space.
const REFLOWED: &str = "keep the automatically generated logs under their control for a period that fits the system's purpose";

fn completion(content: &str) -> Value {
    json!({"id": "c1", "object": "chat.completion", "model": "test",
           "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}]})
}

async fn serve(mode: Arc<Mutex<Mode>>, seen: Arc<Mutex<Vec<Value>>>) -> std::net::SocketAddr {
    let route = warp::post()
        .and(warp::body::json())
        .then(move |req: Value| {
            let (mode, seen) = (mode.clone(), seen.clone());
            async move {
                seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(req);
                let mode = *mode.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let quoting = |doc: &str, excerpt: &str| json!({
                    "question": QUESTION,
                    "answer_text": "Keep them at least six months, under your control.",
                    "citations": [{"document_id": doc, "framework": "eu_ai_act", "excerpt": excerpt}],
                    "compliance_flags": {"gdpr_relevant": false, "ai_act_relevant": true, "nis2_relevant": false},
                    "gaps": [], "insufficient_context": false, "confidence": 0.9,
                }).to_string();
                let answer = |doc: &str| quoting(doc, "at least six months");
                let body = match mode {
                    Mode::Valid => completion(&answer("eu-ai-act-record-keeping")),
                    Mode::MisquotedExcerpt => completion(&quoting("eu-ai-act-record-keeping", "at least twelve months")),
                    Mode::ReflowedExcerpt => completion(&quoting("eu-ai-act-record-keeping", &format!("  {}\n", REFLOWED.replace(' ', " \t ")))),
                    Mode::NotJson => completion("Sure! Logs should be kept six months."),
                    Mode::BadSchema => completion(&json!({"question": QUESTION, "answer": "six months"}).to_string()),
                    Mode::InventedCitation => completion(&answer("made-up-regulation")),
                    Mode::ServerError => {
                        return warp::http::Response::builder().status(500).body("overloaded".to_string()).unwrap_or_default()
                    }
                    Mode::Slow => {
                        tokio::time::sleep(Duration::from_secs(3)).await;
                        completion(&answer("eu-ai-act-record-keeping"))
                    }
                };
                warp::http::Response::builder()
                    .header("content-type", "application/json")
                    .body(body.to_string())
                    .unwrap_or_default()
            }
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    tokio::spawn(warp::serve(route).incoming(listener).run());
    addr
}

/// The value of `vaultmesh_oracle_llm_errors_total{reason}` (0 before its first failure).
fn llm_errors(metrics: &str, reason: &str) -> u64 {
    let prefix = format!("vaultmesh_oracle_llm_errors_total{{reason=\"{reason}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_llm_answer_is_used_and_every_failure_falls_back() {
    let db = TestDb::new().await.unwrap_or_else(|e| panic!("{e}"));
    let reader = db
        .store
        .create_api_key(Role::Reader, None, "t")
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .token;
    let mode = Arc::new(Mutex::new(Mode::Valid));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let llm = serve(mode.clone(), seen.clone()).await;
    let opts = oracle::OracleArgs {
        corpus_dir: Some(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../ops/corpus")),
        llm_url: Some(format!("http://{llm}/v1/chat/completions")),
        llm_model: "test-model".into(),
        llm_key: Some("sk-test".into()),
        llm_timeout_ms: 500,
        read_database_url: None,
    };
    let o = oracle::start_with(
        service_config(&db.url(ledger::store::DbRole::Oracle)),
        opts,
        ledger::service::Shutdown::new(),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let ask = || async {
        let bearer = format!("Bearer {reader}");
        let body = json!({"question": QUESTION, "frameworks": ["eu_ai_act"]}).to_string();
        let (s, text) = request(
            o.api_addr,
            "POST",
            "/v1/oracle/query",
            &[
                ("authorization", &bearer),
                ("content-type", "application/json"),
            ],
            body.as_bytes(),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s, 200, "{text}");
        serde_json::from_str::<Value>(&text).unwrap_or_else(|e| panic!("{e}"))
    };

    let a = ask().await;
    assert_eq!(a["answered_by"], "llm", "{a}");
    assert_eq!(
        a["answer_text"],
        "Keep them at least six months, under your control."
    );
    assert_eq!(a["receipt"]["scroll"], "compliance");
    let req = seen
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .last()
        .cloned()
        .unwrap_or_default();
    assert_eq!(req["model"], "test-model");
    assert!(
        req["messages"][1]["content"]
            .as_str()
            .unwrap_or_default()
            .contains("eu-ai-act-record-keeping"),
        "passages are sent: {req}"
    );

    for (m, reason) in [
        (Mode::NotJson, "malformed_response"),
        (Mode::BadSchema, "invalid_answer"),
        (Mode::InventedCitation, "invalid_answer"),
        (Mode::ServerError, "http_status"),
        (Mode::Slow, "timeout"),
    ] {
        *mode
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = m;
        let a = ask().await;
        assert_eq!(a["answered_by"], "extractive", "{m:?}: {a}");
        assert!(
            a["citations"][0]["document_id"] == "eu-ai-act-record-keeping",
            "{m:?}: {a}"
        );
        let (_, metrics) = http(o.metrics_addr, "GET", "/metrics")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            metrics.contains(&format!(
                "vaultmesh_oracle_llm_errors_total{{reason=\"{reason}\"}}"
            )),
            "{m:?}: {metrics}"
        );
    }
    let (_, metrics) = http(o.metrics_addr, "GET", "/metrics")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        metrics.contains("vaultmesh_oracle_llm_errors_total{reason=\"invalid_answer\"} 2"),
        "{metrics}"
    );

    // A real document cited with words that are not in its passage: not used.
    *mode
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Mode::MisquotedExcerpt;
    let a = ask().await;
    assert_eq!(a["answered_by"], "extractive", "{a}");
    assert_ne!(
        a["citations"][0]["excerpt"], "at least twelve months",
        "{a}"
    );
    let (_, after) = http(o.metrics_addr, "GET", "/metrics")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        llm_errors(&after, "invalid_answer"),
        llm_errors(&metrics, "invalid_answer") + 1,
        "{after}"
    );

    // The passage's words, with other whitespace around and between them: used as given.
    *mode
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Mode::ReflowedExcerpt;
    let a = ask().await;
    assert_eq!(a["answered_by"], "llm", "{a}");
    assert_eq!(
        a["citations"][0]["excerpt"]
            .as_str()
            .unwrap_or_default()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "),
        REFLOWED
    );
    let (_, last) = http(o.metrics_addr, "GET", "/metrics")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        llm_errors(&last, "invalid_answer"),
        llm_errors(&after, "invalid_answer")
    );
    o.stop().await;
}
