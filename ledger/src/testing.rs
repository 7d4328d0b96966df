//! Test support shared by every crate's tests: a fresh database per test, cloned from a
//! template migrated once per schema version, so tests run in parallel without sharing state.
//!
//! Connection settings come from `VAULTMESH_TEST_ADMIN_URL` (a role with CREATEDB and
//! CREATEROLE; default `postgres://vaultmesh:vaultmesh@127.0.0.1:5432/postgres`); each
//! service role's password is its name (`ops/test.sh` creates the roles that way).

use crate::store::{migrate, DbRole, PoolOptions, Store, StoreError, MIGRATIONS_DIGEST};
use std::sync::atomic::{AtomicU32, Ordering};
use tokio_postgres::NoTls;

static COUNTER: AtomicU32 = AtomicU32::new(0);

pub use crate::rng::Rng;

/// A database of its own for one test.
pub struct TestDb {
    /// Database name.
    pub name: String,
    /// URL as the schema owner (can bypass nothing, but owns the tables).
    pub owner_url: String,
    /// A store connected as the schema owner, for seeding (API keys are owner-only).
    pub store: Store,
}

/// A new, empty directory under the system temp dir, unique to this process and `tag`.
pub fn scratch_dir(tag: &str) -> std::path::PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("vm-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        panic!("scratch dir {}: {e}", dir.display());
    }
    dir
}

/// The admin URL tests use to create databases.
pub fn admin_url() -> String {
    std::env::var("VAULTMESH_TEST_ADMIN_URL")
        .unwrap_or_else(|_| "postgres://vaultmesh:vaultmesh@127.0.0.1:5432/postgres".into())
}

fn with_db(url: &str, db: &str) -> String {
    match url.rfind('/') {
        Some(i) if i > url.find("://").map_or(0, |j| j + 2) => format!("{}/{db}", &url[..i]),
        _ => format!("{url}/{db}"),
    }
}

fn role_url_for(admin: &str, db: &str, role: DbRole) -> String {
    let rest = admin
        .split_once('@')
        .map_or("127.0.0.1:5432/postgres", |(_, r)| r);
    with_db(&format!("postgres://{0}:{0}@{rest}", role.name()), db)
}

async fn admin_client(url: &str) -> Result<tokio_postgres::Client, StoreError> {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// Drops test databases left by processes that no longer exist.
async fn drop_stale(admin: &tokio_postgres::Client) -> Result<(), StoreError> {
    let rows = admin
        .query(
            "SELECT datname FROM pg_database WHERE datname LIKE 'vm_test_%'",
            &[],
        )
        .await?;
    for row in rows {
        let name: String = row.get(0);
        let pid = name.split('_').nth(2).and_then(|p| p.parse::<u32>().ok());
        let alive = pid.is_some_and(|p| std::path::Path::new(&format!("/proc/{p}")).exists());
        if !alive {
            let _ = admin
                .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .await;
        }
    }
    Ok(())
}

/// Creates (once) the migrated template database for the current migrations.
async fn ensure_template(
    admin: &tokio_postgres::Client,
    admin_url: &str,
) -> Result<String, StoreError> {
    let template = format!("vm_tpl_{}", *MIGRATIONS_DIGEST);
    admin.execute("SELECT pg_advisory_lock(7406)", &[]).await?;
    let result = async {
        let exists = admin
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&template])
            .await?
            .is_some();
        if !exists {
            drop_stale(admin).await?;
            for row in admin
                .query(
                    "SELECT datname FROM pg_database WHERE datname LIKE 'vm\\_tpl\\_%'",
                    &[],
                )
                .await?
            {
                let old: String = row.get(0);
                let _ = admin
                    .batch_execute(&format!("DROP DATABASE IF EXISTS \"{old}\" WITH (FORCE)"))
                    .await;
            }
            admin
                .batch_execute(&format!("CREATE DATABASE \"{template}_new\""))
                .await?;
            migrate(&with_db(admin_url, &format!("{template}_new"))).await?;
            admin
                .batch_execute(&format!(
                    "ALTER DATABASE \"{template}_new\" RENAME TO \"{template}\""
                ))
                .await?;
        }
        Ok::<_, StoreError>(())
    }
    .await;
    admin
        .execute("SELECT pg_advisory_unlock(7406)", &[])
        .await?;
    result.map(|_| template)
}

