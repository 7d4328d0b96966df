//! The guardian metrics of the monitoring seed (exact names, types, labels and buckets).

use lazy_static::lazy_static;
use prometheus::{
    Counter, CounterVec, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, Opts, Registry,
};

lazy_static! {
    /// Epochs every configured sink accepted.
    pub static ref ANCHORS_TOTAL: Counter = Counter::new(
        "vaultmesh_guardian_anchors_total",
        "Total successful anchors"
    ).unwrap_or_else(|_| unreachable!());
    /// Failed anchor attempts, by reason (`sink_journal`, `store`, …).
    pub static ref ANCHOR_FAILURES_TOTAL: CounterVec = CounterVec::new(
        Opts::new("vaultmesh_guardian_anchor_failures_total", "Anchor failures by reason"),
        &["reason"]
    ).unwrap_or_else(|_| unreachable!());
    /// Duration of one anchor cycle (integrate, build, store, ship to sinks).
    pub static ref ANCHOR_DURATION: Histogram = Histogram::with_opts(
        HistogramOpts::new("vaultmesh_guardian_anchor_duration_seconds", "Anchor cycle duration")
            .buckets(vec![0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0])
    ).unwrap_or_else(|_| unreachable!());
    /// Unix time of the last epoch every sink accepted.
    pub static ref LAST_ANCHOR_TIMESTAMP: Gauge = Gauge::new(
        "vaultmesh_guardian_last_anchor_timestamp",
        "Timestamp of last successful anchor"
    ).unwrap_or_else(|_| unreachable!());
    /// The newest stored epoch.
    pub static ref ANCHOR_EPOCH: Gauge = Gauge::new(
        "vaultmesh_guardian_anchor_epoch",
        "Current anchor epoch number"
    ).unwrap_or_else(|_| unreachable!());
    /// Receipts integrated since the newest stored epoch, over all scrolls.
    pub static ref RECEIPTS_SINCE_ANCHOR: Gauge = Gauge::new(
        "vaultmesh_guardian_receipts_since_anchor",
        "Receipts added since last anchor"
    ).unwrap_or_else(|_| unreachable!());
    /// 0 idle, 1 anchoring, 2 last epoch succeeded, 3 last epoch failed.
    pub static ref ANCHOR_STATUS: Gauge = Gauge::new(
        "vaultmesh_guardian_anchor_status",
        "Current anchor status (0=idle, 1=anchoring, 2=success, 3=failed)"
    ).unwrap_or_else(|_| unreachable!());
    /// 1 for each scroll's root in the newest epoch (one series per scroll).
    pub static ref PROOFCHAIN_ROOT_INFO: GaugeVec = GaugeVec::new(
        Opts::new("vaultmesh_guardian_proofchain_root_info", "ProofChain root information"),
        &["scroll", "root_hash"]
    ).unwrap_or_else(|_| unreachable!());
    /// 1 once a recomputed root differed from what was signed or anchored, until acknowledged.
    pub static ref PROOFCHAIN_DIVERGENCE: Gauge = Gauge::new(
        "vaultmesh_guardian_proofchain_divergence",
        "ProofChain divergence detected (0=no, 1=yes)"
    ).unwrap_or_else(|_| unreachable!());
    /// Notable events (leadership, divergence, anchor failures), by type and severity.
    pub static ref SENTINEL_EVENTS: CounterVec = CounterVec::new(
        Opts::new("vaultmesh_guardian_sentinel_events_total", "Sentinel events"),
        &["event_type", "severity"]
    ).unwrap_or_else(|_| unreachable!());
    /// Failures to get a cosignature from a witness (or to fetch from a remote portal), by
    /// the remote's mesh id and reason.
    pub static ref WITNESS_FAILURES: CounterVec = CounterVec::new(
        Opts::new("vaultmesh_federation_witness_failures_total", "Federation witness failures"),
        &["remote_mesh", "reason"]
    ).unwrap_or_else(|_| unreachable!());
    /// Cosignatures collected for this mesh's checkpoints, by witness mesh.
    pub static ref COSIGNATURES_TOTAL: CounterVec = CounterVec::new(
        Opts::new("vaultmesh_federation_cosignatures_total", "Cosignatures collected"),
        &["witness"]
    ).unwrap_or_else(|_| unreachable!());
    /// The largest size of each scroll a witness has cosigned.
    pub static ref WITNESSED_SIZE: GaugeVec = GaugeVec::new(
        Opts::new("vaultmesh_federation_witnessed_size", "Largest cosigned tree size"),
        &["scroll", "witness"]
    ).unwrap_or_else(|_| unreachable!());
    /// Time to answer an add-checkpoint request that was cosigned (verify, persist, sign).
    pub static ref ADD_CHECKPOINT_DURATION: HistogramVec = HistogramVec::new(
        HistogramOpts::new(
            "vaultmesh_federation_add_checkpoint_duration_seconds",
            "Witness add-checkpoint latency"
        ).buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0]),
        &["remote_mesh"]
    ).unwrap_or_else(|_| unreachable!());
    /// 1 while a discrepancy of this type with this remote mesh is unacknowledged.
    pub static ref DISCREPANCY_DETECTED: GaugeVec = GaugeVec::new(
        Opts::new("vaultmesh_federation_discrepancy_detected", "Federation discrepancy detected"),
        &["remote_mesh", "discrepancy_type"]
    ).unwrap_or_else(|_| unreachable!());
    /// add-checkpoint requests this witness refused, by remote mesh and reason.
    pub static ref WITNESS_REFUSED: CounterVec = CounterVec::new(
        Opts::new("vaultmesh_federation_witness_refused_total", "Witness requests refused"),
        &["remote_mesh", "reason"]
    ).unwrap_or_else(|_| unreachable!());
    /// 1 while a registered node heartbeats and passes its readiness checks (leader only).
    pub static ref NODE_HEALTHY: GaugeVec = GaugeVec::new(
        Opts::new("vaultmesh_mesh_node_healthy", "Mesh node health (1=healthy)"),
        &["node_id"]
    ).unwrap_or_else(|_| unreachable!());
    /// Unix time of each registered node's last heartbeat (leader only; kept for silent nodes).
    pub static ref NODE_LAST_SEEN: GaugeVec = GaugeVec::new(
        Opts::new("vaultmesh_mesh_node_last_seen_timestamp", "Mesh node last heartbeat"),
        &["node_id"]
    ).unwrap_or_else(|_| unreachable!());
    /// The psi phase: 0 nigredo, 1 albedo, 2 citrinitas, 3 rubedo (leader only).
    /// (A vector without labels, so a standby exports no series at all.)
    pub static ref PSI_CURRENT_PHASE: GaugeVec = GaugeVec::new(
        Opts::new(
            "vaultmesh_psi_current_phase",
            "Current psi phase (0=nigredo, 1=albedo, 2=citrinitas, 3=rubedo)"
        ),
        &[]
    ).unwrap_or_else(|_| unreachable!());
    /// Seconds in the current phase (the other phases at 0).
    pub static ref PSI_PHASE_DURATION: GaugeVec = GaugeVec::new(
        Opts::new("vaultmesh_psi_phase_duration_seconds", "Time in the current psi phase"),
        &["phase"]
    ).unwrap_or_else(|_| unreachable!());
    /// 1 for each recent transmutation's current status, 0 for its other statuses.
    pub static ref PSI_TRANSMUTATION_STATUS: GaugeVec = GaugeVec::new(
        Opts::new("vaultmesh_psi_transmutation_status", "Transmutation status"),
        &["transmutation_id", "status"]
    ).unwrap_or_else(|_| unreachable!());
    /// Unix time each recent transmutation was opened.
    pub static ref PSI_TRANSMUTATION_STARTED: GaugeVec = GaugeVec::new(
        Opts::new("vaultmesh_psi_transmutation_started_timestamp", "Transmutation start time"),
        &["transmutation_id"]
    ).unwrap_or_else(|_| unreachable!());
}

