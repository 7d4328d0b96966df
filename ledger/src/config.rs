//! Service configuration: CLI flags, `VAULTMESH_*` environment variables and an optional
//! TOML file, in that order of precedence, over built-in defaults.

use clap::Args;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why configuration could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The TOML file could not be read.
    #[error("config file {path}: {source}")]
    Read {
        /// File path.
        path: String,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The TOML file is invalid or has unknown keys.
    #[error("config file {path}: {message}")]
    Parse {
        /// File path.
        path: String,
        /// Parser message.
        message: String,
    },
}

/// Options every service shares. Unset options fall back to the TOML file, then defaults.
#[derive(Debug, Clone, Default, Args)]
pub struct CommonArgs {
    /// TOML file with any of these options (keys as the long flag names, with `_`).
    #[arg(long = "config", env = "VAULTMESH_CONFIG", value_name = "FILE")]
    pub config_file: Option<PathBuf>,
    /// Postgres URL the service uses at run time, as the service's own role.
    /// [default: postgres://vaultmesh_<service>:vaultmesh_<service>@127.0.0.1:5432/vaultmesh]
    #[arg(long, env = "VAULTMESH_DATABASE_URL", value_name = "URL")]
    pub database_url: Option<String>,
    /// Postgres URL of the schema owner; when set, migrations are applied at start.
    #[arg(long, env = "VAULTMESH_MIGRATE_DATABASE_URL", value_name = "URL")]
    pub migrate_database_url: Option<String>,
    /// What a committed write waits for before the service answers: `local` (flushed on the
    /// primary) or `replicated` (also flushed on a synchronous standby, Postgres
    /// `synchronous_commit = on`; writes are refused with 503 while the primary names no
    /// synchronous standby, and wait for one up to the response timeout). [default: local]
    #[arg(long, env = "VAULTMESH_DURABILITY", value_name = "LEVEL")]
    pub durability: Option<crate::store::Durability>,
    /// Maximum Postgres connections in the pool. [default: 16]
    #[arg(long, env = "VAULTMESH_DB_POOL_SIZE", value_name = "N")]
    pub db_pool_size: Option<usize>,
    /// Milliseconds to open a Postgres connection: TCP connect, startup and authentication,
    /// in all. [default: 2000]
    #[arg(long, env = "VAULTMESH_DB_CONNECT_TIMEOUT_MS", value_name = "MS")]
    pub db_connect_timeout_ms: Option<u64>,
    /// Milliseconds a call waits for a free pooled Postgres connection before it fails with
    /// 503 `database_unavailable`. [default: 1000]
    #[arg(long, env = "VAULTMESH_DB_POOL_WAIT_MS", value_name = "MS")]
    pub db_pool_wait_ms: Option<u64>,
    /// Milliseconds a Postgres connection may leave a request unanswered (or fail to send
    /// one) before it is closed and the call fails with 503 `database_unavailable`; a call
    /// fails at most pool wait + this after Postgres stops answering, and a portal write is
    /// answered within that sum. [default: 4000]
    #[arg(long, env = "VAULTMESH_DB_RESPONSE_TIMEOUT_MS", value_name = "MS")]
    pub db_response_timeout_ms: Option<u64>,
    /// Postgres `statement_timeout` of every session, in milliseconds (0: none); keep it
    /// below the response timeout so that Postgres cancels a slow statement first.
    /// [default: 3000; guardian: 0, as its history scans stream for as long as a scroll is
    /// large]
    #[arg(long, env = "VAULTMESH_DB_STATEMENT_TIMEOUT_MS", value_name = "MS")]
    pub db_statement_timeout_ms: Option<u64>,
    /// Postgres `idle_in_transaction_session_timeout` of every session, in milliseconds (0:
    /// none): how long the locks of a session whose client vanished mid-transaction can
    /// block others. [default: 5000]
    #[arg(
        long,
        env = "VAULTMESH_DB_IDLE_IN_TRANSACTION_TIMEOUT_MS",
        value_name = "MS"
    )]
    pub db_idle_in_transaction_timeout_ms: Option<u64>,
    /// Redis URL for the cache; an empty string disables caching.
    /// [default: redis://127.0.0.1:6379]
    #[arg(long, env = "VAULTMESH_REDIS_URL", value_name = "URL")]
    pub redis_url: Option<String>,
    /// File with the secret that authenticates every Redis cache entry (HMAC-SHA256; Redis is
    /// untrusted and never sees it): at least 32 random bytes, as hex digits (whitespace
    /// around them ignored) or raw bytes, e.g. `head -c 32 /dev/urandom | od -An -tx1 | tr -d
    /// ' \n'`. Give every replica of every service the same file. [default: none: a random
    /// secret per process, so replicas and restarts share no cache entries]
    #[arg(long, env = "VAULTMESH_CACHE_SECRET_FILE", value_name = "FILE")]
    pub cache_secret_file: Option<PathBuf>,
    /// Mesh id: the first part of every checkpoint origin. [default: vaultmesh-dev]
    #[arg(long, env = "VAULTMESH_MESH_ID", value_name = "ID")]
    pub mesh_id: Option<String>,
    /// Address of the service's HTTP API. [default: per service, 127.0.0.1:8080/8081/8082]
    #[arg(long, env = "VAULTMESH_API_ADDR", value_name = "ADDR")]
    pub api_addr: Option<SocketAddr>,
    /// Address of the Prometheus `/metrics` listener. [default: per service, 0.0.0.0:9090]
    #[arg(long, env = "VAULTMESH_METRICS_ADDR", value_name = "ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// Log filter, e.g. `info` or `portal=debug,info`. [default: info]
    #[arg(long, env = "VAULTMESH_LOG", value_name = "FILTER")]
    pub log: Option<String>,
    /// Seconds to let in-flight requests finish after a stop signal. [default: 10]
    #[arg(long, env = "VAULTMESH_SHUTDOWN_GRACE_SECS", value_name = "SECS")]
    pub shutdown_grace_secs: Option<u64>,
    /// Most open API connections; further ones get a 503 JSON answer and are closed.
    /// [default: 1024]
    #[arg(long, env = "VAULTMESH_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,
    /// Milliseconds a client may take to send a request's headers before the connection is
    /// closed (slow-loris defence). [default: 10000]
    #[arg(long, env = "VAULTMESH_HEADER_READ_TIMEOUT_MS", value_name = "MS")]
    pub header_read_timeout_ms: Option<u64>,
    /// Milliseconds any request may take in all before it is answered 503
    /// `request_deadline`. [default: 30000]
    #[arg(long, env = "VAULTMESH_REQUEST_TIMEOUT_MS", value_name = "MS")]
    pub request_timeout_ms: Option<u64>,
    /// Milliseconds between polls of the governance state (constitution, emergency), the
    /// fallback behind Postgres LISTEN/NOTIFY: a change reaches this service within this
    /// time even if the notification is lost. [default: 500]
    #[arg(long, env = "VAULTMESH_GOVERNANCE_POLL_MS", value_name = "MS")]
    pub governance_poll_ms: Option<u64>,
    /// Seconds per constitutional-violation window: each window becomes at most one
    /// `constitutional_violation` receipt per scroll and rule. [default: 60]
    #[arg(long, env = "VAULTMESH_GOVERNANCE_WINDOW_SECS", value_name = "SECS")]
    pub governance_window_secs: Option<u64>,
    /// Retry-After, in seconds, of a write refused by an emergency freeze. [default: 30]
    #[arg(
        long,
        env = "VAULTMESH_EMERGENCY_RETRY_AFTER_SECS",
        value_name = "SECS"
    )]
    pub emergency_retry_after_secs: Option<u64>,
    /// Whether this process is a mesh node: registers and heartbeats, probes its routes and
    /// receipts their changes. Turn it off only for one-off processes and isolated tests.
    /// [default: true]
    #[arg(long, env = "VAULTMESH_MESH_NODE", value_name = "BOOL")]
    pub mesh_node: Option<bool>,
    /// The instance part of this process's mesh node id (`<service>-<instance>`); keep it
    /// stable across restarts so a restarted process is the same node. [default: host name
    /// and API port]
    #[arg(long, env = "VAULTMESH_NODE_INSTANCE", value_name = "NAME")]
    pub node_instance: Option<String>,
    /// Milliseconds between this node's heartbeats into Postgres; it counts as unhealthy
    /// after three missed. [default: 5000]
    #[arg(long, env = "VAULTMESH_HEARTBEAT_MS", value_name = "MS")]
    pub heartbeat_ms: Option<u64>,
    /// Milliseconds between probes of the routes this node relies on (Postgres, Redis,
    /// sinks, witnesses, remote meshes, the LLM). [default: 5000]
    #[arg(long, env = "VAULTMESH_ROUTE_PROBE_MS", value_name = "MS")]
    pub route_probe_ms: Option<u64>,
}

