//! Postgres storage: connection pool, migrations, and one module per table family.

mod anchors;
mod api_keys;
mod audit;
mod bundles;
mod checkpoints;
mod corpus;
mod db_role;
mod durability;
mod governance;
mod lease;
mod mesh;
mod migrate;
mod psi;
mod receipts;
mod scrolls;
mod timeouts;
pub mod tree;
mod watchdog;
mod witness;

pub use anchors::{SinkResult, StoredAnchor};
pub use api_keys::{token_hash, ApiKey, NewApiKey, Role};
pub use audit::RawReceipt;
pub use checkpoints::{PendingScroll, StoredCheckpoint};
pub use corpus::{DocumentInfo, EvidenceRow, NewDocument, NewSection, SectionHit};
pub use db_role::DbRole;
pub use durability::Durability;
pub use governance::{
    governance_marker_of, GovernanceChangeLock, GOVERNANCE_CHANNEL, GOVERNANCE_MARKER_SQL,
    STATE_TYPES,
};
pub use lease::{Lease, LeaseTerm, STALE_TERM, TAKEOVER_WAIT};
pub use mesh::{NodeHeartbeat, NodeRow, RouteRow};
pub use migrate::{migrate, MIGRATIONS_DIGEST};
pub use psi::{PsiCondition, PsiState, Transmutation};
pub use receipts::{AppendOutcome, NewReceipt, StoredReceipt};
pub use scrolls::ScrollInfo;
pub use timeouts::{
    DbTimeouts, DEFAULT_CONNECT_MS, DEFAULT_IDLE_IN_TRANSACTION_MS, DEFAULT_POOL_WAIT_MS,
    DEFAULT_RESPONSE_MS, DEFAULT_STATEMENT_MS,
};
pub use watchdog::{register_metrics, DB_REQUESTS, DB_STALLS};
pub use witness::{CollectedCosignature, Discrepancy, WitnessState};

use crate::jcs::CanonicalError;
use deadpool_postgres::{Hook, Manager, ManagerConfig, Pool, RecyclingMethod};
use std::str::FromStr;
use std::time::{Duration, Instant};

/// Everything that can go wrong in the store, as callers need to tell it apart.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No connection could be had from the pool.
    #[error("database unavailable: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// A query failed.
    #[error("database error: {}", db_message(.0))]
    Db(#[from] tokio_postgres::Error),
    /// The database URL is invalid.
    #[error("invalid database url: {0}")]
    Config(String),
    /// Migrations failed.
    #[error("migration failed: {0}")]
    Migration(String),
    /// The scroll does not exist.
    #[error("unknown scroll {0:?}")]
    UnknownScroll(String),
    /// The scroll already exists.
    #[error("scroll {0:?} already exists")]
    ScrollExists(String),
    /// A batch reused an idempotency key with a different request.
    #[error("idempotency key {0:?} was already used for a different request")]
    IdempotencyConflict(String),
    /// A tree append expected another size (a concurrent integrator won).
    #[error("tree of scroll {scroll_id} is at size {actual}, not {expected}")]
    TreeSizeMismatch {
        /// Scroll id.
        scroll_id: i32,
        /// Size the caller expected.
        expected: u64,
        /// Size found.
        actual: u64,
    },
    /// A root or proof was asked for a size beyond the integrated tree.
    #[error("tree size {requested} is beyond the integrated size {available}")]
    BeyondTree {
        /// Requested size.
        requested: u64,
        /// Integrated size.
        available: u64,
    },
    /// A stored row fails its integrity check; never serve it as good.
    #[error("integrity check failed: {0}")]
    Integrity(String),
    /// A value has no canonical form.
    #[error(transparent)]
    Canonical(#[from] CanonicalError),
    /// `replicated` durability, but the primary names no synchronous standby now.
    #[error("durability is replicated, but the primary names no synchronous standby (synchronous_standby_names is empty)")]
    NoSynchronousStandby,
    /// Postgres did not answer within a deadline of the store's own.
    #[error("database did not answer within {} ms", .0.as_millis())]
    Timeout(Duration),
}

/// Tuning for the connection pool.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    /// Maximum open connections.
    pub max_size: usize,
    /// How long to wait for a free connection (the pool's wait; opening one is bounded by
    /// `timeouts.connect`).
    pub wait_timeout: Duration,
    /// Connect, response and session time limits.
    pub timeouts: DbTimeouts,
    /// What a commit waits for.
    pub durability: Durability,
}

