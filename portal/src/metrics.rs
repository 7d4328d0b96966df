//! The portal's metrics: the seven of the monitoring design (exact names, labels and
//! buckets, with finer low buckets added; the two HTTP ones are shared by every service and
//! live in `ledger::metrics`) plus the integrity counter (the auth counter is shared, in `ledger::metrics`).

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
    /// Reads of receipt contents, allowed and denied, by scroll and action (the read audit).
    pub static ref ACCESS_TOTAL: IntCounterVec = IntCounterVec::new(
        Opts::new("vaultmesh_access_total", "Reads of receipt contents by scroll, action and result"),
        &["scroll", "action", "result"]
    ).unwrap_or_else(|_| unreachable!());
    /// Stored rows that failed their integrity check on read.
    pub static ref INTEGRITY_FAILURES: IntCounter = IntCounter::new(
        "vaultmesh_integrity_failures_total",
        "Stored receipts whose bytes did not match their stored leaf hash when read"
    ).unwrap_or_else(|_| unreachable!());
}

/// Error types of `vaultmesh_receipt_write_errors_total`.
pub const WRITE_ERROR_TYPES: [&str; 2] = ["database_unavailable", "database_error"];

/// Puts the scroll's write-error counters at zero, so that `rate()` in `ReceiptWriteFailure`
/// sees the first failure (a counter born at 1 has no increase).
pub fn init_write_errors(scroll: &str) {
    for kind in WRITE_ERROR_TYPES {
        RECEIPT_WRITE_ERRORS.with_label_values(&[scroll, kind]);
    }
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
    registry.register(Box::new(ACCESS_TOTAL.clone()))?;
    registry.register(Box::new(ledger::storage::REPLICA_READS.clone()))?;
    Ok(())
}

/// Most distinct receipt types counted under their own `type` label per process; later
/// types are counted as [`OTHER_TYPES`], so clients choosing types cannot grow Prometheus
/// without bound.
pub const MAX_TYPE_LABELS: usize = 500;

/// The `type` label of receipts beyond [`MAX_TYPE_LABELS`] distinct types.
pub const OTHER_TYPES: &str = "_other";

/// The receipt types that have their own label so far.
static TYPE_LABELS: std::sync::LazyLock<std::sync::Mutex<std::collections::HashSet<String>>> =
    std::sync::LazyLock::new(Default::default);

/// The `type` label to count a receipt of `kind` under: itself while fewer than
/// [`MAX_TYPE_LABELS`] types have been seen, else [`OTHER_TYPES`].
pub fn type_label(kind: &str) -> &str {
    let mut seen = TYPE_LABELS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if seen.contains(kind) {
        return kind;
    }
    if seen.len() < MAX_TYPE_LABELS {
        seen.insert(kind.to_string());
        return kind;
    }
    OTHER_TYPES
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipt_type_labels_are_bounded() {
        assert_eq!(type_label("drill_completed"), "drill_completed");
        for i in 0..2 * MAX_TYPE_LABELS {
            let kind = format!("t{i}");
            let label = type_label(&kind);
            assert!(label == kind || label == OTHER_TYPES);
        }
        let distinct: std::collections::HashSet<String> = (0..2 * MAX_TYPE_LABELS)
            .map(|i| type_label(&format!("t{i}")).to_string())
            .collect();
        assert_eq!(distinct.len(), MAX_TYPE_LABELS, "499 t-labels plus _other");
        assert_eq!(
            type_label("drill_completed"),
            "drill_completed",
            "seen before"
        );
        assert_eq!(type_label("brand_new"), OTHER_TYPES);
    }
}
