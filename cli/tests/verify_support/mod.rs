//! What the `vaultmesh verify` tests run against: a real guardian and portal on a fresh
//! database, the `vaultmesh` binary and the independent Python verifier, a proxy that serves
//! the portal's answers with chosen paths overridden (a stale checkpoint, a listing missing a
//! scroll), and a real RFC 3161 authority (`openssl ts -reply` behind a minimal HTTP server).
#![allow(dead_code)] // each test uses its own subset

use ledger::note::NoteSigner;
use ledger::service::{RunningService, Shutdown};
use ledger::storage::KeyStore;
use ledger::store::Role;
use ledger::testing::{call, request, scratch_dir, service_config, TestDb};
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A guardian and a portal on one fresh database, with API keys and the guardian's key files.
pub struct Stack {
    /// The database.
    pub db: TestDb,
    /// Scratch directory (keys, journal, bundles, state files).
    pub dir: PathBuf,
    /// The guardian's signing key.
    pub signer: NoteSigner,
    /// Its vkey file.
    pub vkey: PathBuf,
    /// The guardian.
    pub g: RunningService,
    /// The portal.
    pub p: RunningService,
    /// Admin API key.
    pub admin: String,
    /// Writer API key.
    pub writer: String,
    /// Reader API key.
    pub reader: String,
}

impl Stack {
    /// Starts both services; `tsa` is the TSA's URL and certificate file, if epochs are to be
    /// timestamped.
    pub async fn start(tsa: Option<(String, PathBuf)>) -> Stack {
        let db = TestDb::new().await.unwrap_or_else(|e| panic!("{e}"));
        let dir = scratch_dir("cli-verify");
        let key = dir.join("guardian.key");
        let signer = NoteSigner::generate_to_file("vaultmesh-test/guardian", &key)
            .unwrap_or_else(|e| panic!("{e}"));
        let vkey = dir.join("guardian.vkey");
        std::fs::write(&vkey, signer.verifier().to_vkey()).unwrap_or_else(|e| panic!("{e}"));
        let (tsa_url, tsa_cert_file) = match tsa {
            Some((url, cert)) => (Some(url), Some(cert)),
            None => (None, None),
        };
        let g = guardian::start_with(
            service_config(&db.url(ledger::store::DbRole::Guardian)),
            guardian::GuardianArgs {
                signing_key_file: key,
                journal_path: dir.join("proofchain.jsonl"),
                integrate_interval_ms: 50,
                epoch_interval_secs: 3600,
                tsa_url,
                tsa_cert_file,
                ..guardian::GuardianArgs::default()
            },
            Shutdown::new(),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let p = portal::start_with(
            service_config(&db.url(ledger::store::DbRole::Portal)),
            portal::PortalArgs {
                guardian_vkey_file: Some(vkey.clone()),
                ..portal::PortalArgs::default()
            },
            Shutdown::new(),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let mut tokens = Vec::new();
        for role in [Role::Admin, Role::Writer, Role::Reader] {
            let key = db
                .store
                .create_api_key(role, None, "t")
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            tokens.push(key.token);
        }
        let [admin, writer, reader]: [String; 3] =
            tokens.try_into().unwrap_or_else(|_| panic!("three keys"));
        Stack {
            db,
            dir,
            signer,
            vkey,
            g,
            p,
            admin,
            writer,
            reader,
        }
    }

    /// The portal's base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.p.api_addr)
    }

    /// Submits `n` receipts to `drills`.
    pub async fn submit(&self, n: u32) {
        let bearer = format!("Bearer {}", self.writer);
        for i in 0..n {
            let body = format!(r#"{{"type":"t","payload":{{"i":{i}}}}}"#);
            let (s, r) = request(
                self.p.api_addr,
                "POST",
                "/v1/scrolls/drills/receipts",
                &[
                    ("authorization", &bearer),
                    ("content-type", "application/json"),
                ],
                body.as_bytes(),
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(s, 201, "{r}");
        }
    }

    /// The portal's answer for the JSON checkpoint of `drills`: status and body (`Null` when
    /// not JSON).
    pub async fn checkpoint(&self) -> (u16, serde_json::Value) {
        let (s, body) = request(
            self.p.api_addr,
            "GET",
            "/v1/scrolls/drills/checkpoint",
            &[("accept", "application/json")],
            b"",
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        (s, serde_json::from_str(&body).unwrap_or_default())
    }

    /// Waits until the portal serves a checkpoint of `drills` at `size`.
    pub async fn wait_checkpoint(&self, size: u64) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (s, cp) = self.checkpoint().await;
            let served = cp["tree_size"].as_u64();
            if s == 200 && served == Some(size) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "portal never served a checkpoint at {size}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Runs an epoch now.
    pub async fn anchor(&self) {
        let (s, r) = call(
            self.g.api_addr,
            "POST",
            "/v1/guardian/anchor",
            Some(&self.admin),
            &[],
            "",
        )
        .await;
        assert_eq!(s, 200, "{r}");
    }

    /// The portal's answer to a public GET.
    pub async fn get(&self, path: &str) -> String {
        let (s, body) = request(self.p.api_addr, "GET", path, &[], b"")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s, 200, "GET {path}: {body}");
        body
    }

    /// The bundle of `drills` receipt `seq`, as served.
    pub async fn bundle(&self, seq: u64) -> String {
        let bearer = format!("Bearer {}", self.reader);
        let (s, b) = request(
            self.p.api_addr,
            "GET",
            &format!("/v1/scrolls/drills/receipts/{seq}/bundle"),
            &[("authorization", &bearer)],
            b"",
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s, 200, "{b}");
        b
    }

    /// Stops both services.
    pub async fn stop(self) {
        self.p.stop().await;
        self.g.stop().await;
    }
}

/// Runs the `vaultmesh` binary.
pub fn vaultmesh(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vaultmesh"))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run vaultmesh: {e}"))
}

/// Standard output and error of a finished command.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A path as a command-line argument.
pub fn path_str(p: &Path) -> &str {
    p.to_str().unwrap_or_else(|| panic!("non-UTF-8 path"))
}

/// `ops/verify/vaultmesh_verify.py BUNDLE VKEY` with `$VAULTMESH_PYTHON` (set by
/// `ops/test.sh`), else `python3`: whether it accepted, and what it said.
pub fn python_verify(bundle: &Path, vkey: &Path) -> (bool, String) {
    python_verify_with(bundle, vkey, &[])
}

/// [`python_verify`] with more arguments (a witness policy: `--witness`, `--witness-threshold`).
pub fn python_verify_with(bundle: &Path, vkey: &Path, extra: &[&str]) -> (bool, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ops/verify/vaultmesh_verify.py");
    let python = std::env::var("VAULTMESH_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(&python)
        .arg(&script)
        .arg(bundle)
        .arg(vkey)
        .args(extra)
        .output()
        .unwrap_or_else(|e| panic!("{python} (ops/test.sh provides it): {e}"));
    match out.status.code() {
        Some(0) => (true, text(&out)),
        Some(1) => (false, text(&out)),
        other => panic!(
            "the Python verifier crashed ({other:?}; ops/test.sh installs rfc8785 and \
             cryptography): {}",
            text(&out)
        ),
    }
}

/// A request as the minimal server hands it to a handler.
pub struct Req {
    /// `GET`, `POST`, …
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Header names (lowercase) and values.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

/// What a handler answers: status and body.
pub type Reply = (u16, Vec<u8>);

/// An asynchronous request handler.
pub type Handler = Arc<dyn Fn(Req) -> Pin<Box<dyn Future<Output = Reply> + Send>> + Send + Sync>;

/// A minimal HTTP/1.1 server on a free loopback port: one request per connection, answered
/// by `handler` with `Connection: close`.
pub async fn serve(handler: Handler) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let handler = handler.clone();
            tokio::spawn(async move {
                let _ = answer(stream, handler).await;
            });
        }
    });
    addr
}

