//! External sinks an epoch's anchor record is handed to, and what each answered.

pub mod journal;
pub mod tsa;

use ledger::proofchain::AnchorRecord;
use serde_json::Value;

/// Why a sink did not accept a record.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Reading or writing failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The sink's own history disagrees with the database.
    #[error("{0}")]
    Inconsistent(String),
    /// The record has no canonical form.
    #[error(transparent)]
    Record(#[from] ledger::proofchain::AnchorError),
}

/// A configured sink.
pub enum Sink {
    /// Append-only JSON-lines file.
    Journal(journal::Journal),
    /// RFC 3161 timestamp authority.
    Tsa(Box<tsa::Tsa>),
}

impl Sink {
    /// Name stored with each result and used in failure reasons (`sink_<name>`).
    pub fn name(&self) -> &'static str {
        match self {
            Sink::Journal(_) => "journal",
            Sink::Tsa(_) => "rfc3161",
        }
    }

    /// Hands `record` to the sink; returns what the sink answered.
    pub async fn submit(&self, record: &AnchorRecord) -> Result<Value, SinkError> {
        match self {
            Sink::Journal(j) => j.append(record).await,
            Sink::Tsa(t) => t.stamp(record).await,
        }
    }
}