impl Default for PoolOptions {
    fn default() -> Self {
        let timeouts = DbTimeouts::default();
        Self {
            max_size: 16,
            wait_timeout: timeouts.pool_wait,
            timeouts,
            durability: Durability::Local,
        }
    }
}

impl PoolOptions {
    /// The pool a service's resolved configuration asks for.
    pub fn from_config(config: &crate::config::CommonConfig) -> Self {
        Self {
            max_size: config.db_pool_size,
            wait_timeout: config.db_timeouts.pool_wait,
            timeouts: config.db_timeouts,
            durability: config.durability,
        }
    }
}

/// How much longer than the connect timeout the pool lets a connection attempt run before
/// dropping it (a backstop: the connector's own deadline fires first, and counts).
const CREATE_BACKSTOP: Duration = Duration::from_secs(1);

/// The readiness query: whether the primary names a synchronous standby (only required under
/// `replicated` durability).
const PING: &str = durability::SYNC_STANDBY_NAMED;

/// Fails on a server in recovery (a standby), so that a pooled connection to a primary that
/// was demoted is discarded when it is next taken.
const READ_WRITE_CHECK: &str = "SELECT 1 / (NOT pg_is_in_recovery())::int";

/// How long [`Store::ping`] waits, in all (below the 2 s readiness check around it, so that
/// its own deadline is the one that fires and can drop the connection it used).
pub const PING_TIMEOUT: Duration = Duration::from_millis(1_500);

/// The ledger's Postgres store: a pool plus typed operations (see the submodules).
#[derive(Clone)]
pub struct Store {
    pool: Pool,
    timeouts: DbTimeouts,
    lease_term: LeaseTerm,
    durability: Durability,
}

