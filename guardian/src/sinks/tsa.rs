//! The RFC 3161 timestamp sink: asks a timestamp authority over HTTP to sign the time of each
//! epoch. What is stamped and how a response is checked before its token is stored is
//! [`ledger::timestamp`], which auditors' verifiers use too.

use super::SinkError;
use base64::Engine;
use ledger::proofchain::AnchorRecord;
use ledger::timestamp::{self, Certificate, TimestampError};
use serde_json::{json, Value};
use std::time::Duration;

/// A timestamp authority reached over HTTP, trusted through its certificate.
pub struct Tsa {
    url: String,
    /// `url` with any userinfo's password replaced, for results and messages that are stored
    /// and published.
    shown_url: String,
    cert: Certificate,
    http: reqwest::Client,
}

fn bad(what: impl Into<String>) -> SinkError {
    SinkError::Inconsistent(what.into())
}

fn ts_err(e: TimestampError) -> SinkError {
    bad(e.to_string())
}

impl Tsa {
    /// A TSA at `url` whose tokens must verify with the PEM certificate `cert_pem`.
    pub fn new(url: &str, cert_pem: &str, timeout: Duration) -> Result<Self, SinkError> {
        let cert = timestamp::load_certificate(cert_pem).map_err(ts_err)?;
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| bad(format!("TSA client: {e}")))?;
        Ok(Self {
            url: url.to_string(),
            shown_url: ledger::config::redacted(url),
            cert,
            http,
        })
    }

    /// Requests, verifies and returns a token for `record`.
    pub async fn stamp(&self, record: &AnchorRecord) -> Result<Value, SinkError> {
        let imprint = timestamp::imprint(record).map_err(ts_err)?;
        let nonce = nonce()?;
        let request = timestamp::request(&imprint, &nonce).map_err(ts_err)?;
        let response = self
            .http
            .post(&self.url)
            .header("content-type", "application/timestamp-query")
            .body(request)
            .send()
            .await
            .map_err(|e| bad(format!("TSA {}: {}", self.shown_url, e.without_url())))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| bad(format!("TSA {}: {}", self.shown_url, e.without_url())))?;
        if !status.is_success() {
            return Err(bad(format!(
                "TSA {} answered HTTP {status}",
                self.shown_url
            )));
        }
        let verified =
            timestamp::verify_response(&body, &imprint, &nonce, &self.cert).map_err(ts_err)?;
        Ok(json!({
            "url": self.shown_url,
            "imprint_sha256": hex::encode(imprint),
            "gen_time": verified.gen_time,
            "serial": verified.serial,
            "policy": verified.policy,
            "token": base64::engine::general_purpose::STANDARD.encode(&verified.token),
        }))
    }
}

/// An 8-byte positive nonce (top bit clear, first byte non-zero: minimal DER INTEGER).
fn nonce() -> Result<[u8; 8], SinkError> {
    let mut n = [0u8; 8];
    getrandom::getrandom(&mut n).map_err(|e| bad(format!("nonce: {e}")))?;
    n[0] = (n[0] & 0x7f) | 0x01;
    Ok(n)
}
