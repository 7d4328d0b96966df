//! The LLM's response body is read up to 1 MiB: a larger body — declared in Content-Length
//! or sent chunked without one — is a failed answer (`response_too_large`, counted) and the
//! extractive answer is given; a valid answer just under the cap is still used.
//! (One test per binary: the oracle's metrics are process-wide.)

use ledger::storage::KeyStore;
use ledger::store::Role;
use ledger::testing::{call, http, service_config, TestDb};
use oracle::llm::MAX_RESPONSE_BYTES;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const QUESTION: &str = "How long must AI system logs be kept?";

#[derive(Clone, Copy, Debug)]
enum Mode {
    /// A valid answer padded to just under the cap.
    NearCap,
    /// Content-Length over the cap (the body is never read).
    DeclaredTooLarge,
    /// Chunked, no length, over the cap.
    StreamedTooLarge,
}

fn answer_body(pad: usize) -> Vec<u8> {
    let content = json!({
        "question": QUESTION,
        "answer_text": "Keep them at least six months, under your control.",
        "citations": [{"document_id": "eu-ai-act-record-keeping", "framework": "eu_ai_act", "excerpt": "at least six months"}],
        "compliance_flags": {"gdpr_relevant": false, "ai_act_relevant": true, "nis2_relevant": false},
        "gaps": [], "insufficient_context": false, "confidence": 0.9,
    })
    .to_string();
    let mut body = json!({"id": "c1", "object": "chat.completion", "model": "test",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}]})
    .to_string()
    .into_bytes();
    body.extend(std::iter::repeat_n(b' ', pad));
    body
}

async fn read_request(stream: &mut TcpStream) {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let Ok(n) = stream.read(&mut buf).await else {
            return;
        };
        if n == 0 {
            return;
        }
        seen.extend_from_slice(&buf[..n]);
        if let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&seen[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if seen.len() >= end + 4 + length {
                return;
            }
        }
    }
}

async fn respond(mut stream: TcpStream, mode: Mode) {
    read_request(&mut stream).await;
    // A client that stops reading (as the oracle must) makes the write fail: that is fine.
    let _written = match mode {
        Mode::NearCap => {
            let small = answer_body(0).len();
            let body = answer_body(MAX_RESPONSE_BYTES - small - 16);
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            stream.write_all(&[head.into_bytes(), body].concat()).await
        }
        Mode::DeclaredTooLarge => {
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                MAX_RESPONSE_BYTES + 1
            );
            stream.write_all(head.as_bytes()).await
        }
        Mode::StreamedTooLarge => {
            let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n";
            let mut out = head.as_bytes().to_vec();
            let chunk = vec![b' '; 64 * 1024];
            for _ in 0..(2 * MAX_RESPONSE_BYTES / chunk.len()) {
                out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                out.extend_from_slice(&chunk);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\n\r\n");
            stream.write_all(&out).await
        }
    };
    let _ = stream.shutdown().await;
}

async fn serve(mode: Arc<Mutex<Mode>>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let m = *mode
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            tokio::spawn(respond(stream, m));
        }
    });
    addr
}

fn too_large(metrics: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix("vaultmesh_oracle_llm_errors_total{reason=\"response_too_large\"} ")
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_llm_response_is_refused_and_the_answer_is_extractive() {
    let db = TestDb::new().await.unwrap_or_else(|e| panic!("{e}"));
    let reader = db
        .store
        .create_api_key(Role::Reader, None, "r")
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .token;
    let mode = Arc::new(Mutex::new(Mode::NearCap));
    let llm = serve(mode.clone()).await;
    let opts = oracle::OracleArgs {
        corpus_dir: Some(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../ops/corpus")),
        llm_url: Some(format!("http://{llm}/v1/chat/completions")),
        llm_model: "test-model".into(),
        llm_key: None,
        llm_timeout_ms: 5_000,
        read_database_url: None,
    };
    let o = oracle::start_with(
        service_config(&db.url(ledger::store::DbRole::Oracle)),
        opts,
        ledger::service::Shutdown::new(),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let body = json!({"question": QUESTION, "frameworks": ["eu_ai_act"]}).to_string();

    let (s, a) = call(
        o.api_addr,
        "POST",
        "/v1/oracle/query",
        Some(&reader),
        &[],
        &body,
    )
    .await;
    assert_eq!(s, 200, "{a}");
    assert_eq!(
        a["answered_by"], "llm",
        "a valid answer under the cap is used: {a}"
    );

    for (m, counted) in [(Mode::DeclaredTooLarge, 1), (Mode::StreamedTooLarge, 2)] {
        *mode
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = m;
        let (s, a) = call(
            o.api_addr,
            "POST",
            "/v1/oracle/query",
            Some(&reader),
            &[],
            &body,
        )
        .await;
        assert_eq!(s, 200, "{m:?}: {a}");
        assert_eq!(a["answered_by"], "extractive", "{m:?}: {a}");
        assert_eq!(
            a["citations"][0]["document_id"], "eu-ai-act-record-keeping",
            "{a}"
        );
        assert_eq!(
            a["receipt"]["scroll"], "compliance",
            "the fallback is receipted: {a}"
        );
        let (_, metrics) = http(o.metrics_addr, "GET", "/metrics")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(too_large(&metrics), counted, "{m:?}");
    }
    o.stop().await;
}