impl TestDb {
    /// A fresh, migrated database with its own name.
    pub async fn new() -> Result<Self, StoreError> {
        let admin = admin_url();
        let client = admin_client(&admin).await?;
        let template = ensure_template(&client, &admin).await?;
        let name = format!(
            "vm_test_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        client
            .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .await?;
        client
            .batch_execute(&format!(
                "CREATE DATABASE \"{name}\" TEMPLATE \"{template}\""
            ))
            .await?;
        let owner_url = with_db(&admin, &name);
        let store = Store::connect(&owner_url, &PoolOptions::default())?;
        Ok(Self {
            owner_url,
            name,
            store,
        })
    }

    /// URL of this database as a service's role.
    pub fn url(&self, role: DbRole) -> String {
        role_url_for(&admin_url(), &self.name, role)
    }

    /// A store connected as a service's role.
    pub fn role_store(&self, role: DbRole) -> Result<Store, StoreError> {
        Store::connect(&self.url(role), &PoolOptions::default())
    }

    /// A guardian-role store whose sessions carry a lease term it has just taken, as the
    /// leading guardian's do (this deposes any guardian running on the database).
    pub async fn leading_guardian_store(&self) -> Result<Store, StoreError> {
        let store = self.role_store(DbRole::Guardian)?;
        let client = store.dedicated_client().await?;
        let term = Store::take_lease(&client, "test").await?;
        store.lease_term().set(term);
        Ok(store)
    }

    /// A client connected as the schema owner, for assertions and deliberate tampering.
    pub async fn owner_client(&self) -> Result<tokio_postgres::Client, StoreError> {
        admin_client(&self.owner_url).await
    }

    /// A client connected as a service's role.
    pub async fn role_client(&self, role: DbRole) -> Result<tokio_postgres::Client, StoreError> {
        admin_client(&self.url(role)).await
    }
}

/// A database URL on which nothing listens, to test behaviour with Postgres unreachable.
pub async fn unreachable_database_url() -> String {
    format!(
        "postgres://vaultmesh_portal:x@127.0.0.1:{}/none",
        closed_port().await
    )
}

/// Waits until something accepts connections on `addr`, failing the test after `timeout`.
pub async fn wait_until_listening(
    addr: std::net::SocketAddr,
    what: &str,
    timeout: std::time::Duration,
) {
    let deadline = std::time::Instant::now() + timeout;
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what} did not listen on {addr}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Appends `n` receipts of type `kind` with payloads `{"i": 0..n}` to `scroll` in one
/// transaction, through the append gate as the admin client `key_test`.
pub async fn append_receipts(store: &Store, scroll: &str, kind: &str, n: u64) {
    let items = (0..n)
        .map(|i| crate::store::NewReceipt {
            draft: crate::receipt::ReceiptDraft::new(kind, serde_json::json!({ "i": i }))
                .unwrap_or_else(|e| panic!("{e}")),
            submitter: "key_test".into(),
            idempotency_key: None,
            request_hash: None,
        })
        .collect();
    let admitted = admit(scroll, items);
    store
        .append_receipts(admitted, true)
        .await
        .unwrap_or_else(|e| panic!("append to {scroll}: {e}"));
}

/// The test writer: an admin client key `key_test`.
pub fn test_writer() -> crate::gate::Writer {
    crate::gate::Writer::Client {
        key_id: "key_test".into(),
        role: crate::store::Role::Admin,
        scrolls: None,
    }
}

/// `items` for `scroll` through a gate with no policies, as [`test_writer`].
pub fn admit(scroll: &str, items: Vec<crate::store::NewReceipt>) -> crate::gate::Admitted {
    crate::gate::AppendGate::new()
        .admit(&test_writer(), scroll, items)
        .unwrap_or_else(|e| panic!("gate refused a test batch for {scroll}: {e}"))
}

/// `items` for `scroll` through a gate with no policies, as `writer` (e.g. a service, to
/// forge what only a service may write, straight into the database).
pub fn admit_as(
    writer: &crate::gate::Writer,
    scroll: &str,
    items: Vec<crate::store::NewReceipt>,
) -> crate::gate::Admitted {
    crate::gate::AppendGate::new()
        .admit(writer, scroll, items)
        .unwrap_or_else(|e| panic!("gate refused a test batch for {scroll}: {e}"))
}

/// A loopback port that was free a moment ago and has no listener now.
pub async fn closed_port() -> u16 {
    match tokio::net::TcpListener::bind("127.0.0.1:0").await {
        Ok(l) => l.local_addr().map(|a| a.port()).unwrap_or(1),
        Err(_) => 1,
    }
}

/// The Redis URL tests use (`VAULTMESH_TEST_REDIS_URL`, default the local server).
pub fn redis_url() -> String {
    std::env::var("VAULTMESH_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A service configuration on ephemeral ports against `database_url`, not a mesh node.
pub fn service_config(database_url: &str) -> crate::config::CommonConfig {
    let any = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let args = crate::config::CommonArgs {
        database_url: Some(database_url.to_string()),
        redis_url: Some(redis_url()),
        mesh_id: Some("vaultmesh-test".into()),
        shutdown_grace_secs: Some(5),
        // Tests of one service run without mesh heartbeats and probes, whose background
        // writes would disturb what they count; the mesh has its own tests.
        mesh_node: Some(false),
        ..Default::default()
    };
    args.resolve(
        crate::config::CommonFile::default(),
        crate::config::ServiceDefaults {
            api_addr: any,
            metrics_addr: any,
            db_role: crate::store::DbRole::Portal,
        },
    )
}

/// A minimal HTTP/1.1 request over a fresh connection: returns status and body.
/// (Dependency-free, for asserting on the services' own endpoints.)
pub async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
) -> std::io::Result<(u16, String)> {
    request(addr, method, path, &[], b"").await
}

/// A JSON request with an optional bearer `token` and `extra` headers; the status and the
/// body as JSON (a string value when the body is not JSON). Panics on transport errors.
pub async fn call(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    extra: &[(&str, &str)],
    body: &str,
) -> (u16, serde_json::Value) {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let mut headers: Vec<(&str, &str)> = vec![("content-type", "application/json")];
    if let Some(b) = &bearer {
        headers.push(("authorization", b));
    }
    headers.extend_from_slice(extra);
    let (status, text) = match request(addr, method, path, &headers, body.as_bytes()).await {
        Ok(r) => r,
        Err(e) => panic!("{method} {path}: {e}"),
    };
    let v = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    (status, v)
}

/// Like [`http`], with extra headers and a body (sent with its Content-Length).
pub async fn request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    stream.write_all(&bytes).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    let body = if text
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(&body)
    } else {
        body
    };
    Ok((status, body))
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size_line, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size_line.trim(), 16).unwrap_or(0);
        if size == 0 || after.len() < size {
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    out
}

