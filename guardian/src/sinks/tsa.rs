//! The RFC 3161 timestamp sink: asks a timestamp authority to sign the time of each epoch.
//!
//! The message imprint is SHA-256 over the 32 raw bytes of the record's `anchor_hash` (which
//! covers the epoch root and the link to the previous record). Before a token is stored the
//! response is checked: PKI status granted, a SignedData token whose TSTInfo carries our
//! imprint and nonce, whose signed attributes say `id-ct-TSTInfo` and carry the digest of the
//! TSTInfo, and whose signature verifies with the configured TSA certificate (ECDSA P-256 or
//! RSA PKCS#1 v1.5, with SHA-256).

use super::SinkError;
use base64::Engine;
use cms::cert::x509::Certificate;
use cms::content_info::ContentInfo;
use cms::signed_data::{SignedData, SignerIdentifier, SignerInfo};
use der::asn1::{Any, Int, OctetString};
use der::oid::db::rfc5912::{
    ECDSA_WITH_SHA_256, ID_SHA_256, RSA_ENCRYPTION, SHA_256_WITH_RSA_ENCRYPTION,
};
use der::oid::ObjectIdentifier;
use der::{Decode, DecodePem, Encode};
use ledger::hash::from_hex;
use ledger::proofchain::AnchorRecord;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::time::Duration;
use x509_tsp::{MessageImprint, TimeStampReq, TimeStampResp, TspVersion, TstInfo};

/// `id-signedData`.
const ID_SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
/// `id-ct-TSTInfo`.
const ID_CT_TST_INFO: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.1.4");
/// The `content-type` signed attribute.
const ID_CONTENT_TYPE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.3");
/// The `message-digest` signed attribute.
const ID_MESSAGE_DIGEST: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.4");

/// A timestamp authority reached over HTTP, trusted through its certificate.
pub struct Tsa {
    url: String,
    cert: Certificate,
    http: reqwest::Client,
}

fn bad(what: impl Into<String>) -> SinkError {
    SinkError::Inconsistent(what.into())
}

impl Tsa {
    /// A TSA at `url` whose tokens must verify with the PEM certificate `cert_pem`.
    pub fn new(url: &str, cert_pem: &str, timeout: Duration) -> Result<Self, SinkError> {
        let cert = Certificate::from_pem(cert_pem.as_bytes())
            .map_err(|e| bad(format!("TSA certificate: {e}")))?;
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| bad(format!("TSA client: {e}")))?;
        Ok(Self {
            url: url.to_string(),
            cert,
            http,
        })
    }

    /// Requests, verifies and returns a token for `record`.
    pub async fn stamp(&self, record: &AnchorRecord) -> Result<Value, SinkError> {
        let anchor_hash =
            from_hex(&record.anchor_hash).map_err(|_| bad("anchor_hash is not hex"))?;
        let imprint: [u8; 32] = Sha256::digest(anchor_hash).into();
        let nonce = nonce()?;
        let request = TimeStampReq {
            version: TspVersion::V1,
            message_imprint: MessageImprint {
                hash_algorithm: cms::cert::x509::spki::AlgorithmIdentifier {
                    oid: ID_SHA_256,
                    parameters: Some(Any::from(der::asn1::AnyRef::NULL)),
                },
                hashed_message: OctetString::new(imprint.to_vec()).map_err(der_err)?,
            },
            req_policy: None,
            nonce: Some(Int::new(&nonce).map_err(der_err)?),
            cert_req: true,
            extensions: None,
        }
        .to_der()
        .map_err(der_err)?;
        let response = self
            .http
            .post(&self.url)
            .header("content-type", "application/timestamp-query")
            .body(request)
            .send()
            .await
            .map_err(|e| bad(format!("TSA {}: {e}", self.url)))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| bad(format!("TSA {}: {e}", self.url)))?;
        if !status.is_success() {
            return Err(bad(format!("TSA {} answered HTTP {status}", self.url)));
        }
        let verified = verify_response(&body, &imprint, &nonce, &self.cert)?;
        Ok(json!({
            "url": self.url,
            "imprint_sha256": hex::encode(imprint),
            "gen_time": verified.gen_time,
            "serial": verified.serial,
            "policy": verified.policy,
            "token": base64::engine::general_purpose::STANDARD.encode(&verified.token),
        }))
    }
}

/// What a verified response says.
#[derive(Debug)]
pub struct Verified {
    /// `genTime` as the TSA encoded it.
    pub gen_time: String,
    /// Serial number, hex.
    pub serial: String,
    /// Policy OID.
    pub policy: String,
    /// The TimeStampToken (ContentInfo), DER.
    pub token: Vec<u8>,
}

fn der_err(e: der::Error) -> SinkError {
    bad(format!("ASN.1: {e}"))
}

/// An 8-byte positive nonce (top bit clear, first byte non-zero: minimal DER INTEGER).
fn nonce() -> Result<[u8; 8], SinkError> {
    let mut n = [0u8; 8];
    getrandom::getrandom(&mut n).map_err(|e| bad(format!("nonce: {e}")))?;
    n[0] = (n[0] & 0x7f) | 0x01;
    Ok(n)
}

