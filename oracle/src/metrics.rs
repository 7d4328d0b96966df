//! The oracle metrics of the monitoring seed.

use lazy_static::lazy_static;
use prometheus::{Gauge, Histogram, HistogramOpts, IntCounterVec, Opts, Registry};

lazy_static! {
    /// Time to answer one query (search, evidence, answer, receipt).
    pub static ref QUERY_DURATION: Histogram = Histogram::with_opts(
        HistogramOpts::new("vaultmesh_oracle_query_duration_seconds", "Oracle query duration")
            .buckets(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0])
    ).unwrap_or_else(|_| unreachable!());
    /// LLM answers not used (the extractive answer was given instead), by reason.
    pub static ref LLM_ERRORS: IntCounterVec = IntCounterVec::new(
        Opts::new("vaultmesh_oracle_llm_errors_total", "LLM errors (fell back to the extractive answer)"),
        &["reason"]
    ).unwrap_or_else(|_| unreachable!());
    /// Queries refused before any work, by the field at fault (`body` for the body as a
    /// whole: its size, media type, arrival time, JSON, or an unknown field).
    pub static ref QUERY_REJECTIONS: IntCounterVec = IntCounterVec::new(
        Opts::new("vaultmesh_oracle_query_rejections_total", "Oracle queries refused as invalid, by field"),
        &["field"]
    ).unwrap_or_else(|_| unreachable!());
    /// Documents in the corpus.
    pub static ref CORPUS_DOCUMENTS: Gauge = Gauge::new(
        "vaultmesh_oracle_corpus_documents_total",
        "Documents in the oracle corpus"
    ).unwrap_or_else(|_| unreachable!());
}

/// Registers the oracle metrics in the service's registry.
pub fn register(registry: &Registry) -> prometheus::Result<()> {
    ledger::metrics::register_http(registry)?;
    registry.register(Box::new(QUERY_DURATION.clone()))?;
    registry.register(Box::new(LLM_ERRORS.clone()))?;
    registry.register(Box::new(QUERY_REJECTIONS.clone()))?;
    registry.register(Box::new(CORPUS_DOCUMENTS.clone()))?;
    registry.register(Box::new(ledger::storage::REPLICA_READS.clone()))?;
    for failure in crate::llm::LlmFailure::ALL {
        LLM_ERRORS.with_label_values(&[failure.reason()]);
    }
    Ok(())
}
