//! Per-service Prometheus registries and the `/metrics` text endpoint.

use prometheus::{Encoder, Registry, TextEncoder};

/// A fresh registry with the process collector (`process_*` metrics, unprefixed).
pub fn new_registry() -> Registry {
    let registry = Registry::new();
    #[cfg(target_os = "linux")]
    {
        let _ = registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ));
    }
    registry
}

/// Prometheus text exposition of everything in `registry`.
pub fn render(registry: &Registry) -> String {
    let mut buf = Vec::new();
    let encoder = TextEncoder::new();
    if encoder.encode(&registry.gather(), &mut buf).is_err() {
        return String::new();
    }
    String::from_utf8(buf).unwrap_or_default()
}

/// Registers `vaultmesh_build_info{service,version}` = 1 so every service exports a series.
pub fn register_build_info(registry: &Registry, service: &str) -> prometheus::Result<()> {
    let gauge = prometheus::IntGaugeVec::new(
        prometheus::Opts::new("vaultmesh_build_info", "Build information (always 1)"),
        &["service", "version"],
    )?;
    gauge
        .with_label_values(&[service, env!("CARGO_PKG_VERSION")])
        .set(1);
    registry.register(Box::new(gauge))
}

/// `vaultmesh_http_requests_total{method,path,status}`: every API request of this process,
/// under its route template (the monitoring design's name and labels).
pub static HTTP_REQUESTS_TOTAL: std::sync::LazyLock<prometheus::CounterVec> =
    std::sync::LazyLock::new(|| {
        prometheus::CounterVec::new(
            prometheus::Opts::new("vaultmesh_http_requests_total", "Total HTTP requests"),
            &["method", "path", "status"],
        )
        .unwrap_or_else(|_| unreachable!())
    });

/// `vaultmesh_http_request_duration_seconds{method,path}` (the design's buckets with finer
/// low ones added).
pub static HTTP_REQUEST_DURATION: std::sync::LazyLock<prometheus::HistogramVec> =
    std::sync::LazyLock::new(|| {
        prometheus::HistogramVec::new(
            prometheus::HistogramOpts::new(
                "vaultmesh_http_request_duration_seconds",
                "HTTP request duration",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["method", "path"],
        )
        .unwrap_or_else(|_| unreachable!())
    });

/// `vaultmesh_auth_rejections_total{reason}`: requests refused by authentication or
/// authorisation, in every service (one authenticator, one metric).
pub static AUTH_REJECTIONS: std::sync::LazyLock<prometheus::IntCounterVec> =
    std::sync::LazyLock::new(|| {
        prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "vaultmesh_auth_rejections_total",
                "Requests rejected by authentication or authorisation",
            ),
            &["reason"],
        )
        .unwrap_or_else(|_| unreachable!())
    });

/// Registers the HTTP metrics and the authentication counter in a service's registry.
pub fn register_http(registry: &Registry) -> prometheus::Result<()> {
    registry.register(Box::new(HTTP_REQUESTS_TOTAL.clone()))?;
    registry.register(Box::new(HTTP_REQUEST_DURATION.clone()))?;
    registry.register(Box::new(AUTH_REJECTIONS.clone()))?;
    registry.register(Box::new(crate::http_guard::HTTP_REJECTIONS.clone()))
}

/// Counts one answered request under `method`, the route `template` and its `status`.
pub fn record_http(method: &str, template: &str, status: u16, started: std::time::Instant) {
    HTTP_REQUESTS_TOTAL
        .with_label_values(&[method, template, &status.to_string()])
        .inc();
    HTTP_REQUEST_DURATION
        .with_label_values(&[method, template])
        .observe(started.elapsed().as_secs_f64());
}

/// Runs a route's handler and records it with [`record_http`].
pub async fn observed(
    method: &'static str,
    template: &'static str,
    handler: impl std::future::Future<Output = warp::reply::Response>,
) -> warp::reply::Response {
    let started = std::time::Instant::now();
    let response = handler.await;
    record_http(method, template, response.status().as_u16(), started);
    response
}
