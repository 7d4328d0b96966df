//! The resources a service holds once started — config, store, cache, registry, stop
//! signal — plus the routes every service serves (`/v1/health`, `/v1/ready`, `/v1/status`).

use crate::cache::{Cache, CacheError, CacheOptions, CacheSecret};
use crate::config::{CommonConfig, ServiceDefaults};
use crate::metrics;
use crate::service::{self, DependencyState, RunningService, Shutdown};
use crate::store::{migrate, PoolOptions, Store, StoreError};
use prometheus::{IntGaugeVec, Opts, Registry};
use std::time::Duration;
use warp::{Filter, Rejection, Reply};

/// Why a service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Database URL or migrations.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Redis URL or cache secret.
    #[error(transparent)]
    Cache(#[from] crate::cache::CacheError),
    /// Metric registration.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// Listeners.
    #[error(transparent)]
    Service(#[from] service::ServiceError),
    /// Reading a bound address.
    #[error("listener: {0}")]
    Io(#[from] std::io::Error),
}

/// The service a context's name stands for (the portal for any unknown name).
fn service_of(name: &str) -> crate::gate::Service {
    match name {
        "guardian" => crate::gate::Service::Guardian,
        "oracle" => crate::gate::Service::Oracle,
        _ => crate::gate::Service::Portal,
    }
}

/// Everything a started service shares with its handlers.
#[derive(Clone)]
pub struct ServiceContext {
    /// Service name (`portal`, `guardian`, `oracle`).
    pub name: &'static str,
    /// Resolved configuration.
    pub config: CommonConfig,
    /// Postgres store (application role).
    pub store: Store,
    /// Redis cache (never fails callers).
    pub cache: Cache,
    /// This service's own metrics registry.
    pub registry: Registry,
    /// Stop signal.
    pub shutdown: Shutdown,
    /// The database role the service connects as (`current_user`), when known.
    pub db_role: Option<String>,
    /// The constitution and emergency state this service enforces.
    pub governance: crate::governance::Governance,
    pool_gauge: IntGaugeVec,
    route_gauge: prometheus::GaugeVec,
}

impl ServiceContext {
    /// Connects the store (migrating first if an owner URL is configured), the cache and a
    /// fresh registry with process, build-info, pool and cache-error metrics.
    pub async fn init(
        name: &'static str,
        config: CommonConfig,
        shutdown: Shutdown,
    ) -> Result<Self, StartError> {
        if let Some(owner) = &config.migrate_database_url {
            migrate(owner).await?;
            tracing::info!(service = name, "migrations applied");
        }
        let store = Store::connect(&config.database_url, &PoolOptions::from_config(&config))?;
        let registry = metrics::new_registry();
        metrics::register_build_info(&registry, name)?;
        crate::store::register_metrics(&registry)?;
        let cache_metrics = crate::cache::CacheMetrics::register(&registry)?;
        let pool_gauge = IntGaugeVec::new(
            Opts::new("vaultmesh_db_pool_size", "Database pool size"),
            &["state"],
        )?;
        registry.register(Box::new(pool_gauge.clone()))?;
        let route_gauge = prometheus::GaugeVec::new(
            Opts::new("vaultmesh_mesh_route_healthy", "Mesh route health"),
            &["route_id"],
        )?;
        registry.register(Box::new(route_gauge.clone()))?;
        // Cache keys name the database by location and incarnation; when Postgres is down at
        // start the incarnation is unknown and the cache stays off rather than risk serving
        // another incarnation's entries.
        let db_location = crate::config::redacted(&config.database_url);
        let oid = match store.database_oid().await {
            Ok(oid) => Some(oid),
            Err(e) => {
                tracing::warn!(service = name, error = %e, "database unreachable at start; the cache is off until restart");
                None
            }
        };
        let db_tag = hex::encode(
            &crate::hash::Sha3Hasher::plain(
                format!("{db_location}#{}", oid.unwrap_or(0)).as_bytes(),
            )[..6],
        );
        let redis_url = config.redis_url.as_deref().filter(|_| oid.is_some());
        let cache = Cache::new(
            redis_url,
            CacheOptions {
                prefix: format!("vm:{}:{db_tag}:", config.mesh_id),
                secret: Some(cache_secret(name, &config)?),
                ..CacheOptions::default()
            },
            Some(cache_metrics),
        )?;
        let db_role = match store.current_role().await {
            Ok(role) => Some(role),
            Err(e) => {
                tracing::warn!(service = name, error = %e, "could not read the database role");
                None
            }
        };
        let governance = crate::governance::Governance::start(
            service_of(name),
            store.clone(),
            config.database_url.clone(),
            &registry,
            config.governance,
            shutdown.clone(),
        )
        .await?;
        let ctx = Self {
            name,
            config,
            store,
            cache,
            registry,
            shutdown,
            db_role,
            governance,
            pool_gauge,
            route_gauge,
        };
        ctx.refresh_pool_gauge();
        Ok(ctx)
    }

    /// The append gate of this service: the gate's own checks, then the constitution and
    /// the emergency freeze in force.
    pub fn gate(&self) -> crate::gate::AppendGate {
        self.governance.gate()
    }

    /// This service's storage for reads: its own store, and a read replica at
    /// `read_database_url` (`--read-database-url`; none when absent or empty) connected with
    /// the same pool options.
    pub fn reads(
        &self,
        read_database_url: Option<&str>,
    ) -> Result<crate::storage::Reads, crate::store::StoreError> {
        let replica = match read_database_url.filter(|u| !u.is_empty()) {
            Some(url) => {
                let store = crate::store::Store::connect(
                    url,
                    &crate::store::PoolOptions::from_config(&self.config),
                )?;
                Some(std::sync::Arc::new(store) as std::sync::Arc<dyn crate::storage::Storage>)
            }
            None => None,
        };
        Ok(crate::storage::Reads::new(
            std::sync::Arc::new(self.store.clone()),
            replica,
        ))
    }

    /// Makes this process a mesh node: registers it, then heartbeats (reporting `role`) and
    /// probes its routes (Postgres, Redis when configured, and `extra`) as tasks of
    /// `running`, until the stop signal. Returns the node id (`None` when `--mesh-node false`).
    pub fn join_mesh(
        &self,
        running: &mut RunningService,
        role: crate::mesh::node::RoleFn,
        extra: Vec<crate::mesh::route::Probe>,
    ) -> Result<Option<String>, StartError> {
        if !self.config.mesh.enabled {
            return Ok(None);
        }
        let instance = match &self.config.mesh.instance {
            Some(i) if crate::mesh::valid_instance(i) => i.clone(),
            Some(i) => {
                return Err(std::io::Error::other(format!(
                    "node instance {i:?}: 1 to 200 ASCII letters, digits and -._:@"
                ))
                .into())
            }
            None => {
                let host: String = crate::mesh::host_name()
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric() || "-._".contains(*c))
                    .take(180)
                    .collect();
                format!("{host}:{}", running.api_addr.port())
            }
        };
        let node_id = format!("{}-{instance}", self.name);
        let base = crate::store::NodeHeartbeat {
            node_id: node_id.clone(),
            service: self.name.to_string(),
            instance,
            role: String::new(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            mesh_id: self.config.mesh_id.clone(),
            api_addr: running.api_addr.to_string(),
            metrics_addr: running.metrics_addr.to_string(),
            started_at: chrono::Utc::now(),
            ready: false,
            heartbeat_ms: u32::try_from(self.config.mesh.heartbeat.as_millis()).unwrap_or(u32::MAX),
        };
        let mut probes = crate::mesh::route::base_probes(self);
        probes.extend(extra);
        running.add_task(tokio::spawn(crate::mesh::node::run(
            self.clone(),
            base,
            role,
        )));
        running.add_task(tokio::spawn(crate::mesh::route::run(
            self.clone(),
            node_id.clone(),
            probes,
            self.route_gauge.clone(),
        )));
        Ok(Some(node_id))
    }

    /// Sets `vaultmesh_db_pool_size{state=max|open|idle|in_use|waiting}` from the pool.
    pub fn refresh_pool_gauge(&self) {
        let s = self.store.pool().status();
        let open = i64::try_from(s.size).unwrap_or(i64::MAX);
        let idle = i64::try_from(s.available).unwrap_or(0);
        for (state, v) in [
            ("max", i64::try_from(s.max_size).unwrap_or(i64::MAX)),
            ("open", open),
            ("idle", idle),
            ("in_use", open - idle),
            ("waiting", i64::try_from(s.waiting).unwrap_or(0)),
        ] {
            self.pool_gauge.with_label_values(&[state]).set(v);
        }
    }

    /// Postgres and Redis states for readiness (Postgres required, Redis optional).
    pub async fn dependencies(&self) -> Vec<DependencyState> {
        let pg = match tokio::time::timeout(Duration::from_secs(2), self.store.ping()).await {
            Ok(Ok(())) => "up",
            _ => "down",
        };
        let _ = self.cache.ping().await;
        let redis = match self.cache.state() {
            crate::cache::CacheState::Up => "up",
            crate::cache::CacheState::Degraded => "degraded",
            crate::cache::CacheState::Disabled => "disabled",
        };
        vec![
            DependencyState {
                name: "postgres",
                state: pg.into(),
                required: true,
            },
            DependencyState {
                name: "redis",
                state: redis.into(),
                required: false,
            },
        ]
    }

    /// `/v1/health`, `/v1/ready` and `/v1/status`.
    pub fn base_routes(&self) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
        let ready_ctx = self.clone();
        let ready = warp::path!("v1" / "ready").and(warp::get()).then(move || {
            let ctx = ready_ctx.clone();
            async move { service::ready_reply(&ctx.dependencies().await) }
        });
        let status_ctx = self.clone();
        let status = warp::path!("v1" / "status").and(warp::get()).map(move || {
            let ctx = &status_ctx;
            ctx.refresh_pool_gauge();
            let p = ctx.store.pool().status();
            warp::reply::json(&serde_json::json!({
                "service": ctx.name,
                "version": env!("CARGO_PKG_VERSION"),
                "mesh_id": ctx.config.mesh_id,
                "db_role": ctx.db_role,
                "api_addr": ctx.config.api_addr,
                "metrics_addr": ctx.config.metrics_addr,
                "pool": {"max": p.max_size, "open": p.size, "idle": p.available, "waiting": p.waiting},
                "cache": ctx.cache.state(),
                "config": ctx.config,
            }))
        });
        service::health_route(self.name).or(ready).or(status)
    }

    /// Binds the API and metrics listeners and serves `routes` (plus the base routes).
    pub async fn serve<F>(&self, routes: F) -> Result<RunningService, StartError>
    where
        F: Filter<Error = Rejection> + Clone + Send + Sync + 'static,
        F::Extract: Reply,
    {
        self.serve_counted(routes, None, None).await
    }

    /// [`ServiceContext::serve`], with `table` listing the service's own routes (the base
    /// routes are added) for 404/405/HEAD answers before any filter runs, and `connections`
    /// following the API's open connections.
    pub async fn serve_counted<F>(
        &self,
        routes: F,
        table: Option<crate::http_guard::RouteTable>,
        connections: Option<prometheus::Gauge>,
    ) -> Result<RunningService, StartError>
    where
        F: Filter<Error = Rejection> + Clone + Send + Sync + 'static,
        F::Extract: Reply,
    {
        let api = service::bind(self.config.api_addr).await?;
        let metrics_listener = service::bind(self.config.metrics_addr).await?;
        let pool_ctx = self.clone();
        let on_scrape: service::ScrapeHook =
            std::sync::Arc::new(move || pool_ctx.refresh_pool_gauge());
        let api_routes = self.base_routes().or(routes);
        let mut running = RunningService::start(
            service::Api {
                listener: api,
                filter: api_routes,
                how: service::Listening {
                    limits: self.config.http,
                    routes: table.map(|t| {
                        std::sync::Arc::new(t.with([
                            ("GET", "/v1/health"),
                            ("GET", "/v1/ready"),
                            ("GET", "/v1/status"),
                        ]))
                    }),
                    connections,
                },
            },
            metrics_listener,
            self.registry.clone(),
            on_scrape,
            self.shutdown.clone(),
            self.config.shutdown_grace,
        )?;
        if let Some(recorder) = self.governance.take_recorder() {
            running.add_task(recorder);
        }
        tracing::info!(
            service = self.name,
            api_addr = %running.api_addr,
            metrics_addr = %running.metrics_addr,
            mesh_id = %self.config.mesh_id,
            "service started"
        );
        Ok(running)
    }
}

/// The secret cache entries are sealed with: from `--cache-secret-file`, or else a random one
/// for this process's lifetime (safe, but then no other replica or restart can use its
/// entries).
fn cache_secret(name: &str, config: &CommonConfig) -> Result<CacheSecret, CacheError> {
    let secret = match &config.cache_secret_file {
        Some(path) => {
            let secret = CacheSecret::from_file(path)?;
            tracing::info!(
                service = name,
                file = %path.display(),
                fingerprint = %secret.fingerprint(),
                "cache entries are sealed with the configured cache secret"
            );
            secret
        }
        None => {
            if config.redis_url.is_some() {
                tracing::warn!(
                    service = name,
                    "no cache secret file configured: cache entries are sealed with a random secret for this process only, so they are not shared with other replicas or after a restart"
                );
            }
            CacheSecret::random()?
        }
    };
    Ok(secret)
}

/// Defaults for a service on API port `api_port`, metrics port 9090, connecting as `db_role`.
pub fn defaults(api_port: u16, db_role: crate::store::DbRole) -> ServiceDefaults {
    ServiceDefaults {
        db_role,
        api_addr: std::net::SocketAddr::from(([127, 0, 0, 1], api_port)),
        metrics_addr: std::net::SocketAddr::from(([0, 0, 0, 0], 9090)),
    }
}

/// Why a service binary stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Configuration could not be loaded.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The service could not start.
    #[error(transparent)]
    Start(#[from] StartError),
}

/// The body of every service's `main`: load config, log as JSON, start, and run until
/// SIGINT/SIGTERM, then shut down gracefully.
pub async fn run_until_stopped<F, Fut>(
    args: &crate::config::CommonArgs,
    defaults: ServiceDefaults,
    start: F,
) -> Result<(), RunError>
where
    F: FnOnce(CommonConfig, Shutdown) -> Fut,
    Fut: std::future::Future<Output = Result<RunningService, StartError>>,
{
    let config = args.load(defaults)?;
    crate::telemetry::init_logging(&config.log);
    let shutdown = Shutdown::new();
    shutdown.on_os_signals();
    let running = match start(config, shutdown).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "service failed to start");
            return Err(e.into());
        }
    };
    running.wait().await;
    tracing::info!("service stopped");
    Ok(())
}