/// The same options as read from a TOML file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommonFile {
    /// See [`CommonArgs::database_url`].
    pub database_url: Option<String>,
    /// See [`CommonArgs::migrate_database_url`].
    pub migrate_database_url: Option<String>,
    /// See [`CommonArgs::durability`].
    pub durability: Option<crate::store::Durability>,
    /// See [`CommonArgs::db_pool_size`].
    pub db_pool_size: Option<usize>,
    /// See [`CommonArgs::db_connect_timeout_ms`].
    pub db_connect_timeout_ms: Option<u64>,
    /// See [`CommonArgs::db_pool_wait_ms`].
    pub db_pool_wait_ms: Option<u64>,
    /// See [`CommonArgs::db_response_timeout_ms`].
    pub db_response_timeout_ms: Option<u64>,
    /// See [`CommonArgs::db_statement_timeout_ms`].
    pub db_statement_timeout_ms: Option<u64>,
    /// See [`CommonArgs::db_idle_in_transaction_timeout_ms`].
    pub db_idle_in_transaction_timeout_ms: Option<u64>,
    /// See [`CommonArgs::redis_url`].
    pub redis_url: Option<String>,
    /// See [`CommonArgs::cache_secret_file`].
    pub cache_secret_file: Option<PathBuf>,
    /// See [`CommonArgs::mesh_id`].
    pub mesh_id: Option<String>,
    /// See [`CommonArgs::api_addr`].
    pub api_addr: Option<SocketAddr>,
    /// See [`CommonArgs::metrics_addr`].
    pub metrics_addr: Option<SocketAddr>,
    /// See [`CommonArgs::log`].
    pub log: Option<String>,
    /// See [`CommonArgs::shutdown_grace_secs`].
    pub shutdown_grace_secs: Option<u64>,
    /// See [`CommonArgs::max_connections`].
    pub max_connections: Option<usize>,
    /// See [`CommonArgs::header_read_timeout_ms`].
    pub header_read_timeout_ms: Option<u64>,
    /// See [`CommonArgs::request_timeout_ms`].
    pub request_timeout_ms: Option<u64>,
    /// See [`CommonArgs::governance_poll_ms`].
    pub governance_poll_ms: Option<u64>,
    /// See [`CommonArgs::governance_window_secs`].
    pub governance_window_secs: Option<u64>,
    /// See [`CommonArgs::emergency_retry_after_secs`].
    pub emergency_retry_after_secs: Option<u64>,
    /// See [`CommonArgs::mesh_node`].
    pub mesh_node: Option<bool>,
    /// See [`CommonArgs::node_instance`].
    pub node_instance: Option<String>,
    /// See [`CommonArgs::heartbeat_ms`].
    pub heartbeat_ms: Option<u64>,
    /// See [`CommonArgs::route_probe_ms`].
    pub route_probe_ms: Option<u64>,
}