/// Starts a service with `start` against a fresh database and checks everything a service
/// skeleton promises: health, readiness, status without secrets, its own metrics registry,
/// JSON 404/405, readiness 503 without Postgres, and a clean stop that closes its ports.
pub async fn assert_service_lifecycle<F, Fut>(service: &str, start: F)
where
    F: Fn(crate::config::CommonConfig, crate::service::Shutdown) -> Fut,
    Fut: std::future::Future<
        Output = Result<crate::service::RunningService, crate::context::StartError>,
    >,
{
    let db = match TestDb::new().await {
        Ok(db) => db,
        Err(e) => panic!("test database: {e}"),
    };
    let role = DbRole::of_service(service).unwrap_or(DbRole::Portal);
    let running = match start(
        service_config(&db.url(role)),
        crate::service::Shutdown::new(),
    )
    .await
    {
        Ok(r) => r,
        Err(e) => panic!("{service} did not start: {e}"),
    };
    let get = |addr, path: &'static str| async move {
        match http(addr, "GET", path).await {
            Ok(r) => r,
            Err(e) => panic!("GET {path}: {e}"),
        }
    };
    let api = running.api_addr;
    let (code, body) = get(api, "/v1/health").await;
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("\"status\":\"ok\"") && body.contains(&format!("\"service\":\"{service}\"")),
        "{body}"
    );
    let (code, body) = get(api, "/v1/ready").await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"postgres\":\"up\""), "{body}");
    let (code, body) = get(api, "/v1/status").await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"mesh_id\":\"vaultmesh-test\""), "{body}");
    assert!(
        !body.contains(&format!("{0}:{0}@", role.name())),
        "status leaks a password: {body}"
    );
    let (code, body) = get(running.metrics_addr, "/metrics").await;
    assert_eq!(code, 200);
    for needle in [
        "process_cpu_seconds_total".to_string(),
        format!("vaultmesh_build_info{{service=\"{service}\""),
        "vaultmesh_db_pool_size{state=\"max\"}".to_string(),
    ] {
        assert!(body.contains(&needle), "metrics lack {needle}:\n{body}");
    }
    let (code, body) = get(api, "/v1/no-such-route").await;
    assert_eq!(code, 404);
    assert!(body.contains("\"code\":\"not_found\""), "{body}");
    let (code, body) = match http(api, "DELETE", "/v1/health").await {
        Ok(r) => r,
        Err(e) => panic!("DELETE: {e}"),
    };
    assert_eq!(code, 405, "{body}");
    assert!(body.contains("\"error\""), "{body}");

    let (api_addr, metrics_addr) = (running.api_addr, running.metrics_addr);
    if tokio::time::timeout(std::time::Duration::from_secs(15), running.stop())
        .await
        .is_err()
    {
        panic!("{service} did not stop within 15 s");
    }
    assert!(
        tokio::net::TcpStream::connect(api_addr).await.is_err(),
        "API port still open"
    );
    assert!(
        tokio::net::TcpStream::connect(metrics_addr).await.is_err(),
        "metrics port still open"
    );

    let down = unreachable_database_url().await;
    let running = match start(service_config(&down), crate::service::Shutdown::new()).await {
        Ok(r) => r,
        Err(e) => panic!("{service} must start without Postgres and report unready: {e}"),
    };
    let (code, body) = get(running.api_addr, "/v1/ready").await;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("\"postgres\":\"down\""), "{body}");
    let (code, _) = get(running.api_addr, "/v1/health").await;
    assert_eq!(code, 200);
    running.stop().await;
}

/// A throwaway `redis-server` on its own loopback port, killed on drop.
pub struct RedisServer {
    /// Its port.
    pub port: u16,
    child: tokio::process::Child,
}

impl RedisServer {
    /// Starts one on `port` (0 picks a free port) and waits until it accepts connections.
    pub async fn start(port: u16) -> Self {
        let port = if port == 0 { closed_port().await } else { port };
        let child = match tokio::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
        {
            Ok(c) => c,
            Err(e) => panic!("redis-server: {e}"),
        };
        wait_until_listening(
            std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            "redis-server",
            std::time::Duration::from_secs(10),
        )
        .await;
        Self { port, child }
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills it (SIGKILL) and waits until it is gone.
    pub async fn kill(self) {
        self.kill_ref().await;
    }

    /// Kills it (SIGKILL) in place and waits until it is gone.
    pub async fn kill_ref(&self) {
        let pid = self.child.id().map(|p| p.to_string()).unwrap_or_default();
        let _ = tokio::process::Command::new("kill")
            .args(["-KILL", &pid])
            .status()
            .await;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_ok()
        {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not die"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}
