//! Receipts: validation of what clients submit, and the canonical leaf bytes that are hashed.

use crate::hash::{Hash, Sha3Hasher};
use crate::jcs::{self, CanonicalError};
use chrono::{DateTime, SecondsFormat, Timelike, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Maximum length of a receipt `type`, in characters.
pub const MAX_TYPE_CHARS: usize = 128;
/// Maximum canonical size of a payload, in bytes.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;

/// The scrolls every mesh starts with (SPEC §6): the twelve of the first migration, and the
/// read audit's `access` (migration V5).
pub const PRECREATED_SCROLLS: [&str; 13] = [
    "drills",
    "compliance",
    "guardian",
    "treasury",
    "mesh",
    "offsec",
    "identity",
    "observability",
    "automation",
    "psi",
    "federation",
    "governance",
    "access",
];

/// Why a submitted receipt or scroll name is invalid. Each names the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    /// Scroll name does not match `^[a-z][a-z0-9_-]{0,62}$`.
    #[error("scroll: {0:?} does not match ^[a-z][a-z0-9_-]{{0,62}}$")]
    BadScrollName(String),
    /// `type` is missing, empty or too long.
    #[error("type: must be a non-empty string of at most 128 characters")]
    BadType,
    /// `payload` is not a JSON object.
    #[error("payload: must be a JSON object")]
    PayloadNotObject,
    /// The canonical payload exceeds 64 KiB.
    #[error("payload: canonical form is {0} bytes, over the 65536-byte limit")]
    PayloadTooLarge(usize),
    /// A number cannot be kept exactly.
    #[error(transparent)]
    Number(#[from] CanonicalError),
}

/// Checks a scroll name against `^[a-z][a-z0-9_-]{0,62}$`; `proofchain` is reserved (the
/// ProofChain head's origin).
pub fn validate_scroll_name(name: &str) -> Result<(), ReceiptError> {
    let bytes = name.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= 63
        && bytes[0].is_ascii_lowercase()
        && bytes[1..]
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_' || *b == b'-');
    // `proofchain` would share its checkpoints' origin with the ProofChain head's.
    if ok && name != crate::proofchain::HEAD_ORIGIN_SUFFIX {
        Ok(())
    } else {
        Err(ReceiptError::BadScrollName(
            name.chars().take(100).collect(),
        ))
    }
}

/// A receipt as submitted: its type and payload, before the portal assigns a position.
/// The payload's canonical bytes are computed once, at validation.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceiptDraft {
    /// Receipt type, e.g. `drill_completed`.
    pub kind: String,
    /// Payload object, already validated (always a JSON object).
    payload: Value,
    canonical_payload: Vec<u8>,
}

impl ReceiptDraft {
    /// Validates a type and payload value.
    pub fn new(kind: &str, payload: Value) -> Result<Self, ReceiptError> {
        let count = kind.chars().count();
        if count == 0 || count > MAX_TYPE_CHARS {
            return Err(ReceiptError::BadType);
        }
        let Value::Object(map) = payload else {
            return Err(ReceiptError::PayloadNotObject);
        };
        let mut value = Value::Object(map);
        jcs::check_numbers(&value, "payload")?;
        jcs::normalize_numbers(&mut value)?;
        let canonical_payload = jcs::to_vec(&value)?;
        if canonical_payload.len() > MAX_PAYLOAD_BYTES {
            return Err(ReceiptError::PayloadTooLarge(canonical_payload.len()));
        }
        if !value.is_object() {
            return Err(ReceiptError::PayloadNotObject);
        }
        Ok(Self {
            kind: kind.to_string(),
            payload: value,
            canonical_payload,
        })
    }

    /// The payload object, as a JSON value (for validators that take one, without a copy).
    pub fn payload(&self) -> &Value {
        &self.payload
    }

    /// The payload object's members.
    pub fn into_payload(self) -> Map<String, Value> {
        match self.payload {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    /// RFC 8785 bytes of the payload.
    pub fn canonical_payload(&self) -> &[u8] {
        &self.canonical_payload
    }

    /// The leaf bytes this draft gets at `seq` in `scroll`: the same bytes as
    /// [`Receipt::leaf_bytes`], assembled from the precomputed canonical payload (member
    /// order `payload, scroll, seq, submitted_at, submitter, type` is the RFC 8785 order).
    pub fn leaf_at(&self, scroll: &str, seq: u64, submitted_at: &str, submitter: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.canonical_payload.len() + 160);
        out.extend_from_slice(b"{\"payload\":");
        out.extend_from_slice(&self.canonical_payload);
        out.extend_from_slice(b",\"scroll\":");
        jcs::write_string(&mut out, scroll);
        out.extend_from_slice(b",\"seq\":");
        out.extend_from_slice(jcs::format_f64(seq as f64).as_bytes());
        out.extend_from_slice(b",\"submitted_at\":");
        jcs::write_string(&mut out, submitted_at);
        out.extend_from_slice(b",\"submitter\":");
        jcs::write_string(&mut out, submitter);
        out.extend_from_slice(b",\"type\":");
        jcs::write_string(&mut out, &self.kind);
        out.push(b'}');
        out
    }
}

/// A receipt with its assigned position: exactly the six fields of SPEC §3.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    /// Scroll name.
    pub scroll: String,
    /// 0-based position in the scroll, at most 2^53 − 1 (refused above it when parsed).
    #[serde(deserialize_with = "deserialize_seq")]
    pub seq: u64,
    /// Receipt type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Payload object.
    pub payload: Map<String, Value>,
    /// Submission time, RFC 3339 UTC with microseconds and `Z`.
    pub submitted_at: String,
    /// Id of the API key that wrote it.
    pub submitter: String,
}