impl Store {
    /// Builds a pool for `url` (no connection is made until first use). Every connection
    /// carries `opts.timeouts`: Postgres's `statement_timeout` and
    /// `idle_in_transaction_session_timeout` in its startup options (settings given in the
    /// URL's own `options` win), TCP keepalive, and a watchdog that closes it when a request
    /// goes unanswered for the response timeout or its startup outlasts the connect timeout
    /// (see `watchdog`); opening one is bounded by the connect timeout, waiting for one by
    /// `opts.wait_timeout`.
    pub fn connect(url: &str, opts: &PoolOptions) -> Result<Self, StoreError> {
        let mut pg =
            tokio_postgres::Config::from_str(url).map_err(|e| StoreError::Config(e.to_string()))?;
        let mut timeouts = opts.timeouts;
        if let Some(explicit) = pg.get_connect_timeout() {
            timeouts.connect = *explicit;
        }
        let options = timeouts.session_options(pg.get_options());
        pg.options(format!("{} {options}", opts.durability.session_options()));
        // A URL that asks for a read-write server (typically listing several hosts) may
        // outlive a failover: a pooled connection to a demoted primary is then dropped
        // rather than reused.
        let recycling_method = if pg.get_target_session_attrs()
            == tokio_postgres::config::TargetSessionAttrs::ReadWrite
        {
            RecyclingMethod::Custom(READ_WRITE_CHECK.into())
        } else {
            RecyclingMethod::Fast
        };
        let mgr = Manager::from_connect(
            pg,
            watchdog::WatchedConnect::new(&timeouts),
            ManagerConfig { recycling_method },
        );
        let lease_term = LeaseTerm::default();
        let (created, recycled) = (lease_term.clone(), lease_term.clone());
        let pool = Pool::builder(mgr)
            .post_create(Hook::async_fn(move |client, _| {
                let term = created.clone();
                Box::pin(async move { term.apply(client).await })
            }))
            .pre_recycle(Hook::async_fn(move |client, _| {
                let term = recycled.clone();
                Box::pin(async move { term.apply(client).await })
            }))
            .max_size(opts.max_size)
            .wait_timeout(Some(opts.wait_timeout))
            .create_timeout(Some(timeouts.connect + CREATE_BACKSTOP))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Config(e.to_string()))?;
        Ok(Self {
            pool,
            timeouts,
            lease_term,
            durability: opts.durability,
        })
    }

    /// The time limits this store's connections enforce.
    pub fn timeouts(&self) -> &DbTimeouts {
        &self.timeouts
    }

    /// The underlying pool (for pool-state metrics and ad-hoc queries).
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The database's object id: it changes when a database of the same name is dropped and
    /// created again, so cache keys that include it never outlive the data they copy.
    pub async fn database_oid(&self) -> Result<u32, StoreError> {
        let client = self.pool.get().await?;
        let row = client
            .query_one(
                "SELECT oid FROM pg_database WHERE datname = current_database()",
                &[],
            )
            .await?;
        Ok(row.get(0))
    }

    /// A connection of its own, taken out of the pool for good: for session state such as an
    /// advisory lock, which must live exactly as long as one connection.
    pub async fn dedicated_client(&self) -> Result<deadpool_postgres::ClientWrapper, StoreError> {
        let object = self.pool.get().await?;
        Ok(deadpool_postgres::Object::take(object))
    }

    /// What this store's commits wait for.
    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// The role this store's connections act as (`current_user`).
    pub async fn current_role(&self) -> Result<String, StoreError> {
        let client = self.pool.get().await?;
        let row = client.query_one("SELECT current_user::text", &[]).await?;
        Ok(row.get(0))
    }

    /// Checks that a pooled connection answers a trivial query within [`PING_TIMEOUT`] in
    /// all (the readiness check) and, under `replicated` durability, that the primary names a
    /// synchronous standby and that a commit completes (one waits for a standby's flush). A connection that does not answer in time is closed rather
    /// than returned to the pool with its query still outstanding.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let deadline = Instant::now() + PING_TIMEOUT;
        let client = tokio::time::timeout_at(deadline.into(), self.pool.get())
            .await
            .map_err(|_| StoreError::Timeout(PING_TIMEOUT))??;
        let ping = match self.durability {
            Durability::Local => PING,
            Durability::Replicated => durability::REPLICATED_PING,
        };
        match tokio::time::timeout_at(deadline.into(), client.simple_query(ping)).await {
            Ok(answer) => {
                let named = answer?.iter().any(|m| {
                    matches!(m, tokio_postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some("t"))
                });
                if self.durability == Durability::Replicated && !named {
                    return Err(StoreError::NoSynchronousStandby);
                }
                Ok(())
            }
            Err(_) => {
                drop(deadpool_postgres::Object::take(client));
                Err(StoreError::Timeout(PING_TIMEOUT))
            }
        }
    }
}

/// The server's SQLSTATE and message when there is one, else the client-side cause.
fn db_message(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} ({})", db.message(), db.code().code());
    }
    match std::error::Error::source(e) {
        Some(src) => format!("{e}: {src}"),
        None => e.to_string(),
    }
}

impl StoreError {
    /// The SQLSTATE of a server-side error, if this is one.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            StoreError::Db(e) => e.as_db_error().map(|d| d.code().code()),
            _ => None,
        }
    }

    /// Whether Postgres could not be reached or did not answer in time, as opposed to
    /// answering with a refusal: no pooled connection, a closed or failed connection, a
    /// deadline, or a server-side connection, resource or cancellation error (SQLSTATE
    /// classes 08, 53, 57, and 25P03 for an idle transaction the server ended).
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Pool(_) | StoreError::Timeout(_) | StoreError::NoSynchronousStandby => true,
            StoreError::Db(e) => match e.as_db_error() {
                Some(db) => {
                    let code = db.code().code();
                    code == "25P03" || ["08", "53", "57"].iter().any(|c| code.starts_with(c))
                }
                None => {
                    e.is_closed()
                        || std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
                }
            },
            _ => false,
        }
    }

    /// Whether Postgres refused the data itself (SQLSTATE class 22, data exception, or 23,
    /// integrity constraint violation): the same rows would be refused again.
    pub fn is_data_error(&self) -> bool {
        self.sqlstate()
            .is_some_and(|c| c.starts_with("22") || c.starts_with("23"))
    }
}

pub(crate) fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(crate) fn to_hash(bytes: &[u8], what: &str) -> Result<crate::hash::Hash, StoreError> {
    bytes
        .try_into()
        .map_err(|_| StoreError::Integrity(format!("{what} is not 32 bytes")))
}