/// Puts the federation counters an alert or a dashboard takes a rate of at zero for every
/// witness and remote mesh configured, so the first failure is seen.
pub fn init_federation<'a>(
    witnesses: impl Iterator<Item = &'a str>,
    remotes: impl Iterator<Item = &'a str>,
) {
    for w in witnesses {
        COSIGNATURES_TOTAL.with_label_values(&[w]);
        for reason in crate::cosigning::CosignFailure::REASONS {
            WITNESS_FAILURES.with_label_values(&[w, reason]);
        }
    }
    WITNESS_REFUSED.with_label_values(&["unknown", "malformed"]);
    WITNESS_REFUSED.with_label_values(&["unknown", "unknown_origin"]);
    for r in remotes {
        for reason in crate::witness::REFUSAL_REASONS {
            WITNESS_REFUSED.with_label_values(&[r, reason]);
        }
        for reason in crate::remote_watch::FAILURE_REASONS {
            WITNESS_FAILURES.with_label_values(&[r, reason]);
        }
        ADD_CHECKPOINT_DURATION.with_label_values(&[r]);
        for kind in crate::discrepancy::TYPES {
            DISCREPANCY_DETECTED.with_label_values(&[r, kind]).set(0.0);
        }
    }
}

/// Puts every anchor failure reason this guardian can report (`store`, `sink_<name>` of each
/// configured sink) at zero, so that `increase()` in `AnchorFailure` sees the first failure.
pub fn init_anchor_failures<'a>(sinks: impl Iterator<Item = &'a str>) {
    ANCHOR_FAILURES_TOTAL.with_label_values(&["store"]);
    for sink in sinks {
        ANCHOR_FAILURES_TOTAL.with_label_values(&[&format!("sink_{sink}")]);
    }
}