impl Receipt {
    /// Positions a draft at `seq` in `scroll`, stamped at `at` (truncated to microseconds).
    pub fn new(
        scroll: &str,
        seq: u64,
        draft: ReceiptDraft,
        at: DateTime<Utc>,
        submitter: &str,
    ) -> Self {
        let ReceiptDraft { kind, payload, .. } = draft;
        Self {
            scroll: scroll.to_string(),
            seq,
            kind,
            payload: match payload {
                Value::Object(m) => m,
                _ => Map::new(),
            },
            submitted_at: format_timestamp(at),
            submitter: submitter.to_string(),
        }
    }

    /// The receipt as a JSON object value.
    pub fn to_value(&self) -> Value {
        let mut m = Map::new();
        m.insert("scroll".into(), Value::String(self.scroll.clone()));
        m.insert("seq".into(), Value::from(self.seq));
        m.insert("type".into(), Value::String(self.kind.clone()));
        m.insert("payload".into(), Value::Object(self.payload.clone()));
        m.insert(
            "submitted_at".into(),
            Value::String(self.submitted_at.clone()),
        );
        m.insert("submitter".into(), Value::String(self.submitter.clone()));
        Value::Object(m)
    }

    /// RFC 8785 bytes of the receipt: the Merkle leaf. A `seq` above 2^53 − 1 is refused,
    /// since it would not print exactly.
    pub fn leaf_bytes(&self) -> Result<Vec<u8>, CanonicalError> {
        jcs::check_safe_integer(self.seq, "seq")?;
        jcs::to_vec(&self.to_value())
    }

