//! What can go wrong in the guardian's loops.

use ledger::store::StoreError;

/// A guardian failure; each variant names what failed.
#[derive(Debug, thiserror::Error)]
pub enum GuardianError {
    /// Postgres refused or failed an operation.
    #[error(transparent)]
    Store(StoreError),
    /// A checkpoint could not be signed.
    #[error("signing a checkpoint: {0}")]
    Sign(#[from] ledger::checkpoint::CheckpointError),
    /// An anchor record could not be built.
    #[error("building an anchor record: {0}")]
    Record(#[from] ledger::proofchain::AnchorError),
    /// Stored history disagrees with what was signed or anchored.
    #[error("divergence in {scroll} at size {size}: {detail}")]
    Divergence {
        /// Scroll name.
        scroll: String,
        /// Tree size concerned.
        size: u64,
        /// What differs.
        detail: String,
    },
    /// One of the guardian's own event receipts could not be built.
    #[error("a guardian event is not a valid receipt: {0}")]
    Event(#[from] ledger::receipt::ReceiptError),
    /// The append gate refused one of the guardian's own receipts.
    #[error("the append gate refused a guardian event: {0}")]
    Gate(#[from] ledger::gate::GateError),
    /// This guardian does not hold the lock.
    #[error("this guardian is on standby; the leader anchors")]
    NotLeader,
}

impl From<StoreError> for GuardianError {
    /// A write the database refused for a stale lease term means this guardian was deposed.
    fn from(e: StoreError) -> Self {
        if e.is_stale_term() {
            GuardianError::NotLeader
        } else {
            GuardianError::Store(e)
        }
    }
}
