//! The C2SP tlog-witness `add-checkpoint` wire: the request body (`old <size>`, consistency
//! proof lines in base64, a blank line, the signed checkpoint) and the 409 size body. The one
//! deviation from C2SP: proof hashes are the log's own hash, SHA3-256.

use crate::hash::Hash;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

/// Most consistency-proof lines a request may carry (C2SP: a client sends at most 63).
pub const MAX_PROOF_LINES: usize = 63;
/// Largest request body a witness reads.
pub const MAX_BODY_BYTES: u64 = 16 * 1024;
/// Media type of the 409 body: the witness's latest cosigned size.
pub const SIZE_CONTENT_TYPE: &str = "text/x.tlog.size";
/// Path of the call under a witness's submission prefix.
pub const PATH: &str = "/v1/witness/add-checkpoint";

/// Why a request body is malformed (400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed add-checkpoint request: {0}")]
pub struct WireError(pub &'static str);

/// A parsed add-checkpoint request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddCheckpoint<'a> {
    /// The size the client believes the witness last cosigned.
    pub old: u64,
    /// The consistency proof from `old` to the checkpoint's size.
    pub proof: Vec<Hash>,
    /// The signed checkpoint note, as sent (it may carry several signatures).
    pub checkpoint: &'a str,
}

/// Parses a canonical ASCII decimal (no sign, no leading zeros except `0` itself).
pub fn parse_size(s: &str) -> Option<u64> {
    let canonical =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    canonical.then(|| s.parse().ok()).flatten()
}

impl<'a> AddCheckpoint<'a> {
    /// Parses a request body.
    pub fn parse(text: &'a str) -> Result<Self, WireError> {
        let (first, mut rest) = text
            .split_once('\n')
            .ok_or(WireError("the body must start with an old size line"))?;
        let old = first
            .strip_prefix("old ")
            .and_then(parse_size)
            .ok_or(WireError(
                "the first line must be `old <size>` in canonical decimal",
            ))?;
        let mut proof = Vec::new();
        loop {
            let (line, after) = rest
                .split_once('\n')
                .ok_or(WireError("no blank line before the checkpoint"))?;
            rest = after;
            if line.is_empty() {
                break;
            }
            if proof.len() == MAX_PROOF_LINES {
                return Err(WireError("more than 63 consistency proof lines"));
            }
            proof.push(decode_hash(line).ok_or(WireError(
                "a consistency proof line is not the base64 of 32 bytes",
            ))?);
        }
        if rest.is_empty() {
            return Err(WireError("no checkpoint after the blank line"));
        }
        Ok(Self {
            old,
            proof,
            checkpoint: rest,
        })
    }

    /// The request body for these parts.
    pub fn encode(old: u64, proof: &[Hash], checkpoint: &str) -> String {
        let mut out = format!("old {old}\n");
        for h in proof {
            out.push_str(&B64.encode(h));
            out.push('\n');
        }
        out.push('\n');
        out.push_str(checkpoint);
        out
    }
}

/// The base64 of exactly 32 bytes, canonical.
fn decode_hash(line: &str) -> Option<Hash> {
    let bytes = B64.decode(line).ok()?;
    let hash: Hash = bytes.try_into().ok()?;
    (B64.encode(hash) == line).then_some(hash)
}

/// The 409 body: the latest cosigned size and a newline.
pub fn size_body(size: u64) -> String {
    format!("{size}\n")
}

/// Parses a 409 body.
pub fn parse_size_body(body: &str) -> Option<u64> {
    body.strip_suffix('\n').and_then(parse_size)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOTE: &str =
        "o\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n\u{2014} k AAAAAQ==\n";

    #[test]
    fn requests_round_trip() {
        let body = AddCheckpoint::encode(5, &[[1; 32], [2; 32]], NOTE);
        let parsed = AddCheckpoint::parse(&body).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(parsed.old, 5);
        assert_eq!(parsed.proof, vec![[1; 32], [2; 32]]);
        assert_eq!(parsed.checkpoint, NOTE);
        let empty = AddCheckpoint::encode(0, &[], NOTE);
        assert_eq!(empty, format!("old 0\n\n{NOTE}"));
        assert_eq!(AddCheckpoint::parse(&empty).map(|r| r.proof.len()), Ok(0));
        assert_eq!(parse_size_body("42\n"), Some(42));
        assert_eq!(size_body(42), "42\n");
    }

    #[test]
    fn malformed_requests_are_refused() {
        let line = B64.encode([7u8; 32]);
        let many = format!("old 1\n{}\n{NOTE}", format!("{line}\n").repeat(64));
        let bad = [
            "".to_string(),
            "old 1".to_string(),
            format!("old 01\n\n{NOTE}"),
            format!("old -1\n\n{NOTE}"),
            format!("old  1\n\n{NOTE}"),
            format!("new 1\n\n{NOTE}"),
            format!("old 1\n{line}\n"),
            format!("old 1\n{line}\n\n"),
            format!("old 1\n{}\n\n{NOTE}", B64.encode([7u8; 31])),
            format!("old 1\nnot base64!\n\n{NOTE}"),
            format!("old 1\n{}\n\n{NOTE}", line.trim_end_matches('=')),
            format!("old 18446744073709551616\n\n{NOTE}"),
            many,
        ];
        for b in bad {
            assert!(AddCheckpoint::parse(&b).is_err(), "{b:?}");
        }
        let ok63 = format!("old 1\n{}\n{NOTE}", format!("{line}\n").repeat(63));
        assert_eq!(AddCheckpoint::parse(&ok63).map(|r| r.proof.len()), Ok(63));
        for bad in ["", "1", "01\n", "x\n", "1\n\n"] {
            assert_eq!(parse_size_body(bad), None, "{bad:?}");
        }
    }
}
