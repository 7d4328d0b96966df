//! The emergency freeze (SPEC §13, the kill switch): while an emergency is raised, the gate
//! refuses every client write and every service write outside the mesh's own scrolls, with
//! 503 `emergency_active` and Retry-After. Raising and lifting are receipts in `governance`.

use crate::gate::Writer;
use crate::store::StoredReceipt;
use serde_json::{json, Value};

/// Longest reason an admin may give, in characters.
pub const MAX_REASON_CHARS: usize = 1000;

/// Scrolls the mesh's services keep writing during a freeze: governance itself, the read
/// audit, the guardian's anchoring events, federation evidence, mesh health and psi phases
/// (an emergency is itself a psi condition). Oracle answers land in client scrolls and are
/// refused like client writes.
pub const WRITABLE_WHEN_FROZEN: [&str; 6] = [
    "governance",
    "access",
    "guardian",
    "federation",
    "mesh",
    "psi",
];

/// A raised emergency, as its receipt records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emergency {
    /// Why it was raised.
    pub reason: String,
    /// The admin key that raised it.
    pub raised_by: String,
    /// When (the receipt's `submitted_at`).
    pub since: String,
    /// The `emergency_raised` receipt's position in `governance`.
    pub seq: u64,
    /// Its leaf hash, hex.
    pub leaf_hash: String,
}

impl Emergency {
    /// The emergency an `emergency_raised` receipt records (`None` for any other receipt).
    pub fn from_receipt(r: &StoredReceipt) -> Option<Self> {
        if r.receipt.kind != "emergency_raised" {
            return None;
        }
        let text = |k: &str| {
            r.receipt
                .payload
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        Some(Self {
            reason: text("reason"),
            raised_by: text("raised_by"),
            since: r.receipt.submitted_at.clone(),
            seq: r.receipt.seq,
            leaf_hash: crate::hash::to_hex(&r.leaf_hash),
        })
    }

    /// The JSON the API shows for it.
    pub fn to_json(&self) -> Value {
        json!({
            "active": true,
            "reason": self.reason,
            "raised_by": self.raised_by,
            "since": self.since,
            "receipt": {"scroll": "governance", "seq": self.seq, "leaf_hash": self.leaf_hash},
        })
    }
}

/// Whether `writer` may still write to `scroll` during a freeze.
pub fn writable_when_frozen(writer: &Writer, scroll: &str) -> bool {
    matches!(writer, Writer::Service(_)) && WRITABLE_WHEN_FROZEN.contains(&scroll)
}

/// Checks an admin's reason: 1 to [`MAX_REASON_CHARS`] characters, no control characters.
pub fn validate_reason(reason: &str) -> Result<(), String> {
    let n = reason.chars().count();
    let blank = reason.chars().all(|c| c.is_whitespace() || c == '\u{feff}');
    if blank || n > MAX_REASON_CHARS {
        return Err(format!(
            "reason: must be 1 to {MAX_REASON_CHARS} characters"
        ));
    }
    if reason.chars().any(char::is_control) {
        return Err("reason: control characters are not allowed".into());
    }
    Ok(())
}
