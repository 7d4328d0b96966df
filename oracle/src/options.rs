//! Oracle-specific options (flags and `VAULTMESH_*` environment variables).

use clap::Args;
use std::path::PathBuf;

/// Options only the oracle has.
#[derive(Debug, Clone, Args)]
pub struct OracleArgs {
    /// Directory of Markdown/plain-text documents loaded into the corpus at start.
    #[arg(long, env = "VAULTMESH_CORPUS_DIR", value_name = "DIR")]
    pub corpus_dir: Option<PathBuf>,
    /// OpenAI-compatible chat-completions URL (e.g. `http://host/v1/chat/completions`);
    /// unset: answers are extractive only.
    #[arg(long, env = "VAULTMESH_LLM_URL")]
    pub llm_url: Option<String>,
    /// Model name sent to the LLM endpoint.
    #[arg(long, env = "VAULTMESH_LLM_MODEL", default_value = "gpt-4o-mini")]
    pub llm_model: String,
    /// Bearer key for the LLM endpoint.
    #[arg(long, env = "VAULTMESH_LLM_KEY", hide_env_values = true)]
    pub llm_key: Option<String>,
    /// Milliseconds to wait for the LLM before falling back to the extractive answer.
    #[arg(long, env = "VAULTMESH_LLM_TIMEOUT_MS", default_value_t = 10_000)]
    pub llm_timeout_ms: u64,
    /// Postgres URL of a read replica (a standby, as the oracle's role): the inclusion proofs
    /// of an answer's evidence are read there when it holds the checkpoint they are proven
    /// against, else from the primary. [default: none]
    #[arg(long, env = "VAULTMESH_READ_DATABASE_URL", value_name = "URL")]
    pub read_database_url: Option<String>,
}

impl Default for OracleArgs {
    fn default() -> Self {
        Self {
            corpus_dir: None,
            llm_url: None,
            llm_model: "gpt-4o-mini".into(),
            llm_key: None,
            llm_timeout_ms: 10_000,
            read_database_url: None,
        }
    }
}
