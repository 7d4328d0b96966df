//! Strict protocol at a running portal: nothing an unauthenticated caller sends is read,
//! I-JSON only (duplicate member names refused), JSON bodies need a JSON media type,
//! unknown fields and non-canonical integers are refused, slow bodies time out — each a
//! JSON error with its status, writing nothing.

use ledger::storage::KeyStore;
use ledger::store::{DbRole, Role};
use ledger::testing::{call, request, service_config, TestDb};
use portal::PortalArgs;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn start(db: &TestDb, opts: PortalArgs) -> ledger::service::RunningService {
    portal::start_with(
        service_config(&db.url(DbRole::Portal)),
        opts,
        ledger::service::Shutdown::new(),
    )
    .await
    .unwrap_or_else(|e| panic!("portal: {e}"))
}

async fn token(db: &TestDb, role: Role) -> String {
    db.store
        .create_api_key(role, None, "protocol")
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .token
}

async fn receipts(db: &TestDb) -> i64 {
    let c = db.owner_client().await.unwrap_or_else(|e| panic!("{e}"));
    c.query_one("SELECT count(*) FROM receipts", &[])
        .await
        .map(|r| r.get(0))
        .unwrap_or(-1)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misread_bodies_and_parameters_are_refused() {
    let db = TestDb::new().await.unwrap_or_else(|e| panic!("{e}"));
    let w = token(&db, Role::Writer).await;
    let admin = token(&db, Role::Admin).await;
    let r = token(&db, Role::Reader).await;
    let p = start(&db, PortalArgs::default()).await;
    let post = "/v1/scrolls/drills/receipts";
    for (path, token, body, status, code) in [
        (
            post,
            &w,
            r#"{"type":"first","type":"second","payload":{}}"#,
            400,
            "malformed_json",
        ),
        (
            post,
            &w,
            r#"{"type":"t","payload":{"a":1,"a":2}}"#,
            400,
            "malformed_json",
        ),
        (
            post,
            &w,
            r#"{"type":"t","payload":{},"extra":1}"#,
            400,
            "unknown_field",
        ),
        (
            "/v1/scrolls/drills/receipts/batch",
            &w,
            r#"{"receipts":[{"type":"t","payload":{}}],"receipts":[]}"#,
            400,
            "malformed_json",
        ),
        (
            "/v1/scrolls",
            &admin,
            r#"{"name":"new-scroll","owner":"me"}"#,
            400,
            "unknown_field",
        ),
        (
            "/v1/scrolls",
            &admin,
            r#"{"name":"a","name":"b"}"#,
            400,
            "malformed_json",
        ),
    ] {
        let (s, b) = call(p.api_addr, "POST", path, Some(token), &[], body).await;
        assert_eq!(
            (s, b["error"]["code"].as_str()),
            (status, Some(code)),
            "{body}: {b}"
        );
    }
    let body = br#"{"type":"t","payload":{}}"#;
    for ct in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("application/xml"),
        Some("application/jsonp"),
    ] {
        let bearer = format!("Bearer {w}");
        let mut headers = vec![("authorization", bearer.as_str())];
        if let Some(ct) = ct {
            headers.push(("content-type", ct));
        }
        let (s, text) = request(p.api_addr, "POST", post, &headers, body)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s, 415, "{ct:?}: {text}");
        assert!(text.contains("unsupported_media_type"), "{text}");
    }
    for ct in [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON",
    ] {
        let bearer = format!("Bearer {w}");
        let (s, text) = request(
            p.api_addr,
            "POST",
            post,
            &[("authorization", &bearer), ("content-type", ct)],
            body,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s, 201, "{ct}: {text}");
    }
    for seq in ["+1", "01", "00", "1e0", "%201"] {
        let (s, b) = call(
            p.api_addr,
            "GET",
            &format!("/v1/scrolls/drills/receipts/{seq}"),
            Some(&r),
            &[],
            "",
        )
        .await;
        assert_eq!(
            (s, b["error"]["code"].as_str()),
            (400, Some("invalid_seq")),
            "{seq}: {b}"
        );
        let (s, b) = call(
            p.api_addr,
            "GET",
            &format!("/v1/scrolls/drills/receipts?from={seq}"),
            Some(&r),
            &[],
            "",
        )
        .await;
        assert_eq!(s, 400, "from={seq}: {b}");
    }
    for epoch in ["0", "01", "+1"] {
        let (s, _) = call(
            p.api_addr,
            "GET",
            &format!("/v1/anchors/{epoch}"),
            None,
            &[],
            "",
        )
        .await;
        assert_eq!(s, 400, "epoch {epoch}");
    }
    let (s, b) = call(
        p.api_addr,
        "GET",
        "/v1/scrolls/drills/receipts/0",
        Some(&r),
        &[],
        "",
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(receipts(&db).await, 3);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_bodies_are_never_read() {
    let db = TestDb::new().await.unwrap_or_else(|e| panic!("{e}"));
    let p = start(&db, PortalArgs::default()).await;
    let before = rss_kib();
    let started = Instant::now();
    for auth in [None, Some("Bearer not-a-key")] {
        let mut s = tokio::net::TcpStream::connect(p.api_addr)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let mut head = String::from(
            "POST /v1/scrolls/drills/receipts/batch HTTP/1.1\r\nHost: x\r\n\
             Content-Type: application/json\r\nContent-Length: 16777216\r\n",
        );
        if let Some(a) = auth {
            head.push_str(&format!("Authorization: {a}\r\n"));
        }
        head.push_str("\r\n");
        s.write_all(head.as_bytes())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        // Only the first 64 KiB of the promised 16 MiB are ever sent.
        let _ = s.write_all(&vec![b' '; 64 * 1024]).await;
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("no answer without the body"))
            .unwrap_or(0);
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(text.starts_with("HTTP/1.1 401"), "{text}");
        assert!(text.contains("unauthorized"), "{text}");
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        rss_kib().saturating_sub(before) < 8 * 1024,
        "the portal buffered an unauthenticated body"
    );
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_dribbles_in_times_out() {
    let db = TestDb::new().await.unwrap_or_else(|e| panic!("{e}"));
    let w = token(&db, Role::Writer).await;
    let p = start(
        &db,
        PortalArgs {
            body_read_timeout_ms: 500,
            ..PortalArgs::default()
        },
    )
    .await;
    let mut s = tokio::net::TcpStream::connect(p.api_addr)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let head = format!(
        "POST /v1/scrolls/drills/receipts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {w}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"type\""
    );
    s.write_all(head.as_bytes())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let started = Instant::now();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .unwrap_or_else(|_| panic!("the slow body was never cut off"))
        .unwrap_or(0);
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("request_timeout"), "{text}");
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert_eq!(receipts(&db).await, 0);
    p.stop().await;
}