/// Resolved configuration shared by every service.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CommonConfig {
    /// Run-time Postgres URL (secrets redacted when serialised).
    #[serde(serialize_with = "redact_url")]
    pub database_url: String,
    /// Owner URL for migrations, if any.
    #[serde(skip)]
    pub migrate_database_url: Option<String>,
    /// What a committed write waits for.
    pub durability: crate::store::Durability,
    /// Pool size.
    pub db_pool_size: usize,
    /// Postgres connect, pool, response and session time limits.
    pub db_timeouts: crate::store::DbTimeouts,
    /// Redis URL, if caching is enabled.
    #[serde(serialize_with = "redact_opt_url")]
    pub redis_url: Option<String>,
    /// File holding the cache secret, if any (the path is shown, its content never read
    /// into the config).
    pub cache_secret_file: Option<PathBuf>,
    /// Mesh id.
    pub mesh_id: String,
    /// API listen address.
    pub api_addr: SocketAddr,
    /// Metrics listen address.
    pub metrics_addr: SocketAddr,
    /// Log filter.
    pub log: String,
    /// Graceful shutdown deadline.
    #[serde(with = "secs")]
    pub shutdown_grace: Duration,
    /// Connection and request limits of the API listener.
    pub http: crate::http_guard::HttpLimits,
    /// Governance polling, violation window and freeze Retry-After.
    pub governance: crate::governance::GovernanceSettings,
    /// Mesh node identity, heartbeat and route probes.
    pub mesh: crate::mesh::MeshSettings,
}

