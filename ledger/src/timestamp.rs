//! RFC 3161 timestamps of ProofChain records: the request a guardian sends to a timestamp
//! authority, and the checks every party applies to what comes back — the guardian before it
//! stores a token, an auditor when it reads one from a record's `sinks`.
//!
//! The message imprint is SHA-256 over the 32 raw bytes of the record's `anchor_hash` (which
//! covers the epoch root and the link to the previous record). A token is accepted when it is
//! a SignedData whose TSTInfo carries that imprint (and, for a fresh response, the request's
//! nonce), whose signed attributes say `id-ct-TSTInfo` and carry the digest of the TSTInfo,
//! and whose signature verifies with the trusted TSA certificate (ECDSA P-256 or RSA
//! PKCS#1 v1.5, with SHA-256).

use crate::hash::from_hex;
use crate::proofchain::AnchorRecord;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use cms::content_info::ContentInfo;
use cms::signed_data::{SignedData, SignerIdentifier, SignerInfo};
use der::asn1::{Any, Int, OctetString};
use der::oid::db::rfc5912::{
    ECDSA_WITH_SHA_256, ID_SHA_256, RSA_ENCRYPTION, SHA_256_WITH_RSA_ENCRYPTION,
};
use der::oid::ObjectIdentifier;
use der::{Decode, DecodePem, Encode};
use serde_json::Value;
use sha2::{Digest, Sha256};
use x509_tsp::{MessageImprint, TimeStampReq, TimeStampResp, TspVersion, TstInfo};

pub use cms::cert::x509::Certificate;

/// Name under which RFC 3161 answers appear in a record's `sinks`.
pub const SINK_NAME: &str = "rfc3161";

/// `id-signedData`.
const ID_SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
/// `id-ct-TSTInfo`.
const ID_CT_TST_INFO: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.1.4");
/// The `content-type` signed attribute.
const ID_CONTENT_TYPE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.3");
/// The `message-digest` signed attribute.
const ID_MESSAGE_DIGEST: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.4");

/// Why a certificate, response or token is rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimestampError {
    /// The TSA certificate does not parse.
    #[error("TSA certificate: {0}")]
    Certificate(String),
    /// The TSA answered, but not with a granted token.
    #[error("TSA refused: {0}")]
    Refused(String),
    /// The response or token is malformed or does not verify.
    #[error("{0}")]
    Invalid(String),
}

fn invalid(what: impl Into<String>) -> TimestampError {
    TimestampError::Invalid(what.into())
}

fn der_err(e: der::Error) -> TimestampError {
    invalid(format!("ASN.1: {e}"))
}

/// What a verified token says.
#[derive(Debug, Clone, PartialEq, Eq)]
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

/// Parses a PEM certificate of a trusted TSA.
pub fn load_certificate(pem: &str) -> Result<Certificate, TimestampError> {
    Certificate::from_pem(pem.as_bytes()).map_err(|e| TimestampError::Certificate(e.to_string()))
}

/// The message imprint of `record`: SHA-256 over the 32 bytes of its `anchor_hash`.
pub fn imprint(record: &AnchorRecord) -> Result<[u8; 32], TimestampError> {
    let anchor_hash =
        from_hex(&record.anchor_hash).map_err(|_| invalid("anchor_hash is not hex"))?;
    Ok(Sha256::digest(anchor_hash).into())
}

/// A DER TimeStampReq for `imprint` (SHA-256) with `nonce`, asking for the TSA certificate.
pub fn request(imprint: &[u8; 32], nonce: &[u8]) -> Result<Vec<u8>, TimestampError> {
    TimeStampReq {
        version: TspVersion::V1,
        message_imprint: MessageImprint {
            hash_algorithm: cms::cert::x509::spki::AlgorithmIdentifier {
                oid: ID_SHA_256,
                parameters: Some(Any::from(der::asn1::AnyRef::NULL)),
            },
            hashed_message: OctetString::new(imprint.to_vec()).map_err(der_err)?,
        },
        req_policy: None,
        nonce: Some(Int::new(nonce).map_err(der_err)?),
        cert_req: true,
        extensions: None,
    }
    .to_der()
    .map_err(der_err)
}

