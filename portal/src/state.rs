//! The portal's shared handler state: store, cache and registry, the group commit, the
//! authenticator, the append gate, options, and the scrolls known to exist.

use crate::ingest::Ingest;
use crate::options::PortalArgs;
use crate::read_cache::CheckpointMemo;
use ledger::api_error::ApiError;
use ledger::auth::Authenticator;
use ledger::context::ServiceContext;
use ledger::gate::AppendGate;
use ledger::note::NoteVerifier;
use ledger::receipt::validate_scroll_name;
use ledger::storage::{CachedReceipts, Reads};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::RwLock;

/// Shared state of the portal's handlers.
#[derive(Clone)]
pub struct Portal {
    /// Store, cache, registry, config.
    pub ctx: ServiceContext,
    /// Group commit.
    pub ingest: Ingest,
    /// API-key verification.
    pub auth: Authenticator,
    /// The one append gate every submission passes.
    pub gate: AppendGate,
    /// Portal options.
    pub opts: PortalArgs,
    /// The guardian's vkey, if configured.
    pub vkey: Option<String>,
    /// Verifier of `vkey`: checkpoints read from the cache are checked against it.
    pub verifier: Option<NoteVerifier>,
    /// Latest checkpoint per scroll as last read.
    pub checkpoints: CheckpointMemo,
    /// Receipts, tiles, checkpoints and anchors: immutable reads from the read replica when
    /// one is configured, tiles through the memo and Redis, everything else from the primary.
    pub reads: Reads,
    /// Receipts by position through Redis, over `reads`.
    pub receipts: CachedReceipts,
    /// Keyed batches run outside the group commit, each on a pooled connection of its own:
    /// at most a quarter of the pool at once, so they can never starve other writes.
    pub keyed_batches: Arc<tokio::sync::Semaphore>,
    /// Reads of receipt contents waiting to be receipted in `access`.
    pub access: crate::access_log::AccessLog,
    known_scrolls: Arc<RwLock<HashMap<String, i32>>>,
}

impl Portal {
    /// Handler state over a started service context and its `reads` (tiles are then read
    /// through the memo and Redis).
    pub fn new(ctx: ServiceContext, opts: PortalArgs, vkey: Option<String>, reads: Reads) -> Self {
        let reads = reads.with_tile_cache(&ctx.cache, opts.proof_tile_memo);
        let receipts = CachedReceipts::new(Arc::new(reads.clone()), ctx.cache.clone());
        let ingest = Ingest::new(
            Arc::new(reads.clone()),
            ctx.store.timeouts().call_bound(),
            opts.group_commit_max,
            opts.group_commit_wait(),
            usize::from(opts.group_commit_depth),
        );
        let auth = Authenticator::new(
            Arc::new(reads.clone()),
            std::time::Duration::from_secs(opts.auth_cache_secs),
        )
        .with_rate_limit(ledger::rate_limit::RateLimiter::new(
            opts.rate_limit_per_sec,
            opts.rate_limit_burst,
        ));
        let verifier = vkey.as_deref().and_then(|v| match NoteVerifier::from_vkey(v) {
            Ok(verifier) => Some(verifier),
            Err(e) => {
                tracing::warn!(error = %e, "the guardian vkey does not parse; cached checkpoints are not reused");
                None
            }
        });
        let keyed_slots = (ctx.config.db_pool_size / 4).max(1);
        let gate = ctx.gate();
        Self {
            ctx,
            ingest,
            auth,
            gate,
            opts,
            vkey,
            verifier,
            checkpoints: CheckpointMemo::default(),
            reads,
            receipts,
            keyed_batches: Arc::new(tokio::sync::Semaphore::new(keyed_slots)),
            access: crate::access_log::AccessLog::default(),
            known_scrolls: Arc::new(RwLock::new(HashMap::new())),
        }
    }

    /// The scroll's name if it is known to exist (no database call): the label of a denied
    /// read, so client-chosen names never become metric labels.
    pub async fn scroll_label(&self, name: &str) -> String {
        if self.known_scrolls.read().await.contains_key(name) {
            name.to_string()
        } else {
            crate::access_log::UNKNOWN_SCROLL.to_string()
        }
    }

    /// Validates a scroll name, checks that the scroll exists and returns its id (scrolls are
    /// never deleted, so a positive answer is remembered).
    pub async fn existing_scroll(&self, name: &str) -> Result<i32, ApiError> {
        validate_scroll_name(name)?;
        if let Some(id) = self.known_scrolls.read().await.get(name) {
            return Ok(*id);
        }
        let info = self.ctx.store.scroll(name).await?;
        crate::metrics::init_write_errors(name);
        self.known_scrolls
            .write()
            .await
            .insert(name.to_string(), info.id);
        Ok(info.id)
    }
}