/// Per-service defaults for the listen addresses.
#[derive(Debug, Clone, Copy)]
pub struct ServiceDefaults {
    /// Default API address.
    pub api_addr: SocketAddr,
    /// Default metrics address.
    pub metrics_addr: SocketAddr,
    /// The service's own database role (its dev-stack URL is the default database URL).
    pub db_role: crate::store::DbRole,
}

/// Default URL of the schema owner, for the CLI's owner-only commands (keys, migrate).
pub const DEFAULT_OWNER_DATABASE_URL: &str =
    "postgres://vaultmesh:vaultmesh@127.0.0.1:5432/vaultmesh";

/// Reads a TOML file into `T`, rejecting unknown keys (when `T` does).
pub fn read_toml<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

impl CommonArgs {
    /// Merges flags/env over `file` over defaults.
    pub fn resolve(&self, file: CommonFile, defaults: ServiceDefaults) -> CommonConfig {
        let redis = self
            .redis_url
            .clone()
            .or(file.redis_url)
            .unwrap_or_else(|| "redis://127.0.0.1:6379".into());
        CommonConfig {
            database_url: self
                .database_url
                .clone()
                .or(file.database_url)
                .unwrap_or_else(|| defaults.db_role.dev_url()),
            migrate_database_url: self
                .migrate_database_url
                .clone()
                .or(file.migrate_database_url)
                .filter(|u| !u.is_empty()),
            durability: self.durability.or(file.durability).unwrap_or_default(),
            db_pool_size: self.db_pool_size.or(file.db_pool_size).unwrap_or(16).max(1),
            db_timeouts: crate::store::DbTimeouts {
                connect: millis(
                    self.db_connect_timeout_ms.or(file.db_connect_timeout_ms),
                    crate::store::DEFAULT_CONNECT_MS,
                )
                .max(Duration::from_millis(1)),
                pool_wait: millis(
                    self.db_pool_wait_ms.or(file.db_pool_wait_ms),
                    crate::store::DEFAULT_POOL_WAIT_MS,
                ),
                response: millis(
                    self.db_response_timeout_ms.or(file.db_response_timeout_ms),
                    crate::store::DEFAULT_RESPONSE_MS,
                )
                .max(Duration::from_millis(1)),
                statement: millis(
                    self.db_statement_timeout_ms
                        .or(file.db_statement_timeout_ms),
                    if defaults.db_role == crate::store::DbRole::Guardian {
                        0
                    } else {
                        crate::store::DEFAULT_STATEMENT_MS
                    },
                ),
                idle_in_transaction: millis(
                    self.db_idle_in_transaction_timeout_ms
                        .or(file.db_idle_in_transaction_timeout_ms),
                    crate::store::DEFAULT_IDLE_IN_TRANSACTION_MS,
                ),
            },
            redis_url: Some(redis).filter(|u| !u.is_empty()),
            cache_secret_file: self
                .cache_secret_file
                .clone()
                .or(file.cache_secret_file)
                .filter(|p| !p.as_os_str().is_empty()),
            mesh_id: self
                .mesh_id
                .clone()
                .or(file.mesh_id)
                .unwrap_or_else(|| "vaultmesh-dev".into()),
            api_addr: self.api_addr.or(file.api_addr).unwrap_or(defaults.api_addr),
            metrics_addr: self
                .metrics_addr
                .or(file.metrics_addr)
                .unwrap_or(defaults.metrics_addr),
            log: self
                .log
                .clone()
                .or(file.log)
                .unwrap_or_else(|| "info".into()),
            shutdown_grace: Duration::from_secs(
                self.shutdown_grace_secs
                    .or(file.shutdown_grace_secs)
                    .unwrap_or(10),
            ),
            http: crate::http_guard::HttpLimits {
                max_connections: self
                    .max_connections
                    .or(file.max_connections)
                    .unwrap_or(1024)
                    .max(1),
                header_read_timeout: Duration::from_millis(
                    self.header_read_timeout_ms
                        .or(file.header_read_timeout_ms)
                        .unwrap_or(10_000)
                        .max(1),
                ),
                request_timeout: Duration::from_millis(
                    self.request_timeout_ms
                        .or(file.request_timeout_ms)
                        .unwrap_or(30_000)
                        .max(1),
                ),
            },
            governance: crate::governance::GovernanceSettings {
                poll: Duration::from_millis(
                    self.governance_poll_ms
                        .or(file.governance_poll_ms)
                        .unwrap_or(500)
                        .max(10),
                ),
                violation_window: Duration::from_secs(
                    self.governance_window_secs
                        .or(file.governance_window_secs)
                        .unwrap_or(60)
                        .max(1),
                ),
                retry_after_secs: self
                    .emergency_retry_after_secs
                    .or(file.emergency_retry_after_secs)
                    .unwrap_or(30)
                    .max(1),
            },
            mesh: crate::mesh::MeshSettings {
                enabled: self.mesh_node.or(file.mesh_node).unwrap_or(true),
                instance: self.node_instance.clone().or(file.node_instance),
                heartbeat: Duration::from_millis(
                    self.heartbeat_ms
                        .or(file.heartbeat_ms)
                        .unwrap_or(5_000)
                        .clamp(50, 600_000),
                ),
                probe_interval: Duration::from_millis(
                    self.route_probe_ms
                        .or(file.route_probe_ms)
                        .unwrap_or(5_000)
                        .clamp(50, 600_000),
                ),
            },
        }
    }