async fn answer(mut stream: tokio::net::TcpStream, handler: Handler) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let method = first.next().unwrap_or_default().to_string();
    let path = first.next().unwrap_or_default().to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    let (status, reply) = handler(Req {
        method,
        path,
        headers,
        body,
    })
    .await;
    let mut out = format!(
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        reply.len()
    )
    .into_bytes();
    out.extend_from_slice(&reply);
    stream.write_all(&out).await?;
    stream.shutdown().await
}

/// The portal as an auditor may be shown it: every GET forwarded byte for byte, except paths
/// whose answer the test has overridden and path prefixes it has refused (answered 503).
pub struct Proxy {
    /// Where it listens.
    pub addr: SocketAddr,
    overrides: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    refused: Arc<Mutex<Vec<String>>>,
}

impl Proxy {
    /// A proxy in front of `upstream`.
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let overrides: Arc<Mutex<HashMap<String, Vec<u8>>>> = Arc::default();
        let refused: Arc<Mutex<Vec<String>>> = Arc::default();
        let (o, r) = (overrides.clone(), refused.clone());
        let http = reqwest::Client::new();
        let handler: Handler = Arc::new(move |req: Req| {
            let (o, r, http) = (o.clone(), r.clone(), http.clone());
            Box::pin(async move {
                let fixed = o
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .get(&req.path)
                    .cloned();
                if let Some(body) = fixed {
                    return (200, body);
                }
                let refuse = r
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .iter()
                    .any(|prefix| req.path.starts_with(prefix.as_str()));
                if refuse {
                    return (503, b"refused by the test proxy".to_vec());
                }
                let method = reqwest::Method::from_bytes(req.method.as_bytes())
                    .unwrap_or(reqwest::Method::GET);
                let mut forward = http
                    .request(method, format!("http://{upstream}{}", req.path))
                    .body(req.body);
                for (k, v) in req
                    .headers
                    .iter()
                    .filter(|(k, _)| k == "authorization" || k == "accept")
                {
                    forward = forward.header(k.as_str(), v.as_str());
                }
                match forward.send().await {
                    Ok(resp) => {
                        let status = resp.status().as_u16();
                        let body = resp.bytes().await.map(|b| b.to_vec());
                        (status, body.unwrap_or_default())
                    }
                    Err(e) => (502, e.to_string().into_bytes()),
                }
            })
        });
        Proxy {
            addr: serve(handler).await,
            overrides,
            refused,
        }
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answers GET `path` with `body` from now on (`None`: forward again).
    pub fn set(&self, path: &str, body: Option<String>) {
        self.set_bytes(path, body.map(String::into_bytes));
    }