/// Checks a TimeStampResp against the request's `imprint` and `nonce` and the TSA `cert`.
pub fn verify_response(
    body: &[u8],
    imprint: &[u8; 32],
    nonce: &[u8],
    cert: &Certificate,
) -> Result<Verified, TimestampError> {
    let resp =
        TimeStampResp::from_der(body).map_err(|e| invalid(format!("not a TimeStampResp: {e}")))?;
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
        return Err(TimestampError::Refused(format!(
            "status {:?} {text}",
            resp.status.status
        )));
    }
    let token = resp
        .time_stamp_token
        .ok_or_else(|| invalid("granted response without a token"))?;
    verify_content(&token, imprint, Some(nonce), cert)
}

/// Checks a stored TimeStampToken (DER ContentInfo) over `imprint` against the TSA `cert`;
/// the request's nonce is not known offline and not checked.
pub fn verify_token(
    token_der: &[u8],
    imprint: &[u8; 32],
    cert: &Certificate,
) -> Result<Verified, TimestampError> {
    let token = ContentInfo::from_der(token_der)
        .map_err(|e| invalid(format!("token is not a ContentInfo: {e}")))?;
    verify_content(&token, imprint, None, cert)
}

/// Checks one `rfc3161` entry of a record's `sinks` (`{"sink","ok","result"}` with the
/// token in `result.token`, base64) as a timestamp of `record` by the TSA `cert`.
pub fn verify_sink_result(
    entry: &Value,
    record: &AnchorRecord,
    cert: &Certificate,
) -> Result<Verified, TimestampError> {
    let token = entry["result"]["token"]
        .as_str()
        .ok_or_else(|| invalid("no token in the sink result"))?;
    let der = B64
        .decode(token)
        .map_err(|_| invalid("token is not base64"))?;
    verify_token(&der, &imprint(record)?, cert)
}

/// Every `rfc3161` entry in `record.sinks` that claims success, verified against `cert`.
/// Failed attempts (`"ok": false`) carry no token and are skipped; any claimed token that
/// does not verify over this record is an error naming its position.
pub fn verify_record_tokens(
    record: &AnchorRecord,
    cert: &Certificate,
) -> Result<Vec<Verified>, TimestampError> {
    let mut out = Vec::new();
    for (i, entry) in record.sinks.iter().enumerate() {
        if entry["sink"] != SINK_NAME || entry["ok"] == Value::Bool(false) {
            continue;
        }
        let verified = verify_sink_result(entry, record, cert).map_err(|e| {
            invalid(format!(
                "epoch {}: {SINK_NAME} result {i}: {e}",
                record.epoch
            ))
        })?;
        out.push(verified);
    }
    Ok(out)
}

fn verify_content(
    token: &ContentInfo,
    imprint: &[u8; 32],
    nonce: Option<&[u8]>,
    cert: &Certificate,
) -> Result<Verified, TimestampError> {
    if token.content_type != ID_SIGNED_DATA {
        return Err(invalid("token is not SignedData"));
    }
    let token_der = token.to_der().map_err(der_err)?;
    let signed =
        SignedData::from_der(&token.content.to_der().map_err(der_err)?).map_err(der_err)?;
    if signed.encap_content_info.econtent_type != ID_CT_TST_INFO {
        return Err(invalid("token does not hold a TSTInfo"));
    }
    let econtent = signed
        .encap_content_info
        .econtent
        .as_ref()
        .ok_or_else(|| invalid("token has no TSTInfo content"))?;
    let tst_der = econtent.value();
    let tst = TstInfo::from_der(tst_der).map_err(der_err)?;
    if tst.message_imprint.hash_algorithm.oid != ID_SHA_256
        || tst.message_imprint.hashed_message.as_bytes() != imprint
    {
        return Err(invalid("token's message imprint is not the epoch's"));
    }
    if let Some(nonce) = nonce {
        if tst.nonce.as_ref().map(|n| n.as_bytes()) != Some(nonce) {
            return Err(invalid("token's nonce is not the request's"));
        }
    }
    let mut signers = signed.signer_infos.0.iter();
    let signer = signers
        .next()
        .ok_or_else(|| invalid("token has no signer"))?;
    if signers.next().is_some() {
        return Err(invalid("token has more than one signer"));
    }
    check_signer_identity(signer, cert)?;
    verify_signer(signer, tst_der, cert)?;
    Ok(Verified {
        gen_time: tst.gen_time.to_date_time().to_string(),
        serial: hex::encode(tst.serial_number.as_bytes()),
        policy: tst.policy.to_string(),
        token: token_der,
    })
}