    /// Parses stored leaf bytes back into a receipt.
    pub fn from_leaf(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

fn deserialize_seq<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    jcs::deserialize_safe_u64(d, "seq")
}

/// `H(0x00 ‖ leaf)` with SHA3-256.
pub fn leaf_hash(leaf: &[u8]) -> Hash {
    Sha3Hasher::leaf(leaf)
}

/// RFC 3339 UTC with exactly six fractional digits and `Z`.
pub fn format_timestamp(at: DateTime<Utc>) -> String {
    truncate_micros(at).to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Drops sub-microsecond precision, which Postgres cannot store.
pub fn truncate_micros(at: DateTime<Utc>) -> DateTime<Utc> {
    let nanos = at.nanosecond();
    at.with_nanosecond(nanos - nanos % 1000).unwrap_or(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn scroll_names() {
        for ok in ["drills", "a", "a-b_c9", &"a".repeat(63)] {
            assert!(validate_scroll_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "A",
            "9a",
            "-a",
            "a b",
            "a.b",
            "é",
            &"a".repeat(64),
            "a/b",
        ] {
            assert!(validate_scroll_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn drafts_are_validated() {
        assert_eq!(
            ReceiptDraft::new("", serde_json::json!({})),
            Err(ReceiptError::BadType)
        );
        assert_eq!(
            ReceiptDraft::new(&"x".repeat(129), serde_json::json!({})),
            Err(ReceiptError::BadType)
        );
        assert!(ReceiptDraft::new(&"é".repeat(128), serde_json::json!({})).is_ok());
        assert_eq!(
            ReceiptDraft::new("t", serde_json::json!([1])),
            Err(ReceiptError::PayloadNotObject)
        );
        let big = serde_json::json!({ "s": "x".repeat(MAX_PAYLOAD_BYTES) });
        assert!(matches!(
            ReceiptDraft::new("t", big),
            Err(ReceiptError::PayloadTooLarge(_))
        ));
        let fits = serde_json::json!({ "s": "x".repeat(MAX_PAYLOAD_BYTES - 8) });
        assert!(ReceiptDraft::new("t", fits).is_ok());
        let inexact: Value =
            serde_json::from_str(r#"{"n":{"big":18446744073709551615}}"#).unwrap_or_default();
        match ReceiptDraft::new("t", inexact) {
            Err(ReceiptError::Number(CanonicalError::InexactNumber { path, .. })) => {
                assert_eq!(path, "payload.n.big")
            }
            other => panic!("accepted: {other:?}"),
        }
    }

    #[test]
    fn payload_numbers_are_stored_in_canonical_form() {
        let v: Value =
            serde_json::from_str(r#"{"a":1.50,"b":[1E2,-0.0,1e-7]}"#).unwrap_or_default();
        let d = ReceiptDraft::new("t", v).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            serde_json::to_string(&d.payload).unwrap_or_default(),
            r#"{"a":1.5,"b":[100,0,1e-7]}"#
        );
    }

    #[test]
    fn assembled_leaves_equal_canonicalised_receipts() {
        let at = "2026-11-23T12:00:00.000001Z";
        let payload = serde_json::json!({"é": [1.5, -0.0, 1e-21], "\u{1}": "\"\\", "a": {"z": null, "b": true}});
        for (kind, submitter, seq) in [
            ("t", "key_1", 0u64),
            ("tÿpe \u{7}\n", "k\"ey", jcs::MAX_SAFE_INTEGER),
        ] {
            let draft = ReceiptDraft::new(kind, payload.clone()).unwrap_or_else(|e| panic!("{e}"));
            let assembled = draft.leaf_at("drills", seq, at, submitter);
            let r = Receipt {
                scroll: "drills".into(),
                seq,
                kind: kind.into(),
                payload: draft.clone().into_payload(),
                submitted_at: at.into(),
                submitter: submitter.into(),
            };
            assert_eq!(
                String::from_utf8_lossy(&assembled),
                String::from_utf8_lossy(&r.leaf_bytes().unwrap_or_default())
            );
        }
    }

    #[test]
    fn leaf_bytes_are_canonical_and_round_trip() {
        let at = Utc
            .with_ymd_and_hms(2026, 11, 23, 12, 0, 0)
            .single()
            .unwrap_or_default()
            + chrono::Duration::nanoseconds(123_456_789);
        let draft = ReceiptDraft::new("drill_completed", serde_json::json!({"z": 1.5, "a": "é"}))
            .unwrap_or_else(|e| panic!("{e}"));
        let r = Receipt::new("drills", 7, draft, at, "key_1");
        let bytes = r.leaf_bytes().unwrap_or_default();
        assert_eq!(
            String::from_utf8_lossy(&bytes),
            r#"{"payload":{"a":"é","z":1.5},"scroll":"drills","seq":7,"submitted_at":"2026-11-23T12:00:00.123456Z","submitter":"key_1","type":"drill_completed"}"#
        );
        let back = Receipt::from_leaf(&bytes).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, r);
        assert_eq!(back.leaf_bytes().unwrap_or_default(), bytes);
    }

    #[test]
    fn seq_beyond_2_pow_53_minus_1_is_refused() {
        let leaf = |seq: &str| {
            format!(
                r#"{{"payload":{{}},"scroll":"drills","seq":{seq},"submitted_at":"2026-11-23T12:00:00.000000Z","submitter":"key_1","type":"t"}}"#
            )
        };
        let max = Receipt::from_leaf(leaf("9007199254740991").as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(max.seq, jcs::MAX_SAFE_INTEGER);
        assert_eq!(
            max.leaf_bytes().unwrap_or_default(),
            leaf("9007199254740991").into_bytes()
        );
        for bad in [
            "9007199254740992",
            "9007199254740993",
            "18446744073709551615",
        ] {
            let err = Receipt::from_leaf(leaf(bad).as_bytes())
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains("seq") && err.contains(bad), "{bad}: {err:?}");
        }
        let too_far = Receipt {
            seq: jcs::MAX_SAFE_INTEGER + 1,
            ..max
        };
        assert!(matches!(
            too_far.leaf_bytes(),
            Err(CanonicalError::UnsafeInteger { path, .. }) if path == "seq"
        ));
    }

    #[test]
    fn payload_integers_beyond_2_pow_53_minus_1_are_refused() {
        for (text, path) in [
            (r#"{"n":9007199254740992}"#, "payload.n"),
            (r#"{"a":[1,{"b":-1e300}]}"#, "payload.a[1].b"),
        ] {
            let v: Value = serde_json::from_str(text).unwrap_or_default();
            match ReceiptDraft::new("t", v) {
                Err(ReceiptError::Number(CanonicalError::UnsafeInteger { path: p, .. })) => {
                    assert_eq!(p, path)
                }
                other => panic!("{text} accepted: {other:?}"),
            }
        }
        let v: Value = serde_json::from_str(r#"{"n":-9007199254740991}"#).unwrap_or_default();
        assert!(ReceiptDraft::new("t", v).is_ok());
    }
}
