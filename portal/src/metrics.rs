//! The portal's metrics: the seven of the monitoring design (exact names, labels and
//! buckets, with finer low buckets added; the two HTTP ones are shared by every service and
//! live in `ledger::metrics`) plus integrity and auth counters.

use lazy_static::lazy_static;
use prometheus::{
    CounterVec, Gauge, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry,
};

lazy_static! {
    /// Receipts written, by scroll and type.
    pub static ref RECEIPTS_TOTAL: CounterVec = CounterVec::new(
        Opts::new("vaultmesh_receipts_total", "Total receipts by scroll"),
        &["scroll", "type"]
    ).unwrap_or_else(|_| unreachable!());
    /// Time from a write request reaching the store to its commit.
    pub static ref RECEIPT_WRITE_DURATION: HistogramVec = HistogramVec::new(
        HistogramOpts::new("vaultmesh_receipt_write_duration_seconds", "Receipt write duration")
            .buckets(vec![0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0]),
        &["scroll"]
    ).unwrap_or_else(|_| unreachable!());
    /// Failed receipt writes, by scroll and error type.
    pub static ref RECEIPT_WRITE_ERRORS: CounterVec = CounterVec::new(
        Opts::new("vaultmesh_receipt_write_errors_total", "Receipt write errors"),
        &["scroll", "error_type"]
    ).unwrap_or_else(|_| unreachable!());
    /// Open TCP connections to the API port.
    pub static ref ACTIVE_CONNECTIONS: Gauge = Gauge::new(
        "vaultmesh_active_connections",
        "Active connections"
    ).unwrap_or_else(|_| unreachable!());
    /// Stored rows that failed their integrity check on read.
    pub static ref INTEGRITY_FAILURES: IntCounter = IntCounter::new(
        "vaultmesh_integrity_failures_total",
        "Stored receipts whose bytes did not match their stored leaf hash when read"
    ).unwrap_or_else(|_| unreachable!());
    /// Rejected authentications, by reason.
    pub static ref AUTH_REJECTIONS: IntCounterVec = IntCounterVec::new(
        Opts::new("vaultmesh_auth_rejections_total", "Requests rejected by authentication or authorisation"),
        &["reason"]
    ).unwrap_or_else(|_| unreachable!());
}

/// Registers the portal metrics in the service's own registry (the pool gauge
/// `vaultmesh_db_pool_size` is registered by the shared service context).
pub fn register(registry: &Registry) -> prometheus::Result<()> {
    registry.register(Box::new(RECEIPTS_TOTAL.clone()))?;
    registry.register(Box::new(RECEIPT_WRITE_DURATION.clone()))?;
    registry.register(Box::new(RECEIPT_WRITE_ERRORS.clone()))?;
    ledger::metrics::register_http(registry)?;
    registry.register(Box::new(ACTIVE_CONNECTIONS.clone()))?;
    registry.register(Box::new(INTEGRITY_FAILURES.clone()))?;
    registry.register(Box::new(AUTH_REJECTIONS.clone()))?;
    Ok(())
}
