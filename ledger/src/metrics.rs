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