/// Sends raw bytes and returns what came back before the server closed (or `within` ran out).
async fn raw(addr: std::net::SocketAddr, bytes: &[u8], within: Duration) -> String {
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let _ = s.write_all(bytes).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(within, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn methods_heads_and_header_bytes() {
    let db = TestDb::new().await.unwrap_or_else(|e| panic!("{e}"));
    let w = token(&db, Role::Writer).await;
    let p = start(&db, PortalArgs::default()).await;
    let a = p.api_addr;
    let t = Duration::from_secs(5);
    let text = raw(
        a,
        b"TRACE /v1/scrolls HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        t,
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 405"), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("allow: get, head, post"),
        "{text}"
    );
    assert!(text.contains("method_not_allowed"), "{text}");
    let text = raw(
        a,
        b"DELETE /v1/scrolls/drills/receipts HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        t,
    )
    .await;
    assert!(
        text.to_ascii_lowercase().contains("allow: get, head, post"),
        "{text}"
    );
    let text = raw(
        a,
        b"GET /v1/nothing/here HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        t,
    )
    .await;
    assert!(
        text.starts_with("HTTP/1.1 404") && text.contains("not_found"),
        "{text}"
    );
    let text = raw(
        a,
        b"HEAD /v1/scrolls HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        t,
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(!text.contains("\"scrolls\""), "HEAD has no body: {text}");
    let text = raw(
        a,
        b"HEAD /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        t,
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    for (method, path) in [
        ("POST", "/v1/scrolls/drills/receipts"),
        ("GET", "/v1/scrolls/drills/receipts/0"),
    ] {
        for header in [
            "Idempotency-Key: caf\u{e9}",
            "Authorization: Bearer \u{e9}t\u{e9}",
        ] {
            let req = format!(
                "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {w}\r\n{header}\r\n\
                 Content-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
            );
            let text = raw(a, req.as_bytes(), t).await;
            assert!(
                text.starts_with("HTTP/1.1 400"),
                "{method} {header}: {text}"
            );
            assert!(text.contains("invalid_header"), "{text}");
        }
    }
    // HTTP/2 (prior knowledge) is not spoken: the preface is refused, nothing is served.
    let text = raw(a, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", t).await;
    assert!(!text.contains("HTTP/2"), "{text:?}");
    assert_eq!(receipts(&db).await, 0);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_are_cut_off_and_connections_are_capped() {
    let db = TestDb::new().await.unwrap_or_else(|e| panic!("{e}"));
    let mut cfg = service_config(&db.url(DbRole::Portal));
    cfg.http.header_read_timeout = Duration::from_millis(700);
    cfg.http.max_connections = 8;
    let p = portal::start_with(cfg, PortalArgs::default(), ledger::service::Shutdown::new())
        .await
        .unwrap_or_else(|e| panic!("portal: {e}"));
    // Headers at one byte every 200 ms: closed once the header deadline passes.
    let mut s = tokio::net::TcpStream::connect(p.api_addr)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let started = Instant::now();
    let mut closed_after = None;
    for b in b"GET /v1/health HTTP/1.1\r\nHost: slow-loris\r\n"
        .iter()
        .cycle()
        .take(60)
    {
        if s.write_all(&[*b]).await.is_err() {
            closed_after = Some(started.elapsed());
            break;
        }
        let mut buf = [0u8; 512];
        match tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed_after = Some(started.elapsed());
                break;
            }
            Ok(Ok(_)) => {
                closed_after = Some(started.elapsed());
                break;
            }
            Err(_) => {}
        }
    }
    let after = closed_after.unwrap_or_else(|| panic!("a slow-loris connection stayed open"));
    assert!(
        after < Duration::from_secs(3),
        "closed only after {after:?}"
    );
    // Eight idle connections fill the cap; the ninth is answered 503 and closed.
    let mut idle = Vec::new();
    for _ in 0..8 {
        idle.push(
            tokio::net::TcpStream::connect(p.api_addr)
                .await
                .unwrap_or_else(|e| panic!("{e}")),
        );
    }
    let text = raw(
        p.api_addr,
        b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(text.contains("too_many_connections"), "{text}");
    drop(idle);
    let mut served = false;
    for _ in 0..50 {
        let (s, _) = call(p.api_addr, "GET", "/v1/health", None, &[], "").await;
        if s == 200 {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(served, "freed slots are reused");
    let (_, metrics) = ledger::testing::http(p.metrics_addr, "GET", "/metrics")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        metrics.contains("vaultmesh_http_rejections_total{reason=\"connection_cap\"}"),
        "{metrics}"
    );
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_over_its_rate_gets_429_and_others_do_not() {
    let db = TestDb::new().await.unwrap_or_else(|e| panic!("{e}"));
    let busy = token(&db, Role::Reader).await;
    let calm = token(&db, Role::Reader).await;
    let p = start(
        &db,
        PortalArgs {
            rate_limit_per_sec: 5,
            rate_limit_burst: 10,
            ..PortalArgs::default()
        },
    )
    .await;
    let path = "/v1/scrolls/drills/receipts";
    let mut limited = None;
    for i in 0..40 {
        let bearer = format!("Bearer {busy}");
        let (s, text) = request(p.api_addr, "GET", path, &[("authorization", &bearer)], b"")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        if s == 429 {
            limited = Some((i, text));
            break;
        }
        assert_eq!(s, 200, "{text}");
    }
    let (at, text) = limited.unwrap_or_else(|| panic!("40 quick requests never hit the limit"));
    assert!(at >= 10, "the burst of 10 was not honoured ({at})");
    assert!(text.contains("rate_limited"), "{text}");
    let raw_answer = {
        let mut s = tokio::net::TcpStream::connect(p.api_addr)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {busy}\r\nConnection: close\r\n\r\n"
        );
        let _ = s.write_all(req.as_bytes()).await;
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        String::from_utf8_lossy(&out).to_ascii_lowercase()
    };
    assert!(raw_answer.starts_with("http/1.1 429"), "{raw_answer}");
    assert!(raw_answer.contains("retry-after: 1"), "{raw_answer}");
    for _ in 0..10 {
        let (s, b) = call(p.api_addr, "GET", path, Some(&calm), &[], "").await;
        assert_eq!(s, 200, "another key is unaffected: {b}");
    }
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_librarys_own_errors_are_json_too() {
    let db = TestDb::new().await.unwrap_or_else(|e| panic!("{e}"));
    let p = start(&db, PortalArgs::default()).await;
    let t = Duration::from_secs(5);
    let mut many = String::from("GET /v1/health HTTP/1.1\r\nHost: x\r\n");
    for i in 0..100 {
        many.push_str(&format!("X-Filler-{i}: {i}\r\n"));
    }
    many.push_str("\r\n");
    let long = format!("GET /v1/{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(70_000));
    for (request, status, code) in [
        (many.as_str(), "431", "header_fields_too_large"),
        ("GARBAGE\r\n\r\n", "400", "bad_request"),
        (
            "GET /v1/health HTTP/1.1\r\nBad Header\r\n\r\n",
            "400",
            "bad_request",
        ),
        (long.as_str(), "", ""),
    ] {
        let text = raw(p.api_addr, request.as_bytes(), t).await;
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        if status.is_empty() {
            assert!(head.starts_with("HTTP/1.1 4"), "{head}");
        } else {
            assert!(head.starts_with(&format!("HTTP/1.1 {status}")), "{head}");
            assert!(body.contains(code), "{body}");
        }
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: application/json"),
            "{head}"
        );
        let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        assert!(v["error"]["code"].is_string(), "{body}");
    }
    let (s, _) = call(p.api_addr, "GET", "/v1/health", None, &[], "").await;
    assert_eq!(s, 200);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_query_names_batch_paths_and_401_challenges() {
    let db = TestDb::new().await.unwrap_or_else(|e| panic!("{e}"));
    let r = token(&db, Role::Reader).await;
    let p = start(&db, PortalArgs::default()).await;
    let t = Duration::from_secs(5);
    for path in [
        "/v1/scrolls/drills/receipts?from=0&from=5",
        "/v1/anchors?limit=1&limit=2",
        "/v1/scrolls/drills/proof/consistency?from=0&from=1",
    ] {
        let (s, b) = call(p.api_addr, "GET", path, Some(&r), &[], "").await;
        assert_eq!(
            (s, b["error"]["code"].as_str()),
            (400, Some("invalid_query")),
            "{path}: {b}"
        );
    }
    let text = raw(
        p.api_addr,
        format!("GET /v1/scrolls/drills/receipts/batch HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {r}\r\nConnection: close\r\n\r\n").as_bytes(),
        t,
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 405"), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("allow: post\r\n"),
        "{text}"
    );
    let text = raw(
        p.api_addr,
        b"GET /v1/scrolls/drills/receipts/0 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        t,
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 401"), "{text}");
    assert!(
        text.to_ascii_lowercase()
            .contains("www-authenticate: bearer"),
        "{text}"
    );
    p.stop().await;
}