    /// Reads the TOML file named by `--config`, if any, and resolves.
    pub fn load(&self, defaults: ServiceDefaults) -> Result<CommonConfig, ConfigError> {
        let file = match &self.config_file {
            Some(path) => read_toml(path)?,
            None => CommonFile::default(),
        };
        Ok(self.resolve(file, defaults))
    }
}

/// Connection-string keys whose values are secrets.
const SECRET_KEYS: [&str; 6] = [
    "password",
    "pass",
    "passwd",
    "sslpassword",
    "secret",
    "token",
];

fn is_secret_key(key: &str) -> bool {
    SECRET_KEYS
        .iter()
        .any(|k| key.trim().eq_ignore_ascii_case(k))
}

/// A database or cache location with every secret replaced by `***`, whatever form it takes:
/// a URL's `user:password@`, secret query parameters (`?password=…`), or the `key=value`
/// connection-string form (`host=… password='…'`).
pub fn redacted(url: &str) -> String {
    if let Some(scheme_end) = url.find("://") {
        let (base, query) = match url.split_once('?') {
            Some((b, q)) => (b, Some(q)),
            None => (url, None),
        };
        let mut out = match base.rfind('@') {
            Some(at) if at > scheme_end => {
                let userinfo = &base[scheme_end + 3..at];
                match userinfo.split_once(':') {
                    Some((user, _)) => {
                        format!("{}{user}:***{}", &base[..scheme_end + 3], &base[at..])
                    }
                    None => base.to_string(),
                }
            }
            _ => base.to_string(),
        };
        if let Some(q) = query {
            let params: Vec<String> = q
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if is_secret_key(k) => format!("{k}=***"),
                    _ => kv.to_string(),
                })
                .collect();
            out.push('?');
            out.push_str(&params.join("&"));
        }
        return out;
    }
    redacted_key_values(url)
}