    /// Answers GET `path` with these bytes from now on (`None`: forward again).
    pub fn set_bytes(&self, path: &str, body: Option<Vec<u8>>) {
        let mut o = self
            .overrides
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match body {
            Some(b) => o.insert(path.to_string(), b),
            None => o.remove(path),
        };
    }

    /// Answers every path starting with `prefix` with a 503 from now on.
    pub fn refuse(&self, prefix: &str) {
        self.refused
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(prefix.to_string());
    }
}

/// Runs `openssl` in `dir` and returns its standard output.
pub fn openssl(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("openssl: {e}"));
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A timestamp authority in `dir`: a P-256 key, a self-signed timestamping certificate
/// (`tsa.crt`) and the `openssl ts -reply` configuration (`tsa.cnf`).
pub fn make_tsa(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{e}"));
    openssl(
        dir,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "tsa.key",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-x509",
            "-key",
            "tsa.key",
            "-out",
            "tsa.crt",
            "-days",
            "2",
            "-subj",
            "/CN=VaultMesh Test TSA",
            "-addext",
            "extendedKeyUsage=critical,timeStamping",
        ],
    );
    std::fs::write(dir.join("tsaserial"), "01\n").unwrap_or_else(|e| panic!("{e}"));
    let cnf = format!(
        "[ tsa ]\ndefault_tsa = tsa1\n[ tsa1 ]\ndir = {}\nserial = $dir/tsaserial\n\
         crypto_device = builtin\nsigner_cert = $dir/tsa.crt\nsigner_key = $dir/tsa.key\n\
         signer_digest = sha256\ndefault_policy = 1.2.3.4.1\ndigests = sha256\n\
         accuracy = secs:1\nordering = no\ntsa_name = no\ness_cert_id_chain = no\n\
         ess_cert_id_alg = sha256\n",
        dir.display()
    );
    std::fs::write(dir.join("tsa.cnf"), cnf).unwrap_or_else(|e| panic!("{e}"));
}

/// Serves the TSA of `dir` over HTTP (RFC 3161 over HTTP: a DER query in, a DER reply out).
pub async fn serve_tsa(dir: PathBuf) -> SocketAddr {
    let handler: Handler = Arc::new(move |req: Req| {
        let dir = dir.clone();
        Box::pin(async move {
            let reply = tokio::task::spawn_blocking(move || {
                std::fs::write(dir.join("q.tsq"), &req.body).ok()?;
                Some(openssl(
                    &dir,
                    &[
                        "ts",
                        "-reply",
                        "-queryfile",
                        "q.tsq",
                        "-config",
                        "tsa.cnf",
                        "-out",
                        "/dev/stdout",
                    ],
                ))
            })
            .await
            .ok()
            .flatten();
            match reply {
                Some(body) => (200, body),
                None => (500, b"TSA down".to_vec()),
            }
        })
    });
    serve(handler).await
}

/// A token by the TSA of `dir` over the SHA-256 `imprint_hex`, base64 (as stored in `sinks`).
pub fn token_over(dir: &Path, imprint_hex: &str) -> String {
    openssl(
        dir,
        &[
            "ts",
            "-query",
            "-digest",
            imprint_hex,
            "-sha256",
            "-cert",
            "-out",
            "own.tsq",
        ],
    );
    openssl(
        dir,
        &[
            "ts",
            "-reply",
            "-queryfile",
            "own.tsq",
            "-config",
            "tsa.cnf",
            "-token_out",
            "-out",
            "own.tok",
        ],
    );
    let b64 = openssl(dir, &["base64", "-A", "-in", "own.tok"]);
    String::from_utf8_lossy(&b64).trim().to_string()
}