fn check_signer_identity(signer: &SignerInfo, cert: &Certificate) -> Result<(), TimestampError> {
    if let SignerIdentifier::IssuerAndSerialNumber(id) = &signer.sid {
        let tbs = &cert.tbs_certificate;
        if id.issuer != tbs.issuer || id.serial_number != tbs.serial_number {
            return Err(invalid(
                "token is signed by another certificate than the trusted TSA's",
            ));
        }
    }
    Ok(())
}

/// The signed attributes must name TSTInfo and carry its SHA-256; their DER (as a SET) must
/// carry a valid signature by the certificate's key.
fn verify_signer(
    signer: &SignerInfo,
    tst_der: &[u8],
    cert: &Certificate,
) -> Result<(), TimestampError> {
    if signer.digest_alg.oid != ID_SHA_256 {
        return Err(invalid(format!(
            "unsupported signer digest {}",
            signer.digest_alg.oid
        )));
    }
    let attrs = signer
        .signed_attrs
        .as_ref()
        .ok_or_else(|| invalid("token has no signed attributes"))?;
    let value_of = |oid: ObjectIdentifier| {
        attrs
            .iter()
            .find(|a| a.oid == oid)
            .and_then(|a| a.values.iter().next())
    };
    let content_type = value_of(ID_CONTENT_TYPE)
        .and_then(|v| v.decode_as::<ObjectIdentifier>().ok())
        .ok_or_else(|| invalid("signed attributes lack a content type"))?;
    if content_type != ID_CT_TST_INFO {
        return Err(invalid("signed content type is not TSTInfo"));
    }
    let digest = value_of(ID_MESSAGE_DIGEST)
        .and_then(|v| v.decode_as::<OctetString>().ok())
        .ok_or_else(|| invalid("signed attributes lack a message digest"))?;
    if digest.as_bytes() != Sha256::digest(tst_der).as_slice() {
        return Err(invalid("signed message digest is not the TSTInfo's"));
    }
    let signed_bytes = attrs.to_der().map_err(der_err)?;
    let spki = cert
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(der_err)?;
    let sig = signer.signature.as_bytes();
    let alg = signer.signature_algorithm.oid;
    let refused = || invalid("token signature does not verify with the TSA certificate");
    if alg == ECDSA_WITH_SHA_256 {
        use p256::ecdsa::signature::Verifier;
        use p256::pkcs8::DecodePublicKey;
        let key = p256::ecdsa::VerifyingKey::from_public_key_der(&spki)
            .map_err(|e| invalid(format!("TSA certificate key is not P-256: {e}")))?;
        let sig = p256::ecdsa::Signature::from_der(sig)
            .map_err(|e| invalid(format!("malformed ECDSA signature: {e}")))?;
        key.verify(&signed_bytes, &sig).map_err(|_| refused())
    } else if alg == RSA_ENCRYPTION || alg == SHA_256_WITH_RSA_ENCRYPTION {
        use rsa::pkcs8::DecodePublicKey;
        use rsa::signature::Verifier;
        let key = rsa::RsaPublicKey::from_public_key_der(&spki)
            .map_err(|e| invalid(format!("TSA certificate key is not RSA: {e}")))?;
        let key = rsa::pkcs1v15::VerifyingKey::<Sha256>::new(key);
        let sig = rsa::pkcs1v15::Signature::try_from(sig)
            .map_err(|e| invalid(format!("malformed RSA signature: {e}")))?;
        key.verify(&signed_bytes, &sig).map_err(|_| refused())
    } else {
        Err(invalid(format!("unsupported signature algorithm {alg}")))
    }
}