/// The `key=value` form with secret values replaced (values may be single-quoted, with `\'`
/// and `\\` escapes, as libpq allows).
fn redacted_key_values(dsn: &str) -> String {
    let mut out = String::with_capacity(dsn.len());
    let mut rest = dsn;
    while !rest.is_empty() {
        let trimmed = rest.trim_start();
        out.push_str(&rest[..rest.len() - trimmed.len()]);
        rest = trimmed;
        if rest.is_empty() {
            break;
        }
        let Some(eq) = rest.find('=') else {
            out.push_str(rest);
            break;
        };
        let key = &rest[..eq];
        let after = rest[eq + 1..].trim_start();
        let value_len = if let Some(quoted) = after.strip_prefix('\'') {
            let mut end = quoted.len();
            let mut escaped = false;
            for (i, c) in quoted.char_indices() {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == '\'' {
                    end = i + 1;
                    break;
                }
            }
            1 + end
        } else {
            after.find(char::is_whitespace).unwrap_or(after.len())
        };
        let value = &after[..value_len.min(after.len())];
        out.push_str(key);
        out.push('=');
        out.push_str(if is_secret_key(key) { "***" } else { value });
        rest = &after[value_len.min(after.len())..];
    }
    out
}

/// `value` milliseconds, or `default` when unset.
fn millis(value: Option<u64>, default: u64) -> Duration {
    Duration::from_millis(value.unwrap_or(default))
}

fn redact_url<S: serde::Serializer>(url: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&redacted(url))
}

fn redact_opt_url<S: serde::Serializer>(url: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match url {
        Some(u) => s.serialize_some(&redacted(u)),
        None => s.serialize_none(),
    }
}

/// Serialises a duration as whole milliseconds (for `/v1/status`).
pub(crate) mod millis_serde {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

mod secs {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> ServiceDefaults {
        ServiceDefaults {
            api_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            metrics_addr: SocketAddr::from(([0, 0, 0, 0], 9090)),
            db_role: crate::store::DbRole::Portal,
        }
    }

    #[test]
    fn flags_beat_file_beat_defaults() {
        let file: CommonFile =
            toml::from_str("mesh_id = \"from-file\"\ndb_pool_size = 4\nredis_url = \"\"")
                .unwrap_or_default();
        let args = CommonArgs {
            db_pool_size: Some(9),
            ..Default::default()
        };
        let cfg = args.resolve(file, defaults());
        assert_eq!(cfg.mesh_id, "from-file");
        assert_eq!(cfg.db_pool_size, 9);
        assert_eq!(cfg.redis_url, None);
        assert_eq!(cfg.api_addr, defaults().api_addr);
        assert_eq!(
            cfg.database_url,
            "postgres://vaultmesh_portal:vaultmesh_portal@127.0.0.1:5432/vaultmesh"
        );
    }

