//! Portal-specific options (flags and `VAULTMESH_*` environment variables).

use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

/// Options only the portal has.
#[derive(Debug, Clone, Args)]
pub struct PortalArgs {
    /// Largest accepted body for a single receipt, in bytes.
    #[arg(long, env = "VAULTMESH_MAX_RECEIPT_BODY", default_value_t = 256 * 1024)]
    pub max_receipt_body: u64,
    /// Largest accepted body for a batch, in bytes.
    #[arg(long, env = "VAULTMESH_MAX_BATCH_BODY", default_value_t = 16 * 1024 * 1024)]
    pub max_batch_body: u64,
    /// Most receipts in one batch request.
    #[arg(long, env = "VAULTMESH_MAX_BATCH", default_value_t = 1000)]
    pub max_batch: usize,
    /// Most receipts coalesced into one group-commit transaction per scroll.
    #[arg(long, env = "VAULTMESH_GROUP_COMMIT_MAX", default_value_t = 2000)]
    pub group_commit_max: usize,
    /// How long a group commit waits for more receipts once it has one, in microseconds.
    #[arg(long, env = "VAULTMESH_GROUP_COMMIT_WAIT_US", default_value_t = 200)]
    pub group_commit_wait_us: u64,
    /// Group-commit transactions in flight per scroll: the next group is sent while the
    /// previous one commits (it waits for the scroll's head-row lock, then matches).
    #[arg(long, env = "VAULTMESH_GROUP_COMMIT_DEPTH", default_value_t = 2,
          value_parser = clap::value_parser!(u16).range(1..=16))]
    pub group_commit_depth: u16,
    /// Full proof tiles (512 bytes each) kept in process memory in front of Redis.
    #[arg(long, env = "VAULTMESH_PROOF_TILE_MEMO", default_value_t = 32_768)]
    pub proof_tile_memo: usize,
    /// Seconds a verified API key is remembered in-process (revocations take effect
    /// within this time; 0 checks Postgres on every request).
    #[arg(long, env = "VAULTMESH_AUTH_CACHE_SECS", default_value_t = 5)]
    pub auth_cache_secs: u64,
    /// Requests a second each API key may make on average (token bucket; 429 with
    /// Retry-After beyond it). 0 turns the limit off.
    #[arg(long, env = "VAULTMESH_RATE_LIMIT_PER_SEC", default_value_t = 1000)]
    pub rate_limit_per_sec: u32,
    /// Requests an API key may make at once above its rate (the bucket's size).
    #[arg(long, env = "VAULTMESH_RATE_LIMIT_BURST", default_value_t = 2000)]
    pub rate_limit_burst: u32,
    /// How long a request body may take to arrive, in milliseconds, once the handler has
    /// authenticated the caller (slower bodies get 408).
    #[arg(long, env = "VAULTMESH_BODY_READ_TIMEOUT_MS", default_value_t = 10_000)]
    pub body_read_timeout_ms: u64,
    /// File with the guardian's verifier key (signed-note vkey), served at /v1/keys/guardian
    /// and put into proof bundles.
    #[arg(long, env = "VAULTMESH_GUARDIAN_VKEY_FILE", value_name = "FILE")]
    pub guardian_vkey_file: Option<PathBuf>,
    /// Postgres URL of a read replica (a standby, as the portal's role) for immutable reads:
    /// receipts by seq or leaf hash, listings, anchors, bundles, and tiles and proofs up to a
    /// checkpoint the replica holds; anything it lacks or cannot answer is read from the
    /// primary. [default: none: every read goes to --database-url]
    #[arg(long, env = "VAULTMESH_READ_DATABASE_URL", value_name = "URL")]
    pub read_database_url: Option<String>,
    /// Seconds per read-audit window: the reads of receipt contents in each window become
    /// one `access_recorded` receipt per key and scroll in the `access` scroll (and the last
    /// window is written when the portal stops).
    #[arg(long, env = "VAULTMESH_ACCESS_WINDOW_SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub access_window_secs: u64,
    /// `max-age` in seconds that partial tiles (`/v1/scrolls/{scroll}/tiles/…` with fewer
    /// than 256 entries) are served with; they grow with each new checkpoint. Full tiles
    /// never change and are served `immutable` for a year.
    #[arg(long, env = "VAULTMESH_PARTIAL_TILE_MAX_AGE_SECS", default_value_t = 5)]
    pub partial_tile_max_age_secs: u64,
}

impl Default for PortalArgs {
    fn default() -> Self {
        Self {
            max_receipt_body: 256 * 1024,
            max_batch_body: 16 * 1024 * 1024,
            max_batch: 1000,
            group_commit_max: 2000,
            group_commit_wait_us: 200,
            group_commit_depth: 2,
            proof_tile_memo: 32_768,
            auth_cache_secs: 5,
            rate_limit_per_sec: 1000,
            rate_limit_burst: 2000,
            body_read_timeout_ms: 10_000,
            guardian_vkey_file: None,
            read_database_url: None,
            access_window_secs: 60,
            partial_tile_max_age_secs: 5,
        }
    }
}

impl PortalArgs {
    /// The group-commit wait as a duration.
    pub fn group_commit_wait(&self) -> Duration {
        Duration::from_micros(self.group_commit_wait_us)
    }

    /// The body read deadline as a duration.
    pub fn body_read_timeout(&self) -> Duration {
        Duration::from_millis(self.body_read_timeout_ms)
    }
}