/// Status values of `vaultmesh_guardian_anchor_status`.
pub mod status {
    /// No epoch has run yet.
    pub const IDLE: f64 = 0.0;
    /// An epoch is being built and shipped.
    pub const ANCHORING: f64 = 1.0;
    /// The last epoch was stored and every sink accepted it.
    pub const SUCCESS: f64 = 2.0;
    /// The last epoch failed (not stored, or a sink refused it).
    pub const FAILED: f64 = 3.0;
}

/// Registers every guardian metric in the service's registry.
pub fn register(registry: &Registry) -> prometheus::Result<()> {
    ledger::metrics::register_http(registry)?;
    registry.register(Box::new(ANCHORS_TOTAL.clone()))?;
    registry.register(Box::new(ANCHOR_FAILURES_TOTAL.clone()))?;
    registry.register(Box::new(ANCHOR_DURATION.clone()))?;
    registry.register(Box::new(LAST_ANCHOR_TIMESTAMP.clone()))?;
    registry.register(Box::new(ANCHOR_EPOCH.clone()))?;
    registry.register(Box::new(RECEIPTS_SINCE_ANCHOR.clone()))?;
    registry.register(Box::new(ANCHOR_STATUS.clone()))?;
    registry.register(Box::new(PROOFCHAIN_ROOT_INFO.clone()))?;
    registry.register(Box::new(PROOFCHAIN_DIVERGENCE.clone()))?;
    registry.register(Box::new(SENTINEL_EVENTS.clone()))?;
    registry.register(Box::new(WITNESS_FAILURES.clone()))?;
    registry.register(Box::new(COSIGNATURES_TOTAL.clone()))?;
    registry.register(Box::new(WITNESSED_SIZE.clone()))?;
    registry.register(Box::new(ADD_CHECKPOINT_DURATION.clone()))?;
    registry.register(Box::new(WITNESS_REFUSED.clone()))?;
    registry.register(Box::new(DISCREPANCY_DETECTED.clone()))?;
    registry.register(Box::new(NODE_HEALTHY.clone()))?;
    registry.register(Box::new(NODE_LAST_SEEN.clone()))?;
    registry.register(Box::new(PSI_CURRENT_PHASE.clone()))?;
    registry.register(Box::new(PSI_PHASE_DURATION.clone()))?;
    registry.register(Box::new(PSI_TRANSMUTATION_STATUS.clone()))?;
    registry.register(Box::new(PSI_TRANSMUTATION_STARTED.clone()))?;
    Ok(())
}

/// Counts a sentinel event.
pub fn sentinel(event_type: &str, severity: &str) {
    SENTINEL_EVENTS
        .with_label_values(&[event_type, severity])
        .inc();
}