    #[test]
    fn the_cache_secret_file_is_a_path_shown_as_such() {
        let file: CommonFile =
            toml::from_str("cache_secret_file = \"/etc/vaultmesh/cache.secret\"")
                .unwrap_or_default();
        let cfg = CommonArgs::default().resolve(file.clone(), defaults());
        assert_eq!(
            cfg.cache_secret_file.as_deref(),
            Some(Path::new("/etc/vaultmesh/cache.secret"))
        );
        let shown = serde_json::to_value(&cfg).unwrap_or_default();
        assert_eq!(shown["cache_secret_file"], "/etc/vaultmesh/cache.secret");
        let args = CommonArgs {
            cache_secret_file: Some(PathBuf::from("/run/secret")),
            ..Default::default()
        };
        assert_eq!(
            args.resolve(file, defaults()).cache_secret_file,
            Some(PathBuf::from("/run/secret"))
        );
        let unset = CommonArgs::default().resolve(CommonFile::default(), defaults());
        assert_eq!(unset.cache_secret_file, None);
    }

    #[test]
    fn database_timeouts_resolve_per_service() {
        let file: CommonFile =
            toml::from_str("db_response_timeout_ms = 2500\ndb_statement_timeout_ms = 2000")
                .unwrap_or_default();
        let args = CommonArgs {
            db_pool_wait_ms: Some(300),
            db_response_timeout_ms: Some(1500),
            ..Default::default()
        };
        let t = args.resolve(file, defaults()).db_timeouts;
        assert_eq!(t.pool_wait, Duration::from_millis(300));
        assert_eq!(
            t.response,
            Duration::from_millis(1500),
            "flags beat the file"
        );
        assert_eq!(t.statement, Duration::from_millis(2000));
        assert_eq!(
            t.connect,
            Duration::from_millis(crate::store::DEFAULT_CONNECT_MS)
        );
        let portal = CommonArgs::default().resolve(CommonFile::default(), defaults());
        assert_eq!(portal.db_timeouts, crate::store::DbTimeouts::default());
        assert!(portal.db_timeouts.call_bound() <= Duration::from_secs(5));
        let guardian = CommonArgs::default().resolve(
            CommonFile::default(),
            ServiceDefaults {
                db_role: crate::store::DbRole::Guardian,
                ..defaults()
            },
        );
        assert_eq!(guardian.db_timeouts.statement, Duration::ZERO);
        let pool = crate::store::PoolOptions::from_config(&guardian);
        assert_eq!(pool.timeouts, guardian.db_timeouts);
        assert_eq!(pool.wait_timeout, guardian.db_timeouts.pool_wait);
        let shown = serde_json::to_value(&portal).unwrap_or_default();
        assert_eq!(shown["db_timeouts"]["response_ms"], 4000);
    }

    #[test]
    fn unknown_file_keys_are_rejected() {
        assert!(toml::from_str::<CommonFile>("mesh = \"typo\"").is_err());
    }

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redacted("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redacted("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        for (dsn, secret) in [
            (
                "postgres://u:s3cr3t@h1:5432,h2:5433/db?target_session_attrs=read-write",
                "s3cr3t",
            ),
            (
                "postgres://u@h/db?password=s3cr3t&sslmode=disable",
                "s3cr3t",
            ),
            (
                "postgres://u@h/db?sslmode=disable&PASSWORD=s3cr3t",
                "s3cr3t",
            ),
            ("host=h user=u password=s3cr3t dbname=db", "s3cr3t"),
            ("host=h password = s3cr3t dbname=db", "s3cr3t"),
            ("host=h password='s3 cr\\'3t' dbname=db", "cr"),
            ("redis://:s3cr3t@127.0.0.1:6379", "s3cr3t"),
            ("redis://default:s3cr3t@cache/0?token=s3cr3t", "s3cr3t"),
        ] {
            let shown = redacted(dsn);
            assert!(!shown.contains(secret), "{dsn} -> {shown}");
            assert!(shown.contains("***"), "{dsn} -> {shown}");
        }
        assert_eq!(
            redacted("host=h user=u password='a b' dbname=db"),
            "host=h user=u password=*** dbname=db"
        );
    }
}
