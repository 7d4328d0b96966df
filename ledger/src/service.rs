//! What every service binary shares: listeners bound up front, the API and `/metrics`
//! servers, JSON errors for rejections, health/ready endpoints, and graceful shutdown
//! with a deadline.

use crate::http_guard::{Guarded, HttpLimits, RouteTable};
use crate::metrics;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use prometheus::{Gauge, Registry};
use serde::Serialize;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;
use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

/// Why a service could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// A listen address could not be bound (in use, no permission, …).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Underlying error.
        source: std::io::Error,
    },
}

/// A one-shot stop signal that any number of tasks can wait for.
#[derive(Clone)]
pub struct Shutdown {
    tx: watch::Sender<bool>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    /// A signal not yet triggered.
    pub fn new() -> Self {
        Self {
            tx: watch::channel(false).0,
        }
    }

    /// Triggers the signal.
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    /// Whether the signal has been triggered.
    pub fn is_triggered(&self) -> bool {
        *self.tx.borrow()
    }

    /// Resolves once the signal is triggered.
    pub fn wait(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.tx.subscribe();
        async move {
            let _ = rx.wait_for(|v| *v).await;
        }
    }

    /// Triggers the signal on SIGINT (Ctrl-C) or SIGTERM.
    pub fn on_os_signals(&self) {
        let this = self.clone();
        tokio::spawn(async move {
            wait_for_os_signal().await;
            this.trigger();
            tracing::info!("stop signal received, shutting down");
        });
    }
}

async fn wait_for_os_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Binds a listener, with an error that names the address.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, ServiceError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServiceError::Bind { addr, source })
}

/// How a listener serves: its limits, its route table (none: every path goes to the
/// filter), and an optional gauge of open connections.
#[derive(Clone, Default)]
pub struct Listening {
    /// Connection and request limits.
    pub limits: HttpLimits,
    /// Routes for 404/405/HEAD answers before the filter runs.
    pub routes: Option<Arc<RouteTable>>,
    /// Follows the number of open connections.
    pub connections: Option<Gauge>,
}

/// Serves `filter` on `listener` until `shutdown`, then lets open requests finish for at
/// most `grace`. HTTP/1.1 only; headers must arrive within the header deadline, connections
/// beyond the cap get a 503 and are closed, and every request passes the
/// [`crate::http_guard`] checks.
pub async fn serve<F>(
    listener: TcpListener,
    filter: F,
    shutdown: Shutdown,
    grace: Duration,
    how: Listening,
) where
    F: Filter<Error = Rejection> + Clone + Send + Sync + 'static,
    F::Extract: Reply,
{
    let service = Guarded::new(
        warp::service(filter.recover(recover_rejection)),
        how.routes.clone(),
        how.limits.request_timeout,
    );
    let slots = Arc::new(Semaphore::new(how.limits.max_connections));
    let mut builder = auto::Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(how.limits.header_read_timeout)
        .max_headers(64);
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    let stop = shutdown.wait();
    tokio::pin!(stop);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        let _ = stream.set_nodelay(true);
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tokio::spawn(refuse_connection(stream));
            continue;
        };
        let open = how.connections.clone().map(OpenConnection::new);
        let service = TowerToHyperService::new(service.clone());
        let watcher = graceful.watcher();
        let builder = builder.clone();
        tokio::spawn(async move {
            let _held = (open, slot);
            let stream = crate::http_guard::JsonErrorStream::new(stream);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            grace_secs = grace.as_secs(),
            "shutdown deadline passed, dropping open connections"
        );
    }
}

