//! VaultMesh oracle: answers compliance questions from a corpus of framework summaries and
//! from ledger evidence, with citations and inclusion proofs, and receipts every answer in
//! the `compliance` scroll so that what it said is itself auditable.

pub mod answer;
pub mod corpus;
pub mod frameworks;
pub mod llm;
pub mod metrics;
pub mod options;
pub mod query;
pub mod routes;

pub use options::OracleArgs;

use ledger::config::{CommonConfig, ServiceDefaults};
use ledger::context::{ServiceContext, StartError};
use ledger::service::{RunningService, Shutdown};
use metrics::CORPUS_DOCUMENTS;
use query::{Query, QueryError};
use std::sync::Arc;

/// Service name, used in logs, metrics and `/v1/health`.
pub const SERVICE: &str = "oracle";

/// Default listen addresses: API on port 8082, metrics on 9090.
pub fn defaults() -> ServiceDefaults {
    ledger::context::defaults(8082, ledger::store::DbRole::Oracle)
}

/// The oracle's shared state.
pub struct Oracle {
    /// Store, cache, registry, config.
    pub ctx: ServiceContext,
    /// Options.
    pub opts: OracleArgs,
    /// The LLM answerer, when configured.
    pub llm: Option<llm::Llm>,
    /// API-key verification (the shared authenticator; no key cache, so a revocation takes
    /// effect at once).
    pub auth: ledger::auth::Authenticator,
    /// Where the evidence's inclusion proofs are read (a read replica when configured).
    pub reads: ledger::storage::Reads,
}

impl Oracle {
    /// Answers a validated query and receipts the answer.
    pub async fn answer(&self, q: &Query) -> Result<query::Response, QueryError> {
        if let Some(refusal) = self.ctx.governance.frozen() {
            // The answer could not be receipted: refuse before spending the LLM on it.
            return Err(QueryError::Refused(refusal));
        }
        let gathered = query::gather(&self.ctx.store, &self.reads, q).await?;
        let extractive = query::extractive_answer(q, &gathered);
        let (answer, answered_by) = match &self.llm {
            Some(llm) => match llm.answer(q, &gathered, &extractive).await {
                Ok(a) => (a, "llm"),
                Err(_) => (extractive, "extractive"),
            },
            None => (extractive, "extractive"),
        };
        let receipt = query::receipt(
            &self.reads,
            &self.ctx.gate(),
            q,
            &answer,
            answered_by,
            &gathered.evidence,
        )
        .await?;
        Ok(query::Response {
            answer,
            evidence: gathered.evidence,
            answered_by: answered_by.into(),
            receipt,
        })
    }

    /// Sets `vaultmesh_oracle_corpus_documents_total` from the database.
    pub async fn refresh_document_count(&self) {
        match self.ctx.store.document_count().await {
            Ok(n) => CORPUS_DOCUMENTS.set(n as f64),
            Err(e) => tracing::warn!(error = %e, "could not count corpus documents"),
        }
    }
}

/// Starts the oracle with default options and returns once it is listening.
pub async fn start(config: CommonConfig, shutdown: Shutdown) -> Result<RunningService, StartError> {
    start_with(config, OracleArgs::default(), shutdown).await
}

/// Starts the oracle (loading `--corpus-dir` first, if given) and returns once it listens.
pub async fn start_with(
    config: CommonConfig,
    opts: OracleArgs,
    shutdown: Shutdown,
) -> Result<RunningService, StartError> {
    let ctx = ServiceContext::init(SERVICE, config, shutdown).await?;
    metrics::register(&ctx.registry)?;
    if let Some(dir) = &opts.corpus_dir {
        match corpus::load_dir(&ctx.store, dir).await {
            Ok(n) => tracing::info!(dir = %dir.display(), documents = n, "corpus loaded"),
            Err(e) => tracing::error!(dir = %dir.display(), error = %e, "corpus not loaded"),
        }
    }
    let llm = match &opts.llm_url {
        Some(url) => Some(
            llm::Llm::new(
                url,
                &opts.llm_model,
                opts.llm_key.as_deref(),
                std::time::Duration::from_millis(opts.llm_timeout_ms),
            )
            .map_err(|e| std::io::Error::other(format!("LLM client: {e}")))?,
        ),
        None => None,
    };
    let reads = ctx
        .reads(opts.read_database_url.as_deref())
        .map_err(|e| std::io::Error::other(format!("--read-database-url: {e}")))?;
    let oracle = Arc::new(Oracle {
        reads,
        auth: ledger::auth::Authenticator::new(
            Arc::new(ctx.store.clone()),
            std::time::Duration::ZERO,
        ),
        ctx: ctx.clone(),
        opts,
        llm,
    });
    oracle.refresh_document_count().await;
    let probes = match &oracle.llm {
        Some(_) => {
            let o = oracle.clone();
            vec![ledger::mesh::route::Probe::new("llm", move || {
                let o = o.clone();
                async move {
                    match &o.llm {
                        Some(llm) => llm.probe().await,
                        None => Ok(()),
                    }
                }
            })]
        }
        None => Vec::new(),
    };
    let mut running = ctx
        .serve_counted(routes::routes(oracle), Some(routes::table()), None)
        .await?;
    ctx.join_mesh(&mut running, Arc::new(|| "oracle".into()), probes)?;
    Ok(running)
}