/// Checks a TimeStampResp against the request's `imprint` and `nonce` and the TSA `cert`.
pub fn verify_response(
    body: &[u8],
    imprint: &[u8; 32],
    nonce: &[u8],
    cert: &Certificate,
) -> Result<Verified, SinkError> {
    let resp =
        TimeStampResp::from_der(body).map_err(|e| bad(format!("not a TimeStampResp: {e}")))?;
    use cmpv2::status::PkiStatus;
    if !matches!(
        resp.status.status,
        PkiStatus::Accepted | PkiStatus::GrantedWithMods
    ) {
        let text = resp
            .status
            .status_string
            .as_ref()
            .map(|s| format!("{s:?}"))
            .unwrap_or_default();
        return Err(bad(format!(
            "TSA refused: status {:?} {text}",
            resp.status.status
        )));
    }
    let token: ContentInfo = resp
        .time_stamp_token
        .ok_or_else(|| bad("granted response without a token"))?;
    if token.content_type != ID_SIGNED_DATA {
        return Err(bad("token is not SignedData"));
    }
    let token_der = token.to_der().map_err(der_err)?;
    let signed =
        SignedData::from_der(&token.content.to_der().map_err(der_err)?).map_err(der_err)?;
    if signed.encap_content_info.econtent_type != ID_CT_TST_INFO {
        return Err(bad("token does not hold a TSTInfo"));
    }
    let econtent = signed
        .encap_content_info
        .econtent
        .as_ref()
        .ok_or_else(|| bad("token has no TSTInfo content"))?;
    let tst_der = econtent.value();
    let tst = TstInfo::from_der(tst_der).map_err(der_err)?;
    if tst.message_imprint.hash_algorithm.oid != ID_SHA_256
        || tst.message_imprint.hashed_message.as_bytes() != imprint
    {
        return Err(bad("token's message imprint is not the epoch's"));
    }
    if tst.nonce.as_ref().map(|n| n.as_bytes()) != Some(nonce) {
        return Err(bad("token's nonce is not the request's"));
    }
    let signer = signed
        .signer_infos
        .0
        .iter()
        .next()
        .ok_or_else(|| bad("token has no signer"))?;
    check_signer_identity(signer, cert)?;
    verify_signer(signer, tst_der, cert)?;
    Ok(Verified {
        gen_time: tst.gen_time.to_date_time().to_string(),
        serial: hex::encode(tst.serial_number.as_bytes()),
        policy: tst.policy.to_string(),
        token: token_der,
    })
}

fn check_signer_identity(signer: &SignerInfo, cert: &Certificate) -> Result<(), SinkError> {
    if let SignerIdentifier::IssuerAndSerialNumber(id) = &signer.sid {
        let tbs = &cert.tbs_certificate;
        if id.issuer != tbs.issuer || id.serial_number != tbs.serial_number {
            return Err(bad(
                "token is signed by another certificate than the configured TSA's",
            ));
        }
    }
    Ok(())
}

/// The signed attributes must name TSTInfo and carry its SHA-256; their DER (as a SET) must
/// carry a valid signature by the certificate's key.
fn verify_signer(signer: &SignerInfo, tst_der: &[u8], cert: &Certificate) -> Result<(), SinkError> {
    if signer.digest_alg.oid != ID_SHA_256 {
        return Err(bad(format!(
            "unsupported signer digest {}",
            signer.digest_alg.oid
        )));
    }
    let attrs = signer
        .signed_attrs
        .as_ref()
        .ok_or_else(|| bad("token has no signed attributes"))?;
    let value_of = |oid: ObjectIdentifier| {
        attrs
            .iter()
            .find(|a| a.oid == oid)
            .and_then(|a| a.values.iter().next())
    };
    let content_type = value_of(ID_CONTENT_TYPE)
        .and_then(|v| v.decode_as::<ObjectIdentifier>().ok())
        .ok_or_else(|| bad("signed attributes lack a content type"))?;
    if content_type != ID_CT_TST_INFO {
        return Err(bad("signed content type is not TSTInfo"));
    }
    let digest = value_of(ID_MESSAGE_DIGEST)
        .and_then(|v| v.decode_as::<OctetString>().ok())
        .ok_or_else(|| bad("signed attributes lack a message digest"))?;
    if digest.as_bytes() != Sha256::digest(tst_der).as_slice() {
        return Err(bad("signed message digest is not the TSTInfo's"));
    }
    let signed_bytes = attrs.to_der().map_err(der_err)?;
    let spki = cert
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(der_err)?;
    let sig = signer.signature.as_bytes();
    let alg = signer.signature_algorithm.oid;
    if alg == ECDSA_WITH_SHA_256 {
        use p256::ecdsa::signature::Verifier;
        use p256::pkcs8::DecodePublicKey;
        let key = p256::ecdsa::VerifyingKey::from_public_key_der(&spki)
            .map_err(|e| bad(format!("TSA certificate key is not P-256: {e}")))?;
        let sig = p256::ecdsa::Signature::from_der(sig)
            .map_err(|e| bad(format!("malformed ECDSA signature: {e}")))?;
        key.verify(&signed_bytes, &sig)
            .map_err(|_| bad("token signature does not verify with the TSA certificate"))
    } else if alg == RSA_ENCRYPTION || alg == SHA_256_WITH_RSA_ENCRYPTION {
        use rsa::pkcs8::DecodePublicKey;
        use rsa::signature::Verifier;
        let key = rsa::RsaPublicKey::from_public_key_der(&spki)
            .map_err(|e| bad(format!("TSA certificate key is not RSA: {e}")))?;
        let key = rsa::pkcs1v15::VerifyingKey::<Sha256>::new(key);
        let sig = rsa::pkcs1v15::Signature::try_from(sig)
            .map_err(|e| bad(format!("malformed RSA signature: {e}")))?;
        key.verify(&signed_bytes, &sig)
            .map_err(|_| bad("token signature does not verify with the TSA certificate"))
    } else {
        Err(bad(format!("unsupported signature algorithm {alg}")))
    }
}