/// Answers a connection over the cap with a 503 and closes it, spending at most a second.
async fn refuse_connection(mut stream: tokio::net::TcpStream) {
    use tokio::io::AsyncWriteExt;
    let answer = crate::http_guard::over_capacity_response();
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(&answer).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// A client that hung up before being accepted is not worth a log line; anything else (such
/// as running out of file descriptors) is logged and paced.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accept failed");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Counts one open connection in a gauge for as long as it lives.
struct OpenConnection(Gauge);

impl OpenConnection {
    fn new(gauge: Gauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Called before each `/metrics` render, to refresh gauges sampled from live state.
pub type ScrapeHook = std::sync::Arc<dyn Fn() + Send + Sync>;

/// A running service: its bound addresses and server tasks.
pub struct RunningService {
    /// Where the API listens.
    pub api_addr: SocketAddr,
    /// Where `/metrics` listens.
    pub metrics_addr: SocketAddr,
    shutdown: Shutdown,
    tasks: Vec<JoinHandle<()>>,
}

/// A service's API: where it listens, what it serves, and an optional gauge of its open
/// connections.
pub struct Api<F> {
    /// Bound listener.
    pub listener: TcpListener,
    /// Routes.
    pub filter: F,
    /// Limits, route table and connection gauge.
    pub how: Listening,
}

impl RunningService {
    /// Starts the API and metrics servers on already-bound listeners.
    pub fn start<F>(
        api: Api<F>,
        metrics_listener: TcpListener,
        registry: Registry,
        on_scrape: ScrapeHook,
        shutdown: Shutdown,
        grace: Duration,
    ) -> Result<Self, std::io::Error>
    where
        F: Filter<Error = Rejection> + Clone + Send + Sync + 'static,
        F::Extract: Reply,
    {
        let api_addr = api.listener.local_addr()?;
        let metrics_addr = metrics_listener.local_addr()?;
        let tasks = vec![
            tokio::spawn(serve(
                metrics_listener,
                metrics_route(registry, on_scrape),
                shutdown.clone(),
                grace,
                Listening {
                    limits: api.how.limits,
                    routes: Some(Arc::new(RouteTable::new([("GET", "/metrics")]))),
                    connections: None,
                },
            )),
            tokio::spawn(serve(
                api.listener,
                api.filter,
                shutdown.clone(),
                grace,
                api.how,
            )),
        ];
        Ok(Self {
            api_addr,
            metrics_addr,
            shutdown,
            tasks,
        })
    }

    /// Adds a background task that must finish before the service counts as stopped.
    pub fn add_task(&mut self, task: JoinHandle<()>) {
        self.tasks.push(task);
    }

    /// The service's stop signal.
    pub fn shutdown(&self) -> &Shutdown {
        &self.shutdown
    }

    /// Waits until every task has finished (after the stop signal).
    pub async fn wait(self) {
        for t in self.tasks {
            let _ = t.await;
        }
    }

    /// Triggers the stop signal and waits for the service to finish.
    pub async fn stop(self) {
        self.shutdown.trigger();
        self.wait().await;
    }
}

/// `GET /metrics` in Prometheus text format.
pub fn metrics_route(
    registry: Registry,
    on_scrape: ScrapeHook,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    warp::path("metrics")
        .and(warp::path::end())
        .and(warp::get())
        .map(move || {
            on_scrape();
            warp::reply::with_header(
                metrics::render(&registry),
                "content-type",
                "text/plain; version=0.0.4; charset=utf-8",
            )
        })
}

/// The JSON body of every error: `{"error": {"code", "message"}}`.
#[derive(Debug, Serialize)]
pub struct ErrorBody {
    /// The error object.
    pub error: ErrorDetail,
}

/// Machine-readable code and human message.
#[derive(Debug, Serialize)]
pub struct ErrorDetail {
    /// Stable snake_case code.
    pub code: String,
    /// Explanation for a person.
    pub message: String,
}

/// A JSON error reply.
pub fn json_error(status: StatusCode, code: &str, message: &str) -> warp::reply::Response {
    let body = ErrorBody {
        error: ErrorDetail {
            code: code.to_string(),
            message: message.to_string(),
        },
    };
    warp::reply::with_status(warp::reply::json(&body), status).into_response()
}

/// Turns warp's built-in rejections into JSON errors with the right status.
pub async fn recover_rejection(err: Rejection) -> Result<warp::reply::Response, Infallible> {
    let reply = if err.is_not_found() {
        json_error(StatusCode::NOT_FOUND, "not_found", "no such route")
    } else if err.find::<warp::reject::MethodNotAllowed>().is_some() {
        json_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "method not allowed for this route",
        )
    } else if err.find::<warp::reject::PayloadTooLarge>().is_some() {
        json_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "request body is over the limit",
        )
    } else if err.find::<warp::reject::LengthRequired>().is_some() {
        json_error(
            StatusCode::LENGTH_REQUIRED,
            "length_required",
            "content-length is required",
        )
    } else if let Some(e) = err.find::<warp::filters::body::BodyDeserializeError>() {
        json_error(StatusCode::BAD_REQUEST, "malformed_json", &e.to_string())
    } else if err.find::<warp::reject::UnsupportedMediaType>().is_some() {
        json_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "expected application/json",
        )
    } else if let Some(e) = err.find::<warp::reject::InvalidQuery>() {
        json_error(StatusCode::BAD_REQUEST, "invalid_query", &e.to_string())
    } else if let Some(e) = err.find::<warp::reject::InvalidHeader>() {
        json_error(StatusCode::BAD_REQUEST, "invalid_header", &e.to_string())
    } else if let Some(e) = err.find::<warp::reject::MissingHeader>() {
        json_error(StatusCode::BAD_REQUEST, "missing_header", &e.to_string())
    } else {
        tracing::warn!(rejection = ?err, "unhandled rejection");
        json_error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "the request could not be handled",
        )
    };
    Ok(reply)
}

/// A filter that matches nothing, for services with only the base routes.
pub fn no_routes() -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    warp::any()
        .and_then(|| async { Err::<warp::reply::Response, Rejection>(warp::reject::not_found()) })
}

/// `GET /v1/health`: the process is up.
pub fn health_route(
    service: &'static str,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    warp::path!("v1" / "health").and(warp::get()).map(move || {
        warp::reply::json(&serde_json::json!({
            "status": "ok",
            "service": service,
            "version": env!("CARGO_PKG_VERSION"),
        }))
    })
}

/// One dependency's state in a readiness answer.
#[derive(Debug, Clone, Serialize)]
pub struct DependencyState {
    /// Dependency name (`postgres`, `redis`).
    pub name: &'static str,
    /// `up`, `down`, `degraded` or `disabled`.
    pub state: String,
    /// Whether the service is unready while this dependency is in this state.
    pub required: bool,
}

/// Builds the `/v1/ready` reply: 200 when every required dependency is up, else 503.
pub fn ready_reply(deps: &[DependencyState]) -> warp::reply::Response {
    let ready = deps.iter().all(|d| !d.required || d.state == "up");
    let degraded = deps
        .iter()
        .any(|d| d.state != "up" && d.state != "disabled");
    let status = if !ready {
        "unavailable"
    } else if degraded {
        "degraded"
    } else {
        "ready"
    };
    let checks: serde_json::Map<String, serde_json::Value> = deps
        .iter()
        .map(|d| {
            (
                d.name.to_string(),
                serde_json::Value::String(d.state.clone()),
            )
        })
        .collect();
    let body = warp::reply::json(&serde_json::json!({ "status": status, "checks": checks }));
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    warp::reply::with_status(body, code).into_response()
}
